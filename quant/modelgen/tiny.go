package modelgen

import "fmt"

// TinyModel is a small single-operator model for end-to-end checks of one
// operator against the runtime. Graph builds it deterministically from a
// seed in any Precision; the int8 forms are calibrated on RandomInputs of the
// float form with the same seed.
type TinyModel struct {
	Name string
	Op   OpKind // the operator under test

	build func(n *net)
}

// tinyGain makes pre-activations large enough (a standard deviation of about
// 4 for inputs uniform in [-1, 1)) that RELU and RELU6 both clip.
const tinyGain = 7

// TinyModels lists the single-operator models: every supported operator,
// every fused activation and both paddings at least once. QUANTIZE and
// DEQUANTIZE appear in the Int8FloatIO form of each.
func TinyModels() []TinyModel {
	return []TinyModel{
		{"fully_connected", OpFullyConnected, func(n *net) {
			n.g.SetOutputs(n.fc("fc", n.input("x", Float32, 3, 24), 10, ActNone))
		}},
		{"fully_connected_relu", OpFullyConnected, func(n *net) {
			n.g.SetOutputs(n.fc("fc", n.input("x", Float32, 2, 40), 16, ActRelu))
		}},
		{"fully_connected_relu6", OpFullyConnected, func(n *net) {
			n.g.SetOutputs(n.fc("fc", n.input("x", Float32, 1, 64), 32, ActRelu6))
		}},
		{"conv_same_stride2_relu6", OpConv2D, func(n *net) {
			// 8x8 with stride 2 pads one pixel after only: the odd case.
			n.g.SetOutputs(n.conv("conv", n.input("x", Float32, 1, 8, 8, 4), 6, 3, 2, PadSame, ActRelu6))
		}},
		{"conv_valid_none", OpConv2D, func(n *net) {
			n.g.SetOutputs(n.conv("conv", n.input("x", Float32, 2, 7, 8, 3), 5, 3, 1, PadValid, ActNone))
		}},
		{"conv_1x1_relu", OpConv2D, func(n *net) {
			n.g.SetOutputs(n.conv("conv", n.input("x", Float32, 1, 6, 6, 16), 24, 1, 1, PadSame, ActRelu))
		}},
		{"depthwise_same_relu6", OpDepthwiseConv2D, func(n *net) {
			n.g.SetOutputs(n.depthwise("dw", n.input("x", Float32, 1, 8, 8, 12), 3, 1, PadSame, ActRelu6))
		}},
		{"depthwise_same_stride2_none", OpDepthwiseConv2D, func(n *net) {
			n.g.SetOutputs(n.depthwise("dw", n.input("x", Float32, 1, 10, 9, 8), 3, 2, PadSame, ActNone))
		}},
		{"depthwise_valid_relu", OpDepthwiseConv2D, func(n *net) {
			n.g.SetOutputs(n.depthwise("dw", n.input("x", Float32, 1, 7, 7, 5), 3, 2, PadValid, ActRelu))
		}},
		{"add", OpAdd, func(n *net) {
			a, b := n.input("a", Float32, 1, 4, 4, 8), n.input("b", Float32, 1, 4, 4, 8)
			n.g.SetOutputs(n.add("add", a, b, ActNone))
		}},
		{"add_relu", OpAdd, func(n *net) {
			a, b := n.input("a", Float32, 2, 20), n.input("b", Float32, 2, 20)
			n.g.SetOutputs(n.add("add", a, b, ActRelu))
		}},
		{"mean", OpMean, func(n *net) {
			n.g.SetOutputs(n.spatialMean("mean", n.input("x", Float32, 1, 5, 6, 8)))
		}},
		{"reshape", OpReshape, func(n *net) {
			n.g.SetOutputs(n.reshape("reshape", n.input("x", Float32, 1, 4, 4, 6), 2, 48))
		}},
		{"gather", OpGather, func(n *net) {
			n.g.SetOutputs(n.embedding("embed", n.input("ids", Int32, 1, 7), 50, 12))
		}},
		{"l2_normalization", OpL2Normalization, func(n *net) {
			n.g.SetOutputs(n.l2norm("l2", n.input("x", Float32, 3, 16)))
		}},
	}
}

// Graph builds the model in precision p from seed.
func (m TinyModel) Graph(p Precision, seed uint64) (*Graph, error) {
	n := newNet("sightd modelgen tiny "+m.Name, seed, tinyGain)
	m.build(n)
	g, err := finish(n.g, p, RandomInputs(n.g, seed))
	if err != nil {
		return nil, fmt.Errorf("modelgen: tiny model %s (%v): %w", m.Name, p, err)
	}
	return g, nil
}
