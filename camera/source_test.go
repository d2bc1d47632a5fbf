package camera

import (
	"context"
	"errors"
	"image"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gocv.io/x/gocv"
)

// feed drives fake grabbers: every value sent on frames becomes one frame
// filled with it; errs fails the grab; openErrs fails opens.
type feed struct {
	frames   chan uint8
	errs     chan error
	openErrs chan error
	endOnce  sync.Once
}

// end closes frames: the grabber returns io.EOF.
func (f *feed) end() { f.endOnce.Do(func() { close(f.frames) }) }

func newFeed() *feed {
	return &feed{frames: make(chan uint8), errs: make(chan error), openErrs: make(chan error, 8)}
}

type fakeGrabber struct {
	f    *feed
	tmpl gocv.Mat
}

var _ grabber = (*fakeGrabber)(nil)

func (g *fakeGrabber) grab(dst *gocv.Mat) error {
	select {
	case v, ok := <-g.f.frames:
		if !ok {
			return io.EOF
		}
		g.tmpl.SetTo(gocv.NewScalar(float64(v), float64(v), float64(v), 0))
		g.tmpl.CopyTo(dst)
		return nil
	case err := <-g.f.errs:
		return err
	}
}

func (g *fakeGrabber) info() (float64, string) { return 30, "FAKE" }
func (g *fakeGrabber) close()                  { g.tmpl.Close() }

// startFake starts a Capture on fake grabbers, as a live device (no pacing).
func startFake(t *testing.T, f *feed, tune func(*Config)) *Capture {
	t.Helper()
	cfg := fileConfig("fake", "0")
	cfg.RetryMin, cfg.RetryMax = 10*time.Millisecond, 20*time.Millisecond
	if tune != nil {
		tune(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	open := func() (grabber, error) {
		select {
		case err := <-f.openErrs:
			return nil, err
		default:
			return &fakeGrabber{f: f, tmpl: gocv.NewMatWithSize(4, 4, gocv.MatTypeCV8UC3)}, nil
		}
	}
	c := start(context.Background(), cfg, Device, open, testLogger(t))
	t.Cleanup(func() { c.Close() })
	t.Cleanup(f.end) // runs first: unblocks the reader
	return c
}

// waitFor polls cond; the deadline only guards against a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(60 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func pixel(m gocv.Mat) uint8 { return m.GetUCharAt(0, 0) }

func TestNextGivesNewestFrameAndCountsDrops(t *testing.T) {
	f := newFeed()
	c := startFake(t, f, nil)
	ctx := testCtx(t)
	for v := uint8(1); v <= 5; v++ {
		f.frames <- v
	}
	waitFor(t, "5 frames read", func() bool { return c.Stats().Read == 5 })
	fr := next(t, ctx, c)
	if fr.Seq != 5 || pixel(fr.Mat) != 5 {
		t.Fatalf("got frame seq %d pixel %d, want the newest: seq 5 pixel 5", fr.Seq, pixel(fr.Mat))
	}
	if st := c.Stats(); st.Dropped != 4 || st.Delivered != 1 || !st.Available || st.Size != image.Pt(4, 4) || st.FourCC != "FAKE" {
		t.Fatalf("stats %+v, want 4 dropped, 1 delivered, available 4x4 FAKE", st)
	}

	// Nothing newer: Next waits rather than giving the same frame again.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if fr, err := c.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next with no new frame = seq %d, %v; want the context's deadline", fr.Seq, err)
	}

	f.frames <- 6
	fr = next(t, ctx, c)
	if fr.Seq != 6 || pixel(fr.Mat) != 6 {
		t.Fatalf("got seq %d pixel %d, want 6", fr.Seq, pixel(fr.Mat))
	}
	if st := c.Stats(); st.Dropped != 4 || st.Delivered != 2 || st.Read != 6 {
		t.Fatalf("stats %+v, want 6 read, 2 delivered, 4 dropped", st)
	}
}

func TestOutageIsReportedOnceAndRecovers(t *testing.T) {
	f := newFeed()
	for range 3 {
		f.openErrs <- errors.New("no such device")
	}
	c := startFake(t, f, nil)
	ctx := testCtx(t)

	_, err := c.Next(ctx)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "camera fake: unavailable: no such device") {
		t.Fatalf("first Next = %v, want camera fake: unavailable: no such device", err)
	}
	go func() { f.frames <- 1 }() // after the three failed opens
	if fr := next(t, ctx, c); fr.Seq != 1 {
		t.Fatalf("after recovery got seq %d, want 1", fr.Seq)
	}
	if st := c.Stats(); st.Outages != 1 || !st.Available || st.Err != nil {
		t.Fatalf("stats %+v: want one outage, available again", st)
	}

	// Unplugged mid-run: reported, then back on its own.
	f.errs <- errors.New("read failed")
	if _, err := c.Next(ctx); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "read failed") {
		t.Fatalf("Next after a read error = %v, want ErrUnavailable: read failed", err)
	}
	if st := c.Stats(); st.Available || st.Outages != 2 {
		t.Fatalf("stats %+v: want unavailable, two outages", st)
	}
	go func() { f.frames <- 2 }()
	if fr := next(t, ctx, c); fr.Seq != 2 || pixel(fr.Mat) != 2 {
		t.Fatalf("got seq %d pixel %d, want 2", fr.Seq, pixel(fr.Mat))
	}
}

func TestStalledSourceIsReportedUnavailable(t *testing.T) {
	f := newFeed()
	c := startFake(t, f, func(cfg *Config) { cfg.Stall = 150 * time.Millisecond })
	ctx := testCtx(t)
	go func() { f.frames <- 1 }()
	next(t, ctx, c)
	// The reader is now blocked in the backend, as on a hung stream.
	_, err := c.Next(ctx)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no frame for 150ms") {
		t.Fatalf("Next on a stalled source = %v, want unavailable: no frame for 150ms", err)
	}
	if st := c.Stats(); st.Available || st.Outages != 1 {
		t.Fatalf("stats %+v: want unavailable after a stall", st)
	}
	// Still stalled: reported again, a heartbeat for the caller, not a busy loop.
	if _, err := c.Next(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("second Next on a stalled source = %v, want ErrUnavailable", err)
	}
	go func() { f.frames <- 2 }()
	if fr := next(t, ctx, c); fr.Seq != 2 {
		t.Fatalf("got seq %d, want 2", fr.Seq)
	}
	if st := c.Stats(); !st.Available || st.Outages != 1 {
		t.Fatalf("stats %+v: want available again, still one outage", st)
	}
}

func TestCloseEndsNext(t *testing.T) {
	f := newFeed()
	c := startFake(t, f, nil)
	go func() { f.frames <- 1 }()
	next(t, testCtx(t), c)
	done := make(chan error)
	go func() { _, err := c.Next(context.Background()); done <- err }()
	time.Sleep(10 * time.Millisecond) // let Next wait; it must return either way
	f.end()
	c.Close()
	if err := <-done; !errors.Is(err, io.EOF) && !errors.Is(err, ErrClosed) {
		t.Fatalf("Next during Close = %v, want EOF or ErrClosed", err)
	}
	if _, err := c.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close = %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	lo, hi := 100*time.Millisecond, 2*time.Second
	for attempt, want := range map[int]time.Duration{1: lo, 2: 2 * lo, 3: 4 * lo, 5: 16 * lo, 6: hi, 50: hi} {
		seen := map[time.Duration]bool{}
		for range 100 {
			d := backoff(lo, hi, attempt)
			if d < want*3/4 || d > want*5/4 {
				t.Fatalf("attempt %d: %v outside %v ± 25%%", attempt, d, want)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("attempt %d: only %d distinct delays in 100: no jitter?", attempt, len(seen))
		}
	}
}

// tinyVideo writes a 160x120 MJPG .avi whose frame i is filled with
// grey level 10*i, so that a frame tells where it came from.
func tinyVideo(t *testing.T, path string, fps float64, n int) {
	writeVideo(t, path, image.Pt(160, 120), fps, n, func(i int, m *gocv.Mat) {
		v := float64(10 * i)
		m.SetTo(gocv.NewScalar(v, v, v, 0))
	})
}

func TestFileGoneOrCorruptRecovers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cam.avi")
	tinyVideo(t, path, 25, 10)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fileConfig("porch", path)
	cfg.Loop, cfg.Fast = true, true
	c := openTest(t, cfg)
	ctx := testCtx(t)

	// readUntilOutage reads frames (the current pass of the open file goes
	// on) until the reopen at the end of the pass fails.
	readUntilOutage := func(want string) {
		t.Helper()
		for range 100 {
			_, err := c.Next(ctx)
			if err == nil {
				continue
			}
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), want) {
				t.Fatalf("Next = %v, want ErrUnavailable mentioning %q", err, want)
			}
			return
		}
		t.Fatalf("no outage reported after 100 frames")
	}
	backUp := func() {
		t.Helper()
		if err := os.WriteFile(path+".tmp", good, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
		for range 100 { // an outage report may still be pending
			if _, err := c.Next(ctx); err == nil {
				return
			} else if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Next after the file came back = %v", err)
			}
		}
		t.Fatal("no frame after the file came back")
	}

	next(t, ctx, c)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	readUntilOutage("no such file")
	backUp()

	if err := os.WriteFile(path+".tmp", []byte("RIFF garbage, not a video"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	readUntilOutage("cannot read it as a video")
	backUp()

	if st := c.Stats(); st.Outages != 2 || !st.Available {
		t.Fatalf("stats %+v: want two outages, available", st)
	}
}

func TestMissingDeviceDoesNotBlockOtherCameras(t *testing.T) {
	const missing = "/dev/video63"
	if _, err := os.Stat(missing); err == nil {
		t.Fatalf("%s exists on this machine; the test needs a missing device path", missing)
	}
	ctx := testCtx(t)
	garage := openTest(t, fileConfig("garage", missing)) // not an error: it may be plugged in later
	porchCfg := fileConfig("porch", opencvData(t, "vtest.avi"))
	porchCfg.Fast = true
	porch := openTest(t, porchCfg)

	errc := make(chan error, 1)
	go func() { _, err := garage.Next(ctx); errc <- err }()
	for range 20 {
		next(t, ctx, porch)
	}
	err := <-errc
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "camera garage: unavailable: /dev/video63: no such device") {
		t.Fatalf("missing device: %v", err)
	}
	if st := porch.Stats(); st.Delivered != 20 || !st.Available {
		t.Fatalf("porch stats %+v: want 20 frames delivered", st)
	}
}

func TestNotADeviceIsAConfigError(t *testing.T) {
	_, err := Open(context.Background(), fileConfig("porch", "/dev/null"), testLogger(t))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "cameras[porch].source" || !errors.Is(err, ErrBadSource) ||
		err.Error() != "cameras[porch].source: /dev/null is not a video device" {
		t.Fatalf("Open(/dev/null) = %v, want cameras[porch].source: /dev/null is not a video device", err)
	}
}

func TestFileEndsWithEOF(t *testing.T) {
	path := filepath.Join(t.TempDir(), "short.avi")
	tinyVideo(t, path, 25, 5)
	cfg := fileConfig("short", path)
	cfg.Fast = true
	c := openTest(t, cfg)
	ctx := testCtx(t)
	var t0 time.Time
	for i := range 5 {
		f := next(t, ctx, c)
		if i == 0 {
			t0 = f.Time
		}
		// MJPG is lossy: within a few grey levels.
		if got, want := int(pixel(f.Mat)), 10*i; f.Seq != uint64(i+1) || got < want-3 || got > want+3 {
			t.Fatalf("frame %d: seq %d grey %d, want seq %d grey %d", i, f.Seq, got, i+1, want)
		}
		// The media clock: 25 fps is 40 ms a frame, however fast it is read.
		if got, want := f.Time.Sub(t0), time.Duration(i)*40*time.Millisecond; got != want {
			t.Fatalf("frame %d at %v after the first, want %v", i, got, want)
		}
	}
	if _, err := c.Next(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("Next after the last frame = %v, want io.EOF", err)
	}
}

// TestSlowConsumerGetsNewestFrames reads a file at its own pace (50 fps)
// with a consumer that takes 45 ms a frame. Whatever the machine's speed:
// every frame is at least as new as the newest one read when Next was
// called, its pixels are that frame's, and the gaps are the drop counter.
func TestSlowConsumerGetsNewestFrames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fast.avi")
	tinyVideo(t, path, 50, 25)
	c := openTest(t, fileConfig("slow", path))
	ctx := testCtx(t)
	var (
		last, gaps uint64
		lag        time.Duration
	)
	for {
		newest := c.Stats().Read
		f, err := c.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if f.Seq <= last || f.Seq < newest {
			t.Fatalf("got seq %d after %d, with %d already read when Next was called", f.Seq, last, newest)
		}
		if got, want := int(pixel(f.Mat)), 10*int(f.Seq-1); got < want-3 || got > want+3 {
			t.Fatalf("frame seq %d has grey %d, want %d: the Mat is not that frame's", f.Seq, got, want)
		}
		gaps += f.Seq - last - 1
		last = f.Seq
		lag = max(lag, time.Since(f.Time))
		time.Sleep(45 * time.Millisecond)
	}
	st := c.Stats()
	if st.Read != 25 || last != 25 || gaps != st.Dropped || st.Delivered+st.Dropped != st.Read {
		t.Fatalf("stats %+v, last seq %d, gaps %d: want 25 read, the last delivered, gaps = dropped", st, last, gaps)
	}
	t.Logf("50 fps file, 45 ms consumer: %d delivered, %d dropped, worst age at delivery %v", st.Delivered, st.Dropped, lag)
}

func TestImagesFromFolderOrGlob(t *testing.T) {
	dir := t.TempDir()
	img := gocv.IMRead(opencvData(t, "fruits.jpg"), gocv.IMReadColor)
	defer img.Close()
	small := gocv.NewMat()
	defer small.Close()
	// Written out of order; replayed sorted by name. The text file is skipped.
	sizes := map[string]image.Point{"b.jpg": {120, 90}, "a.png": {100, 80}, "c.jpeg": {140, 100}}
	for name, size := range sizes {
		gocv.Resize(img, &small, size, 0, 0, gocv.InterpolationArea)
		if !gocv.IMWrite(filepath.Join(dir, name), small) {
			t.Fatalf("cannot write %s", name)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, source := range []string{dir, dir + "/", dir + "/*"} {
		cfg := fileConfig("stills", source)
		cfg.Fast, cfg.FPS = true, 5
		c := openTest(t, cfg)
		ctx := testCtx(t)
		var t0 time.Time
		for i, name := range []string{"a.png", "b.jpg", "c.jpeg"} {
			f := next(t, ctx, c)
			if got := image.Pt(f.Mat.Cols(), f.Mat.Rows()); got != sizes[name] {
				t.Fatalf("%s: frame %d is %v, want %s's %v", source, i+1, got, name, sizes[name])
			}
			if i == 0 {
				t0 = f.Time
			}
			if got := f.Time.Sub(t0); got != time.Duration(i)*200*time.Millisecond {
				t.Fatalf("%s: frame %d at +%v, want 200 ms apart at 5 fps", source, i+1, got)
			}
		}
		if _, err := c.Next(ctx); !errors.Is(err, io.EOF) {
			t.Fatalf("%s: after the last image: %v, want io.EOF", source, err)
		}
	}

	// Nothing to show, or nothing readable: unavailable, and said why.
	empty := t.TempDir()
	bad := filepath.Join(t.TempDir(), "broken.jpg")
	if err := os.WriteFile(bad, []byte("not a JPEG"), 0o644); err != nil {
		t.Fatal(err)
	}
	for source, want := range map[string]string{
		empty + "/":                      "no images in",
		empty + "/*.jpg":                 "no images in",
		bad:                              "not a readable image",
		filepath.Join(empty, "gone.jpg"): "no such file",
	} {
		c := openTest(t, fileConfig("stills", source))
		if _, err := c.Next(testCtx(t)); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want ErrUnavailable: %s", source, err, want)
		}
	}
}
