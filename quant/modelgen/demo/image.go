package demo

import (
	"fmt"

	"github.com/sightd/sightd/quant/modelgen"
)

// Embedding gains: a concept's share of the image (0 to 1) becomes its
// coordinate; the bias dimension gets imageBias. With the text side's
// textBias, an image that shows nothing the demo knows still has a vector,
// and its cosine with any word is small (imageBias·textBias).
const (
	imageBias = 0.1
	textBias  = 0.1
)

// biasDim is the embedding dimension every vector has a share of.
func biasDim() int { return len(conceptNames()) }

// imageGraph returns the float32 image tower: input [1,64,64,3] RGB in [0,1],
// output [1,Dim] unit vectors.
//
//	CONV_2D 1x1 3->H, RELU      hidden per-pixel features (brightness, chroma coordinates)
//	CONV_2D 1x1 H->C, RELU6     per-pixel concept membership, 6 = the pixel fully shows it
//	MEAN over H, W              share of the image showing each concept (0..6)
//	FULLY_CONNECTED C->Dim      concept c -> direction c (weight 1/6), plus the bias dimension
//	L2_NORMALIZATION
func imageGraph() *modelgen.Graph {
	d := buildDetectors()
	h, c := len(d.hidden), len(d.concepts)
	g := modelgen.NewGraph("sightd-demo image tower: hand-designed colour and brightness detectors (not a trained model)")
	in := g.NewTensor("image", modelgen.Float32, []int{1, InputSize, InputSize, 3}, nil)

	w1, b1 := unitWeights(d.hidden)
	hidden := g.NewTensor("hidden", modelgen.Float32, []int{1, InputSize, InputSize, h}, nil)
	g.Conv2D(in,
		g.NewConst("hidden/filter", []int{h, 1, 1, 3}, w1, nil),
		g.NewConst("hidden/bias", []int{h}, b1, nil),
		hidden, modelgen.Conv{Padding: modelgen.PadValid, Act: modelgen.ActRelu})

	w2, b2 := unitWeights(d.concepts)
	concepts := g.NewTensor("concepts", modelgen.Float32, []int{1, InputSize, InputSize, c}, nil)
	g.Conv2D(hidden,
		g.NewConst("concepts/filter", []int{c, 1, 1, h}, w2, nil),
		g.NewConst("concepts/bias", []int{c}, b2, nil),
		concepts, modelgen.Conv{Padding: modelgen.PadValid, Act: modelgen.ActRelu6})

	shares := g.NewTensor("shares", modelgen.Float32, []int{1, c}, nil)
	g.Mean(concepts, g.NewConst("shares/axes", []int{2}, []int32{1, 2}, nil), shares)

	embeddingHead(g, in, shares, c, 1.0/full, imageBias)
	return g
}

// embeddingHead maps concept i of pooled (width inDim) to embedding
// dimension i with weight gain, adds the shared bias dimension, and
// L2-normalises: the last layers of both towers.
func embeddingHead(g *modelgen.Graph, in, pooled *modelgen.Tensor, inDim int, gain, bias float32) {
	fw := make([]float32, Dim*inDim)
	for i := range min(inDim, len(conceptNames())) {
		fw[i*inDim+i] = gain
	}
	fb := make([]float32, Dim)
	fb[biasDim()] = bias
	raw := g.NewTensor("embedding/raw", modelgen.Float32, []int{1, Dim}, nil)
	g.FullyConnected(pooled,
		g.NewConst("embedding/weights", []int{Dim, inDim}, fw, nil),
		g.NewConst("embedding/bias", []int{Dim}, fb, nil),
		raw, modelgen.ActNone)
	out := g.NewTensor("embedding", modelgen.Float32, []int{1, Dim}, nil)
	g.L2Normalize(raw, out)
	g.SetInputs(in)
	g.SetOutputs(out)
}

// unitWeights flattens units into a [len(units), 1, 1, in] filter and a bias.
func unitWeights(units []unit) (w, b []float32) {
	for _, u := range units {
		for _, v := range u.w {
			w = append(w, float32(v))
		}
		b = append(b, float32(u.b))
	}
	return w, b
}

// imageModel returns the int8 image tower: imageGraph quantized with
// calibrationImages, int8 input and output.
func imageModel() (*modelgen.Graph, error) { return imageModelWith(false) }

// imageModelWith is imageModel with FULLY_CONNECTED weights quantized per
// output channel when perChannel is set.
func imageModelWith(perChannel bool) (*modelgen.Graph, error) {
	var calib [][]any
	for _, img := range calibrationImages() {
		calib = append(calib, []any{img})
	}
	q, err := modelgen.QuantizeWith(imageGraph(), calib, modelgen.QuantizeOptions{IO: modelgen.Int8IO, PerChannelFullyConnected: perChannel})
	if err != nil {
		return nil, fmt.Errorf("demo: image tower: %w", err)
	}
	return q, nil
}

// calibrationImages are the synthetic images the image tower is quantized
// with ([64,64,3] RGB in [0,1]): every colour of a 5-level RGB grid as a solid
// image, so that each activation sees its whole range (all units are
// piecewise linear in R, G, B, so the cube's corners bound them), and
// horizontal gradients through the hues and from black to white.
func calibrationImages() [][]float32 {
	const n = InputSize
	var out [][]float32
	levels := []float32{0, 0.25, 0.5, 0.75, 1}
	for _, r := range levels {
		for _, gr := range levels {
			for _, b := range levels {
				img := make([]float32, n*n*3)
				for i := 0; i < len(img); i += 3 {
					img[i], img[i+1], img[i+2] = r, gr, b
				}
				out = append(out, img)
			}
		}
	}
	gradient := func(f func(t float32) [3]float32) []float32 {
		img := make([]float32, n*n*3)
		for y := range n {
			for x := range n {
				p := f(float32(x) / (n - 1))
				copy(img[(y*n+x)*3:], p[:])
			}
		}
		return img
	}
	out = append(out,
		gradient(func(t float32) [3]float32 { return [3]float32{t, t, t} }),
		gradient(func(t float32) [3]float32 { return hueRGB(t * 360) }),
	)
	return out
}

// hueRGB is the pure colour at a hue angle (HSV with S = V = 1).
func hueRGB(deg float32) [3]float32 {
	h := deg / 60
	for h >= 6 {
		h -= 6
	}
	i := int(h)
	f := h - float32(i)
	switch i {
	case 0:
		return [3]float32{1, f, 0}
	case 1:
		return [3]float32{1 - f, 1, 0}
	case 2:
		return [3]float32{0, 1, f}
	case 3:
		return [3]float32{0, 1 - f, 1}
	case 4:
		return [3]float32{f, 0, 1}
	default:
		return [3]float32{1, 0, 1 - f}
	}
}
