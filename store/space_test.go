package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after 60s waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func spaceConfig(dir string) Config {
	cfg := testConfig(dir)
	cfg.MaxPayloadBytes = 100 << 10
	cfg.OutboxMaxEntries = 1 << 20 // the disk fills before the outbox's own bounds
	cfg.OutboxMaxBytes = 1 << 30
	cfg.ReserveMB = 6 // floor: 2 x 1 MiB + 2 MiB = 4 MiB
	cfg.SpaceCheckInterval = 20 * time.Millisecond
	return cfg
}

func TestReserveValidate(t *testing.T) {
	cfg := testConfig("x")
	cfg.ReserveMB = 3
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "reserve_mb") {
		t.Fatalf("reserve below the floor: %v", err)
	}
	cfg = Defaults()
	cfg.ReserveMB = 17
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "18 MiB") {
		t.Fatalf("reserve below the default floor: %v", err)
	}
}

// fakeFree makes the store see free bytes of free space.
func fakeFree(t *testing.T) *atomic.Int64 {
	var free atomic.Int64
	free.Store(1 << 40)
	real := statfs
	statfs = func(path string, st *unix.Statfs_t) error {
		if err := real(path, st); err != nil {
			return err
		}
		st.Bsize, st.Bavail = 4096, uint64(free.Load()/4096)
		return nil
	}
	t.Cleanup(func() { statfs = real })
	return &free
}

// With free space faked, the levels refuse what they should, in order.
func TestSpaceLevelsRefuseInOrder(t *testing.T) {
	free := fakeFree(t)
	cfg := spaceConfig(t.TempDir())
	cfg.SpaceCheckInterval = time.Hour // no shedding in this test
	s := open(t, cfg)
	ctx := context.Background()
	var levels []SpaceLevel
	var changes atomic.Int32
	s.OnSpace(func(SpaceLevel) { changes.Add(1) })
	snap := Message{Topic: "sightd/porch/camera/front/snapshot", Payload: []byte{0xff, 0xd8, 0xff}, QoS: 1, Retained: true, Sheddable: true}
	event := Message{Topic: "sightd/porch/events", Payload: []byte(`{}`), QoS: 1}
	try := func() (snapErr, eventErr, detErr, ruleErr error) {
		_, snapErr = s.Push(ctx, snap)
		_, eventErr = s.Push(ctx, event)
		_, detErr = s.AppendDetection(ctx, time.Now(), []byte(`{}`))
		ruleErr = s.PutRule(ctx, "r", []byte(`{}`))
		return
	}
	for _, tc := range []struct {
		free                       int64
		level                      SpaceLevel
		snap, event, det, ruleFull bool // refused?
	}{
		{64 << 20, SpaceOK, false, false, false, false},
		{5 << 20, SpaceLow, true, false, true, false},
		{3 << 20, SpaceFull, true, true, true, true},
		// Back up only a memtable (1 MiB) above the floor (4 MiB here).
		{4<<20 + 512<<10, SpaceFull, true, true, true, true},
		{5<<20 + 512<<10, SpaceLow, true, false, true, false},
		{64 << 20, SpaceOK, false, false, false, false},
	} {
		free.Store(tc.free)
		se, ee, de, re := try()
		for _, c := range []struct {
			what    string
			err     error
			refused bool
		}{{"snapshot", se, tc.snap}, {"event", ee, tc.event}, {"detection", de, tc.det}, {"rule", re, tc.ruleFull}} {
			if got := err2refused(t, c.err); got != c.refused {
				t.Errorf("free %s: %s refused = %v (%v), want %v", mib(tc.free), c.what, got, c.err, c.refused)
			}
		}
		sp := s.Space()
		levels = append(levels, sp.Level)
		if sp.Level != tc.level || (sp.Reason() == "") != (tc.level == SpaceOK) {
			t.Errorf("free %s: level %v (%q), want %v", mib(tc.free), sp.Level, sp.Reason(), tc.level)
		}
	}
	// Deletes go through even when full.
	free.Store(1 << 20)
	es, err := s.Peek(ctx, 100)
	if err != nil || len(es) == 0 {
		t.Fatalf("peek: %v, %d", err, len(es))
	}
	for _, e := range es {
		if err := s.Delete(ctx, e.Seq); err != nil {
			t.Fatalf("delete when full: %v", err)
		}
	}
	if sp := s.Space(); sp.Refused == 0 {
		t.Errorf("refused writes not counted: %+v", sp)
	}
	waitFor(t, "the OnSpace hook called for each change", func() bool { return changes.Load() >= 5 })
	t.Logf("levels %v", levels)
}

// Shedding takes every snapshot first, then the oldest detections, and
// leaves events alone.
func TestShedOrder(t *testing.T) {
	free := fakeFree(t)
	cfg := spaceConfig(t.TempDir())
	cfg.SpaceCheckInterval = time.Hour // the test runs the rounds
	s := open(t, cfg)
	ctx := context.Background()
	base := time.Unix(1700000000, 0)
	for i := range 300 {
		if _, err := s.Push(ctx, Message{Topic: "sightd/t/camera/c/snapshot", Payload: []byte{0xff, 0xd8, 0xff}, QoS: 1, Sheddable: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Push(ctx, Message{Topic: "sightd/t/events", Payload: fmt.Appendf(nil, `{"i":%d}`, i), QoS: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AppendDetection(ctx, base.Add(time.Duration(i)*time.Second), fmt.Appendf(nil, `{"i":%d}`, i)); err != nil {
			t.Fatal(err)
		}
		if i < 40 {
			if err := s.PutEventSnapshot(ctx, fmt.Sprintf("ev%03d", i), []byte{0xff, 0xd8, 0xff, byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	free.Store(5 << 20) // below the reserve
	if err := s.PutEventSnapshot(ctx, "refused", []byte{0xff, 0xd8, 0xff}); !err2refused(t, err) {
		t.Fatalf("an event snapshot below the reserve: %v", err)
	}
	s.checkSpace(ctx)
	if sp := s.Space(); sp.ShedSnapshots != 300 || sp.ShedDetections != 0 || s.Len() != 300 {
		t.Fatalf("round 1: %+v, outbox %d; want the 300 snapshots shed, nothing else", sp, s.Len())
	}
	es, _ := s.Peek(ctx, 1000)
	for _, e := range es {
		if e.Sheddable {
			t.Fatalf("a snapshot left: %+v", e)
		}
	}
	// Then the oldest half of the events' snapshots, twice, then the rest.
	for round, left := range []int{20, 4, 0} {
		s.checkSpace(ctx)
		if n, _ := s.EventSnapshots(); n != left || s.Space().ShedDetections != 0 {
			t.Fatalf("event round %d: %d event snapshots left, want %d; %+v", round, n, left, s.Space())
		}
	}
	if _, err := s.EventSnapshot(ctx, "ev039"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a shed event snapshot is still there: %v", err)
	}
	s.checkSpace(ctx)
	if sp := s.Space(); sp.ShedDetections != shedDetectionBatch || s.Len() != 300 {
		t.Fatalf("round 2: %+v; want the %d oldest detections shed", sp, shedDetectionBatch)
	}
	dets, err := s.RecentDetections(ctx, 1000)
	if err != nil || len(dets) != 300-shedDetectionBatch || !dets[len(dets)-1].At.Equal(base.Add(shedDetectionBatch*time.Second)) {
		t.Fatalf("left: %d detections (%v), oldest %v", len(dets), err, dets[len(dets)-1].At)
	}
	free.Store(1 << 40)
	s.checkSpace(ctx)
	if n, _ := s.CountDetections(ctx); n != 300-shedDetectionBatch {
		t.Fatalf("shed with space back: %d detections", n)
	}
}

func err2refused(t *testing.T, err error) bool {
	t.Helper()
	if err == nil {
		return false
	}
	if !errors.Is(err, ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("not a disk-full error: %v", err)
	}
	return true
}

// mountTmpfs mounts a small tmpfs on a new directory; it needs root, and
// the test says so loudly when it cannot.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("SKIPPED: mounting a %s tmpfs needs root; TestSpaceLevelsRefuseInOrder covers the levels with faked free space", size)
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %s tmpfs (as root): %v: %s", size, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file until the filesystem is full (another program filling
// the disk) and returns its path.
func fill(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for n := len(buf); n >= 512; {
		if _, err := f.Write(buf[:n]); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			n /= 2
		}
	}
	return path
}

// The case on a real 16 MB tmpfs: the broker is down, snapshots,
// events and detections pile up until the disk is full. Before, Badger died
// with SIGBUS (a crash of this test binary). Now: snapshots and detections
// are refused below the reserve, events below the floor, snapshots are shed
// and the space comes back; a start on a disk another program filled opens
// degraded (the reserve file given up) or refuses with ErrDiskFull, and
// nothing that was accepted is lost.
func TestDiskFullTmpfs(t *testing.T) {
	mnt := mountTmpfs(t, "16m")
	cfg := spaceConfig(filepath.Join(mnt, "db"))
	// The test runs the watcher's rounds itself (checkSpace), so that what
	// fills first does not depend on timing.
	cfg.SpaceCheckInterval = time.Hour
	ctx := context.Background()
	s, err := Open(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() }) // before the unmount; Close twice is fine
	if !s.Space().ReserveFile {
		t.Fatalf("no reserve file on an empty 16 MB tmpfs: %+v", s.Space())
	}
	s.OnSpace(func(l SpaceLevel) { t.Logf("level %v", l) })
	payload := make([]byte, 100<<10)
	for i := range payload {
		payload[i] = byte(i * 7) // does not compress (nothing does here anyway)
	}
	var okSnap, okEvent, okDet, refSnap, refEvent, refDet int
	firstRefused := map[*int]int{}
	i := 0
	count := func(err error, ok, ref *int) {
		switch {
		case err == nil:
			*ok++
		case errors.Is(err, ErrDiskFull) && errors.Is(err, syscall.ENOSPC):
			if *ref == 0 {
				firstRefused[ref] = i
			}
			*ref++
		default:
			t.Fatalf("not a disk-full error: %v", err)
		}
	}
	for ; i < 2500; i++ {
		_, err := s.Push(ctx, Message{Topic: "sightd/t/camera/c/snapshot", Payload: payload, QoS: 1, Retained: true, Sheddable: true})
		count(err, &okSnap, &refSnap)
		_, err = s.Push(ctx, Message{Topic: "sightd/t/events", Payload: payload[:2000], QoS: 1})
		count(err, &okEvent, &refEvent)
		_, err = s.AppendDetection(ctx, time.Now(), fmt.Appendf(nil, `{"i":%d,"pad":"%0500d"}`, i, 0))
		count(err, &okDet, &refDet)
	}
	// Events alone until one is refused: when the reserve file was released
	// mid-run (the machine's timing decides when), its room may take all
	// the rounds above. 16 MB of events cannot fit.
	for ; refEvent == 0 && i < 2500+8000; i++ {
		_, err := s.Push(ctx, Message{Topic: "sightd/t/events", Payload: payload[:2000], QoS: 1})
		count(err, &okEvent, &refEvent)
	}
	sp := s.Space()
	t.Logf("accepted snapshots %d, events %d, detections %d; refused %d, %d, %d; %+v", okSnap, okEvent, okDet, refSnap, refEvent, refDet, sp)
	t.Logf("first refused at round: snapshot %d, detection %d, event %d", firstRefused[&refSnap], firstRefused[&refDet], firstRefused[&refEvent])
	if refSnap == 0 || refEvent == 0 || refDet == 0 || firstRefused[&refEvent] < firstRefused[&refSnap] || firstRefused[&refEvent] < firstRefused[&refDet] {
		t.Fatalf("want snapshots and detections refused first, events later")
	}
	// Rounds until every snapshot is shed and the store is above the floor
	// (on a disk this small, the events alone may keep it below the reserve).
	// A round may find less free space than shedding needs (drop refuses
	// with "waiting for space") until Badger's background flushes and
	// compactions give some back, which takes a while on a loaded machine:
	// the rounds go on until then, a deadline only guarding against a hang.
	rounds := 0
	for deadline := time.Now().Add(2 * time.Minute); s.Space().Level == SpaceFull || s.Space().ShedSnapshots < uint64(okSnap); rounds++ {
		if time.Now().After(deadline) {
			t.Fatalf("%d rounds of shedding in 2 minutes and still %+v", rounds, s.Space())
		}
		if rounds > 0 {
			time.Sleep(20 * time.Millisecond)
		}
		s.checkSpace(ctx)
	}
	t.Logf("%d rounds of shedding", rounds)
	sp = s.Space()
	t.Logf("after shedding: %s free, level %v, shed %d snapshots, %d detections", mib(sp.Free), sp.Level, sp.ShedSnapshots, sp.ShedDetections)
	if got := s.Len(); got != okEvent+okSnap-int(sp.ShedSnapshots) || int(sp.ShedSnapshots) != okSnap {
		t.Fatalf("outbox holds %d, want the %d events (all %d snapshots shed, %d counted)", got, okEvent, okSnap, sp.ShedSnapshots)
	}
	if n, err := s.CountDetections(ctx); err != nil || n != okDet-int(sp.ShedDetections) {
		t.Fatalf("%d detections (%v), want %d", n, err, okDet-int(sp.ShedDetections))
	}
	// On a disk this small, free space stays below the reserve plus the
	// reserve file, so the watcher does not make it: make it here.
	s.makeReserve()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Another program fills the disk while sightd is stopped.
	filler := fill(t, mnt, "filler")
	s, err = Open(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("a start on a full disk with the reserve file in place: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	sp = s.Space()
	t.Logf("opened on a full disk: %s", sp.Reason())
	if sp.Level == SpaceOK || sp.ReserveFile {
		t.Fatalf("want a degraded start with the reserve file released: %+v", sp)
	}
	if _, err := s.Push(ctx, Message{Topic: "sightd/t/camera/c/snapshot", Payload: payload, QoS: 1, Sheddable: true}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("snapshot on a full disk: %v", err)
	}
	// Above the floor (the reserve file gave enough room) events are queued;
	// below it (here: the tables need more room to compact), refused.
	_, err = s.Push(ctx, Message{Topic: "sightd/t/events", Payload: []byte(`{}`), QoS: 1})
	switch {
	case err == nil && sp.Level == SpaceLow:
		okEvent++
	case errors.Is(err, ErrDiskFull) && sp.Level == SpaceFull:
	default:
		t.Fatalf("an event after a degraded start at level %v: %v", sp.Level, err)
	}
	es, err := s.Peek(ctx, 10)
	if err != nil || len(es) != 10 {
		t.Fatalf("reading the outbox when degraded: %d, %v", len(es), err)
	}
	for _, e := range es { // the drain still deletes what was sent
		if err := s.Delete(ctx, e.Seq); err != nil {
			t.Fatalf("delete when degraded: %v", err)
		}
	}
	okEvent -= 10
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Full to the last byte and no reserve file left: an error, not a crash.
	fill(t, mnt, "filler2")
	_, err = Open(ctx, cfg, testLogger(t))
	if !errors.Is(err, ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a start on a disk full to the last byte: %v, want ErrDiskFull", err)
	}
	t.Logf("start on a full disk without a reserve: %v", err)

	// Space returns: nothing accepted is lost.
	os.Remove(filler)
	os.Remove(filepath.Join(mnt, "filler2"))
	s = open(t, cfg)
	if got := s.Len(); got != okEvent {
		t.Fatalf("outbox holds %d after space returned, want %d", got, okEvent)
	}
	// Above the floor; on a disk this small the queued events alone may keep
	// it below the reserve.
	if sp := s.Space(); sp.Level == SpaceFull {
		t.Fatalf("space back: %+v", sp)
	}
}

// Close while the watcher checks (here: sheds, every 10 ms) returns: it once
// waited for the watcher while holding the lock the watcher needed.
func TestCloseWhileWatching(t *testing.T) {
	free := fakeFree(t)
	cfg := spaceConfig(t.TempDir())
	cfg.SpaceCheckInterval = 10 * time.Millisecond
	ctx := context.Background()
	for i := range 20 {
		free.Store(1 << 40)
		s, err := Open(ctx, cfg, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		for j := range 50 {
			s.Push(ctx, Message{Topic: "sightd/t/camera/c/snapshot", Payload: []byte{0xff, 0xd8, 0xff}, QoS: 1, Sheddable: true})
			s.AppendDetection(ctx, time.Now(), fmt.Appendf(nil, `{"j":%d}`, j))
		}
		free.Store(5 << 20) // below the reserve: every check sheds
		time.Sleep(time.Duration(i%4) * 5 * time.Millisecond)
		done := make(chan error, 1)
		go func() { done <- s.Close() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("cycle %d: Close hung", i)
		}
	}
}
