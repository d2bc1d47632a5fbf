// Package demotest gives tests the generated demo bundle: built into a
// temporary directory, loaded, and closed when the test ends.
package demotest

import (
	"path/filepath"
	"testing"

	"github.com/sightd/sightd/quant/bundle"
	"github.com/sightd/sightd/quant/encoder"
	"github.com/sightd/sightd/quant/modelgen/demo"
	"github.com/sightd/sightd/quant/tflite"
)

// Dir builds the demo bundle (version 1) into a new temporary directory.
func Dir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "demo")
	if err := demo.Build(dir, demo.Options{}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Towers builds and loads the demo bundle.
func Towers(t testing.TB) *encoder.Towers {
	t.Helper()
	b, err := bundle.Open(Dir(t))
	if err != nil {
		t.Fatal(err)
	}
	tw, err := encoder.Load(b)
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { tw.Close(); b.Close() })
	return tw
}

// Text is a text encoder of tw (built-in kernels).
func Text(t testing.TB, tw *encoder.Towers) *encoder.Text {
	t.Helper()
	e, err := tw.NewText(tflite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// Image is an image encoder of tw (built-in kernels).
func Image(t testing.TB, tw *encoder.Towers) *encoder.Image {
	t.Helper()
	e, err := tw.NewImage(tflite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}
