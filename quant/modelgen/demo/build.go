package demo

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"strings"

	"github.com/sightd/sightd/quant/bundle"
	"github.com/sightd/sightd/quant/modelgen"
	"github.com/sightd/sightd/quant/tflite"
)

// The bundle's name, logit scale and file names.
const (
	Name       = "sightd-demo"
	LogitScale = 100

	ImageFile = "image.tflite"
	TextFile  = "text.tflite"
	VocabFile = "vocab.txt.gz"
)

// ProbeMinCosine is the cosine a probe's embedding must reach against its
// expected vector. The expected vectors come from the reference runtime;
// another runtime (XNNPACK, an ARM build) may round an int8 step differently.
const ProbeMinCosine = 0.99

// Options configure Build.
type Options struct {
	// Version is the manifest's version; 0 means 1. OTA tests build the
	// same bundle under several versions.
	Version int64
	// Bench makes the benchmark bundle instead: the foundation's
	// MobileNetV2-like int8 image tower (224x224, 512-d, random weights,
	// 300 M multiply-accumulates) with a random 512-d text tower over the
	// demo vocabulary. It recognises nothing; it costs what a real encoder
	// costs, for `sightd bench`.
	Bench bool
	// Large (with Bench) makes a bundle of about 25 MB for update
	// benchmarks: the image tower in float32 and a text token table of
	// CLIP's 49,408 rows.
	Large bool
	// PerChannel quantizes the image tower's FULLY_CONNECTED weights per
	// output channel, as today's converters do: LiteRT runs it right and
	// TensorFlow Lite 2.9 computes it wrong without an error, which the
	// bundle's probes catch.
	PerChannel bool
}

// textProbes are the text probes: rules with one known word among others,
// and one without any (its vector is the bias dimension alone).
var textProbes = []string{"a red car", "something orange", "a dark scene", "a photo of a cat"}

// imageProbes are the image probes, drawn at the input size so that any
// resize leaves them as they are (their regions are flat colours).
var imageProbes = []struct {
	file string
	draw func(x, y int) color.NRGBA
}{
	{"probes/red.png", func(x, y int) color.NRGBA { return color.NRGBA{230, 40, 30, 255} }},
	{"probes/scene.png", func(x, y int) color.NRGBA {
		// Quadrants: orange, sky blue / white, near black.
		top, left := y < InputSize/2, x < InputSize/2
		switch {
		case top && left:
			return color.NRGBA{245, 150, 20, 255}
		case top:
			return color.NRGBA{70, 130, 220, 255}
		case left:
			return color.NRGBA{245, 245, 245, 255}
		}
		return color.NRGBA{20, 20, 25, 255}
	}},
}

// Build writes the demo bundle into dir, which must not exist or be empty
// (see bundle.Write): image.tflite, text.tflite, vocab.txt.gz, the probe
// images under probes/ and manifest.json. The same Options always give the
// same bytes. Probe vectors are computed with sightd's runtime (LiteRT).
func Build(dir string, opts Options) error {
	m, files, err := generate(opts)
	if err != nil {
		return err
	}
	return bundle.Write(dir, m, files)
}

// generate makes the manifest (sizes and hashes left to bundle.Write) and
// the files.
func generate(opts Options) (*bundle.Manifest, map[string][]byte, error) {
	if opts.Version == 0 {
		opts.Version = 1
	}
	if opts.Version < 0 {
		return nil, nil, fmt.Errorf("demo: version %d, want >= 1", opts.Version)
	}
	voc, err := buildVocabulary()
	if err != nil {
		return nil, nil, err
	}
	files := map[string][]byte{}
	if files[VocabFile], err = gzipped(mergeFile(voc.merges)); err != nil {
		return nil, nil, fmt.Errorf("demo: %w", err)
	}

	if opts.Bench {
		return generateBench(opts, voc, files)
	}
	img, err := imageModelWith(opts.PerChannel)
	if err != nil {
		return nil, nil, err
	}
	if files[ImageFile], err = img.Build(); err != nil {
		return nil, nil, fmt.Errorf("demo: image tower: %w", err)
	}
	txt := textGraph(voc)
	if files[TextFile], err = txt.Build(); err != nil {
		return nil, nil, fmt.Errorf("demo: text tower: %w", err)
	}

	m := &bundle.Manifest{
		Format:       bundle.Format,
		Name:         Name,
		Version:      opts.Version,
		EmbeddingDim: Dim,
		LogitScale:   LogitScale,
		Image: bundle.ImageTower{
			FileRef: bundle.FileRef{File: ImageFile},
			Input: bundle.ImageInput{
				Tensor: tensorSpec(img.Inputs()[0]),
				Layout: bundle.LayoutNHWC,
				Color:  bundle.ColorRGB,
				// Squash: the whole frame counts, as a colour share should.
				Resize: bundle.ResizeSquash,
				Mean:   []float32{0, 0, 0},
				Std:    []float32{1, 1, 1},
			},
			Output: tensorSpec(img.Outputs()[0]),
		},
		Text: bundle.TextTower{
			FileRef: bundle.FileRef{File: TextFile},
			Input:   tensorSpec(txt.Inputs()[0]),
			Output:  tensorSpec(txt.Outputs()[0]),
		},
		Tokenizer: bundle.Tokenizer{
			Kind:          bundle.TokenizerCLIPBPE,
			FileRef:       bundle.FileRef{File: VocabFile},
			Merges:        len(voc.merges),
			ContextLength: ContextLength,
		},
	}

	ts, err := newSession(files[TextFile], tflite.Options{Threads: 1})
	if err != nil {
		return nil, nil, fmt.Errorf("demo: text tower: %w", err)
	}
	defer ts.Close()
	for _, text := range textProbes {
		ids := make([]int32, ContextLength)
		if _, err := voc.tok.EncodeTo(ids, text); err != nil {
			return nil, nil, fmt.Errorf("demo: probe %q: %w", text, err)
		}
		v, err := ts.text(ids)
		if err != nil {
			return nil, nil, fmt.Errorf("demo: probe %q: %w", text, err)
		}
		m.Probes = append(m.Probes, bundle.Probe{Tower: bundle.TowerText, Text: text, Expected: normalized(v), MinCosine: ProbeMinCosine})
	}

	is, err := newSession(files[ImageFile], tflite.Options{Threads: 1})
	if err != nil {
		return nil, nil, fmt.Errorf("demo: image tower: %w", err)
	}
	defer is.Close()
	for _, p := range imageProbes {
		rgb, data, err := probeImage(p.draw)
		if err != nil {
			return nil, nil, fmt.Errorf("demo: probe %s: %w", p.file, err)
		}
		v, err := is.image(rgb)
		if err != nil {
			return nil, nil, fmt.Errorf("demo: probe %s: %w", p.file, err)
		}
		files[p.file] = data
		m.Probes = append(m.Probes, bundle.Probe{Tower: bundle.TowerImage, FileRef: bundle.FileRef{File: p.file}, Expected: normalized(v), MinCosine: ProbeMinCosine})
	}
	return m, files, nil
}

// probeImage draws an InputSize x InputSize image and returns its RGB bytes
// (HWC) and its PNG encoding.
func probeImage(draw func(x, y int) color.NRGBA) (rgb, pngData []byte, err error) {
	im := image.NewNRGBA(image.Rect(0, 0, InputSize, InputSize))
	for y := range InputSize {
		for x := range InputSize {
			c := draw(x, y)
			im.SetNRGBA(x, y, c)
			rgb = append(rgb, c.R, c.G, c.B)
		}
	}
	var b bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&b, im); err != nil {
		return nil, nil, err
	}
	return rgb, b.Bytes(), nil
}

// tensorSpec is t's shape and element type as the manifest spells them.
func tensorSpec(t *modelgen.Tensor) bundle.Tensor {
	return bundle.Tensor{Shape: append([]int(nil), t.Shape...), DType: bundle.DType(strings.ToLower(t.Type.String()))}
}
