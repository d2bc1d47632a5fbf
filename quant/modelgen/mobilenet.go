package modelgen

import "fmt"

// MobileNetV2Options configure MobileNetV2Like. Zero values take defaults.
type MobileNetV2Options struct {
	Seed      uint64
	Precision Precision
	// Resolution is the input height and width (default 224).
	Resolution int
	// EmbedDim is the size of the output embedding (default 512).
	EmbedDim int
}

func (o MobileNetV2Options) withDefaults() MobileNetV2Options {
	if o.Resolution == 0 {
		o.Resolution = 224
	}
	if o.EmbedDim == 0 {
		o.EmbedDim = 512
	}
	return o
}

// Weight gains (standard deviation times sqrt(fan-in)). Random deep ReLU
// networks either forget their input (gain 1: the embeddings of all images
// coincide) or amplify small differences chaotically (He's sqrt(2): a
// one-step int8 rounding difference early grows to tens of steps and int8
// runtimes disagree visibly). 1.2 sits between: embeddings of different
// images have cosine similarity around 0.5 and int8 kernels that round
// differently still agree to about 0.997. Projections followed by a residual
// ADD get 0.5 so that the sums keep their magnitude, as batch normalisation
// would.
const (
	mobileNetGain = 1.2
	residualGain  = 0.5
)

// mobileNetV2Stages is MobileNetV2 1.0's body (Sandler et al. 2018, table 2):
// expansion t, output channels c, repeats n, first stride s.
var mobileNetV2Stages = []struct{ t, c, n, s int }{
	{1, 16, 1, 1},
	{6, 24, 2, 2},
	{6, 32, 3, 2},
	{6, 64, 4, 2},
	{6, 96, 3, 1},
	{6, 160, 3, 2},
	{6, 320, 1, 1},
}

// MobileNetV2Like builds a benchmark image encoder shaped like MobileNetV2
// 1.0: input [1, R, R, 3] (R = 224 by default), a 3x3 stride-2 stem, 17
// inverted residual blocks (1x1 expand CONV_2D + RELU6, 3x3
// DEPTHWISE_CONV_2D + RELU6, 1x1 project CONV_2D, ADD when shapes allow), a
// 1x1 CONV_2D to 1280 channels, a global MEAN, FULLY_CONNECTED to EmbedDim
// and L2_NORMALIZATION. At 224x224 that is about 300 M multiply-accumulates
// (Graph.MACs gives the exact count: 300,149,632). Weights are seeded
// random, with the embedding's bias centred on one random input (see
// centredFC) so that different images get clearly different embeddings. The
// int8 forms are the float model quantized with RandomInputs(seed) as the
// calibration input; they have int8 (or, for Int8FloatIO, float) input and
// output. Generation takes well under a second; the files are about 11.5 MB
// (float32) and 3.3 MB (int8).
func MobileNetV2Like(o MobileNetV2Options) (*Graph, error) {
	o = o.withDefaults()
	if o.Resolution < 32 || o.EmbedDim < 1 {
		return nil, fmt.Errorf("modelgen: MobileNetV2Like: resolution %d (want at least 32) or embedding size %d invalid", o.Resolution, o.EmbedDim)
	}
	n := newNet(fmt.Sprintf("sightd modelgen MobileNetV2Like %dx%d -> %d (%v, seed %d)",
		o.Resolution, o.Resolution, o.EmbedDim, o.Precision, o.Seed), o.Seed, mobileNetGain)
	x := n.input("image", Float32, 1, o.Resolution, o.Resolution, 3)
	x = n.conv("stem", x, 32, 3, 2, PadSame, ActRelu6)
	block := 0
	for _, st := range mobileNetV2Stages {
		for i := 0; i < st.n; i++ {
			stride := 1
			if i == 0 {
				stride = st.s
			}
			x = n.invertedResidual(fmt.Sprintf("block%d", block), x, st.t, st.c, stride)
			block++
		}
	}
	x = n.conv("head", x, 1280, 1, 1, PadSame, ActRelu6)
	x = n.spatialMean("pool", x)
	x, err := n.centredFC("embed", x, o.EmbedDim, RandomInputs(n.g, o.Seed+1))
	if err != nil {
		return nil, fmt.Errorf("modelgen: MobileNetV2Like: %w", err)
	}
	n.g.SetOutputs(n.l2norm("embedding", x))
	g, err := finish(n.g, o.Precision, RandomInputs(n.g, o.Seed))
	if err != nil {
		return nil, fmt.Errorf("modelgen: MobileNetV2Like: %w", err)
	}
	return g, nil
}

// centredFC adds the embedding layer with its bias set so that the pooled
// features of the image in (a []any for the graph so far) map to the random
// bias alone. A random ReLU network's pooled features share a large positive
// mean; without this the embeddings of unrelated images have cosine
// similarity near 0.995, where a trained projection would spread them out.
func (n *net) centredFC(name string, x *Tensor, outC int, in []any) (*Tensor, error) {
	n.g.SetOutputs(x)
	vals, err := n.g.Eval(in...)
	if err != nil {
		return nil, err
	}
	mean := vals[0].([]float32)
	out := n.fc(name, x, outC, ActNone)
	op := n.g.ops[len(n.g.ops)-1]
	w, b := op.Inputs[1].Data.([]float32), op.Inputs[2].Data.([]float32)
	k := x.Shape[1]
	for j := range b {
		b[j] -= dot(w[j*k:(j+1)*k], mean)
	}
	return out, nil
}

// invertedResidual is MobileNetV2's block. The projection is linear; its
// weights are scaled down where a residual follows so that the sum of many
// blocks keeps its magnitude, as batch normalisation would.
func (n *net) invertedResidual(name string, x *Tensor, expand, outC, stride int) *Tensor {
	in := x
	if expand != 1 {
		x = n.conv(name+"/expand", x, x.Shape[3]*expand, 1, 1, PadSame, ActRelu6)
	}
	x = n.depthwise(name+"/depthwise", x, 3, stride, PadSame, ActRelu6)
	residual := stride == 1 && in.Shape[3] == outC
	gain := n.gain
	if residual {
		n.gain = residualGain
	}
	x = n.conv(name+"/project", x, outC, 1, 1, PadSame, ActNone)
	n.gain = gain
	if residual {
		x = n.add(name+"/add", in, x, ActNone)
	}
	return x
}
