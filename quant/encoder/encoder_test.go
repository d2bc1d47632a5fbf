package encoder

import (
	"image"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"

	"github.com/sightd/sightd/quant/modelgen"
	"github.com/sightd/sightd/quant/tflite"
	"github.com/sightd/sightd/quant/tokenizer"
)

func randFloats(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = r.Float32()*2 - 1
	}
	return x
}

// imageTowerGraph is a small int8 image tower: conv, mean, fully connected,
// 224x224x3 in, 16-d out.
func imageTowerGraph(t testing.TB) *modelgen.Graph {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	g := modelgen.NewGraph("encoder test image tower")
	x := g.NewTensor("pixels", modelgen.Float32, []int{1, 224, 224, 3}, nil)
	conv := g.NewTensor("conv", modelgen.Float32, []int{1, 56, 56, 12}, nil)
	g.Conv2D(x, g.NewConst("conv/w", []int{12, 3, 3, 3}, randFloats(r, 12*27), nil),
		g.NewConst("conv/b", []int{12}, randFloats(r, 12), nil), conv,
		// VALID: the 2.9 runtime's XNNPACK ignores the input of a SAME-padded
		// convolution whose stride exceeds its kernel (see the README).
		modelgen.Conv{StrideH: 4, StrideW: 4, Padding: modelgen.PadValid, Act: modelgen.ActRelu})
	pooled := g.NewTensor("pooled", modelgen.Float32, []int{1, 12}, nil)
	g.Mean(conv, g.NewConst("mean/axes", []int{2}, []int32{1, 2}, nil), pooled)
	emb := g.NewTensor("embedding", modelgen.Float32, []int{1, 16}, nil)
	g.FullyConnected(pooled, g.NewConst("fc/w", []int{16, 12}, randFloats(r, 16*12), nil),
		g.NewConst("fc/b", []int{16}, randFloats(r, 16), nil), emb, modelgen.ActNone)
	g.SetInputs(x)
	g.SetOutputs(emb)
	// Calibrate on preprocessed real-looking input: values in [-2, 2].
	calib := make([]float32, 224*224*3)
	for i := range calib {
		calib[i] = r.Float32()*4 - 2
	}
	q, err := modelgen.Quantize(g, [][]any{{calib}}, modelgen.Int8IO)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func buildModel(t testing.TB, g *modelgen.Graph) *tflite.Model {
	t.Helper()
	b, err := g.Build()
	if err != nil {
		t.Fatal(err)
	}
	m, err := tflite.NewModel(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

var clipSpec = ImageSpec{Width: 224, Height: 224,
	Mean: [3]float32{0.4815, 0.4578, 0.4082}, Std: [3]float32{0.2686, 0.2613, 0.2758}}

// bilinearSpec is clipSpec with OpenCV's bilinear resize: the encoder's
// exactness against modelgen's reference is checked on the inputs it was
// written for (with PIL's resize one region's int8 input lands where the
// built-in kernels and the reference round one step apart: cosine 0.99999).
var bilinearSpec = func() ImageSpec { s := clipSpec; s.Interp = gocv.InterpolationLinear; return s }()

// The image encoder (preprocess, quantise, invoke, dequantise, normalise) on
// real photos against modelgen's plain-Go reference of the same tower.
func TestImageEncoderMatchesReference(t *testing.T) {
	g := imageTowerGraph(t)
	m := buildModel(t, g)
	frame := readImage(t, "fruits.jpg")
	full := image.Rect(0, 0, frame.Cols(), frame.Rows())
	regions := []image.Rectangle{full, image.Rect(0, 0, 256, 240), image.Rect(200, 100, 500, 300),
		image.Rect(10, 10, 74, 300), image.Rect(256, 240, 512, 480)}

	// Reference: the same preprocessing (checked against OpenCV elsewhere),
	// then the Go evaluation of the int8 graph.
	in, out := g.Inputs()[0], g.Outputs()[0]
	pre, err := NewPreprocessor(bilinearSpec)
	if err != nil {
		t.Fatal(err)
	}
	defer pre.Close()
	w := NewWriter(pre, Quantizer[int8]{Scale: in.Quant.Scale[0], ZeroPoint: int32(in.Quant.ZeroPoint[0])})
	want := make([]float32, len(regions)*16)
	px := make([]int8, 224*224*3)
	for i, r := range regions {
		if err := w.Write(px, frame, r); err != nil {
			t.Fatal(err)
		}
		res, err := g.Eval(px)
		if err != nil {
			t.Fatal(err)
		}
		q := res[0].([]int8)
		v := want[i*16 : (i+1)*16]
		for k := range v {
			v[k] = out.Quant.Scale[0] * float32(int32(q[k])-int32(out.Quant.ZeroPoint[0]))
		}
		if !Normalize(v) {
			t.Fatal("reference vector is zero")
		}
	}

	for _, tc := range []struct {
		name  string
		cfg   ImageConfig
		exact bool
	}{
		{"builtin", ImageConfig{Spec: bilinearSpec}, true},
		{"builtin batched", ImageConfig{Spec: bilinearSpec, DynamicBatch: true}, true},
		{"xnnpack", ImageConfig{Spec: bilinearSpec, Runtime: tflite.Options{XNNPACK: true, Threads: 2}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := NewImage(m, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			got := make([]float32, len(regions)*e.Dim())
			for rep := 0; rep < 2; rep++ { // the second pass reuses every buffer
				if err := e.Encode(frame, regions, got); err != nil {
					t.Fatal(err)
				}
				for i := range regions {
					a, b := got[i*16:(i+1)*16], want[i*16:(i+1)*16]
					cos := Cosine(a, b)
					// Built-in kernels are what the reference models exactly;
					// XNNPACK may round differently by one step.
					if (tc.exact && maxAbsDiff(a, b) > 1e-6) || cos < 0.999 {
						t.Fatalf("region %d: cosine %.6f, max diff %g\n got %v\nwant %v", i, cos, maxAbsDiff(a, b), a, b)
					}
				}
			}
			// Many runs: a per-call allocation shows as 1 or more, while the
			// runtime starting a thread now and then (the stager runs while
			// the model holds this one in cgo) averages out.
			if n := testing.AllocsPerRun(100, func() { e.Encode(frame, regions, got) }); n > 0 {
				t.Errorf("Encode allocates %v times per call in steady state", n)
			}
		})
	}
}

func maxAbsDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// clipVocab finds the real CLIP merge list in ../shared beside the repo.
func clipVocab(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("SIGHTD_CLIP_VOCAB"); p != "" {
		return p
	}
	dir, _ := filepath.Abs(".")
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "..", "shared", "testdata", "clip", "bpe_simple_vocab_16e6.txt.gz")
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("CLIP vocabulary not found at %s (set SIGHTD_CLIP_VOCAB): %v", p, err)
			}
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory; set SIGHTD_CLIP_VOCAB")
		}
		dir = parent
	}
}

func textTowerGraph(t testing.TB, vocab, dim int) *modelgen.Graph {
	return textTowerGraphIDs(t, vocab, dim, modelgen.Int32)
}

func textTowerGraphIDs(t testing.TB, vocab, dim int, ids modelgen.DType) *modelgen.Graph {
	t.Helper()
	r := rand.New(rand.NewPCG(3, 4))
	g := modelgen.NewGraph("encoder test text tower")
	idsT := g.NewTensor("tokens", ids, []int{1, 77}, nil)
	vecs := g.NewTensor("token_vectors", modelgen.Float32, []int{1, 77, 8}, nil)
	g.Gather(g.NewConst("token_embedding", []int{vocab, 8}, randFloats(r, vocab*8), nil), idsT, vecs)
	pooled := g.NewTensor("pooled", modelgen.Float32, []int{1, 8}, nil)
	g.Mean(vecs, g.NewConst("mean/axes", []int{1}, []int32{1}, nil), pooled)
	emb := g.NewTensor("embedding", modelgen.Float32, []int{1, dim}, nil)
	g.FullyConnected(pooled, g.NewConst("fc/w", []int{dim, 8}, randFloats(r, dim*8), nil),
		g.NewConst("fc/b", []int{dim}, randFloats(r, dim), nil), emb, modelgen.ActNone)
	g.SetInputs(idsT)
	g.SetOutputs(emb)
	return g
}

func TestTextEncoderMatchesReference(t *testing.T) {
	tok, err := tokenizer.LoadFile(clipVocab(t), tokenizer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, idType := range []modelgen.DType{modelgen.Int32, modelgen.Int64} {
		t.Run(idType.String(), func(t *testing.T) { testTextEncoder(t, tok, idType) })
	}
}

func testTextEncoder(t *testing.T, tok *tokenizer.Tokenizer, idType modelgen.DType) {
	g := textTowerGraphIDs(t, tok.VocabSize(), 16, idType)
	e, err := NewText(buildModel(t, g), tok, TextConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	got := make([]float32, e.Dim())
	ids := make([]int32, 77)
	for _, text := range []string{"a package on the porch", "the garage door is open", "", "ünïcödé 🐈 猫",
		"a very long rule that goes on and on about a red car parked in front of the blue house next to the green tree under a grey sky while it rains"} {
		if err := e.Encode(text, got); err != nil {
			t.Fatal(err)
		}
		if _, err := tok.EncodeTo(ids, text); err != nil {
			t.Fatal(err)
		}
		var in any = ids
		if idType == modelgen.Int64 {
			wide := make([]int64, len(ids))
			for i, id := range ids {
				wide[i] = int64(id)
			}
			in = wide
		}
		res, err := g.Eval(in)
		if err != nil {
			t.Fatal(err)
		}
		want := res[0].([]float32)
		Normalize(want)
		if d := maxAbsDiff(got, want); d > 1e-5 {
			t.Errorf("%q: max diff %g from the reference", text, d)
		}
	}
	if n := testing.AllocsPerRun(5, func() { e.Encode("a package on the porch", got) }); n > 0 {
		t.Errorf("text Encode allocates %v times per call", n)
	}
}

func TestCompose(t *testing.T) {
	a := []float32{1, 0, 0}
	b := []float32{0, 1, 0}
	dst := make([]float32, 3)
	if err := Compose(dst, Part{a, 1}, Part{b, 1}); err != nil {
		t.Fatal(err)
	}
	if c := Cosine(dst, a); math.Abs(c-math.Sqrt2/2) > 1e-6 {
		t.Fatalf("equal weights: cosine to a = %v, want 1/sqrt(2)", c)
	}
	if err := Compose(dst, Part{a, 3}, Part{b, 1}); err != nil {
		t.Fatal(err)
	}
	if Cosine(dst, a) <= Cosine(dst, b) {
		t.Fatalf("heavier weight does not pull: %v", dst)
	}
	if err := Compose(dst, Part{a, 1}, Part{[]float32{-1, 0, 0}, 1}); err == nil {
		t.Fatal("cancelling parts gave no error")
	}
	if err := Compose(dst, Part{[]float32{1}, 1}); err == nil {
		t.Fatal("short part gave no error")
	}
}
