package camera

import (
	"image"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"
)

// mog2 is OpenCV's Gaussian-mixture background subtractor as the gate's
// foreground model: the alternative that frameDiff was measured against.
type mog2 struct{ m gocv.BackgroundSubtractorMOG2 }

func newMOG2(GateConfig) foreground {
	// OpenCV's defaults (history 500, variance threshold 16), no shadow
	// marking: the gate wants moving or not.
	return &mog2{m: gocv.NewBackgroundSubtractorMOG2WithParams(500, 16, false)}
}

func (f *mog2) apply(grey gocv.Mat, fg *gocv.Mat) bool { f.m.Apply(grey, fg); return true }
func (f *mog2) reset()                                 {}
func (f *mog2) close()                                 { f.m.Close() }

var gateMethods = []struct {
	name string
	fg   func(GateConfig) foreground
}{{"diff", newFrameDiff}, {"mog2", newMOG2}}

// TestGateMethods measures frame differencing against MOG2 on vtest.avi and
// on a square that moves and then stops (a parked car), and prints the
// numbers quoted in frameDiff's comment. Only the chosen method's behaviour
// is asserted; speed is measured, not asserted.
func TestGateMethods(t *testing.T) {
	// A still scene for 200 frames (8 s at 25 fps), then a square drives in
	// for 10 frames and parks for 40.
	const still, moving, parked = 200, 10, 40
	stopPath := filepath.Join(t.TempDir(), "park.avi")
	scene := newSquareScene(t, image.Pt(640, 480), 48, func(i int) image.Point {
		return image.Pt(40+20*min(max(i-still, 0), moving), 200)
	})
	writeVideo(t, stopPath, image.Pt(640, 480), 25, still+moving+parked, scene.draw)

	for _, m := range gateMethods {
		cfg := fileConfig("street", opencvData(t, "vtest.avi"))
		cfg.Fast = true
		g, err := newGate(cfg.Gate, m.fg)
		if err != nil {
			t.Fatal(err)
		}
		street := runGate(t, cfg, g, nil)
		g.Close()

		cfg.Source = stopPath
		g, err = newGate(cfg.Gate, m.fg)
		if err != nil {
			t.Fatal(err)
		}
		afterStop := 0
		runGate(t, cfg, g, func(f Frame, d Decision) {
			if f.Seq > still+moving+1 && d.Motion {
				afterStop++
			}
		})
		g.Close()
		t.Logf("%s: vtest.avi %v; parked square: motion in %d of the %d frames after it stopped", m.name, street, afterStop, parked-1)
		if m.name == "diff" && (street.motion < street.frames*9/10 || afterStop != 0) {
			t.Errorf("diff: motion in %d of %d street frames and %d frames after the square stopped; want >= 90%% and 0",
				street.motion, street.frames, afterStop)
		}
	}
}
