package modelgen

import (
	"math"
	"math/rand/v2"
)

// net builds float32 graphs layer by layer, inferring shapes and drawing
// seeded random weights; the factories quantize its graphs afterwards.
type net struct {
	g   *Graph
	rng *rand.Rand
	// gain multiplies the weights' standard deviation (He initialisation
	// is gain sqrt(2)).
	gain float64
}

func newNet(description string, seed uint64, gain float64) *net {
	return &net{g: NewGraph(description), rng: rand.New(rand.NewPCG(seed, 0x5eed)), gain: gain}
}

func (n *net) input(name string, typ DType, shape ...int) *Tensor {
	t := n.g.NewTensor(name, typ, shape, nil)
	n.g.inputs = append(n.g.inputs, t)
	return t
}

// normal returns count samples of N(0, std²).
func (n *net) normal(count int, std float64) []float32 {
	out := make([]float32, count)
	for i := range out {
		out[i] = float32(n.rng.NormFloat64() * std)
	}
	return out
}

func (n *net) param(name string, shape []int, std float64) *Tensor {
	return n.g.NewConst(name, shape, n.normal(numElements(shape), std), nil)
}

// weightStd scales by fan-in so that activations keep their magnitude.
func (n *net) weightStd(fanIn int) float64 { return n.gain / math.Sqrt(float64(fanIn)) }

func (n *net) bias(name string, size int) *Tensor { return n.param(name+"/bias", []int{size}, 0.05) }

func (n *net) conv(name string, x *Tensor, outC, k, stride int, pad Padding, act Activation) *Tensor {
	c := x.Shape[3]
	w := n.param(name+"/weights", []int{outC, k, k, c}, n.weightStd(k*k*c))
	b := n.bias(name, outC)
	oh, ow := convOutSize(x.Shape[1], k, stride, pad), convOutSize(x.Shape[2], k, stride, pad)
	out := n.g.NewTensor(name, Float32, []int{x.Shape[0], oh, ow, outC}, nil)
	n.g.Conv2D(x, w, b, out, Conv{StrideH: stride, StrideW: stride, Padding: pad, Act: act})
	return out
}

func (n *net) depthwise(name string, x *Tensor, k, stride int, pad Padding, act Activation) *Tensor {
	c := x.Shape[3]
	w := n.param(name+"/weights", []int{1, k, k, c}, n.weightStd(k*k))
	b := n.bias(name, c)
	oh, ow := convOutSize(x.Shape[1], k, stride, pad), convOutSize(x.Shape[2], k, stride, pad)
	out := n.g.NewTensor(name, Float32, []int{x.Shape[0], oh, ow, c}, nil)
	n.g.DepthwiseConv2D(x, w, b, out, Conv{StrideH: stride, StrideW: stride, Padding: pad, Act: act})
	return out
}

func (n *net) fc(name string, x *Tensor, outC int, act Activation) *Tensor {
	k := x.Shape[1]
	w := n.param(name+"/weights", []int{outC, k}, n.weightStd(k))
	b := n.bias(name, outC)
	out := n.g.NewTensor(name, Float32, []int{x.Shape[0], outC}, nil)
	n.g.FullyConnected(x, w, b, out, act)
	return out
}

func (n *net) add(name string, a, b *Tensor, act Activation) *Tensor {
	out := n.g.NewTensor(name, Float32, a.Shape, nil)
	n.g.Add(a, b, out, act)
	return out
}

// spatialMean averages an NHWC tensor over H and W into [N, C].
func (n *net) spatialMean(name string, x *Tensor) *Tensor {
	axes := n.g.NewConst(name+"/axes", []int{2}, []int32{1, 2}, nil)
	out := n.g.NewTensor(name, Float32, []int{x.Shape[0], x.Shape[3]}, nil)
	n.g.Mean(x, axes, out)
	return out
}

func (n *net) reshape(name string, x *Tensor, shape ...int) *Tensor {
	s := n.g.NewConst(name+"/shape", []int{len(shape)}, toInt32s(shape), nil)
	out := n.g.NewTensor(name, x.Type, shape, nil)
	n.g.Reshape(x, s, out)
	return out
}

// embedding looks token ids up in a random table of vocab x dim.
func (n *net) embedding(name string, ids *Tensor, vocab, dim int) *Tensor {
	table := n.param(name+"/table", []int{vocab, dim}, 1)
	out := n.g.NewTensor(name, Float32, append(append([]int(nil), ids.Shape...), dim), nil)
	n.g.Gather(table, ids, out)
	return out
}

func (n *net) l2norm(name string, x *Tensor) *Tensor {
	out := n.g.NewTensor(name, Float32, x.Shape, nil)
	n.g.L2Normalize(x, out)
	return out
}
