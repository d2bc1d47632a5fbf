package ota_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sightd/sightd/ota"
	"github.com/sightd/sightd/ota/otatest"
)

// A download that never ends (a server that accepts and sends nothing) is
// cancelled: Cancel returns once the update has stopped, the outcome says
// it was cancelled, nothing is installed, and another install runs at
// once instead of being refused as busy.
func TestUpdaterCancelsAStuckDownload(t *testing.T) {
	key := otatest.Key(t)
	u, target, rec, _ := newUpdater(t, key)
	var hits atomic.Int32
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		<-r.Context().Done()
	}))
	t.Cleanup(stuck.Close)
	ctx := context.Background()
	if _, err := u.Cancel(ctx); !errors.Is(err, ota.ErrNothingToCancel) {
		t.Fatalf("cancel with nothing running: %v", err)
	}
	if err := u.Start(ctx, stuck.URL+"/v2.tar", 2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return hits.Load() > 0 })
	if v, step, ok := u.Current(); !ok || v != 2 || step != ota.StepDownload {
		t.Errorf("current %d %s %v", v, step, ok)
	}
	srv := otatest.NewServer(t)
	good := srv.Put("/v2.tar", otatest.Bundle(t, key, 2))
	if err := u.Start(ctx, good, 2); !errors.Is(err, ota.ErrBusy) {
		t.Fatalf("a second install while one runs: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := u.Cancel(cctx)
	if err != nil || v != 2 {
		t.Fatalf("cancel: %d, %v", v, err)
	}
	if e := rec.lastEvent(); e.Kind != "failed" || !errors.Is(e.Err, ota.ErrCanceled) || e.Step != ota.StepDownload {
		t.Errorf("last event %+v", e)
	}
	if _, _, ok := u.Current(); ok || target.Running() != 1 {
		t.Errorf("after the cancel: running %d, an update still current: %v", target.Running(), ok)
	}
	if _, err := u.Cancel(ctx); !errors.Is(err, ota.ErrNothingToCancel) {
		t.Errorf("second cancel: %v", err)
	}
	if err := u.Install(ctx, good, 2); err != nil {
		t.Fatalf("install after the cancel: %v", err)
	}
	if target.Running() != 2 {
		t.Errorf("running %d", target.Running())
	}
	// Switched in: too late to cancel; the trial decides.
	if err := u.Start(ctx, srv.Put("/v3.tar", otatest.Bundle(t, key, 3)), 3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, _, ok := u.Current(); return !ok })
	if _, err := u.Cancel(ctx); !errors.Is(err, ota.ErrNothingToCancel) {
		t.Errorf("cancel after the install ended: %v", err)
	}
}

// A bundle refused for what it is stops being offered: model/state's
// latest_version goes back to the installed version (Home Assistant
// would otherwise offer an install that fails again), and the index's
// entry for it is neither offered nor installed automatically; a newer
// version is offered again.
func TestUpdaterRefusedVersionNotOffered(t *testing.T) {
	key := otatest.Key(t)
	u, target, rec, _ := newUpdater(t, key)
	srv := otatest.NewServer(t)
	src := otatest.Dir(t, 2)
	bad := otatest.Flip(t, otatest.Pack(t, src, key), src, "image.tflite")
	ctx := context.Background()
	if err := u.Install(ctx, srv.Put("/v2.tar", bad), 0); err == nil {
		t.Fatal("a flipped byte installed")
	}
	latest := func() ota.State {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.states[len(rec.states)-1]
	}
	if s := latest(); s.InProgress || s.Installed != 1 || s.Latest != 1 {
		t.Errorf("state after the refusal %+v: latest_version should be the installed one", s)
	}
	// The index still lists it: polled, it is not offered or installed.
	u.Config.IndexURL = srv.Put("/index.json", []byte(`{"version": 2, "url": "v2.tar"}`))
	u.Config.AutoInstall, u.FirstPoll, u.Config.PollInterval = true, time.Millisecond, time.Millisecond
	pctx, stop := context.WithCancel(ctx)
	polled := srv.Hits("/index.json")
	done := make(chan struct{})
	go func() { u.Poll(pctx); close(done) }()
	// A second reading of the index means the first was acted on.
	waitFor(t, func() bool { return srv.Hits("/index.json") >= polled+2 })
	stop()
	<-done
	waitFor(t, func() bool { _, _, ok := u.Current(); return !ok })
	if s := latest(); s.Latest != 1 || target.Running() != 1 || srv.Hits("/v2.tar") != 1 {
		t.Errorf("after a poll: %+v, running %d, %d downloads of v2", s, target.Running(), srv.Hits("/v2.tar"))
	}
	// A good version 3 is offered and installs.
	if err := u.Install(ctx, srv.Put("/v3.tar", otatest.Bundle(t, key, 3)), 3); err != nil {
		t.Fatal(err)
	}
	if s := latest(); s.Installed != 3 || s.Latest != 3 {
		t.Errorf("after version 3: %+v", s)
	}
}
