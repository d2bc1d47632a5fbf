package modelgen

import "fmt"

// OpKind is a TFLite builtin operator that modelgen can write and evaluate.
type OpKind int

// Supported operators.
const (
	OpFullyConnected OpKind = iota + 1
	OpConv2D
	OpDepthwiseConv2D
	OpAdd
	OpMean
	OpReshape
	OpGather
	OpL2Normalization
	OpQuantize
	OpDequantize
)

func (k OpKind) String() string {
	switch k {
	case OpFullyConnected:
		return "FULLY_CONNECTED"
	case OpConv2D:
		return "CONV_2D"
	case OpDepthwiseConv2D:
		return "DEPTHWISE_CONV_2D"
	case OpAdd:
		return "ADD"
	case OpMean:
		return "MEAN"
	case OpReshape:
		return "RESHAPE"
	case OpGather:
		return "GATHER"
	case OpL2Normalization:
		return "L2_NORMALIZATION"
	case OpQuantize:
		return "QUANTIZE"
	case OpDequantize:
		return "DEQUANTIZE"
	}
	return fmt.Sprintf("OpKind(%d)", int(k))
}

// Activation is a fused activation function.
type Activation int

// Fused activations; the values are TFLite's ActivationFunctionType.
const (
	ActNone  Activation = 0
	ActRelu  Activation = 1
	ActRelu6 Activation = 3
)

func (a Activation) String() string {
	switch a {
	case ActNone:
		return "NONE"
	case ActRelu:
		return "RELU"
	case ActRelu6:
		return "RELU6"
	}
	return fmt.Sprintf("Activation(%d)", int(a))
}

// Padding is a convolution's padding scheme.
type Padding int

// Paddings; the values are TFLite's Padding enum.
const (
	PadSame  Padding = 0
	PadValid Padding = 1
)

func (p Padding) String() string {
	switch p {
	case PadSame:
		return "SAME"
	case PadValid:
		return "VALID"
	}
	return fmt.Sprintf("Padding(%d)", int(p))
}

// Conv configures CONV_2D and DEPTHWISE_CONV_2D. Zero strides mean 1.
type Conv struct {
	StrideH, StrideW int
	Padding          Padding
	Act              Activation
}

// Op is an operator. Inputs and Outputs are in TFLite's order for the kind.
type Op struct {
	Kind    OpKind
	Inputs  []*Tensor
	Outputs []*Tensor
	Act     Activation // FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D, ADD
	Padding Padding    // convolutions
	StrideH int        // convolutions
	StrideW int        // convolutions
	// AsymmetricQuantizeInputs is FullyConnectedOptions'
	// asymmetric_quantize_inputs, only for a hybrid (dynamic-range)
	// FULLY_CONNECTED: float32 input and output, int8 weights. The runtime
	// then quantizes each input row to int8 with its own scale and zero point
	// on every invoke, as TFLite's converter asks for dynamic-range models.
	AsymmetricQuantizeInputs bool
}

func (op *Op) String() string { return op.Kind.String() }

func (g *Graph) addOp(kind OpKind, ins, outs []*Tensor) *Op {
	op := &Op{Kind: kind, Inputs: ins, Outputs: outs}
	g.ops = append(g.ops, op)
	return op
}

// FullyConnected adds out = act(in · weightsᵀ + bias): in [N, K], weights
// [O, K], bias [O], out [N, O]. Int8 weights under a float32 input and
// output make a hybrid (dynamic-range) layer; see Op.AsymmetricQuantizeInputs.
func (g *Graph) FullyConnected(in, weights, bias, out *Tensor, act Activation) *Op {
	op := g.addOp(OpFullyConnected, []*Tensor{in, weights, bias}, []*Tensor{out})
	op.Act = act
	return op
}

// Conv2D adds a 2-D convolution: in [N, H, W, C], filter [O, KH, KW, C],
// bias [O], out [N, OH, OW, O].
func (g *Graph) Conv2D(in, filter, bias, out *Tensor, c Conv) *Op {
	op := g.addOp(OpConv2D, []*Tensor{in, filter, bias}, []*Tensor{out})
	op.setConv(c)
	return op
}

// DepthwiseConv2D adds a depthwise convolution with depth multiplier 1:
// in [N, H, W, C], filter [1, KH, KW, C], bias [C], out [N, OH, OW, C].
func (g *Graph) DepthwiseConv2D(in, filter, bias, out *Tensor, c Conv) *Op {
	op := g.addOp(OpDepthwiseConv2D, []*Tensor{in, filter, bias}, []*Tensor{out})
	op.setConv(c)
	return op
}

func (op *Op) setConv(c Conv) {
	op.StrideH, op.StrideW = max(c.StrideH, 1), max(c.StrideW, 1)
	op.Padding, op.Act = c.Padding, c.Act
}

// Add adds out = act(a + b) for tensors of one shape.
func (g *Graph) Add(a, b, out *Tensor, act Activation) *Op {
	op := g.addOp(OpAdd, []*Tensor{a, b}, []*Tensor{out})
	op.Act = act
	return op
}

// Mean adds a mean over the axes listed in the constant int32 tensor axes,
// without keeping the reduced dimensions.
func (g *Graph) Mean(in, axes, out *Tensor) *Op {
	return g.addOp(OpMean, []*Tensor{in, axes}, []*Tensor{out})
}

// Reshape adds a reshape to the shape held by the constant int32 tensor
// shape (which must equal out's shape).
func (g *Graph) Reshape(in, shape, out *Tensor) *Op {
	return g.addOp(OpReshape, []*Tensor{in, shape}, []*Tensor{out})
}

// Gather adds a lookup of rows of params (axis 0) at the int32 indices:
// out has shape indices.Shape + params.Shape[1:]. This is an embedding
// lookup when params is a constant table.
func (g *Graph) Gather(params, indices, out *Tensor) *Op {
	return g.addOp(OpGather, []*Tensor{params, indices}, []*Tensor{out})
}

// L2Normalize adds an L2 normalisation along the last dimension.
func (g *Graph) L2Normalize(in, out *Tensor) *Op {
	return g.addOp(OpL2Normalization, []*Tensor{in}, []*Tensor{out})
}

// Quantize adds a float32 to int8 (or uint8) conversion with out's
// quantization parameters.
func (g *Graph) Quantize(in, out *Tensor) *Op {
	return g.addOp(OpQuantize, []*Tensor{in}, []*Tensor{out})
}

// Dequantize adds an int8 (or uint8) to float32 conversion.
func (g *Graph) Dequantize(in, out *Tensor) *Op {
	return g.addOp(OpDequantize, []*Tensor{in}, []*Tensor{out})
}

// convOutSize is TFLite's output size for one spatial dimension.
func convOutSize(in, k, stride int, p Padding) int {
	if p == PadSame {
		return (in + stride - 1) / stride
	}
	return (in - k + stride) / stride
}

// convPadBefore is the padding TFLite puts before the first row/column: half
// the total, rounded down (the extra one goes after).
func convPadBefore(in, k, stride, out int, p Padding) int {
	if p != PadSame {
		return 0
	}
	total := (out-1)*stride + k - in
	return max(total, 0) / 2
}
