package demo

import (
	"image"
	"testing"

	"gocv.io/x/gocv"

	"github.com/sightd/sightd/quant/bundle"
	"github.com/sightd/sightd/quant/tokenizer"
)

// TestProbes re-embeds every probe from the written bundle, as a smoke test
// after an update would: text through the tokenizer loaded from the
// bundle's merge file, images decoded by OpenCV from the bundle's PNGs, in
// both runtimes. Each must reach its min_cosine; and the probes of a tower
// must differ from each other, or a broken model could pass them all.
func TestProbes(t *testing.T) {
	dir := t.TempDir()
	if err := Build(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m := b.Manifest
	tok, err := tokenizer.LoadFile(b.Path(m.Tokenizer.File), tokenizer.Config{Merges: m.Tokenizer.Merges, ContextLength: m.Tokenizer.ContextLength})
	if err != nil {
		t.Fatal(err)
	}
	f := demoFiles(t)
	for _, rt := range runtimes {
		t.Run(rt.name, func(t *testing.T) {
			img := newTestSession(t, f.files[ImageFile], rt.opts)
			txt := newTestSession(t, f.files[TextFile], rt.opts)
			for _, p := range m.Probes {
				var got []float32
				var err error
				switch p.Tower {
				case bundle.TowerText:
					ids := make([]int32, m.Tokenizer.ContextLength)
					if _, err := tok.EncodeTo(ids, p.Text); err != nil {
						t.Fatal(err)
					}
					got, err = txt.text(ids)
				case bundle.TowerImage:
					got, err = img.image(decodeProbe(t, b.Path(p.File)))
				}
				if err != nil {
					t.Fatal(err)
				}
				if c := cosine(got, p.Expected); c < p.MinCosine {
					t.Errorf("probe %q%s: cosine %.4f, want at least %g", p.Text, p.File, c, p.MinCosine)
				}
			}
		})
	}
	for i, p := range m.Probes {
		for _, q := range m.Probes[i+1:] {
			if p.Tower == q.Tower && cosine(p.Expected, q.Expected) > 0.9 {
				t.Errorf("probes %q%s and %q%s have cosine %.3f: too alike to catch a wrong model",
					p.Text, p.File, q.Text, q.File, cosine(p.Expected, q.Expected))
			}
		}
	}
}

// decodeProbe reads a probe image as the daemon's encoder does: OpenCV
// decoding, BGR to RGB, squashed to the input size.
func decodeProbe(t *testing.T, path string) []uint8 {
	t.Helper()
	m := gocv.IMRead(path, gocv.IMReadColor)
	defer m.Close()
	if m.Empty() {
		t.Fatalf("OpenCV cannot decode %s", path)
	}
	rgb := gocv.NewMat()
	defer rgb.Close()
	gocv.CvtColor(m, &rgb, gocv.ColorBGRToRGB)
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(rgb, &small, image.Pt(InputSize, InputSize), 0, 0, gocv.InterpolationLinear)
	data, err := small.DataPtrUint8()
	if err != nil {
		t.Fatal(err)
	}
	return append([]uint8(nil), data...)
}
