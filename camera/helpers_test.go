package camera

import (
	"context"
	"image"
	"image/color"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"gocv.io/x/gocv"
)

// opencvData is Debian's opencv-doc examples/data folder, unpacked by
// `make deps`. Missing data fails the test: a silent skip would hide it.
func opencvData(tb testing.TB, name string) string {
	tb.Helper()
	dir := os.Getenv("SIGHTD_OPENCV_DATA")
	if dir == "" {
		dir = filepath.Join("..", "third_party", "opencv-data")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("real test data %s missing: run `make deps` (it unpacks Debian's opencv-doc examples into third_party/opencv-data) or set SIGHTD_OPENCV_DATA: %v", name, err)
	}
	return p
}

const vtestFrames = 795 // vtest.avi: 768x576, 10 fps

// testLogger logs into the test's output; benchmarks log warnings only, so
// that their output stays a table.
func testLogger(tb testing.TB) zerolog.Logger {
	level := zerolog.InfoLevel
	if _, ok := tb.(*testing.B); ok {
		level = zerolog.WarnLevel
	}
	return zerolog.New(zerolog.NewTestWriter(tb)).Level(level)
}

// testCtx bounds a test that waits on a source: a generous deadline against
// hangs, not a timing assertion. Under QEMU on a loaded machine, MOG2 over
// the whole of vtest.avi took more than 30 s.
func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	tb.Cleanup(cancel)
	return ctx
}

// fileConfig is a camera reading path, with quick retries for tests.
func fileConfig(name, path string) Config {
	cfg := Defaults()
	cfg.Name = name
	cfg.Source = path
	cfg.RetryMin, cfg.RetryMax = 20*time.Millisecond, 100*time.Millisecond
	return cfg
}

func openTest(tb testing.TB, cfg Config) *Capture {
	tb.Helper()
	c, err := Open(context.Background(), cfg, testLogger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// writeVideo writes an MJPG .avi of n frames of size, drawn by draw, with
// OpenCV's VideoWriter.
func writeVideo(tb testing.TB, path string, size image.Point, fps float64, n int, draw func(i int, m *gocv.Mat)) {
	tb.Helper()
	vw, err := gocv.VideoWriterFile(path, "MJPG", fps, size.X, size.Y, true)
	if err != nil {
		tb.Fatal(err)
	}
	defer vw.Close()
	if !vw.IsOpened() {
		tb.Fatalf("VideoWriter cannot write %s", path)
	}
	m := gocv.NewMatWithSize(size.Y, size.X, gocv.MatTypeCV8UC3)
	defer m.Close()
	for i := range n {
		draw(i, &m)
		if err := vw.Write(m); err != nil {
			tb.Fatal(err)
		}
	}
}

// squareScene draws a white square moving over a real photo (fruits.jpg),
// so that the gate sees texture and codec noise, not a flat colour.
type squareScene struct {
	bg     gocv.Mat
	side   int
	square func(i int) image.Rectangle
}

func newSquareScene(tb testing.TB, size image.Point, side int, at func(i int) image.Point) *squareScene {
	img := gocv.IMRead(opencvData(tb, "fruits.jpg"), gocv.IMReadColor)
	defer img.Close()
	s := &squareScene{bg: gocv.NewMat(), side: side}
	gocv.Resize(img, &s.bg, size, 0, 0, gocv.InterpolationArea)
	s.square = func(i int) image.Rectangle { p := at(i); return image.Rect(p.X, p.Y, p.X+side, p.Y+side) }
	tb.Cleanup(func() { s.bg.Close() })
	return s
}

func (s *squareScene) draw(i int, m *gocv.Mat) {
	s.bg.CopyTo(m)
	gocv.Rectangle(m, s.square(i), color.RGBA{R: 255, G: 255, B: 255, A: 255}, -1)
}

// next reads a frame or fails the test.
func next(tb testing.TB, ctx context.Context, src Source) Frame {
	tb.Helper()
	f, err := src.Next(ctx)
	if err != nil {
		tb.Fatalf("Next: %v", err)
	}
	return f
}
