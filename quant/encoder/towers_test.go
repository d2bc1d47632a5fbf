package encoder

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sightd/sightd/quant/bundle"
	"github.com/sightd/sightd/quant/modelgen/demo"
	"github.com/sightd/sightd/quant/tflite"
)

// The generated demo bundle loads, and its probes (computed by the generator
// with the runtime) come out of the encoders within the manifest's bound,
// with and without XNNPACK. A probe that expects something else is refused.
func TestTowersProbes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	if err := demo.Build(dir, demo.Options{}); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	towers, err := Load(b)
	if err != nil {
		t.Fatal(err)
	}
	defer towers.Close()
	if len(b.Manifest.Probes) < 2 {
		t.Fatalf("demo bundle has %d probes", len(b.Manifest.Probes))
	}
	for _, rt := range []tflite.Options{{}, {XNNPACK: true, Threads: 2}} {
		cos, err := towers.CheckProbes(rt)
		if err != nil {
			t.Fatalf("%+v: %v", rt, err)
		}
		t.Logf("xnnpack=%v probe cosines %.4f", rt.XNNPACK, cos)
	}

	p := &b.Manifest.Probes[0]
	for i := range p.Expected {
		p.Expected[i] = -p.Expected[i]
	}
	if _, err := towers.CheckProbes(tflite.Options{}); !errors.Is(err, ErrProbe) {
		t.Fatalf("a negated probe vector passed: %v", err)
	}
}

// A bundle whose image tower has per-channel int8 FULLY_CONNECTED weights (as
// today's converters write them): LiteRT reproduces its probes; TensorFlow
// Lite 2.9 runs the tower without an error and gets it wrong, and the probes
// refuse it, naming the cosine.
func TestProbesCatchARuntimeThatMiscomputes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	if err := demo.Build(dir, demo.Options{PerChannel: true}); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	towers, err := Load(b)
	if err != nil {
		t.Fatal(err)
	}
	defer towers.Close()
	cos, err := towers.CheckProbes(tflite.Options{Runtime: tflite.RuntimeLiteRT})
	if err != nil {
		t.Fatalf("LiteRT: %v", err)
	}
	t.Logf("LiteRT probe cosines %.4f", cos)
	for _, o := range []tflite.Options{{Runtime: tflite.RuntimeTFLite29}, {Runtime: tflite.RuntimeTFLite29, XNNPACK: true}} {
		_, err := towers.CheckProbes(o)
		if !errors.Is(err, ErrProbe) || !strings.Contains(err.Error(), "cosine") || !strings.Contains(err.Error(), "image") {
			t.Fatalf("TensorFlow Lite 2.9 (xnnpack=%v): %v", o.XNNPACK, err)
		}
		t.Logf("TensorFlow Lite 2.9 (xnnpack=%v) refused: %v", o.XNNPACK, err)
	}
}

// The manifest's interpolation picks PIL's filter; omitted is bicubic, and
// a value Parse would refuse is refused here too rather than resized wrongly.
func TestSpecFromManifestInterpolation(t *testing.T) {
	in := bundle.ImageInput{Tensor: bundle.Tensor{Shape: []int{1, 3, 8, 8}}, Layout: bundle.LayoutNCHW,
		Mean: []float32{0, 0, 0}, Std: []float32{1, 1, 1}}
	for interp, want := range map[string]PILFilter{"": PILBicubic, "bicubic": PILBicubic, "bilinear": PILBilinear} {
		in.Interpolation = interp
		s, err := SpecFromManifest(in)
		if err != nil || s.PIL != want {
			t.Errorf("interpolation %q: filter %v, %v; want %v", interp, s.PIL, err, want)
		}
	}
	in.Interpolation = "nearest"
	if _, err := SpecFromManifest(in); err == nil {
		t.Error("interpolation nearest accepted")
	}
}
