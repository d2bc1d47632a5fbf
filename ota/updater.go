package ota

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// ErrBusy refuses an update while another one runs.
var ErrBusy = errors.New("an update is already running")

// ErrCanceled ends an update that was cancelled (model/install
// {"cancel":true}).
var ErrCanceled = errors.New("update cancelled")

// ErrNothingToCancel answers a cancel while no update runs.
var ErrNothingToCancel = errors.New("no update is running")

// ErrTooLate answers a cancel once the new version is switched in: its
// trial commits it or rolls it back.
var ErrTooLate = errors.New("too late to cancel: the new model is switched in; its trial commits or rolls it back")

// ErrVersionMismatch means the bundle is not the version that was asked for.
var ErrVersionMismatch = errors.New("bundle version is not the one requested")

// Target is the running daemon as an update sees it.
type Target interface {
	// Running is the version of the model serving now.
	Running() int64
	// Prepare loads the bundle in dir, runs its smoke test and embeds every
	// rule with it, telling step as each begins; nothing is switched yet and
	// the running model keeps serving. dir "" means the configured bundle
	// (a rollback to it).
	Prepare(ctx context.Context, dir string, step func(Step)) (Prepared, error)
}

// Prepared is a model ready to serve.
type Prepared interface {
	// Activate hot-swaps it into the running pipelines.
	Activate(ctx context.Context) error
	// Abort frees it; the running model is untouched.
	Abort()
}

// VersionStore keeps the anti-rollback floor: the highest version ever
// accepted. *store.Store implements it.
type VersionStore interface {
	ModelVersions(ctx context.Context) (installed, highest int64, err error)
	AcceptModel(ctx context.Context, version int64) error
}

// State is the update as Home Assistant's update entity shows it.
type State struct {
	Installed  int64
	Latest     int64 // newest version known (index or command); 0: none
	InProgress bool
	Percentage int  // 0..100 while InProgress
	Step       Step // while InProgress
}

// Event is an update's outcome, for logs and the model/event topic.
type Event struct {
	Kind    string // "installed", "committed", "rolled_back" or "failed"
	Version int64
	Step    Step  // where it failed
	Err     error // why it failed or rolled back
}

// Updater runs updates: fetch, verify, stage, smoke test and re-embed,
// switch, hot swap, trial, and commit or roll back. One runs at a time.
type Updater struct {
	Config  Config
	Models  *Models
	Fetcher *Fetcher
	Keys    Keyring
	Store   VersionStore
	Target  Target
	Log     zerolog.Logger
	// Report receives every state change; Events receives outcomes. Both
	// may be nil and must not block for long.
	Report func(State)
	Events func(Event)
	// Step, when set, is told each step as it begins (tests, progress).
	Step func(Step)
	// Now is the clock for signature expiry; nil is time.Now.
	Now func() time.Time
	// FirstPoll is how long after Poll starts the index is first read (0:
	// 10 s, so that start-up comes first).
	FirstPoll time.Duration

	mu      sync.Mutex
	busy    bool           // an update or a trial verdict runs
	offered map[int64]bool // versions the index or a signed head offered
	refused map[int64]bool // versions whose bundle was refused: not offered again
	run     *running       // the update under way, nil when none
}

// running is an update under way, for Cancel.
type running struct {
	version  int64 // 0 until known
	step     Step
	cancel   context.CancelCauseFunc
	done     chan struct{}
	switched bool // past the point of no return
}

// Start begins installing the bundle at url (version 0: whatever version
// it holds; otherwise exactly that version) in the background, after a
// quick check that it could be installed. url "" takes the newest entry of
// the index. The outcome goes to Report and Events.
func (u *Updater) Start(ctx context.Context, url string, version int64) error {
	if !u.Config.Enabled() {
		return fmt.Errorf("ota: no trusted keys are configured")
	}
	if err := u.begin(); err != nil {
		return err
	}
	ictx, r := u.track(ctx, version)
	go func() {
		defer u.end()
		defer u.untrack(r)
		u.install(ctx, ictx, url, version)
	}()
	return nil
}

// track records an update under way; ictx ends with ctx or a Cancel.
func (u *Updater) track(ctx context.Context, version int64) (context.Context, *running) {
	ictx, cancel := context.WithCancelCause(ctx)
	r := &running{version: version, step: StepDownload, cancel: cancel, done: make(chan struct{})}
	u.mu.Lock()
	u.run = r
	u.mu.Unlock()
	return ictx, r
}

func (u *Updater) untrack(r *running) {
	u.mu.Lock()
	if u.run == r {
		u.run = nil
	}
	u.mu.Unlock()
	r.cancel(nil)
	close(r.done)
}

// Cancel stops the update under way (a download that does not end, a
// bundle not wanted after all) and waits until it has stopped and cleaned
// up, so that another install can start at once. It returns the version
// that was being installed (0 if not yet known). Before the switch nothing
// of it remains but a partial download (kept for resuming the same URL);
// after it, it is too late (ErrTooLate): the trial decides.
func (u *Updater) Cancel(ctx context.Context) (int64, error) {
	u.mu.Lock()
	r := u.run
	if r == nil {
		u.mu.Unlock()
		return 0, ErrNothingToCancel
	}
	v := r.version
	if r.switched {
		u.mu.Unlock()
		return v, fmt.Errorf("ota: version %d: %w", v, ErrTooLate)
	}
	r.cancel(ErrCanceled)
	u.mu.Unlock()
	select {
	case <-r.done:
		return v, nil
	case <-ctx.Done():
		return v, fmt.Errorf("ota: cancelled, but the update has not stopped yet: %w", ctx.Err())
	}
}

// Current reports the update under way: its version (0 if not yet known)
// and step; ok is false when none runs.
func (u *Updater) Current() (version int64, step Step, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.run == nil {
		return 0, "", false
	}
	return u.run.version, u.run.step, true
}

// pointOfNoReturn marks the update switched in unless it was cancelled.
func (u *Updater) pointOfNoReturn(ictx context.Context, version int64) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if err := context.Cause(ictx); err != nil {
		return err
	}
	if u.run != nil {
		u.run.switched, u.run.version = true, version
	}
	return nil
}

// progress notes the step and version of the update under way.
func (u *Updater) progress(s Step, version int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.run != nil {
		u.run.step = s
		if version != 0 {
			u.run.version = version
		}
	}
}

// Install is Start, waiting for the outcome.
func (u *Updater) Install(ctx context.Context, url string, version int64) error {
	if !u.Config.Enabled() {
		return fmt.Errorf("ota: no trusted keys are configured")
	}
	if err := u.begin(); err != nil {
		return err
	}
	defer u.end()
	ictx, r := u.track(ctx, version)
	defer u.untrack(r)
	return u.install(ctx, ictx, url, version)
}

func (u *Updater) begin() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.busy {
		return ErrBusy
	}
	u.busy = true
	return nil
}

func (u *Updater) end() {
	u.mu.Lock()
	u.busy = false
	u.mu.Unlock()
}

// floor is the version an update must be above: the highest ever accepted,
// and the running model's.
func (u *Updater) floor(ctx context.Context) (int64, error) {
	_, highest, err := u.Store.ModelVersions(ctx)
	if err != nil {
		return 0, err
	}
	return max(highest, u.Target.Running()), nil
}

// install runs an update. Until the switch it works under ictx, which a
// Cancel ends; from the switch on under ctx alone.
func (u *Updater) install(ctx, ictx context.Context, url string, version int64) (err error) {
	step := StepDownload
	var staged *Staged
	var prepared Prepared
	refusedHead := false // the signed head was refused
	defer func() {
		if err == nil {
			return
		}
		if errors.Is(context.Cause(ictx), ErrCanceled) && !errors.Is(err, ErrCanceled) {
			err = fmt.Errorf("ota: %w at step %s: %v", ErrCanceled, step, err)
		}
		// A bundle refused for what it is (its signature, version, files,
		// model) is not offered again: Home Assistant would offer an
		// install that fails the same way. A cancelled or unreachable
		// download says nothing about the bundle.
		if version != 0 && ictx.Err() == nil && (step != StepDownload || refusedHead) {
			u.refuse(version)
		}
		if prepared != nil {
			prepared.Abort()
		}
		if staged != nil {
			if derr := u.Models.Discard(staged); derr != nil {
				u.Log.Warn().Err(derr).Msg("removing the staged model")
			}
		}
		u.Log.Error().Err(err).Str("step", string(step)).Int64("version", version).Msg("model update failed; the running model stays")
		u.event(Event{Kind: "failed", Version: version, Step: step, Err: err})
		u.report(State{})
	}()
	tell := func(s Step) {
		step = s
		u.progress(s, version)
		u.report(State{InProgress: true, Step: s, Percentage: stepPercent(s, 0)})
		if u.Step != nil {
			u.Step(s)
		}
	}
	tell(StepDownload)
	if url == "" {
		entry, err := u.index(ictx)
		if err != nil {
			return err
		}
		if version != 0 && entry.Version != version {
			return fmt.Errorf("ota: %w: the index offers %d, not %d", ErrVersionMismatch, entry.Version, version)
		}
		url, version = entry.URL, entry.Version
	}
	floor, err := u.floor(ictx)
	if err != nil {
		return err
	}
	if version != 0 && version <= floor {
		return fmt.Errorf("ota: %w: version %d is not above %d", ErrOldVersion, version, floor)
	}
	pol := Policy{Keys: u.Keys, Floor: floor, Now: u.now()}
	dest := filepath.Join(u.Models.DownloadDir(), downloadName(url))
	limit := func(partial *os.File) (int64, bool, error) {
		if _, err := partial.Seek(0, io.SeekStart); err != nil {
			return 0, false, err
		}
		man, sig, err := ReadHead(partial)
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return 0, false, nil // the signed head is not all here yet
		}
		if err != nil {
			return 0, false, err
		}
		v, err := pol.CheckHead(man, sig)
		if err != nil {
			refusedHead = true
			return 0, false, err
		}
		if version != 0 && v.Manifest.Version != version {
			refusedHead = true
			return 0, false, fmt.Errorf("ota: %w: the bundle is version %d, not %d", ErrVersionMismatch, v.Manifest.Version, version)
		}
		// Signed, so worth showing as available (a bare command's number
		// is not).
		version = v.Manifest.Version
		u.progress(StepDownload, version)
		u.setLatest(version)
		return min(MaxTarSize(v, len(sig)), u.Config.MaxDownload), true, nil
	}
	progress := func(p Progress) {
		pct := 0
		if p.Total > 0 {
			pct = int(p.Done * 100 / p.Total)
		}
		u.report(State{InProgress: true, Step: StepDownload, Percentage: stepPercent(StepDownload, pct)})
	}
	if _, err := u.Fetcher.Fetch(ictx, url, dest, limit, min(8<<20, u.Config.MaxDownload), progress); err != nil {
		return err
	}
	// Whatever happens next, this download is done with: a good bundle is
	// unpacked, a bad one must not be tried again.
	defer os.Remove(dest)
	staged, err = u.Models.Stage(dest, pol, tell)
	if err != nil {
		return err
	}
	version = staged.Verified.Manifest.Version
	if err := context.Cause(ictx); err != nil {
		return err
	}
	prepared, err = u.Target.Prepare(ictx, staged.Dir, tell)
	if err != nil {
		return err
	}
	tell(StepSwitch)
	if err := u.pointOfNoReturn(ictx, version); err != nil {
		return err
	}
	if err := u.Models.Switch(staged); err != nil {
		return err
	}
	staged = nil // current now: never discarded
	if err := u.Store.AcceptModel(ctx, version); err != nil {
		// The link moved, so the new model is current; Reconcile records
		// it at the next start. Serve it now all the same.
		u.Log.Error().Err(err).Int64("version", version).Msg("recording the accepted version")
	}
	if err := prepared.Activate(ctx); err != nil {
		// Current on disk but not serving: roll the files back too.
		prepared.Abort()
		prepared = nil
		if _, rerr := u.Models.Rollback(fmt.Sprintf("hot swap failed: %v", err)); rerr != nil {
			u.Log.Error().Err(rerr).Msg("rolling back after a failed hot swap")
		}
		return err
	}
	tell(StepTrial)
	u.Log.Info().Int64("version", version).Int("trial_frames", u.Config.TrialFrames).Msg("model update installed; on trial")
	u.event(Event{Kind: "installed", Version: version})
	u.report(State{})
	return nil
}

// Frame counts one frame encoded by the current model (ok: a finite vector
// of the right size). During a trial it commits the update, or rolls it
// back and restores the previous model, in the background.
func (u *Updater) Frame(ctx context.Context, ok bool) {
	verdict := u.Models.Frame(ok, u.Config.TrialFrames)
	if verdict == Continue {
		return
	}
	// One thing at a time: while an update runs (or a verdict is being
	// carried out) the verdict waits; a later frame brings it again.
	if u.begin() != nil {
		return
	}
	go func() {
		defer u.end()
		t := u.Models.Trial()
		if t == nil {
			return
		}
		if verdict == Commit {
			if err := u.Models.Commit(); err != nil {
				u.Log.Error().Err(err).Msg("committing the model update")
				return
			}
			u.event(Event{Kind: "committed", Version: t.Version})
			return
		}
		reason := fmt.Errorf("%d of the first frames failed with model %d", t.Failed, t.Version)
		if err := u.RollBack(ctx, reason); err != nil {
			u.Log.Error().Err(err).Msg("rolling back the model update")
		}
	}()
}

// RollBack returns to the previous model: files first, then the running
// pipelines.
func (u *Updater) RollBack(ctx context.Context, reason error) error {
	failed, err := u.Models.Rollback(reason.Error())
	if err != nil {
		return err
	}
	dir, _, err := u.Models.Active()
	if errors.Is(err, ErrNoModel) {
		dir = "" // the configured bundle
	} else if err != nil {
		return err
	}
	p, err := u.Target.Prepare(ctx, dir, nil)
	if err != nil {
		return fmt.Errorf("ota: restoring the previous model: %w", err)
	}
	if err := p.Activate(ctx); err != nil {
		p.Abort()
		return fmt.Errorf("ota: restoring the previous model: %w", err)
	}
	u.event(Event{Kind: "rolled_back", Version: failed, Err: reason})
	u.report(State{})
	return nil
}

// Poll reads the index every PollInterval until ctx ends: it updates
// latest_version and, with AutoInstall, installs a newer version.
func (u *Updater) Poll(ctx context.Context) {
	if u.Config.IndexURL == "" {
		return
	}
	first := u.FirstPoll
	if first <= 0 {
		first = 10 * time.Second
	}
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(u.Config.PollInterval)
		entry, err := u.index(ctx)
		if err != nil {
			u.Log.Warn().Err(err).Msg("reading the model index")
			continue
		}
		u.setLatest(entry.Version)
		u.report(State{})
		floor, err := u.floor(ctx)
		if err != nil || entry.Version <= floor || !u.Config.AutoInstall || u.isRefused(entry.Version) {
			continue
		}
		if err := u.Start(ctx, entry.URL, entry.Version); err != nil && !errors.Is(err, ErrBusy) {
			u.Log.Warn().Err(err).Msg("starting the model update")
		}
	}
}

func (u *Updater) now() time.Time {
	if u.Now != nil {
		return u.Now()
	}
	return time.Now()
}

// latestVersion is the newest version offered and not refused.
func (u *Updater) latestVersion() int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	var latest int64
	for v := range u.offered {
		if !u.refused[v] {
			latest = max(latest, v)
		}
	}
	return latest
}

func (u *Updater) setLatest(v int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.offered == nil {
		u.offered = map[int64]bool{}
	}
	u.offered[v] = true
}

// refuse stops offering version v (its bundle was refused).
func (u *Updater) refuse(v int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.refused == nil {
		u.refused = map[int64]bool{}
	}
	u.refused[v] = true
}

func (u *Updater) isRefused(v int64) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.refused[v]
}

// report fills in the versions and passes s on.
func (u *Updater) report(s State) {
	if u.Report == nil {
		return
	}
	s.Installed = u.Target.Running()
	s.Latest = max(u.latestVersion(), s.Installed)
	u.Report(s)
}

func (u *Updater) event(e Event) {
	if u.Events != nil {
		u.Events(e)
	}
}

// stepPercent maps a step's own progress onto the whole update: the
// download is most of the waiting, the rest share the last fifth.
func stepPercent(s Step, pct int) int {
	switch s {
	case StepDownload:
		return pct * 80 / 100
	case StepVerify:
		return 80
	case StepUnpack:
		return 84
	case StepFsync:
		return 88
	case StepSmoke:
		return 90
	case StepReembed:
		return 94
	case StepSwitch:
		return 98
	}
	return 100
}

// downloadName names a download by its URL, so a retry of the same URL
// resumes it.
func downloadName(url string) string {
	sum := sha256.Sum256([]byte(url))
	return hex.EncodeToString(sum[:8]) + ".tar"
}

// Reconcile brings the store's record in line with the models directory at
// start: a power cut between the switch and AcceptModel left the current
// version unrecorded.
func Reconcile(ctx context.Context, m *Models, st VersionStore) error {
	_, v, err := m.Active()
	if errors.Is(err, ErrNoModel) {
		return nil
	}
	if err != nil {
		return err
	}
	_, highest, err := st.ModelVersions(ctx)
	if err != nil {
		return err
	}
	if v > highest {
		return st.AcceptModel(ctx, v)
	}
	return nil
}
