package ota_test

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightd/sightd/ota"
	"github.com/sightd/sightd/ota/otatest"
	"github.com/sightd/sightd/quant/bundle"
	"github.com/sightd/sightd/store"
)

// fakeTarget stands for the daemon: it opens (and so checks) the bundle it
// is given and serves its version once activated. The daemon's own tests
// run updates against the real pipelines.
type fakeTarget struct {
	mu      sync.Mutex
	running int64
	factory int64 // the configured bundle's version
	fail    error // Prepare fails with it
}

func (f *fakeTarget) Running() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running
}

func (f *fakeTarget) Prepare(_ context.Context, dir string, step func(ota.Step)) (ota.Prepared, error) {
	if step != nil {
		step(ota.StepSmoke)
		step(ota.StepReembed)
	}
	v := f.factory
	if dir != "" {
		b, err := bundle.Open(dir)
		if err != nil {
			return nil, err
		}
		v = b.Manifest.Version
	}
	if f.fail != nil {
		return nil, f.fail
	}
	return &fakePrepared{f: f, version: v}, nil
}

type fakePrepared struct {
	f       *fakeTarget
	version int64
}

func (p *fakePrepared) Activate(context.Context) error {
	p.f.mu.Lock()
	p.f.running = p.version
	p.f.mu.Unlock()
	return nil
}

func (p *fakePrepared) Abort() {}

// recorder keeps what an updater reports.
type recorder struct {
	mu     sync.Mutex
	states []ota.State
	events []ota.Event
}

func (r *recorder) state(s ota.State) { r.mu.Lock(); r.states = append(r.states, s); r.mu.Unlock() }
func (r *recorder) event(e ota.Event) { r.mu.Lock(); r.events = append(r.events, e); r.mu.Unlock() }

func (r *recorder) lastEvent() ota.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == 0 {
		return ota.Event{}
	}
	return r.events[len(r.events)-1]
}

func newUpdater(t *testing.T, keys ...*ota.PrivateKey) (*ota.Updater, *fakeTarget, *recorder, *store.Store) {
	t.Helper()
	dir := t.TempDir()
	cfg := store.Defaults()
	cfg.Dir = filepath.Join(dir, "db")
	st, err := store.Open(context.Background(), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m, _, err := ota.OpenModels(filepath.Join(dir, "models"), 2, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var ring ota.Keyring
	for _, k := range keys {
		ring = append(ring, k.Public())
	}
	oc := ota.Defaults()
	oc.Dir = m.Dir()
	oc.TrustedKeys = []string{"(keys given directly)"}
	oc.TrialFrames = 5
	target := &fakeTarget{running: 1, factory: 1}
	rec := &recorder{}
	u := &ota.Updater{Config: oc, Models: m, Keys: ring, Store: st, Target: target, Log: zerolog.Nop(),
		Fetcher: &ota.Fetcher{Log: zerolog.Nop(), MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond},
		Report:  rec.state, Events: rec.event}
	return u, target, rec, st
}

// A signed bundle served over HTTP is downloaded, verified, staged, switched
// to and activated; its version becomes the anti-rollback floor; progress is
// reported from 0 to the end.
func TestUpdaterInstalls(t *testing.T) {
	key := otatest.Key(t)
	u, target, rec, st := newUpdater(t, key)
	srv := otatest.NewServer(t)
	url := srv.Put("/v2.tar", otatest.Bundle(t, key, 2))
	ctx := context.Background()
	if err := u.Install(ctx, url, 2); err != nil {
		t.Fatal(err)
	}
	if target.Running() != 2 {
		t.Fatalf("running %d after the update", target.Running())
	}
	if _, v, err := u.Models.Active(); err != nil || v != 2 {
		t.Fatalf("active %d, %v", v, err)
	}
	if _, highest, _ := st.ModelVersions(ctx); highest != 2 {
		t.Errorf("highest accepted %d, want 2", highest)
	}
	if e := rec.lastEvent(); e.Kind != "installed" || e.Version != 2 {
		t.Errorf("last event %+v", e)
	}
	steps, last := map[ota.Step]bool{}, -1
	for _, s := range rec.states {
		if s.InProgress {
			steps[s.Step] = true
			if s.Percentage < last {
				t.Errorf("progress went back: %d after %d", s.Percentage, last)
			}
			last = s.Percentage
		}
	}
	for _, s := range []ota.Step{ota.StepDownload, ota.StepVerify, ota.StepUnpack, ota.StepFsync, ota.StepSmoke, ota.StepReembed, ota.StepSwitch} {
		if !steps[s] {
			t.Errorf("no progress reported for %s", s)
		}
	}
	if final := rec.states[len(rec.states)-1]; final.InProgress || final.Installed != 2 {
		t.Errorf("final state %+v", final)
	}
	if left, _ := os.ReadDir(u.Models.DownloadDir()); len(left) != 0 {
		t.Errorf("downloads left: %v", left)
	}
	// The trial commits after enough good frames (in the background).
	for range 5 {
		u.Frame(ctx, true)
	}
	waitFor(t, func() bool { return u.Models.Trial() == nil })
	waitFor(t, func() bool { return rec.lastEvent().Kind == "committed" })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	// Generous: the deadline only guards against a hang, and stress runs
	// load both cores.
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 60 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Every bundle an attacker or an accident could serve is refused, with a
// failure event naming the reason, and the running model stays.
func TestUpdaterRefuses(t *testing.T) {
	key, stranger := otatest.Key(t), otatest.Key(t)
	src := otatest.Dir(t, 3)
	good := otatest.Pack(t, src, key)
	unsigned := otatest.Pack(t, otatest.Dir(t, 3), nil)
	rename := func(from, to string) func(h *tar.Header, c []byte) (*tar.Header, []byte) {
		return func(h *tar.Header, c []byte) (*tar.Header, []byte) {
			if h.Name == from {
				h.Name = to
			}
			return h, c
		}
	}
	for _, tc := range []struct {
		name    string
		data    []byte
		version int64
		install int64 // installed first, to set the floor
		now     time.Duration
		want    error
		msg     string
	}{
		{name: "flipped byte", data: otatest.Flip(t, good, src, "image.tflite"), want: bundle.ErrHashMismatch},
		{name: "truncated", data: good[:len(good)*2/3], want: bundle.ErrInvalid},
		{name: "wrong key", data: otatest.Pack(t, otatest.Dir(t, 3), stranger), want: ota.ErrUntrustedKey},
		{name: "unsigned", data: unsigned, want: ota.ErrUnsigned},
		{name: "expired", data: good, now: 48 * time.Hour, want: ota.ErrExpired},
		{name: "older than running", data: otatest.Bundle(t, key, 1), want: ota.ErrOldVersion},
		{name: "replayed", data: good, install: 3, want: ota.ErrOldVersion},
		{name: "not the version asked for", data: good, version: 4, want: ota.ErrVersionMismatch},
		{name: "../ path", data: otatest.Rewrite(t, good, rename("text.tflite", "../text.tflite")), want: bundle.ErrInvalid, msg: ".."},
		{name: "oversized file", data: otatest.Rewrite(t, good, func(h *tar.Header, c []byte) (*tar.Header, []byte) {
			if h.Name == "image.tflite" {
				c = append(c, make([]byte, 4<<20)...)
			}
			return h, c
		}), want: ota.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, target, rec, st := newUpdater(t, key)
			srv := otatest.NewServer(t)
			ctx := context.Background()
			if tc.install != 0 {
				if err := u.Install(ctx, srv.Put("/first.tar", otatest.Bundle(t, key, tc.install)), 0); err != nil {
					t.Fatal(err)
				}
			}
			if tc.now != 0 {
				u.Now = func() time.Time { return time.Now().Add(tc.now) }
			}
			before := target.Running()
			_, highBefore, _ := st.ModelVersions(ctx)
			dirsBefore := versions(t, u.Models.Dir())
			err := u.Install(ctx, srv.Put("/b.tar", tc.data), tc.version)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if target.Running() != before {
				t.Errorf("running %d, want %d still", target.Running(), before)
			}
			if _, high, _ := st.ModelVersions(ctx); high != highBefore {
				t.Errorf("highest accepted %d after a refusal, was %d", high, highBefore)
			}
			if e := rec.lastEvent(); e.Kind != "failed" || e.Err == nil {
				t.Errorf("last event %+v, want a failure with its reason", e)
			}
			if got := versions(t, u.Models.Dir()); !slices.Equal(got, dirsBefore) {
				t.Errorf("directories %v after a refusal, were %v", got, dirsBefore)
			}
			if left, _ := os.ReadDir(u.Models.DownloadDir()); len(left) != 0 && !errors.Is(err, ota.ErrTooLarge) {
				t.Errorf("downloads left: %v", left)
			}
		})
	}
}

// With no URL, the index names the bundle; a URL relative to the index
// works.
func TestUpdaterIndex(t *testing.T) {
	key := otatest.Key(t)
	u, target, _, _ := newUpdater(t, key)
	srv := otatest.NewServer(t)
	srv.Put("/models/v2.tar", otatest.Bundle(t, key, 2))
	u.Config.IndexURL = srv.Put("/models/index.json", []byte(`{"version": 2, "url": "v2.tar"}`))
	if err := u.Install(context.Background(), "", 0); err != nil {
		t.Fatal(err)
	}
	if target.Running() != 2 {
		t.Fatalf("running %d", target.Running())
	}
	// Asking for a version the index does not offer fails before any download.
	if err := u.Install(context.Background(), "", 5); !errors.Is(err, ota.ErrVersionMismatch) {
		t.Fatalf("version 5 from an index offering 2: %v", err)
	}
}

// A trial whose frames fail rolls back: the files, then the running model
// (the configured bundle, when the failed update was the first).
func TestUpdaterTrialRollsBack(t *testing.T) {
	key := otatest.Key(t)
	u, target, rec, _ := newUpdater(t, key)
	srv := otatest.NewServer(t)
	ctx := context.Background()
	if err := u.Install(ctx, srv.Put("/v2.tar", otatest.Bundle(t, key, 2)), 0); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		u.Frame(ctx, false)
	}
	waitFor(t, func() bool { return rec.lastEvent().Kind == "rolled_back" })
	if target.Running() != 1 {
		t.Errorf("running %d after the rollback, want the configured bundle's 1", target.Running())
	}
	if _, _, err := u.Models.Active(); !errors.Is(err, ota.ErrNoModel) {
		t.Errorf("active model after rolling back the first update: %v", err)
	}
	// The failed version stays refused.
	err := u.Install(ctx, srv.Put("/v2again.tar", otatest.Bundle(t, key, 2)), 0)
	if !errors.Is(err, ota.ErrOldVersion) {
		t.Errorf("reinstalling the failed version: %v", err)
	}
}

// A failed smoke test (here: the target refuses) leaves nothing switched.
func TestUpdaterSmokeTestFails(t *testing.T) {
	key := otatest.Key(t)
	u, target, rec, _ := newUpdater(t, key)
	target.fail = errors.New("probe 0: cosine 0.12 below 0.99")
	srv := otatest.NewServer(t)
	err := u.Install(context.Background(), srv.Put("/v2.tar", otatest.Bundle(t, key, 2)), 0)
	if err == nil || !strings.Contains(err.Error(), "cosine") {
		t.Fatalf("error %v", err)
	}
	if e := rec.lastEvent(); e.Step != ota.StepReembed && e.Step != ota.StepSmoke {
		t.Errorf("failure reported at step %q", e.Step)
	}
	if _, _, err := u.Models.Active(); !errors.Is(err, ota.ErrNoModel) {
		t.Errorf("something was switched: %v", err)
	}
	if got := versions(t, u.Models.Dir()); len(got) != 0 {
		t.Errorf("versions left: %v", got)
	}
}

// Polling the index tells Home Assistant what is available; with
// auto_install it also installs it.
func TestUpdaterPoll(t *testing.T) {
	for _, auto := range []bool{false, true} {
		key := otatest.Key(t)
		u, target, rec, _ := newUpdater(t, key)
		srv := otatest.NewServer(t)
		srv.Put("/v2.tar", otatest.Bundle(t, key, 2))
		u.Config.IndexURL = srv.Put("/index.json", []byte(`{"version": 2, "url": "v2.tar"}`))
		u.Config.AutoInstall = auto
		u.Config.PollInterval = time.Millisecond
		u.FirstPoll = time.Millisecond
		ctx, cancel := context.WithCancel(context.Background())
		go u.Poll(ctx)
		waitFor(t, func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			return len(rec.states) > 0 && rec.states[0].Latest == 2
		})
		if auto {
			waitFor(t, func() bool { return target.Running() == 2 })
		} else {
			// A second reading of the index means the first was acted on:
			// waited for, not slept on.
			waitFor(t, func() bool { return srv.Hits("/index.json") >= 2 })
			if target.Running() != 1 || srv.Hits("/v2.tar") != 0 {
				t.Errorf("without auto_install: running %d, bundle fetched %d times", target.Running(), srv.Hits("/v2.tar"))
			}
		}
		cancel()
	}
}
