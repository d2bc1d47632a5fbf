package pipeline

import (
	"context"
	"errors"
	"image"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"gocv.io/x/gocv"

	"github.com/sightd/sightd/camera"
	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/quant/encoder"
	"github.com/sightd/sightd/quant/modelgen/demo/demotest"
	"github.com/sightd/sightd/quant/tflite"
)

// recorder is a Sink that keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	events []Event
	status []bool
}

func (r *recorder) Event(_ context.Context, e Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

func (r *recorder) CameraStatus(_ context.Context, _ string, online bool, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = append(r.status, online)
}

var _ Sink = (*recorder)(nil)

// ruleSet compiles rules with the demo's text tower under model version v.
func ruleSet(t *testing.T, tw *encoder.Towers, v int64, rs ...*rules.Rule) *rules.Set {
	t.Helper()
	text, err := tw.NewText(tflite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer text.Close()
	var compiled []*rules.Compiled
	for _, r := range rs {
		r.Defaults()
		cc, err := rules.CompileRule(text, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		compiled = append(compiled, cc)
	}
	bgs, err := rules.Backgrounds(text, rules.DefaultBackgrounds)
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.NewSet(v, tw.Manifest().LogitScale, text.Dim(), compiled, bgs)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func vtest(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SIGHTD_OPENCV_DATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "third_party", "opencv-data")
	}
	p := filepath.Join(dir, "vtest.avi")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("vtest.avi missing (run `make deps`): %v", err)
	}
	return p
}

// streetCamera is the camera "street" on vtest.avi, read as fast as it
// decodes.
func streetCamera(t *testing.T) camera.Config {
	t.Helper()
	cfg := camera.Defaults()
	cfg.Name = "street"
	cfg.Source = vtest(t)
	cfg.Fast = true
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// The real chain on the real street video: frames are read, gated, encoded
// and matched; a state rule about the pedestrians' dark clothes changes
// state, a rule about a colour the street never shows stays quiet, and every
// event carries its detection and a JPEG snapshot. A model swap half way
// takes effect between frames.
func TestPipelineOnVideo(t *testing.T) {
	tw := demotest.Towers(t)
	cfg := streetCamera(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src, err := camera.Open(ctx, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	enc, err := tw.NewImage(tflite.Options{XNNPACK: true, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	dark := &rules.Rule{ID: "dark-clothes", Prompts: []string{"something dark"}, Kind: rules.State}
	purple := &rules.Rule{ID: "purple", Prompts: []string{"something purple"}}
	sink := &recorder{}
	p, err := New(cfg, src, enc, ruleSet(t, tw, 1, dark, purple), sink, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	// Swap to "model 2" once frames flow.
	deadline := time.Now().Add(2 * time.Minute)
	for p.Stats.Encoded.Load() < 200 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	enc2, err := tw.NewImage(tflite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SwapModel(&Model{Encoder: enc2, Rules: ruleSet(t, tw, 2, &rules.Rule{ID: "dark-clothes", Prompts: []string{"something dark"}, Kind: rules.State})}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("the pipeline did not finish the video")
	}

	if n := p.Stats.Frames.Load(); n != 795 {
		t.Errorf("frames %d, want all 795 of vtest.avi", n)
	}
	if g := p.Stats.Gated.Load(); g < 700 || p.Stats.Encoded.Load() != g {
		t.Errorf("gated %d, encoded %d", g, p.Stats.Encoded.Load())
	}
	if len(sink.status) == 0 || !sink.status[0] {
		t.Errorf("camera status %v, want online first", sink.status)
	}
	versions := map[int64]int{}
	for _, e := range sink.events {
		d := e.Detection
		if d.Rule == "purple" {
			t.Errorf("purple fired on a street without purple: %+v", d)
		}
		if d.Camera != "street" || d.ID == "" || d.State == "" || d.Region.W <= 0 || d.Calibrated < 0.5 && d.State == "ON" {
			t.Errorf("detection %+v", d)
		}
		if len(e.Snapshot) < 4 || e.Snapshot[0] != 0xff || e.Snapshot[1] != 0xd8 {
			t.Errorf("snapshot is not a JPEG")
		}
		versions[d.ModelVersion]++
	}
	t.Logf("%d events, by model version %v; gated %d of %d frames; %.1f ms per encoded frame",
		len(sink.events), versions, p.Stats.Gated.Load(), p.Stats.Frames.Load(),
		float64(p.Stats.EncodeNanos.Load())/float64(p.Stats.Encoded.Load())/1e6)
	if len(sink.events) == 0 || versions[2] == 0 {
		t.Errorf("want state changes under both models, got %v", versions)
	}
}

// A camera that is missing is reported offline and waited for; the
// pipeline stays up until it is stopped.
func TestPipelineMissingCamera(t *testing.T) {
	tw := demotest.Towers(t)
	cfg := camera.Defaults()
	cfg.Name = "gone"
	cfg.Source = filepath.Join(t.TempDir(), "missing.avi")
	cfg.Stall = 200 * time.Millisecond
	cfg.RetryMin, cfg.RetryMax = 50*time.Millisecond, 100*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	sink := &recorder{}
	p := openPipeline(ctx, t, tw, cfg, sink, &rules.Rule{ID: "x", Prompts: []string{"red"}})
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		sink.mu.Lock()
		n := len(sink.status)
		sink.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(sink.status) != 1 || sink.status[0] {
		t.Fatalf("status %v, want one offline report", sink.status)
	}
	if p.Stats.LastProgress.Load() == 0 {
		t.Fatal("no progress recorded while waiting for the camera")
	}
}

// failingEncoder wraps a real encoder and fails every other frame, as a
// broken model update might.
type failingEncoder struct {
	Encoder
	calls int
}

func (f *failingEncoder) Encode(frame gocv.Mat, regions []image.Rectangle, dst []float32) error {
	f.calls++
	if f.calls%2 == 0 {
		return errors.New("embedding 0 is zero or not finite")
	}
	return f.Encoder.Encode(frame, regions, dst)
}

// A frame the encoder fails on is skipped and counted, and the camera keeps
// running: OnResult hears every outcome.
func TestEncodeFailuresAreNotFatal(t *testing.T) {
	tw := demotest.Towers(t)
	cfg := streetCamera(t)
	ctx := context.Background()
	src, err := camera.Open(ctx, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	enc, err := tw.NewImage(tflite.Options{XNNPACK: true, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	fe := &failingEncoder{Encoder: enc}
	p, err := New(cfg, src, fe, ruleSet(t, tw, 1, &rules.Rule{ID: "dark", Prompts: []string{"something dark"}}), &recorder{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var ok, failed int
	p.OnResult = func(good bool) {
		if good {
			ok++
		} else {
			failed++
		}
	}
	if err := p.Run(ctx); err != nil {
		t.Fatalf("the pipeline stopped: %v", err)
	}
	if n := p.Stats.Frames.Load(); n != 795 {
		t.Errorf("frames %d, want all 795", n)
	}
	if fe.calls < 100 || failed != fe.calls/2 || ok != fe.calls-failed {
		t.Errorf("%d encodings: %d ok, %d failed reported", fe.calls, ok, failed)
	}
	if got := p.Stats.EncodeErrors.Load(); got != uint64(failed) || p.Stats.Encoded.Load() != uint64(ok) {
		t.Errorf("stats: %d errors, %d encoded; reported %d failed, %d ok", got, p.Stats.Encoded.Load(), failed, ok)
	}
}

// With the camera's detection switched off, the street video is read and
// its motion reported (off at the first frame, then on, and off again once
// the street is still for MotionHold), but nothing is encoded and no rule
// fires.
func TestDetectionOffStillReportsMotion(t *testing.T) {
	tw := demotest.Towers(t)
	cfg := streetCamera(t)
	ctx := context.Background()
	sink := &recorder{}
	p := openPipeline(ctx, t, tw, cfg, sink, &rules.Rule{ID: "dark", Prompts: []string{"something dark"}, Kind: rules.State})
	var motion []bool
	p.OnMotion = func(on bool) { motion = append(motion, on) }
	if !p.Detection() {
		t.Fatal("detection off by default")
	}
	p.SetDetection(false)
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if n := p.Stats.Frames.Load(); n != 795 {
		t.Errorf("frames %d, want all 795", n)
	}
	if p.Stats.Encoded.Load() != 0 || len(sink.events) != 0 {
		t.Errorf("detection off, yet %d frames encoded and %d events", p.Stats.Encoded.Load(), len(sink.events))
	}
	// The first frame reports either way (the gate sees nothing yet), then
	// only changes: people walk down the street.
	if len(motion) < 2 || motion[0] || !motion[1] {
		t.Errorf("motion %v: want off at the first frame, then on", motion)
	}
	for i := 1; i < len(motion); i++ {
		if motion[i] == motion[i-1] {
			t.Errorf("motion %v: repeats a state", motion)
		}
	}
	t.Logf("motion changes: %v", motion)
}

// openPipeline opens cfg's camera and a pipeline on it with the demo's
// image tower and rules rs (model version 1).
func openPipeline(ctx context.Context, t *testing.T, tw *encoder.Towers, cfg camera.Config, sink Sink, rs ...*rules.Rule) *Pipeline {
	t.Helper()
	src, err := camera.Open(ctx, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	enc, err := tw.NewImage(tflite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg, src, enc, ruleSet(t, tw, 1, rs...), sink, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
