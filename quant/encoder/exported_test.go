package encoder

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sightd/sightd/quant/bundle"
	"github.com/sightd/sightd/quant/tflite"
)

// TestExportedBundles runs the self-test sightd runs when it loads a model
// (the towers against the manifest, then every probe through sightd's own
// preprocessing, tokenizer and runtime) on bundles written by quant/export's
// sightd-export. Its tests set SIGHTD_EXPORTED_BUNDLES (paths separated by
// the OS's list separator); without it there is nothing to check.
func TestExportedBundles(t *testing.T) {
	list := os.Getenv("SIGHTD_EXPORTED_BUNDLES")
	if list == "" {
		t.Skip("SIGHTD_EXPORTED_BUNDLES not set (quant/export's tests set it)")
	}
	for _, p := range filepath.SplitList(list) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			b, err := bundle.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if err := b.CheckModels(); err != nil {
				t.Fatal(err)
			}
			tw, err := Load(b)
			if err != nil {
				t.Fatal(err)
			}
			defer tw.Close()
			cos, err := tw.CheckProbes(tflite.Options{Threads: 2})
			t.Logf("probe cosines %.5f", cos)
			if err != nil {
				t.Fatal(err)
			}
			if len(cos) == 0 {
				t.Fatal("the bundle has no probes")
			}
		})
	}
}
