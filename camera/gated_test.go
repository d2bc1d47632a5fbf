package camera

import (
	"context"
	"image"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// The reader's gate decides exactly what a gate run by the consumer on the
// same frames decides (a file read with Fast drops nothing).
func TestOpenGatedMatchesConsumerGate(t *testing.T) {
	cfg := Defaults()
	cfg.Name, cfg.Source, cfg.Fast = "street", opencvData(t, "vtest.avi"), true
	ctx := context.Background()
	c, err := OpenGated(ctx, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g, err := NewGate(cfg.Gate)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var frames, motion int
	for {
		f, err := c.Next(ctx)
		if err != nil {
			break
		}
		frames++
		if f.Gate == nil {
			t.Fatal("OpenGated delivered a frame without a decision")
		}
		want, err := g.Check(f.Mat, f.Time)
		if err != nil {
			t.Fatal(err)
		}
		got := *f.Gate
		if got.Encode != want.Encode || got.Motion != want.Motion || got.Keyframe != want.Keyframe ||
			got.Ratio != want.Ratio || !slices.Equal(got.Boxes, want.Boxes) {
			t.Fatalf("frame %d: reader decided %+v, the consumer's gate %+v", f.Seq, got, want)
		}
		if got.Motion {
			motion++
		}
	}
	if frames != 795 || motion < 700 {
		t.Fatalf("%d frames, %d with motion; want all 795 of vtest.avi, most with motion", frames, motion)
	}
	if st := c.Stats(); st.GateNanos <= 0 || st.Dropped != 0 {
		t.Errorf("stats %+v: want gate time and no drops", st)
	}
}

// A dropped frame's motion or keyframe reaches the consumer through the
// next frame's decision.
func TestMergeDropped(t *testing.T) {
	box := image.Rect(1, 2, 30, 40)
	for _, tc := range []struct {
		name          string
		next, dropped Decision
		want          Decision
	}{
		{"motion on the dropped frame only",
			Decision{}, Decision{Encode: true, Motion: true, Ratio: 0.1, Boxes: []image.Rectangle{box}},
			Decision{Encode: true, Motion: true, Ratio: 0.1, Boxes: []image.Rectangle{box}}},
		{"keyframe on the dropped frame",
			Decision{}, Decision{Encode: true, Keyframe: true},
			Decision{Encode: true, Keyframe: true}},
		{"motion on both: the newer boxes stay",
			Decision{Encode: true, Motion: true, Ratio: 0.2, Boxes: []image.Rectangle{image.Rect(5, 5, 9, 9)}},
			Decision{Encode: true, Motion: true, Ratio: 0.1, Boxes: []image.Rectangle{box}},
			Decision{Encode: true, Motion: true, Ratio: 0.2, Boxes: []image.Rectangle{image.Rect(5, 5, 9, 9)}}},
		{"nothing on either",
			Decision{}, Decision{}, Decision{}},
	} {
		next := tc.next
		mergeDropped(&next, &tc.dropped)
		if next.Encode != tc.want.Encode || next.Motion != tc.want.Motion || next.Keyframe != tc.want.Keyframe ||
			next.Ratio != tc.want.Ratio || !slices.Equal(next.Boxes, tc.want.Boxes) {
			t.Errorf("%s: %+v, want %+v", tc.name, next, tc.want)
		}
	}
}

// A slow consumer of a camera-paced source gets fewer frames than were
// read, but no keyframe is lost: one arrives at least every keyframe
// interval (plus the consumer's own delay).
func TestOpenGatedKeepsKeyframesOfDroppedFrames(t *testing.T) {
	cfg := Defaults()
	cfg.Name, cfg.Source, cfg.Loop = "street", opencvData(t, "vtest.avi"), true // paced at 10 fps
	cfg.Gate.Keyframe = 500 * time.Millisecond
	cfg.Gate.MinRatio = 0.99 // no motion counts: only keyframes encode
	ctx := context.Background()
	c, err := OpenGated(ctx, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var last time.Time
	var keyframes int
	// Six keyframes, however long a loaded machine takes to deliver them
	// (the deadline only guards against a hang).
	for deadline := time.Now().Add(time.Minute); keyframes < 6 && time.Now().Before(deadline); {
		f, err := c.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if f.Gate.Keyframe {
			if !last.IsZero() && f.Time.Sub(last) > time.Second {
				t.Errorf("keyframes %v apart, want about 500 ms", f.Time.Sub(last))
			}
			last = f.Time
			keyframes++
		}
		time.Sleep(330 * time.Millisecond) // slower than the camera: frames drop
	}
	if st := c.Stats(); st.Dropped == 0 || keyframes < 6 {
		t.Fatalf("%d dropped, %d keyframes seen", st.Dropped, keyframes)
	}
}

// Gating in the reader allocates nothing per frame either.
func TestOpenGatedDoesNotAllocate(t *testing.T) {
	cfg := benchConfig(scaledVtest(t, image.Pt(640, 480), 120))
	cfg.Loop = false // a reopen allocates; steady state is within one pass
	ctx := testCtx(t)
	c, err := OpenGated(ctx, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var passed int
	next := func() {
		f, err := c.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if f.Gate.Encode {
			passed++
		}
	}
	for range 10 { // Mats and box slices take their sizes
		next()
	}
	if allocs := testing.AllocsPerRun(100, next); allocs != 0 {
		t.Fatalf("%v allocations per frame", allocs)
	}
	if passed == 0 {
		t.Fatal("the gate passed no frame of a street scene")
	}
}
