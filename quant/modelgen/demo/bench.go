package demo

import (
	"fmt"
	"math/rand/v2"

	"github.com/sightd/sightd/quant/bundle"
	"github.com/sightd/sightd/quant/modelgen"
	"github.com/sightd/sightd/quant/tflite"
)

// BenchName is the benchmark bundle's name.
const BenchName = "sightd-bench"

// benchDim is the benchmark towers' embedding size, a CLIP-like 512.
const benchDim = 512

// clipVocabSize is the number of tokens in CLIP's vocabulary.
const clipVocabSize = 49408

// generateBench makes the benchmark bundle (see Options.Bench).
func generateBench(opts Options, voc *vocabulary, files map[string][]byte) (*bundle.Manifest, map[string][]byte, error) {
	prec, rows := modelgen.Int8Full, voc.tok.VocabSize()
	if opts.Large {
		// CLIP-sized pieces: float32 weights and a token table as long as
		// CLIP's vocabulary (the demo tokenizer uses only its first rows).
		prec, rows = modelgen.Float, clipVocabSize
	}
	img, err := modelgen.MobileNetV2Like(modelgen.MobileNetV2Options{Seed: 7, Precision: prec, EmbedDim: benchDim})
	if err != nil {
		return nil, nil, err
	}
	if files[ImageFile], err = img.Build(); err != nil {
		return nil, nil, fmt.Errorf("demo: bench image tower: %w", err)
	}
	txt := benchTextGraph(rows)
	if files[TextFile], err = txt.Build(); err != nil {
		return nil, nil, fmt.Errorf("demo: bench text tower: %w", err)
	}
	m := &bundle.Manifest{
		Format: bundle.Format, Name: BenchName, Version: opts.Version, EmbeddingDim: benchDim, LogitScale: LogitScale,
		Image: bundle.ImageTower{
			FileRef: bundle.FileRef{File: ImageFile},
			Input: bundle.ImageInput{Tensor: tensorSpec(img.Inputs()[0]), Layout: bundle.LayoutNHWC, Color: bundle.ColorRGB,
				Resize: bundle.ResizeCenterCrop, Mean: []float32{0.4815, 0.4578, 0.4082}, Std: []float32{0.2686, 0.2613, 0.2758}},
			Output: tensorSpec(img.Outputs()[0]),
		},
		Text: bundle.TextTower{FileRef: bundle.FileRef{File: TextFile},
			Input: tensorSpec(txt.Inputs()[0]), Output: tensorSpec(txt.Outputs()[0])},
		Tokenizer: bundle.Tokenizer{Kind: bundle.TokenizerCLIPBPE, FileRef: bundle.FileRef{File: VocabFile},
			Merges: len(voc.merges), ContextLength: ContextLength},
	}
	// A text probe keeps the smoke test meaningful for this bundle too.
	ts, err := newSession(files[TextFile], tflite.Options{Threads: 1})
	if err != nil {
		return nil, nil, err
	}
	defer ts.Close()
	ids := make([]int32, ContextLength)
	const probe = "a package on the porch"
	if _, err := voc.tok.EncodeTo(ids, probe); err != nil {
		return nil, nil, err
	}
	v, err := ts.text(ids)
	if err != nil {
		return nil, nil, err
	}
	m.Probes = []bundle.Probe{{Tower: bundle.TowerText, Text: probe, Expected: normalized(v), MinCosine: ProbeMinCosine}}
	return m, files, nil
}

// benchTextGraph is a random embedding table, averaged and projected to 512.
func benchTextGraph(vocab int) *modelgen.Graph {
	r := rand.New(rand.NewPCG(11, 12))
	rnd := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = r.Float32()*2 - 1
		}
		return x
	}
	const width = 64
	g := modelgen.NewGraph("sightd-bench text tower: random weights (not a trained model)")
	in := g.NewTensor("tokens", modelgen.Int32, []int{1, ContextLength}, nil)
	emb := g.NewTensor("token_embeddings", modelgen.Float32, []int{1, ContextLength, width}, nil)
	g.Gather(g.NewConst("token_embedding", []int{vocab, width}, rnd(vocab*width), nil), in, emb)
	mean := g.NewTensor("mean", modelgen.Float32, []int{1, width}, nil)
	g.Mean(emb, g.NewConst("mean/axes", []int{1}, []int32{1}, nil), mean)
	raw := g.NewTensor("embedding/raw", modelgen.Float32, []int{1, benchDim}, nil)
	g.FullyConnected(mean, g.NewConst("embedding/weights", []int{benchDim, width}, rnd(benchDim*width), nil),
		g.NewConst("embedding/bias", []int{benchDim}, rnd(benchDim), nil), raw, modelgen.ActNone)
	out := g.NewTensor("embedding", modelgen.Float32, []int{1, benchDim}, nil)
	g.L2Normalize(raw, out)
	g.SetInputs(in)
	g.SetOutputs(out)
	return g
}
