package camera

import (
	"errors"
	"fmt"
	"image"
	"io"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"gocv.io/x/gocv"
)

// gateRun is what a gate saw on a whole file.
type gateRun struct {
	frames, motion, keyframes, boxes int
	ratio                            float64
	gate                             time.Duration // time in Check
}

// runGate reads every frame of a Fast, non-looping source through g and
// calls each (if not nil) with the frame and the decision.
func runGate(t testing.TB, cfg Config, g *Gate, each func(f Frame, d Decision)) gateRun {
	t.Helper()
	src := openTest(t, cfg)
	ctx := testCtx(t)
	var r gateRun
	for {
		f, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("frame %d: %v", r.frames+1, err)
		}
		start := time.Now()
		d, err := g.Check(f.Mat, f.Time)
		r.gate += time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		r.frames++
		if d.Motion {
			r.motion++
		}
		if d.Keyframe && !d.Motion {
			r.keyframes++
		}
		r.boxes += len(d.Boxes)
		r.ratio += d.Ratio
		if each != nil {
			each(f, d)
		}
	}
	if st := src.Stats(); st.Read != uint64(r.frames) || st.Dropped != 0 {
		t.Fatalf("stats %+v after %d frames: a Fast file must deliver every frame", st, r.frames)
	}
	return r
}

func (r gateRun) String() string {
	n := float64(r.frames)
	return fmt.Sprintf("frames=%d motion=%.1f%% keyframe-only=%d boxes/frame=%.2f mean-ratio=%.2f%% gate=%.2fms/frame",
		r.frames, 100*float64(r.motion)/n, r.keyframes, float64(r.boxes)/n, 100*r.ratio/n, float64(r.gate.Microseconds())/1000/n)
}

func newTestGate(t testing.TB, cfg GateConfig) *Gate {
	t.Helper()
	g, err := NewGate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func TestVtestEveryFrameDecodesAndGateFindsMotion(t *testing.T) {
	cfg := fileConfig("street", opencvData(t, "vtest.avi"))
	cfg.Fast = true
	g := newTestGate(t, cfg.Gate)
	frame := image.Rect(0, 0, 768, 576)
	minArea := cfg.Gate.MinArea * float64(frame.Dx()*frame.Dy())
	first := true
	r := runGate(t, cfg, g, func(f Frame, d Decision) {
		if got := image.Rect(0, 0, f.Mat.Cols(), f.Mat.Rows()); got != frame || f.Mat.Type() != gocv.MatTypeCV8UC3 {
			t.Fatalf("frame %d is %v %v, want 768x576 BGR", f.Seq, got, f.Mat.Type())
		}
		if first && (!d.Keyframe || d.Motion) {
			t.Fatalf("first frame: %+v, want a keyframe without motion", d)
		}
		first = false
		for _, b := range d.Boxes {
			if !b.In(frame) || float64(b.Dx()*b.Dy()) < minArea {
				t.Fatalf("frame %d: box %v outside the frame or under the minimum area %.0f", f.Seq, b, minArea)
			}
			// A walking person, not the whole street.
			if b.Dx()*b.Dy() > frame.Dx()*frame.Dy()/4 {
				t.Fatalf("frame %d: box %v covers more than a quarter of the frame", f.Seq, b)
			}
		}
		if d.Motion != (d.Ratio >= cfg.Gate.MinRatio && len(d.Boxes) > 0) {
			t.Fatalf("frame %d: %+v is inconsistent", f.Seq, d)
		}
	})
	t.Logf("vtest.avi, default gate: %v", r)
	if r.frames != vtestFrames {
		t.Fatalf("decoded %d frames, want %d", r.frames, vtestFrames)
	}
	// People walk through every part of this recording.
	if r.motion < r.frames*9/10 {
		t.Errorf("motion in %d of %d frames, want at least 90%%", r.motion, r.frames)
	}
}

func TestStillImageGivesOnlyKeyframes(t *testing.T) {
	cfg := fileConfig("still", opencvData(t, "fruits.jpg"))
	cfg.Loop, cfg.Fast, cfg.FPS = true, true, 10
	cfg.Gate.Keyframe = 2 * time.Second
	g := newTestGate(t, cfg.Gate)
	src := openTest(t, cfg)
	ctx := testCtx(t)
	var keyframes []uint64
	for range 60 { // 6 s of media time at 10 fps
		f := next(t, ctx, src)
		d, err := g.Check(f.Mat, f.Time)
		if err != nil {
			t.Fatal(err)
		}
		if d.Motion || d.Ratio != 0 || len(d.Boxes) != 0 {
			t.Fatalf("frame %d of a still image: %+v, want no motion", f.Seq, d)
		}
		if d.Keyframe != d.Encode {
			t.Fatalf("frame %d: %+v: only keyframes may pass", f.Seq, d)
		}
		if d.Keyframe {
			keyframes = append(keyframes, f.Seq)
		}
	}
	// The media clock makes this exact: frames 1, 21, 41 are 2 s apart.
	if want := []uint64{1, 21, 41}; !slices.Equal(keyframes, want) {
		t.Fatalf("keyframes at %v, want %v", keyframes, want)
	}
}

// squareVideo writes a 640x480 video of a 48-pixel square moving by step a
// frame from start over fruits.jpg, and returns the scene.
func squareVideo(t *testing.T, n int, start, step image.Point) (string, *squareScene) {
	path := filepath.Join(t.TempDir(), "square.avi")
	s := newSquareScene(t, image.Pt(640, 480), 48, func(i int) image.Point { return start.Add(step.Mul(i)) })
	writeVideo(t, path, image.Pt(640, 480), 25, n, s.draw)
	return path, s
}

func TestMotionCropContainsMovingSquare(t *testing.T) {
	path, scene := squareVideo(t, 30, image.Pt(40, 60), image.Pt(16, 9))
	cfg := fileConfig("square", path)
	cfg.Fast = true
	g := newTestGate(t, cfg.Gate)
	rb, err := NewRegions(cfg.Regions)
	if err != nil {
		t.Fatal(err)
	}
	var regions []Region
	r := runGate(t, cfg, g, func(f Frame, d Decision) {
		if f.Seq == 1 {
			return
		}
		sq := scene.square(int(f.Seq) - 1)
		if !d.Motion || len(d.Boxes) == 0 || !d.Boxes[0].Overlaps(sq) {
			t.Fatalf("frame %d: %+v, want motion with the largest box on the square %v", f.Seq, d, sq)
		}
		regions = rb.Build(regions, image.Pt(640, 480), d.Boxes)
		found := false
		for _, reg := range regions {
			if reg.Kind == MotionCrop {
				if reg.Rect.Dx() != reg.Rect.Dy() || !reg.Rect.In(image.Rect(0, 0, 640, 480)) {
					t.Fatalf("frame %d: motion crop %v is not a square inside the frame", f.Seq, reg.Rect)
				}
				found = found || sq.In(reg.Rect)
			}
		}
		if !found {
			t.Fatalf("frame %d: no motion crop contains the square %v: %v", f.Seq, sq, regions)
		}
	})
	t.Logf("moving square: %v", r)
}

func TestMasksSuppressMotion(t *testing.T) {
	// The square crosses the frame from left to right at mid-height.
	path, scene := squareVideo(t, 30, image.Pt(8, 200), image.Pt(20, 0))
	t.Run("whole path masked", func(t *testing.T) {
		cfg := fileConfig("masked", path)
		cfg.Fast = true
		cfg.Gate.Masks = []string{"0,150 640,150 640,300 0,300"}
		r := runGate(t, cfg, newTestGate(t, cfg.Gate), func(f Frame, d Decision) {
			if d.Motion || d.Ratio != 0 {
				t.Fatalf("frame %d: %+v, want no motion under the mask", f.Seq, d)
			}
		})
		if r.motion != 0 {
			t.Fatalf("motion in %d frames", r.motion)
		}
	})
	t.Run("left half masked", func(t *testing.T) {
		cfg := fileConfig("half", path)
		cfg.Fast = true
		cfg.Gate.Masks = []string{"0,0 320,0 320,480 0,480"}
		const margin = 16 // the gate blurs and dilates: a few pixels either way
		var inside, outside int
		runGate(t, cfg, newTestGate(t, cfg.Gate), func(f Frame, d Decision) {
			i := int(f.Seq) - 1
			if i == 0 {
				return
			}
			moved := scene.square(i).Union(scene.square(i - 1))
			switch {
			case moved.Max.X <= 320-margin:
				inside++
				if d.Motion || len(d.Boxes) > 0 {
					t.Fatalf("frame %d: square at %v is under the mask, gate says %+v", f.Seq, moved, d)
				}
			case moved.Min.X >= 320+margin:
				outside++
				if !d.Motion {
					t.Fatalf("frame %d: square at %v is outside the mask, gate says %+v", f.Seq, moved, d)
				}
				for _, b := range d.Boxes {
					if b.Min.X < 320-margin {
						t.Fatalf("frame %d: box %v reaches into the mask", f.Seq, b)
					}
				}
			}
		})
		if inside < 10 || outside < 10 {
			t.Fatalf("only %d frames inside and %d outside the mask were checked", inside, outside)
		}
	})
}

func TestGateSizeChangeStartsOver(t *testing.T) {
	g := newTestGate(t, GateDefaults())
	t0 := time.Now()
	for i, step := range []struct {
		size     image.Point
		keyframe bool
	}{
		{image.Pt(640, 480), true},  // the first frame
		{image.Pt(640, 480), false}, // 1 s later, keyframes are 10 s apart
		{image.Pt(320, 240), true},  // a new size: no previous frame to compare with
	} {
		m := gocv.NewMatWithSize(step.size.Y, step.size.X, gocv.MatTypeCV8UC3)
		d, err := g.Check(m, t0.Add(time.Duration(i)*time.Second))
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		if d.Motion || d.Keyframe != step.keyframe || d.Encode != step.keyframe {
			t.Fatalf("frame %d (%v): %+v, want keyframe=%v and no motion", i, step.size, d, step.keyframe)
		}
	}
	empty := gocv.NewMat()
	defer empty.Close()
	if _, err := g.Check(empty, t0); !errors.Is(err, ErrNoFrame) {
		t.Fatalf("Check(empty) = %v, want ErrNoFrame", err)
	}
}
