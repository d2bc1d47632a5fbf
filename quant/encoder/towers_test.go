package encoder

import (
	"errors"
	"path/filepath"
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
