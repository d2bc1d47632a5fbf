package modelgen

import (
	"fmt"
	"math"
	"slices"
)

// Validate checks the graph: every tensor well formed and owned by g, every
// operator input produced earlier (or a graph input or a constant), the
// types, shapes and quantization each operator needs in TFLite. Errors wrap
// ErrInvalidGraph.
func (g *Graph) Validate() error {
	if len(g.inputs) == 0 || len(g.outputs) == 0 {
		return fmt.Errorf("%w: the graph needs at least one input and one output (SetInputs, SetOutputs)", ErrInvalidGraph)
	}
	for _, t := range g.tensors {
		if err := checkTensor(t); err != nil {
			return err
		}
	}
	// ready holds tensors whose values exist at this point of execution.
	ready := map[*Tensor]bool{}
	used := map[*Tensor]bool{}
	for i, t := range g.inputs {
		if err := g.owns(t, fmt.Sprintf("input %d", i)); err != nil {
			return err
		}
		if t.IsConst() {
			return fmt.Errorf("%w: input %d %v is a constant", ErrInvalidGraph, i, t)
		}
		if ready[t] {
			return fmt.Errorf("%w: tensor %v is listed twice as an input", ErrInvalidGraph, t)
		}
		ready[t], used[t] = true, true
	}
	for i, op := range g.ops {
		for j, t := range op.Inputs {
			if err := g.owns(t, fmt.Sprintf("op %d (%v) input %d", i, op.Kind, j)); err != nil {
				return err
			}
			if !ready[t] && !t.IsConst() {
				return fmt.Errorf("%w: op %d (%v) reads dangling tensor %v: no earlier op produces it and it is neither a graph input nor a constant",
					ErrInvalidGraph, i, op.Kind, t)
			}
			used[t] = true
		}
		for j, t := range op.Outputs {
			if err := g.owns(t, fmt.Sprintf("op %d (%v) output %d", i, op.Kind, j)); err != nil {
				return err
			}
			if t.IsConst() || ready[t] {
				return fmt.Errorf("%w: op %d (%v) writes tensor %v, which is a constant, a graph input or another op's output",
					ErrInvalidGraph, i, op.Kind, t)
			}
			ready[t], used[t] = true, true
		}
		if err := checkOp(op); err != nil {
			return fmt.Errorf("%w: op %d (%v): %w", ErrInvalidGraph, i, op.Kind, err)
		}
	}
	for i, t := range g.outputs {
		if err := g.owns(t, fmt.Sprintf("output %d", i)); err != nil {
			return err
		}
		if !ready[t] {
			return fmt.Errorf("%w: output %d %v is not produced by any op", ErrInvalidGraph, i, t)
		}
	}
	for _, t := range g.tensors {
		if !used[t] {
			return fmt.Errorf("%w: dangling tensor %v is not used by any op, input or output", ErrInvalidGraph, t)
		}
	}
	return nil
}

func (g *Graph) owns(t *Tensor, where string) error {
	if t == nil {
		return fmt.Errorf("%w: %s is nil", ErrInvalidGraph, where)
	}
	if t.g != g {
		return fmt.Errorf("%w: %s: tensor %v does not belong to this graph (create it with this graph's NewTensor or NewConst)",
			ErrInvalidGraph, where, t)
	}
	return nil
}

func checkTensor(t *Tensor) error {
	if t.Type.size() == 0 {
		return fmt.Errorf("%w: tensor %q has invalid type %v", ErrInvalidGraph, t.Name, t.Type)
	}
	for _, d := range t.Shape {
		if d <= 0 {
			return fmt.Errorf("%w: tensor %v has a non-positive dimension", ErrInvalidGraph, t)
		}
	}
	if t.Data != nil {
		if dt := dataType(t.Data); dt != t.Type {
			return fmt.Errorf("%w: constant %v holds %T", ErrInvalidGraph, t, t.Data)
		}
		if n := dataLen(t.Data); n != t.Len() {
			return fmt.Errorf("%w: constant %v holds %d elements, its shape needs %d", ErrInvalidGraph, t, n, t.Len())
		}
	}
	if t.Type.quantized() && t.Quant == nil {
		return fmt.Errorf("%w: tensor %v has no quantization parameters (%v tensors need a scale and zero point)", ErrInvalidGraph, t, t.Type)
	}
	if t.Quant == nil {
		return nil
	}
	q := t.Quant
	if len(q.Scale) == 0 || len(q.Scale) != len(q.ZeroPoint) {
		return fmt.Errorf("%w: tensor %v has %d scales and %d zero points", ErrInvalidGraph, t, len(q.Scale), len(q.ZeroPoint))
	}
	for _, s := range q.Scale {
		if !(s > 0) || math.IsInf(float64(s), 0) {
			return fmt.Errorf("%w: tensor %v has scale %g; scales must be positive and finite", ErrInvalidGraph, t, s)
		}
	}
	lo, hi := qrange(t.Type)
	for _, z := range q.ZeroPoint {
		if t.Type.quantized() && (z < int64(lo) || z > int64(hi)) {
			return fmt.Errorf("%w: tensor %v has zero point %d outside [%d, %d]", ErrInvalidGraph, t, z, lo, hi)
		}
	}
	if len(q.Scale) > 1 && (q.Dim < 0 || q.Dim >= len(t.Shape) || t.Shape[q.Dim] != len(q.Scale)) {
		return fmt.Errorf("%w: tensor %v has %d per-channel scales along dimension %d", ErrInvalidGraph, t, len(q.Scale), q.Dim)
	}
	return nil
}

// qrange is the value range of a quantized type.
func qrange(d DType) (lo, hi int32) {
	switch d {
	case Int8:
		return math.MinInt8, math.MaxInt8
	case UInt8:
		return 0, math.MaxUint8
	}
	return math.MinInt32, math.MaxInt32
}

var floatOrInt8 = []DType{Float32, Int8}

func checkOp(op *Op) error {
	want := map[OpKind][2]int{
		OpFullyConnected: {3, 1}, OpConv2D: {3, 1}, OpDepthwiseConv2D: {3, 1}, OpAdd: {2, 1},
		OpMean: {2, 1}, OpReshape: {2, 1}, OpGather: {2, 1}, OpL2Normalization: {1, 1},
		OpQuantize: {1, 1}, OpDequantize: {1, 1},
	}[op.Kind]
	if want[0] == 0 {
		return fmt.Errorf("unknown operator kind %d", int(op.Kind))
	}
	if len(op.Inputs) != want[0] || len(op.Outputs) != want[1] {
		return fmt.Errorf("has %d inputs and %d outputs, want %d and %d", len(op.Inputs), len(op.Outputs), want[0], want[1])
	}
	switch op.Kind {
	case OpFullyConnected, OpConv2D, OpDepthwiseConv2D, OpAdd:
		if op.Act != ActNone && op.Act != ActRelu && op.Act != ActRelu6 {
			return fmt.Errorf("unsupported fused activation %v", op.Act)
		}
	default:
		if op.Act != ActNone {
			return fmt.Errorf("takes no fused activation, got %v", op.Act)
		}
	}
	if op.AsymmetricQuantizeInputs && !hybrid(op) {
		return fmt.Errorf("asymmetric_quantize_inputs is only for a hybrid FULLY_CONNECTED (float32 input and output, int8 weights)")
	}
	in, out := op.Inputs[0], op.Outputs[0]
	switch op.Kind {
	case OpFullyConnected, OpConv2D, OpDepthwiseConv2D:
		return checkWeighted(op)
	case OpAdd:
		b := op.Inputs[1]
		if err := sameType(floatOrInt8, in, b, out); err != nil {
			return err
		}
		if !slices.Equal(in.Shape, b.Shape) || !slices.Equal(in.Shape, out.Shape) {
			return fmt.Errorf("inputs %v and %v and output %v must have one shape (no broadcasting)", in, b, out)
		}
		return perTensor(in, b, out)
	case OpMean:
		return checkMean(op)
	case OpReshape:
		shape := op.Inputs[1]
		if err := intVector(shape, "shape"); err != nil {
			return err
		}
		if got := toInts(shape.Data.([]int32)); !slices.Equal(got, out.Shape) {
			return fmt.Errorf("shape constant %v does not match output %v", got, out)
		}
		if in.Len() != out.Len() {
			return fmt.Errorf("cannot reshape %v (%d elements) to %v (%d)", in, in.Len(), out, out.Len())
		}
		return sameQuant(in, out)
	case OpGather:
		idx := op.Inputs[1]
		if idx.Type != Int32 && idx.Type != Int64 {
			return fmt.Errorf("indices %v must be int32 or int64", idx)
		}
		if len(in.Shape) == 0 {
			return fmt.Errorf("params %v must have at least one dimension", in)
		}
		if want := slices.Concat(idx.Shape, in.Shape[1:]); !slices.Equal(out.Shape, want) {
			return fmt.Errorf("output %v, want shape %v (indices shape + params shape[1:])", out, want)
		}
		if idx.IsConst() {
			for _, v := range idx.Data.([]int32) {
				if v < 0 || int(v) >= in.Shape[0] {
					return fmt.Errorf("constant index %d out of range [0, %d)", v, in.Shape[0])
				}
			}
		}
		return sameQuant(in, out)
	case OpL2Normalization:
		if err := sameType(floatOrInt8, in, out); err != nil {
			return err
		}
		if !slices.Equal(in.Shape, out.Shape) || len(in.Shape) == 0 || len(in.Shape) > 4 {
			return fmt.Errorf("input %v and output %v must have one shape of rank 1 to 4", in, out)
		}
		if out.Type == Int8 {
			if err := perTensor(in, out); err != nil {
				return err
			}
			// TFLite's int8 kernel writes values in units of 1/128.
			if out.Quant.scale0() != 1.0/128 || out.Quant.zp0() != 0 {
				return fmt.Errorf("int8 output %v has %v; TFLite requires scale 1/128 and zero point 0", out, out.Quant)
			}
		}
		return nil
	case OpQuantize, OpDequantize:
		f, q := in, out
		if op.Kind == OpDequantize {
			f, q = out, in
		}
		if f.Type != Float32 || (q.Type != Int8 && q.Type != UInt8) {
			return fmt.Errorf("converts %v and %v; want float32 and int8 or uint8", in, out)
		}
		if !slices.Equal(in.Shape, out.Shape) {
			return fmt.Errorf("input %v and output %v must have one shape", in, out)
		}
		return perTensor(q)
	}
	return nil
}

// hybrid reports whether op is a hybrid (dynamic-range) FULLY_CONNECTED:
// float32 input and output around int8 weights.
func hybrid(op *Op) bool {
	return op.Kind == OpFullyConnected && len(op.Inputs) == 3 && len(op.Outputs) == 1 &&
		op.Inputs[0].Type == Float32 && op.Inputs[1].Type == Int8 && op.Outputs[0].Type == Float32
}

// checkWeighted validates FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D.
func checkWeighted(op *Op) error {
	in, w, b, out := op.Inputs[0], op.Inputs[1], op.Inputs[2], op.Outputs[0]
	if !w.IsConst() || !b.IsConst() {
		return fmt.Errorf("weights %v and bias %v must be constants", w, b)
	}
	quantized := in.Type == Int8
	switch {
	case in.Type == Float32 && w.Type == Float32 && b.Type == Float32 && out.Type == Float32:
	case quantized && w.Type == Int8 && b.Type == Int32 && out.Type == Int8:
	case hybrid(op) && b.Type == Float32:
	default:
		return fmt.Errorf("types input %v, weights %v, bias %v, output %v; want all float32, int8 with int8 weights and int32 bias, "+
			"or (FULLY_CONNECTED only) float32 with int8 weights",
			in.Type, w.Type, b.Type, out.Type)
	}
	var channels, chanDim int
	switch op.Kind {
	case OpFullyConnected:
		if len(in.Shape) != 2 || len(w.Shape) != 2 || w.Shape[1] != in.Shape[1] {
			return fmt.Errorf("weights %v do not fit input %v: want input [N K] and weights [O K]", w, in)
		}
		channels = w.Shape[0]
		if want := []int{in.Shape[0], channels}; !slices.Equal(out.Shape, want) {
			return fmt.Errorf("output %v, want shape %v", out, want)
		}
	case OpConv2D, OpDepthwiseConv2D:
		if len(in.Shape) != 4 {
			return fmt.Errorf("input %v must be [N H W C]", in)
		}
		c := in.Shape[3]
		if op.Kind == OpConv2D {
			if len(w.Shape) != 4 || w.Shape[3] != c {
				return fmt.Errorf("filter %v does not fit input %v: want [O KH KW %d]", w, in, c)
			}
			channels = w.Shape[0]
		} else {
			if len(w.Shape) != 4 || w.Shape[0] != 1 || w.Shape[3] != c {
				return fmt.Errorf("filter %v does not fit input %v: want [1 KH KW %d] (depth multiplier 1)", w, in, c)
			}
			channels, chanDim = c, 3
		}
		if op.StrideH < 1 || op.StrideW < 1 || (op.Padding != PadSame && op.Padding != PadValid) {
			return fmt.Errorf("strides %d,%d and padding %v are invalid", op.StrideH, op.StrideW, op.Padding)
		}
		oh := convOutSize(in.Shape[1], w.Shape[1], op.StrideH, op.Padding)
		ow := convOutSize(in.Shape[2], w.Shape[2], op.StrideW, op.Padding)
		if want := []int{in.Shape[0], oh, ow, channels}; oh < 1 || ow < 1 || !slices.Equal(out.Shape, want) {
			return fmt.Errorf("output %v, want shape %v", out, want)
		}
	}
	if !slices.Equal(b.Shape, []int{channels}) {
		return fmt.Errorf("bias %v, want shape [%d]", b, channels)
	}
	if !quantized && !hybrid(op) {
		return nil
	}
	// Per-channel FULLY_CONNECTED weights are valid TFLite, and LiteRT runs
	// them right. TensorFlow Lite 2.9's int8 kernel reads only the
	// tensor-wide scale, which that runtime leaves 0 for per-channel
	// tensors: it loads such a model and writes wrong outputs, without an
	// error. Quantize gives FULLY_CONNECTED one scale unless asked.
	wq := w.Quant
	if !wq.perTensor() && (len(wq.Scale) != channels || wq.Dim != chanDim) {
		return fmt.Errorf("weights %v have %v; want one scale or %d along dimension %d", w, wq, channels, chanDim)
	}
	for _, z := range wq.ZeroPoint {
		if z != 0 {
			return fmt.Errorf("weights %v have zero point %d; int8 weights must be symmetric (zero point 0)", w, z)
		}
	}
	if !quantized { // hybrid: a float bias, no activation parameters
		if b.Quant != nil {
			return fmt.Errorf("float bias %v of a hybrid layer has quantization parameters", b)
		}
		return nil
	}
	if err := perTensor(in, out); err != nil {
		return err
	}
	bq := b.Quant
	if bq == nil || len(bq.Scale) != len(wq.Scale) {
		return fmt.Errorf("int32 bias %v needs one scale per weight scale (%d), has %v", b, len(wq.Scale), bq)
	}
	for c, s := range bq.Scale {
		want := float64(in.Quant.scale0()) * float64(wq.Scale[c])
		if bq.ZeroPoint[c] != 0 || math.Abs(float64(s)-want) > 1e-5*want {
			return fmt.Errorf("bias %v channel %d has scale %g zero point %d; want input scale * weight scale = %g and 0",
				b, c, s, bq.ZeroPoint[c], float32(want))
		}
	}
	return nil
}

func checkMean(op *Op) error {
	in, axes, out := op.Inputs[0], op.Inputs[1], op.Outputs[0]
	if err := sameType(floatOrInt8, in, out); err != nil {
		return err
	}
	if err := intVector(axes, "axes"); err != nil {
		return err
	}
	reduce := make([]bool, len(in.Shape))
	for _, a := range axes.Data.([]int32) {
		if a < 0 || int(a) >= len(in.Shape) || reduce[a] {
			return fmt.Errorf("axes %v invalid for input %v", axes.Data, in)
		}
		reduce[a] = true
	}
	var want []int
	for d, n := range in.Shape {
		if !reduce[d] {
			want = append(want, n)
		}
	}
	if !slices.Equal(out.Shape, want) {
		return fmt.Errorf("output %v, want shape %v (keep_dims false)", out, want)
	}
	return perTensor(in, out)
}

// sameType checks that the tensors share one type from allowed.
func sameType(allowed []DType, ts ...*Tensor) error {
	if !slices.Contains(allowed, ts[0].Type) {
		return fmt.Errorf("tensor %v: type must be one of %v", ts[0], allowed)
	}
	for _, t := range ts[1:] {
		if t.Type != ts[0].Type {
			return fmt.Errorf("tensors %v and %v must have one type", ts[0], t)
		}
	}
	return nil
}

// perTensor checks that quantized tensors have per-tensor parameters.
func perTensor(ts ...*Tensor) error {
	for _, t := range ts {
		if t.Type.quantized() && !t.Quant.perTensor() {
			return fmt.Errorf("tensor %v needs per-tensor quantization, has %v", t, t.Quant)
		}
	}
	return nil
}

// sameQuant checks that a data-moving op keeps type and quantization.
func sameQuant(in, out *Tensor) error {
	if in.Type != out.Type {
		return fmt.Errorf("input %v and output %v must have one type", in, out)
	}
	if in.Type.quantized() && !in.Quant.equal(out.Quant) {
		return fmt.Errorf("output %v has %v; it must keep the input's %v", out, out.Quant, in.Quant)
	}
	return nil
}

func intVector(t *Tensor, what string) error {
	if t.Type != Int32 || !t.IsConst() || len(t.Shape) != 1 {
		return fmt.Errorf("%s %v must be a constant 1-D int32 tensor", what, t)
	}
	return nil
}

func toInts(v []int32) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}
