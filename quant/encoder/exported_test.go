package encoder

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sightd/sightd/quant/bundle"
	"github.com/sightd/sightd/quant/tflite"
)

// exportedBundles are the bundles written by quant/export's sightd-export
// that SIGHTD_EXPORTED_BUNDLES names (paths separated by the OS's list
// separator): quant/export's tests and `make test-arm64` set it.
func exportedBundles(t *testing.T) []string {
	t.Helper()
	list := os.Getenv("SIGHTD_EXPORTED_BUNDLES")
	if list == "" {
		if os.Getenv("SIGHTD_EXPORTED_REFERENCE") != "" {
			t.Fatal("SIGHTD_EXPORTED_REFERENCE is set without SIGHTD_EXPORTED_BUNDLES: nothing to check it on")
		}
		t.Skip("SIGHTD_EXPORTED_BUNDLES not set (quant/export's tests and make test-arm64 set it)")
	}
	return filepath.SplitList(list)
}

func loadExported(t *testing.T, p string) *Towers {
	t.Helper()
	b, err := bundle.Open(p)
	if err != nil {
		t.Fatalf("exported bundle: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.CheckModels(); err != nil {
		t.Fatal(err)
	}
	tw, err := Load(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tw.Close() })
	return tw
}

// TestExportedBundles runs the self-test sightd runs when it loads a model
// (the towers against the manifest, then every probe, whose expected vectors
// PyTorch computed, through sightd's own preprocessing, tokenizer and
// runtime) on bundles written by sightd-export.
func TestExportedBundles(t *testing.T) {
	for _, p := range exportedBundles(t) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			tw := loadExported(t, p)
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

// reference is `sightd-export reference`'s output: open_clip's PyTorch
// vectors for photos and texts.
type reference struct {
	Model          string  `json:"model"`
	DecisiveMargin float64 `json:"decisive_margin"`
	Images         []struct {
		File   string    `json:"file"`
		Vector []float32 `json:"vector"`
	} `json:"images"`
	Texts []struct {
		Text   string    `json:"text"`
		Vector []float32 `json:"vector"`
	} `json:"texts"`
}

// minExportedCosine is what an int8 export must keep of PyTorch's vector
// (float32 keeps 0.99 or more), as quant/export's parity tests demand.
const minExportedCosine = 0.95

// TestExportedParity embeds real photos and texts with the exported bundles
// (sightd's resize, tokenizer and LiteRT, on whatever machine runs the test:
// make test-arm64 runs it under QEMU as a Pi 4 and a Pi 5) and compares each
// with the vector open_clip computed on the same input in PyTorch
// (SIGHTD_EXPORTED_REFERENCE). Each photo's best text must be PyTorch's
// unless PyTorch scores the two within its decisive margin.
func TestExportedParity(t *testing.T) {
	refPath := os.Getenv("SIGHTD_EXPORTED_REFERENCE")
	bundles := exportedBundles(t)
	if refPath == "" {
		t.Skip("SIGHTD_EXPORTED_REFERENCE not set (make test-arm64 sets it)")
	}
	data, err := os.ReadFile(refPath)
	if err != nil {
		t.Fatalf("PyTorch reference vectors: %v", err)
	}
	var ref reference
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatalf("%s: %v", refPath, err)
	}
	if len(ref.Images) == 0 || len(ref.Texts) < 2 {
		t.Fatalf("%s: %d images and %d texts; want photos and at least 2 texts", refPath, len(ref.Images), len(ref.Texts))
	}
	for _, p := range bundles {
		t.Run(filepath.Base(p), func(t *testing.T) {
			tw := loadExported(t, p)
			rt := tflite.Options{Threads: 2}
			img, err := tw.NewImage(rt)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			txt, err := tw.NewText(rt)
			if err != nil {
				t.Fatal(err)
			}
			defer txt.Close()
			dim := tw.Manifest().EmbeddingDim
			var cos []float64
			check := func(what string, got, want []float32) {
				c := Cosine(got, want)
				cos = append(cos, c)
				if !(c >= minExportedCosine) {
					t.Errorf("%s: cosine(sightd, PyTorch) %.4f < %.2f", what, c, minExportedCosine)
				}
			}
			texts := make([][]float32, len(ref.Texts))
			for i, r := range ref.Texts {
				texts[i] = make([]float32, dim)
				if err := txt.Encode(r.Text, texts[i]); err != nil {
					t.Fatalf("text %q: %v", r.Text, err)
				}
				check("text "+r.Text, texts[i], r.Vector)
			}
			same := 0
			for _, r := range ref.Images {
				got := make([]float32, dim)
				if err := encodeFile(img, r.File, got); err != nil {
					t.Fatalf("image %s: %v", r.File, err)
				}
				check("image "+filepath.Base(r.File), got, r.Vector)
				wantScores, gotScores := make([]float64, len(texts)), make([]float64, len(texts))
				for i := range texts {
					wantScores[i] = Cosine(r.Vector, ref.Texts[i].Vector)
					gotScores[i] = Cosine(got, texts[i])
				}
				// sightd's best text must be PyTorch's, or lose to it (in
				// PyTorch's scores) by less than the margin: a near-tie, which
				// int8 rounding may decide either way.
				best, g := argmax(wantScores), argmax(gotScores)
				if g == best {
					same++
				} else if wantScores[best]-wantScores[g] >= ref.DecisiveMargin {
					t.Errorf("image %s: best text %q, PyTorch's %q (%.4f against %.4f in PyTorch)", filepath.Base(r.File),
						ref.Texts[g].Text, ref.Texts[best].Text, wantScores[g], wantScores[best])
				}
			}
			t.Logf("%s on %s: cosine(sightd, PyTorch) mean %.4f min %.4f over %d photos and %d texts; best text the same as PyTorch's on %d photos, the others near-ties (< %.2f)",
				ref.Model, filepath.Base(p), mean(cos), slices.Min(cos), len(ref.Images), len(ref.Texts), same, ref.DecisiveMargin)
		})
	}
}

func argmax(v []float64) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
