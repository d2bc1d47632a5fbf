package camera

import (
	"context"
	"errors"
	"fmt"
	"image"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gocv.io/x/gocv"
)

// TestMain lets the test binary stand in for `sightd camera
// capture-worker`, the process a network camera is decoded in.
func TestMain(m *testing.M) {
	if os.Getenv("SIGHTD_TEST_CAPTURE_WORKER") == "1" {
		if err := RunWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "capture worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// useTestWorker decodes the streams the test opens in worker processes
// (this test binary run again), as sightd does.
func useTestWorker(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	UseWorker(&WorkerCommand{Path: exe, Env: []string{"SIGHTD_TEST_CAPTURE_WORKER=1"}})
	t.Cleanup(func() { UseWorker(nil) })
}

// useFFmpeg sends HTTP streams to FFmpeg, as sightd did before it read
// MJPEG in Go: the way to show what FFmpeg does with a stream.
func useFFmpeg(t *testing.T) {
	streamDecoder = decoderFFmpeg
	t.Cleanup(func() { streamDecoder = decoderAuto })
}

// photoServer serves real photos of different sizes (Debian's opencv-doc
// examples) as an MJPEG stream, multipart/x-mixed-replace over real HTTP, as
// an IP camera does. The photos play in order; then the ones from loopFrom
// on repeat.
type photoServer struct {
	addr     string
	names    []string
	jpegs    [][]byte
	loopFrom int
	interval time.Duration
	noLength bool // parts without Content-Length, delimited by the boundary alone
	// sent counts the frames sent on all connections: like a camera, the
	// server goes on where it was when a client reconnects, unless
	// onePass, where every connection plays the photos once from the
	// first and is then closed.
	sent    atomic.Int64
	onePass bool
}

func newPhotoServer(t *testing.T, interval time.Duration, loopFrom int, names ...string) *photoServer {
	s := &photoServer{names: names, loopFrom: loopFrom, interval: interval}
	for _, n := range names {
		b, err := os.ReadFile(opencvData(t, n))
		if err != nil {
			t.Fatal(err)
		}
		s.jpegs = append(s.jpegs, b)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(s.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *photoServer) url() string { return "http://" + s.addr + "/video.mjpg" }

func (s *photoServer) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=frame")
	var mine int
	for {
		k := int(s.sent.Add(1) - 1)
		if s.onePass {
			if mine == len(s.jpegs) {
				return
			}
			k, mine = mine, mine+1
		}
		if k >= len(s.jpegs) {
			k = s.loopFrom + (k-s.loopFrom)%(len(s.jpegs)-s.loopFrom)
		}
		jpg := s.jpegs[k]
		head := fmt.Sprintf("--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(jpg))
		if s.noLength {
			head = "--frame\r\nContent-Type: image/jpeg\r\n\r\n"
		}
		if _, err := fmt.Fprint(w, head); err != nil {
			return
		}
		if _, err := w.Write(append(jpg, "\r\n"...)); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			return
		case <-time.After(s.interval):
		}
	}
}

// mixedPhotos are photos of 11 different sizes, from 256x256 to 1282x1110,
// grey ones among them; in a stream, nearly every frame changes size.
var mixedPhotos = []string{
	"aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "blox.jpg", "building.jpg",
	"butterfly.jpg", "ela_original.jpg", "fruits.jpg", "left01.jpg", "messi5.jpg", "HappyFish.jpg",
	"starry_night.jpg", "aloeR.jpg", "board.jpg",
}

// decodedPhotos are the photos as OpenCV reads them from disk.
func decodedPhotos(t *testing.T, names []string) map[string]gocv.Mat {
	out := map[string]gocv.Mat{}
	for _, n := range names {
		m := gocv.IMRead(opencvData(t, n), gocv.IMReadColor)
		if m.Empty() {
			t.Fatalf("%s does not decode", n)
		}
		out[n] = m
		t.Cleanup(func() { m.Close() })
	}
	return out
}

// whichPhoto names the photo frame is, pixel for pixel; "" when none.
func whichPhoto(frame gocv.Mat, photos map[string]gocv.Mat) string {
	diff := gocv.NewMat()
	defer diff.Close()
	for n, p := range photos {
		if p.Cols() != frame.Cols() || p.Rows() != frame.Rows() {
			continue
		}
		gocv.AbsDiff(frame, p, &diff)
		flat := diff.Reshape(1, 0)
		same := gocv.CountNonZero(flat) == 0
		flat.Close()
		if same {
			return n
		}
	}
	return ""
}

// readAllPhotos reads src until every photo in want was delivered, each
// frame checked to be one of them exactly, at its own size; it returns how
// many frames it read.
func readAllPhotos(t *testing.T, ctx context.Context, src Source, want []string) int {
	t.Helper()
	photos := decodedPhotos(t, want)
	seen := map[string]bool{}
	n := 0
	for len(seen) < len(photos) {
		f, err := src.Next(ctx)
		if errors.Is(err, ErrUnavailable) {
			t.Fatalf("after %d frames (%d photos seen): %v", n, len(seen), err)
		}
		if err != nil {
			t.Fatalf("after %d frames, %d of %d photos seen: %v", n, len(seen), len(photos), err)
		}
		n++
		name := whichPhoto(f.Mat, photos)
		if name == "" {
			t.Fatalf("frame %d (%dx%d) is none of the photos served", f.Seq, f.Mat.Cols(), f.Mat.Rows())
		}
		seen[name] = true
		if f.Gate != nil && f.Gate.Encode && !f.Gate.Motion && !f.Gate.Keyframe {
			t.Fatalf("frame %d: a decision that encodes without motion or keyframe", f.Seq)
		}
	}
	return n
}

// TestMJPEGMixedSizes is issue 21's first stream: real photos of 16
// different sizes, one after the other, as MJPEG over HTTP. Through OpenCV's
// FFmpeg backend it killed the process with SIGSEGV in FFmpeg's scaler. Read
// in Go, every frame arrives whole, pixel for pixel the photo served, at
// its own size, and the gate keeps working across the size changes.
func TestMJPEGMixedSizes(t *testing.T) {
	for _, noLength := range []bool{false, true} {
		t.Run(fmt.Sprintf("content-length=%v", !noLength), func(t *testing.T) {
			useTestWorker(t) // set, and not used: MJPEG over HTTP stays in process
			srv := newPhotoServer(t, 20*time.Millisecond, 0, mixedPhotos...)
			srv.noLength = noLength
			cfg := fileConfig("door", srv.url())
			c, err := OpenGated(context.Background(), cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			started := workersStarted.Load()
			readAllPhotos(t, testCtx(t), c, mixedPhotos)
			if workersStarted.Load() != started {
				t.Fatal("a capture worker was started for MJPEG over HTTP")
			}
			st := c.Stats()
			if st.Outages != 0 || st.SizeChanges == 0 || st.FourCC != "MJPG" {
				t.Fatalf("stats %+v: want no outage, size changes counted, MJPG", st)
			}
		})
	}
}

// TestMJPEGSizeIncreaseKeepsSeeing is issue 21's second stream: 640x480
// frames, then 1282x1110 ones from then on. Through FFmpeg the camera went
// blind: FFmpeg's scaler refused the new size ("Slice parameters 0, 1110
// are invalid") and OpenCV kept returning the last 640x480 picture, 0.00%
// motion forever. Now the frames follow the new size, the gate starts over
// with a keyframe, and it sees the change between the two new photos.
func TestMJPEGSizeIncreaseKeepsSeeing(t *testing.T) {
	small := strings.Split(strings.Repeat("aero1.jpg aero3.jpg ", 5), " ")[:10]
	srv := newPhotoServer(t, 50*time.Millisecond, len(small), append(small, "aloeL.jpg", "aloeR.jpg")...)
	cfg := fileConfig("door", srv.url())
	c, err := OpenGated(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testCtx(t)
	big := image.Pt(1282, 1110)
	var resizedKey, moving bool
	prev := image.Point{}
	for !(resizedKey && moving) {
		f := next(t, ctx, c)
		size := image.Pt(f.Mat.Cols(), f.Mat.Rows())
		if prev == (image.Point{}) && size == big {
			t.Fatal("the first frame read is already 1282x1110: the 640x480 ones were all dropped")
		}
		if prev != (image.Point{}) && prev == big && size != big {
			t.Fatalf("frame %d is %v after 1282x1110 ones", f.Seq, size)
		}
		if size == big && prev != big && prev != (image.Point{}) {
			if !f.Gate.Keyframe || f.Gate.Motion {
				t.Fatalf("first 1282x1110 frame: %+v, want a keyframe without motion", *f.Gate)
			}
			resizedKey = true
		}
		if size == big && prev == big && f.Gate.Motion && f.Gate.Ratio > 0.01 {
			moving = true
		}
		prev = size
	}
	if st := c.Stats(); st.Size != big || st.SizeChanges < 1 || st.Outages != 0 {
		t.Fatalf("stats %+v: want 1282x1110, a size change, no outage", st)
	}
}

// TestFFmpegCrashEndsOnlyItsWorker feeds FFmpeg the stream that killed
// sightd (issue 21): the real photos of mixed sizes, decoded by OpenCV's
// FFmpeg backend, in a capture worker process as sightd runs network
// cameras. The worker dies (FFmpeg's scaler segfaults); this process does
// not, the camera reports the outage with the reason and comes back with a
// new worker, which delivers frames.
//
// FFmpeg reads past its buffers; whether that crashes depends on the heap,
// so not every pass over the photos does. Every connection plays them once
// from the first (two 640x480 frames, then smaller ones) and ends, and the
// camera reconnects until a crash. (A reconnect that began anywhere else
// could stick FFmpeg on its very first frame, the next one being larger,
// which with the scaler's stderr unwatched nothing reports.)
func TestFFmpegCrashEndsOnlyItsWorker(t *testing.T) {
	useTestWorker(t)
	useFFmpeg(t)
	// Let FFmpeg go on after its scaler's complaints, to its crash.
	watchScaler = false
	t.Cleanup(func() { watchScaler = true })
	// All of opencv-doc's JPEGs in name order, as in the report.
	names, err := filepath.Glob(filepath.Join(filepath.Dir(opencvData(t, "apple.jpg")), "*.jpg"))
	if err != nil || len(names) < 20 {
		t.Fatalf("%d JPEGs in opencv-data: %v", len(names), err)
	}
	for i := range names {
		names[i] = filepath.Base(names[i])
	}
	srv := newPhotoServer(t, 50*time.Millisecond, 0, names...)
	srv.onePass = true
	cfg := fileConfig("door", srv.url())
	cfg.Stuck = time.Second
	c := openTest(t, cfg)
	ctx := testCtx(t)
	var reasons []string
	crashed, framesAfter := false, 0
	for !crashed || framesAfter == 0 {
		f, err := c.Next(ctx)
		switch {
		case errors.Is(err, ErrUnavailable):
			reasons = append(reasons, err.Error())
			crashed = crashed || strings.Contains(err.Error(), "capture worker died") && strings.Contains(err.Error(), "SIGSEGV")
			if len(reasons) >= 20 && !crashed {
				t.Fatalf("20 connections, none crashed the worker: %q", reasons)
			}
			framesAfter = 0
			continue
		case err != nil:
			t.Fatalf("%v (outages so far: %q)", err, reasons)
		}
		if crashed {
			framesAfter++
		}
		if f.Mat.Empty() {
			t.Fatal("an empty frame")
		}
	}
	t.Logf("outages: %q", reasons)
	if st := c.Stats(); st.Outages < 1 || st.Read == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestFFmpegStuckDecoderIsAnOutage: through FFmpeg, one increase of the
// frame size (640x480 to 1282x1110) leaves OpenCV returning the old picture
// for ever ("Slice parameters 0, 1110 are invalid"). The stuck detector
// sees the identical frames, reports an outage naming it, and the reopened
// stream delivers the new size.
func TestFFmpegStuckDecoderIsAnOutage(t *testing.T) {
	useTestWorker(t) // should FFmpeg crash instead, only the worker dies
	useFFmpeg(t)
	// The stuck detector alone: the worker's stderr is not watched.
	watchScaler = false
	t.Cleanup(func() { watchScaler = true })
	small := strings.Split(strings.Repeat("aero1.jpg aero3.jpg ", 5), " ")[:10]
	srv := newPhotoServer(t, 50*time.Millisecond, len(small), append(small, "aloeL.jpg", "aloeR.jpg")...)
	cfg := fileConfig("door", srv.url())
	cfg.Stuck = time.Second
	c := openTest(t, cfg)
	ctx := testCtx(t)
	var stuck error
	var others []string
	for {
		f, err := c.Next(ctx)
		if errors.Is(err, ErrStuck) {
			stuck = err
			continue
		}
		if errors.Is(err, ErrUnavailable) {
			others = append(others, err.Error())
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		// 1282x1110 frames come only from a new connection (the stuck
		// decoder hands out its old 640x480 picture).
		if f.Mat.Cols() == 1282 && f.Mat.Rows() == 1110 {
			break
		}
	}
	if stuck == nil {
		t.Fatalf("the stream reconnected without a stuck outage; outages: %q", others)
	}
	if !strings.Contains(stuck.Error(), "identical frames for") {
		t.Fatalf("outage %q does not say why", stuck)
	}
	t.Logf("outage: %v", stuck)
}

// TestWorkerMJPEGMixedSizes is the mixed-size stream read by the Go MJPEG
// reader in a capture worker process, raw frames over the pipe: the
// worker's transport carries frames of any size unchanged.
// Every frame is pixel for pixel a photo served; closing the camera stops
// the worker.
func TestWorkerMJPEGMixedSizes(t *testing.T) {
	useTestWorker(t)
	mjpegInProcess = false
	t.Cleanup(func() { mjpegInProcess = true })
	srv := newPhotoServer(t, 20*time.Millisecond, 0, mixedPhotos...)
	c, err := OpenGated(context.Background(), fileConfig("door", srv.url()), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	readAllPhotos(t, testCtx(t), c, mixedPhotos)
	if st := c.Stats(); st.Outages != 0 || st.SizeChanges == 0 || st.FourCC != "MJPG" {
		t.Fatalf("stats %+v: want no outage, size changes counted, MJPG", st)
	}
	c.Close()
	select {
	case <-c.done:
	case <-testCtx(t).Done():
		t.Fatal("the reader did not stop")
	}
}

// TestStuckDetector: identical frames count only after the source moved on
// this connection, and only once they lasted the whole interval; a still
// image served as a stream from its first frame is never stuck.
func TestStuckDetector(t *testing.T) {
	a := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(10, 20, 30, 0), 48, 64, gocv.MatTypeCV8UC3)
	b := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(10, 20, 31, 0), 48, 64, gocv.MatTypeCV8UC3)
	defer a.Close()
	defer b.Close()
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

	still := stuckDetector{after: 5 * time.Second}
	for s := 0.0; s < 60; s++ {
		if err := still.check(a, at(s)); err != nil {
			t.Fatalf("a still scene from the start is stuck at %vs: %v", s, err)
		}
	}

	s := stuckDetector{after: 5 * time.Second}
	for i, f := range []gocv.Mat{a, b, a, b} {
		if err := s.check(f, at(float64(i))); err != nil {
			t.Fatal(err)
		}
	}
	// b from 3 s on: stuck once 5 s of identical frames went by.
	for sec := 4.0; sec < 8; sec++ {
		if err := s.check(b, at(sec)); err != nil {
			t.Fatalf("stuck after %vs of identical frames: %v", sec-3, err)
		}
	}
	err := s.check(b, at(8))
	if !errors.Is(err, ErrStuck) || !strings.Contains(err.Error(), "identical frames for 5s") {
		t.Fatalf("after 5s of identical frames: %v, want ErrStuck", err)
	}
	// After a reopen (or a size change) it must move again first.
	s.reset()
	for sec := 9.0; sec < 30; sec++ {
		if err := s.check(b, at(sec)); err != nil {
			t.Fatalf("after reset: %v", err)
		}
	}
	if off := (stuckDetector{}); off.check(a, at(0)) != nil || off.check(b, at(1)) != nil || off.check(b, at(1e6)) != nil {
		t.Fatal("a detector with after=0 reported")
	}
}

// TestWorkerFFmpegOverHTTP: an HTTP source that is not MJPEG (here the
// street recording vtest.avi, served with ranges) goes to FFmpeg, in a
// capture worker when one is set, as sightd runs it.
func TestWorkerFFmpegOverHTTP(t *testing.T) {
	useTestWorker(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, opencvData(t, "vtest.avi"))
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	started := workersStarted.Load()
	c := openTest(t, fileConfig("street", "http://"+ln.Addr().String()+"/vtest.avi"))
	ctx := testCtx(t)
	for range 20 {
		f := next(t, ctx, c)
		if f.Mat.Cols() != 768 || f.Mat.Rows() != 576 {
			t.Fatalf("frame %d is %dx%d, want 768x576", f.Seq, f.Mat.Cols(), f.Mat.Rows())
		}
	}
	if workersStarted.Load() == started {
		t.Fatal("no capture worker was started")
	}
	c.Close()
	select {
	case <-c.done:
	case <-ctx.Done():
		t.Fatal("the reader did not stop")
	}
}

// TestFFmpegScalerRefusalRestartsWorker: the same size increase, with the
// worker's stderr watched as sightd does: at FFmpeg's first "Slice
// parameters ... are invalid" the worker is restarted, without waiting for
// the stuck detector (off here), and the new one delivers 1282x1110.
func TestFFmpegScalerRefusalRestartsWorker(t *testing.T) {
	useTestWorker(t)
	useFFmpeg(t)
	small := strings.Split(strings.Repeat("aero1.jpg aero3.jpg ", 5), " ")[:10]
	srv := newPhotoServer(t, 50*time.Millisecond, len(small), append(small, "aloeL.jpg", "aloeR.jpg")...)
	cfg := fileConfig("door", srv.url())
	cfg.Stuck = 0
	c := openTest(t, cfg)
	ctx := testCtx(t)
	var refused error
	for {
		f, err := c.Next(ctx)
		if errors.Is(err, ErrStuck) {
			refused = err
			continue
		}
		if errors.Is(err, ErrUnavailable) {
			t.Logf("outage: %v", err)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if f.Mat.Cols() == 1282 && f.Mat.Rows() == 1110 {
			break
		}
	}
	if refused == nil || !strings.Contains(refused.Error(), "scaler refused a new frame size") {
		t.Fatalf("the outage before the new size: %v", refused)
	}
	t.Logf("outage: %v", refused)
}
