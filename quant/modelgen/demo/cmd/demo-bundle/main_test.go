package main

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/sightd/sightd/quant/bundle"
	"github.com/sightd/sightd/quant/modelgen/demo"
)

func TestRun(t *testing.T) {
	tmp := t.TempDir()
	dir, tarPath := filepath.Join(tmp, "demo"), filepath.Join(tmp, "demo.tar.gz")
	var out bytes.Buffer
	if err := run([]string{"-o", dir, "-tar", tarPath, "-version", "3"}, &out); err != nil {
		t.Fatal(err)
	}
	t.Log(out.String())
	for _, p := range []string{dir, tarPath} {
		b, err := bundle.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.CheckModels(); err != nil {
			t.Error(err)
		}
		if b.Manifest.Name != demo.Name || b.Manifest.Version != 3 {
			t.Errorf("%s: %s version %d", p, b.Manifest.Name, b.Manifest.Version)
		}
		b.Close()
	}
	// A second run into the same directory is refused: it is not empty.
	if err := run([]string{"-o", dir}, &out); err == nil {
		t.Error("a non-empty output directory was accepted")
	}
	if err := run(nil, &out); err == nil {
		t.Error("no -o accepted")
	}
}
