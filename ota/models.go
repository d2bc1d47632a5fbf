package ota

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightd/sightd/quant/bundle"
)

// Names inside the models directory.
const (
	currentLink  = "current"
	previousLink = "previous"
	trialName    = "trial.json"
	downloadDir  = "download"
	stagingGlob  = ".staging-"
	linkTemp     = ".link-"
)

// ErrNoModel means the models directory holds no installed model: the
// configured bundle runs.
var ErrNoModel = errors.New("no installed model")

// Models is the directory of installed model versions:
//
//	v<N>/             a complete bundle; it gets this name only after it was
//	                  verified, unpacked and fsynced
//	current -> v<N>   the active model, a symlink replaced by rename (the
//	                  commit point of an update)
//	previous -> v<M>  the model to roll back to
//	trial.json        present while the current model is on trial
//	download/         downloads, kept across restarts so they resume
//	.staging-*        unpacks in progress, removed at start
//
// A power cut at any moment leaves current naming one complete version, or
// no current at all (the configured bundle runs).
type Models struct {
	dir string
	log zerolog.Logger

	mu    sync.Mutex
	trial *Trial // nil when no trial runs
}

// Trial is an update on probation: the model it replaced and what the new
// one has done so far.
type Trial struct {
	Version  int64     `json:"version"`
	Previous int64     `json:"previous"` // 0: the configured bundle
	Restarts int       `json:"restarts"` // daemon starts since the switch
	Started  time.Time `json:"started"`
	OK       int       `json:"-"` // frames encoded since this start
	Failed   int       `json:"-"`
}

// Recovery is what OpenModels found and did at start.
type Recovery struct {
	// RolledBack is the version a trial rolled back from (0 for none), and
	// Reason why.
	RolledBack int64
	Reason     string
	// Removed lists leftovers deleted: unfinished unpacks and versions no
	// link names.
	Removed []string
}

// OpenModels opens (creating) the models directory and recovers it after a
// crash or power cut: it removes unfinished unpacks and unused versions,
// counts a restart of a running trial and rolls the trial back once the
// restarts exceed maxRestarts, or when current no longer names a complete
// version.
func OpenModels(dir string, maxRestarts int, log zerolog.Logger) (*Models, Recovery, error) {
	var rec Recovery
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, rec, fmt.Errorf("ota: models dir: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(abs, downloadDir), 0o755); err != nil {
		return nil, rec, fmt.Errorf("ota: models dir: %w", err)
	}
	m := &Models{dir: abs, log: log}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return nil, rec, fmt.Errorf("ota: models dir: %w", err)
	}
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, stagingGlob) || strings.HasPrefix(n, linkTemp) || strings.HasSuffix(n, ".tmp") {
			if err := os.RemoveAll(filepath.Join(abs, n)); err != nil {
				return nil, rec, fmt.Errorf("ota: remove leftover %s: %w", n, err)
			}
			rec.Removed = append(rec.Removed, n)
		}
	}

	cur, curErr := m.linked(currentLink)
	t, err := m.readTrial()
	if err != nil {
		return nil, rec, err
	}
	switch {
	case t != nil && (curErr != nil || cur != t.Version):
		// The switch never happened (power cut before the link moved):
		// the trial is stale and the old model is still current.
		if err := m.removeTrial(); err != nil {
			return nil, rec, err
		}
		t = nil
	case t != nil:
		t.Restarts = min(t.Restarts+1, 1<<30)
		if t.Restarts > maxRestarts {
			reason := fmt.Sprintf("sightd restarted %d times during the trial of model %d", t.Restarts, t.Version)
			m.trial = t
			if err := m.rollBack(reason); err != nil {
				return nil, rec, err
			}
			rec.RolledBack, rec.Reason = t.Version, reason
			t = nil
		} else if err := m.writeTrial(t); err != nil {
			return nil, rec, err
		}
	}
	m.trial = t
	if t == nil && curErr != nil && !errors.Is(curErr, ErrNoModel) {
		// current names nothing usable (a disk error, a hand edit): fall
		// back as a failed trial would.
		prev, _ := m.linked(previousLink)
		reason := fmt.Sprintf("current model unusable: %v", curErr)
		m.trial = &Trial{Previous: prev}
		if err := m.rollBack(reason); err != nil {
			return nil, rec, err
		}
		rec.Reason = reason
	}
	removed, err := m.prune()
	rec.Removed = append(rec.Removed, removed...)
	if err != nil {
		return nil, rec, err
	}
	return m, rec, nil
}

// Dir is the models directory.
func (m *Models) Dir() string { return m.dir }

// DownloadDir is where downloads are kept until installed.
func (m *Models) DownloadDir() string { return filepath.Join(m.dir, downloadDir) }

// Active is the current model's directory and version, or ErrNoModel.
func (m *Models) Active() (dir string, version int64, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, err := m.linked(currentLink)
	if err != nil {
		return "", 0, err
	}
	return m.versionDir(v), v, nil
}

// Previous is the version a rollback returns to (0: the configured bundle).
func (m *Models) Previous() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, _ := m.linked(previousLink)
	return v
}

// Trial is the running trial, or nil.
func (m *Models) Trial() *Trial {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.trial == nil {
		return nil
	}
	t := *m.trial
	return &t
}

// Staged is a verified, unpacked and fsynced version, not yet current.
type Staged struct {
	Dir      string
	Verified *Verified
}

// Step names a stage of an update, for progress reports and logs.
type Step string

// The steps of an update, in order.
const (
	StepDownload Step = "download"
	StepVerify   Step = "verify"
	StepUnpack   Step = "unpack"
	StepFsync    Step = "fsync"
	StepSmoke    Step = "smoke-test"
	StepReembed  Step = "re-embed"
	StepSwitch   Step = "switch"
	StepTrial    Step = "trial"
)

// Stage verifies the bundle tar at path against p before anything is
// unpacked, then unpacks it into a staging directory (checked again as it
// streams), fsyncs every file and directory and renames it to v<N>. step,
// when not nil, is told each step as it begins.
func (m *Models) Stage(path string, p Policy, step func(Step)) (_ *Staged, err error) {
	tell := func(s Step) {
		if step != nil {
			step(s)
		}
	}
	tell(StepVerify)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ota: %w", err)
	}
	defer f.Close()
	v, err := VerifyTar(f, p)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, 0); err != nil {
		return nil, fmt.Errorf("ota: %w", err)
	}
	tell(StepUnpack)
	staging, err := os.MkdirTemp(m.dir, stagingGlob)
	if err != nil {
		return nil, fmt.Errorf("ota: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(staging)
		}
	}()
	if _, err := bundle.Extract(f, staging); err != nil {
		return nil, err
	}
	// The unpack read the file a second time: make sure it unpacked the
	// manifest that was verified (Extract checked every file against it).
	got, err := os.ReadFile(filepath.Join(staging, bundle.ManifestName))
	if err != nil {
		return nil, fmt.Errorf("ota: %w", err)
	}
	if !bytes.Equal(got, v.ManifestBytes) {
		return nil, fmt.Errorf("%w: the bundle changed between verification and unpacking", bundle.ErrInvalid)
	}
	tell(StepFsync)
	if err := syncTree(staging); err != nil {
		return nil, err
	}
	version := v.Manifest.Version
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, _ := m.linked(currentLink)
	prev, _ := m.linked(previousLink)
	if version == cur || version == prev {
		return nil, fmt.Errorf("ota: model %d is already installed", version)
	}
	final := m.versionDir(version)
	// A leftover of an install that never switched: not in use.
	if err := os.RemoveAll(final); err != nil {
		return nil, fmt.Errorf("ota: %w", err)
	}
	if err := os.Chmod(staging, 0o755); err != nil {
		return nil, fmt.Errorf("ota: %w", err)
	}
	if err := os.Rename(staging, final); err != nil {
		return nil, fmt.Errorf("ota: %w", err)
	}
	if err := syncDir(m.dir); err != nil {
		return nil, err
	}
	return &Staged{Dir: final, Verified: v}, nil
}

// Discard removes a staged version that will not be switched to.
func (m *Models) Discard(s *Staged) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, _ := m.linked(currentLink); cur == s.Verified.Manifest.Version {
		return fmt.Errorf("ota: model %d is current, not discarded", cur)
	}
	return os.RemoveAll(s.Dir)
}

// Switch makes a staged version current and starts its trial: the trial
// marker first, then previous, then current (the commit point), each by
// rename with the directory fsynced, so a power cut leaves either the old or
// the new version current and never neither.
func (m *Models) Switch(s *Staged) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	version := s.Verified.Manifest.Version
	cur, err := m.linked(currentLink)
	if err != nil && !errors.Is(err, ErrNoModel) {
		return err
	}
	prev := cur
	if m.trial != nil {
		// An update over one still on trial: the last proven version stays
		// the one to roll back to, and the unproven one is dropped.
		prev = m.trial.Previous
	}
	t := &Trial{Version: version, Previous: prev, Started: time.Now().UTC()}
	if err := m.writeTrial(t); err != nil {
		return err
	}
	if prev > 0 {
		if err := m.link(previousLink, prev); err != nil {
			return err
		}
	} else if err := m.unlink(previousLink); err != nil {
		return err
	}
	if err := m.link(currentLink, version); err != nil {
		return err
	}
	m.trial = t
	if _, err := m.prune(); err != nil {
		return err
	}
	m.log.Info().Int64("version", version).Int64("previous", prev).Msg("model switched; trial begins")
	return nil
}

// Verdict is what a trial frame decided.
type Verdict int

// Verdicts of Frame.
const (
	Continue Verdict = iota // no trial, or the trial goes on
	Commit                  // enough good frames: call Commit
	RollBack                // enough failed frames: call Rollback
)

// Frame counts one frame of the current model: ok when it was encoded into
// a finite vector of the right size. During a trial it says when to commit
// or roll back; outside one it costs a mutex.
func (m *Models) Frame(ok bool, need int) Verdict {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.trial
	if t == nil {
		return Continue
	}
	if ok {
		t.OK++
	} else {
		t.Failed++
	}
	switch {
	case t.Failed >= need:
		return RollBack
	case t.OK >= need:
		return Commit
	}
	return Continue
}

// Commit ends the trial: the current version stays, the previous one is kept
// for a manual rollback, and every other version is deleted.
func (m *Models) Commit() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.trial == nil {
		return nil
	}
	if err := m.removeTrial(); err != nil {
		return err
	}
	m.log.Info().Int64("version", m.trial.Version).Int("frames", m.trial.OK).Msg("model update committed")
	m.trial = nil
	_, err := m.prune()
	return err
}

// Rollback makes the previous version current again (or removes current,
// when the previous model was the configured bundle) and deletes the failed
// version. Outside a trial it rolls back to the previous link, if any.
func (m *Models) Rollback(reason string) (failed int64, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.trial == nil {
		cur, err := m.linked(currentLink)
		if err != nil {
			return 0, err
		}
		prev, _ := m.linked(previousLink)
		m.trial = &Trial{Version: cur, Previous: prev}
	}
	failed = m.trial.Version
	return failed, m.rollBack(reason)
}

func (m *Models) rollBack(reason string) error {
	t := m.trial
	if t.Previous > 0 {
		if err := m.link(currentLink, t.Previous); err != nil {
			return err
		}
	} else if err := m.unlink(currentLink); err != nil {
		return err
	}
	if err := m.unlink(previousLink); err != nil {
		return err
	}
	if err := m.removeTrial(); err != nil {
		return err
	}
	m.trial = nil
	m.log.Warn().Int64("failed", t.Version).Int64("active", t.Previous).Str("reason", reason).Msg("model rolled back")
	_, err := m.prune()
	return err
}

// prune deletes version directories neither link names.
func (m *Models) prune() ([]string, error) {
	keep := map[string]bool{}
	for _, l := range []string{currentLink, previousLink} {
		if v, err := m.linked(l); err == nil {
			keep[versionName(v)] = true
		}
	}
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, fmt.Errorf("ota: %w", err)
	}
	var removed []string
	for _, e := range entries {
		if _, ok := parseVersionName(e.Name()); !ok || keep[e.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(m.dir, e.Name())); err != nil {
			return removed, fmt.Errorf("ota: %w", err)
		}
		removed = append(removed, e.Name())
	}
	return removed, nil
}

// linked is the version a link names, checked to be a complete version
// directory (manifest.json is written last by the unpack).
func (m *Models) linked(name string) (int64, error) {
	target, err := os.Readlink(filepath.Join(m.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, ErrNoModel
	}
	if err != nil {
		return 0, fmt.Errorf("ota: %s: %w", name, err)
	}
	v, ok := parseVersionName(target)
	if !ok {
		return 0, fmt.Errorf("ota: %s points to %q, not a version directory", name, target)
	}
	if _, err := os.Stat(filepath.Join(m.versionDir(v), bundle.ManifestName)); err != nil {
		return 0, fmt.Errorf("ota: %s: version %d is incomplete: %w", name, v, err)
	}
	return v, nil
}

// link points name at version by renaming a new symlink over it.
func (m *Models) link(name string, version int64) error {
	tmp := filepath.Join(m.dir, linkTemp+name)
	os.Remove(tmp)
	if err := os.Symlink(versionName(version), tmp); err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(m.dir, name)); err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	return syncDir(m.dir)
}

func (m *Models) unlink(name string) error {
	err := os.Remove(filepath.Join(m.dir, name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ota: %w", err)
	}
	return syncDir(m.dir)
}

func (m *Models) readTrial() (*Trial, error) {
	data, err := os.ReadFile(filepath.Join(m.dir, trialName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ota: %w", err)
	}
	var t Trial
	if err := json.Unmarshal(data, &t); err != nil || t.Version < 1 || t.Previous < 0 || t.Restarts < 0 {
		// Written by rename, so never torn: a bad one was damaged or edited
		// by hand. Treat it as a failed trial of the current version.
		m.log.Warn().Bytes("trial", data).Msg("unreadable trial marker; treating the trial as failed")
		cur, _ := m.linked(currentLink)
		prev, _ := m.linked(previousLink)
		return &Trial{Version: cur, Previous: prev, Restarts: 1 << 30}, nil
	}
	return &t, nil
}

func (m *Models) writeTrial(t *Trial) error {
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(m.dir, trialName), data)
}

func (m *Models) removeTrial() error { return m.unlink(trialName) }

func (m *Models) versionDir(v int64) string { return filepath.Join(m.dir, versionName(v)) }

func versionName(v int64) string { return "v" + strconv.FormatInt(v, 10) }

func parseVersionName(name string) (int64, bool) {
	if !strings.HasPrefix(name, "v") {
		return 0, false
	}
	v, err := strconv.ParseInt(name[1:], 10, 64)
	if err != nil || v < 1 || versionName(v) != name {
		return 0, false
	}
	return v, true
}

// writeFileAtomic writes data to path through a fsynced temporary file and a
// rename, then fsyncs the directory.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("ota: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("ota: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// syncTree fsyncs every file and directory under dir, the files first.
func syncTree(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		return syncPath(p)
	})
	if err != nil {
		return fmt.Errorf("ota: fsync: %w", err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syncDir(dirs[i]); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(dir string) error {
	if err := syncPath(dir); err != nil {
		return fmt.Errorf("ota: fsync %s: %w", dir, err)
	}
	return nil
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Status is what the models directory holds, read without changing it.
type Status struct {
	Current  int64 // 0: none (the configured bundle runs)
	Previous int64
	Trial    *Trial // nil: no trial
}

// Inspect reads the models directory at dir without recovering or changing
// anything (OpenModels does both), for status reports.
func Inspect(dir string) (Status, error) {
	var s Status
	abs, err := filepath.Abs(dir)
	if err != nil {
		return s, fmt.Errorf("ota: %w", err)
	}
	if _, err := os.Stat(abs); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return s, nil
		}
		return s, fmt.Errorf("ota: %w", err)
	}
	m := &Models{dir: abs, log: zerolog.Nop()}
	var cerr error
	if s.Current, cerr = m.linked(currentLink); cerr != nil && !errors.Is(cerr, ErrNoModel) {
		return s, cerr
	}
	s.Previous, _ = m.linked(previousLink)
	if s.Trial, err = m.readTrial(); err != nil {
		return s, err
	}
	return s, nil
}
