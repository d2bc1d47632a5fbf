package bundle_test

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sightd/sightd/quant/bundle"
	"github.com/sightd/sightd/quant/modelgen"
	"github.com/sightd/sightd/quant/tflite"
)

// faceModel is MediaPipe's float32 face detector (input "input" 1x128x128x3,
// outputs "regressors" 1x896x16 and "classificators" 1x896x1), a model
// nobody here wrote, unpacked by `make deps`.
func faceModel(t *testing.T) []byte {
	t.Helper()
	p := filepath.Join("..", "..", "third_party", "fixtures", "face_detection_short_range.tflite")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("fixture missing (run `make deps`): %v", err)
	}
	return b
}

func randFloats(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = r.Float32()*2 - 1
	}
	return x
}

// imageTower builds a real int8 image encoder shaped like the example
// manifest's: int8 input "pixels" [1,224,224,3], int8 output "embedding"
// [1,4].
func imageTower(t *testing.T) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	g := modelgen.NewGraph("bundle test image tower")
	x := g.NewTensor("pixels", modelgen.Float32, []int{1, 224, 224, 3}, nil)
	conv := g.NewTensor("conv", modelgen.Float32, []int{1, 28, 28, 8}, nil)
	g.Conv2D(x, g.NewConst("conv/w", []int{8, 3, 3, 3}, randFloats(r, 8*27), nil),
		g.NewConst("conv/b", []int{8}, randFloats(r, 8), nil), conv,
		modelgen.Conv{StrideH: 8, StrideW: 8, Padding: modelgen.PadSame, Act: modelgen.ActRelu})
	pooled := g.NewTensor("pooled", modelgen.Float32, []int{1, 8}, nil)
	g.Mean(conv, g.NewConst("mean/axes", []int{2}, []int32{1, 2}, nil), pooled)
	emb := g.NewTensor("embedding", modelgen.Float32, []int{1, 4}, nil)
	g.FullyConnected(pooled, g.NewConst("fc/w", []int{4, 8}, randFloats(r, 32), nil),
		g.NewConst("fc/b", []int{4}, randFloats(r, 4), nil), emb, modelgen.ActNone)
	g.SetInputs(x)
	g.SetOutputs(emb)
	q, err := modelgen.Quantize(g, [][]any{modelgen.RandomInputs(g, 3)}, modelgen.Int8IO)
	if err != nil {
		t.Fatalf("modelgen.Quantize: %v", err)
	}
	return build(t, q)
}

// textTower builds a real float text encoder shaped like the example
// manifest's: int32 input "tokens" [1,77], float32 output "embedding" [1,4].
func textTower(t *testing.T) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(3, 4))
	g := modelgen.NewGraph("bundle test text tower")
	ids := g.NewTensor("tokens", modelgen.Int32, []int{1, 77}, nil)
	vecs := g.NewTensor("token_vectors", modelgen.Float32, []int{1, 77, 8}, nil)
	g.Gather(g.NewConst("token_embedding", []int{64, 8}, randFloats(r, 64*8), nil), ids, vecs)
	pooled := g.NewTensor("pooled", modelgen.Float32, []int{1, 8}, nil)
	g.Mean(vecs, g.NewConst("mean/axes", []int{1}, []int32{1}, nil), pooled)
	emb := g.NewTensor("embedding", modelgen.Float32, []int{1, 4}, nil)
	g.FullyConnected(pooled, g.NewConst("fc/w", []int{4, 8}, randFloats(r, 32), nil),
		g.NewConst("fc/b", []int{4}, randFloats(r, 4), nil), emb, modelgen.ActNone)
	g.SetInputs(ids)
	g.SetOutputs(emb)
	return build(t, g)
}

func build(t *testing.T, g *modelgen.Graph) []byte {
	t.Helper()
	b, err := g.Build()
	if err != nil {
		t.Fatalf("modelgen Build: %v", err)
	}
	return b
}

// modelBundle writes a bundle of m (made from the example by edit) with the
// given encoders, and opens it.
func modelBundle(t *testing.T, image, text []byte, edit func(m *bundle.Manifest)) *bundle.Bundle {
	t.Helper()
	m := parseExample(t)
	if edit != nil {
		edit(m)
	}
	files := contents()
	files["image.tflite"], files["text.tflite"] = image, text
	if m.Probes == nil {
		delete(files, "probes/red.png")
	}
	dir := filepath.Join(t.TempDir(), "bundle")
	if err := bundle.Write(dir, m, files); err != nil {
		t.Fatalf("Write: %v", err)
	}
	b, err := bundle.Open(dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return b
}

func TestCheckModels(t *testing.T) {
	image, text := imageTower(t), textTower(t)
	cases := []struct {
		name string
		edit func(m *bundle.Manifest)
		want []string // problem lines; none for a match
	}{
		{"match", nil, nil},
		{"dynamic batch matches", func(m *bundle.Manifest) {
			m.Image.Input.Shape[0] = -1
			m.Text.Input.Shape[0] = -1
			m.Image.Output.Shape[0] = -1
		}, nil},
		{"input dtype", func(m *bundle.Manifest) { m.Image.Input.DType = bundle.Float32 }, []string{
			`image tower: input 0 "pixels": model does not match the manifest: dtype int8, manifest float32`,
		}},
		{"input size", func(m *bundle.Manifest) { m.Image.Input.Shape = []int{1, 256, 256, 3} }, []string{
			`image tower: input 0 "pixels": model does not match the manifest: shape [1 224 224 3], manifest [1 256 256 3]`,
		}},
		{"layout", func(m *bundle.Manifest) {
			m.Image.Input.Layout = bundle.LayoutNCHW
			m.Image.Input.Shape = []int{1, 3, 224, 224}
		}, []string{
			`image tower: input 0 "pixels": model does not match the manifest: shape [1 224 224 3], manifest [1 3 224 224]`,
		}},
		{"text context and dtypes", func(m *bundle.Manifest) {
			m.Tokenizer.ContextLength = 64
			m.Text.Input = bundle.Tensor{Shape: []int{1, 64}, DType: bundle.Int64}
			m.Text.Output.DType = bundle.Int8
		}, []string{
			`text tower: input 0 "tokens": model does not match the manifest: shape [1 77], manifest [1 64]`,
			`text tower: input 0 "tokens": model does not match the manifest: dtype int32, manifest int64`,
			`text tower: output 0 "embedding": model does not match the manifest: dtype float32, manifest int8`,
		}},
		{"output rank", func(m *bundle.Manifest) { m.Text.Output.Shape = []int{4} }, []string{
			`text tower: output 0 "embedding": model does not match the manifest: shape [1 4], manifest [4]`,
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := modelBundle(t, image, text, c.edit).CheckModels()
			if c.want == nil {
				if err != nil {
					t.Fatalf("CheckModels: %v", err)
				}
				return
			}
			if !errors.Is(err, bundle.ErrModelMismatch) {
				t.Fatalf("CheckModels: %v, want ErrModelMismatch", err)
			}
			if got := problemLines(t, err); !reflect.DeepEqual(got, c.want) {
				t.Errorf("\n got  %q\n want %q", got, c.want)
			}
		})
	}
}

// A foreign float model, as both towers of a bundle that claims the example's
// int8 224x224 image encoder and int32 text encoder, is refused tensor by
// tensor; a manifest that describes its image side truthfully passes that
// side.
func TestCheckModelsForeign(t *testing.T) {
	face := faceModel(t)
	err := modelBundle(t, face, face, nil).CheckModels()
	want := []string{
		`image tower: input 0 "input": model does not match the manifest: shape [1 128 128 3], manifest [1 224 224 3]`,
		`image tower: input 0 "input": model does not match the manifest: dtype float32, manifest int8`,
		`image tower: output 0 "regressors": model does not match the manifest: shape [1 896 16], manifest [1 4]`,
		`image tower: output 0 "regressors": model does not match the manifest: dtype float32, manifest int8`,
		`text tower: input 0 "input": model does not match the manifest: shape [1 128 128 3], manifest [1 77]`,
		`text tower: input 0 "input": model does not match the manifest: dtype float32, manifest int32`,
		`text tower: output 0 "regressors": model does not match the manifest: shape [1 896 16], manifest [1 4]`,
	}
	if got := problemLines(t, err); !reflect.DeepEqual(got, want) {
		t.Errorf("\n got  %q\n want %q", got, want)
	}

	truthful := func(m *bundle.Manifest) {
		m.EmbeddingDim = 16
		m.Image.Input.Tensor = bundle.Tensor{Shape: []int{1, 128, 128, 3}, DType: bundle.Float32}
		m.Image.Output = bundle.Tensor{Shape: []int{1, 896, 16}, DType: bundle.Float32}
		m.Text.Output.Shape = []int{1, 16}
		m.Probes = nil
	}
	err = modelBundle(t, face, textTower(t), truthful).CheckModels()
	want = []string{
		`text tower: output 0 "embedding": model does not match the manifest: shape [1 4], manifest [1 16]`,
	}
	if got := problemLines(t, err); !reflect.DeepEqual(got, want) {
		t.Errorf("\n got  %q\n want %q", got, want)
	}
}

func TestCheckModelsNotAModel(t *testing.T) {
	err := modelBundle(t, []byte("this is not a flatbuffer"), textTower(t), nil).CheckModels()
	if !errors.Is(err, tflite.ErrModelInvalid) || !errors.Is(err, bundle.ErrInvalid) {
		t.Fatalf("CheckModels: %v, want tflite.ErrModelInvalid and ErrInvalid", err)
	}
	lines := problemLines(t, err)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "image tower: ") {
		t.Errorf("problems %q, want one naming the image tower", lines)
	}
}
