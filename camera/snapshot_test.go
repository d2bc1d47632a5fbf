package camera

import (
	"bytes"
	"errors"
	"image"
	"image/jpeg"
	"strings"
	"testing"

	"gocv.io/x/gocv"
)

func vtestFrame(t *testing.T) gocv.Mat {
	t.Helper()
	vc, err := gocv.VideoCaptureFile(opencvData(t, "vtest.avi"))
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close()
	m := gocv.NewMat()
	if !vc.Read(&m) {
		t.Fatal("vtest.avi: no frame")
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func snapshot(t *testing.T, cfg SnapshotConfig, frame gocv.Mat, r image.Rectangle, label string) image.Image {
	t.Helper()
	s, err := NewSnapshotter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b, err := s.JPEG(frame, r, label)
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a JPEG: %v", err)
	}
	return img
}

// amber says whether the pixel at p is the outline colour (within JPEG's
// loss).
func amber(img image.Image, p image.Point) bool {
	r, g, b, _ := img.At(p.X, p.Y).RGBA()
	return r>>8 > 200 && g>>8 > 150 && g>>8 < 240 && b>>8 < 80
}

func TestSnapshotOutlinesRegionWithinBounds(t *testing.T) {
	frame := vtestFrame(t) // 768x576
	before := frame.Clone()
	defer before.Close()
	r := image.Rect(300, 200, 500, 400)
	img := snapshot(t, SnapshotConfig{MaxWidth: 384, Quality: 85}, frame, r, "person 0.91")
	if got := img.Bounds().Size(); got != image.Pt(384, 288) {
		t.Fatalf("snapshot is %v, want 384x288 (max width 384, aspect kept)", got)
	}
	// The outline at half scale: (150,100)-(250,200); the label above it.
	for _, p := range []image.Point{{150, 150}, {250 - 1, 150}, {200, 100}, {200, 200 - 1}} {
		if !amber(img, p) {
			t.Errorf("pixel %v is %v, want the outline colour", p, img.At(p.X, p.Y))
		}
	}
	// The label: an amber band with dark text, just above the region.
	band := 0
	for y := 88; y < 98; y++ {
		for x := 150; x < 220; x++ {
			if amber(img, image.Pt(x, y)) {
				band++
			}
		}
	}
	if band < 700*4/10 {
		t.Errorf("%d of 700 pixels above the region are the label band's colour", band)
	}
	if amber(img, image.Pt(200, 150)) {
		t.Errorf("the inside of the region is painted")
	}
	diff := gocv.NewMat()
	defer diff.Close()
	gocv.AbsDiff(frame, before, &diff)
	if n := gocv.CountNonZero(diff.Reshape(1, 0)); n != 0 {
		t.Fatalf("the frame itself was drawn on: %d values changed", n)
	}
}

func TestSnapshotQualityAndSize(t *testing.T) {
	frame := vtestFrame(t)
	size := func(q, maxWidth int) (int, image.Point) {
		s, err := NewSnapshotter(SnapshotConfig{MaxWidth: maxWidth, Quality: q})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		b, err := s.JPEG(frame, image.Rectangle{}, "")
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		return len(b), image.Pt(cfg.Width, cfg.Height)
	}
	low, _ := size(30, 1280)
	high, dims := size(95, 1280)
	t.Logf("768x576 street frame: %d bytes at quality 30, %d at 95", low, high)
	if low >= high {
		t.Errorf("quality 30 gives %d bytes, quality 95 %d: want fewer", low, high)
	}
	if dims != image.Pt(768, 576) {
		t.Errorf("a frame narrower than max_width came out %v", dims)
	}

	s, err := NewSnapshotter(SnapshotDefaults())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	empty := gocv.NewMat()
	defer empty.Close()
	if _, err := s.JPEG(empty, image.Rect(0, 0, 1, 1), "x"); !errors.Is(err, ErrNoFrame) {
		t.Fatalf("JPEG(empty) = %v, want ErrNoFrame", err)
	}
}

func TestSnapshotLabelAtTheTop(t *testing.T) {
	frame := vtestFrame(t)
	// A region at the top edge: the label goes inside it, still in the picture.
	img := snapshot(t, SnapshotDefaults(), frame, image.Rect(600, 0, 768, 100), "a long label near the right edge")
	if !amber(img, image.Pt(760, 5)) {
		t.Errorf("no label band at the top right: %v", img.At(760, 5))
	}
}

// A placeholder is a grey JPEG of the size asked for with its text drawn
// in the middle (light pixels there, none at the border); a long line
// stays inside the picture.
func TestPlaceholder(t *testing.T) {
	b, err := Placeholder(640, 360, "no detection yet", strings.Repeat("a very long rule name ", 10))
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds() != image.Rect(0, 0, 640, 360) {
		t.Fatalf("size %v", img.Bounds())
	}
	light := func(x0, x1, y0, y1 int) (n int) {
		for y := y0; y < y1; y++ {
			for x := x0; x < x1; x++ {
				if r, _, _, _ := img.At(x, y).RGBA(); r>>8 > 180 {
					n++
				}
			}
		}
		return n
	}
	if n := light(0, 640, 120, 240); n < 500 {
		t.Errorf("%d light pixels in the middle: no text drawn", n)
	}
	if n := light(0, 640, 0, 60) + light(0, 640, 300, 360) + light(0, 20, 0, 360) + light(620, 640, 0, 360); n != 0 {
		t.Errorf("%d light pixels at the border: text outside the middle", n)
	}
	if _, err := Placeholder(10, 10); err == nil {
		t.Error("a 10x10 placeholder made")
	}
}
