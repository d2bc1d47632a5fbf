package modelgen

import (
	"errors"
	"fmt"
	"math"
)

// ErrEval is wrapped by errors in the inputs given to Eval or met while
// evaluating (an index out of range).
var ErrEval = errors.New("modelgen: eval")

// Eval runs the plain-Go reference implementation of the graph. inputs are
// []float32, []int8, []int32, []uint8 or (gather indices) []int64 slices, one per graph input in
// order, matching its type and element count. The outputs come back the same
// way, one per graph output.
//
// Float ops compute in float32. Int8 CONV_2D, DEPTHWISE_CONV_2D,
// FULLY_CONNECTED and ADD use TFLite's fixed-point requantization and match
// its built-in kernels exactly; MEAN, QUANTIZE and DEQUANTIZE follow its
// float-based paths; int8 L2_NORMALIZATION is computed in float and rounded
// (TFLite uses an approximate fixed-point inverse square root), so it may
// differ by one step. A hybrid FULLY_CONNECTED computes in float32 with the
// dequantized weights: the runtime also quantizes the input to int8 on each
// invoke, so its results agree to within that rounding only.
func (g *Graph) Eval(inputs ...any) ([]any, error) {
	vals, err := g.evalAll(inputs)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(g.outputs))
	for i, t := range g.outputs {
		out[i] = vals[t]
	}
	return out, nil
}

// evalAll returns the value of every tensor.
func (g *Graph) evalAll(inputs []any) (map[*Tensor]any, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	if len(inputs) != len(g.inputs) {
		return nil, fmt.Errorf("%w: got %d inputs, the graph has %d", ErrEval, len(inputs), len(g.inputs))
	}
	vals := make(map[*Tensor]any, len(g.tensors))
	for i, t := range g.inputs {
		if dataType(inputs[i]) != t.Type || dataLen(inputs[i]) != t.Len() {
			return nil, fmt.Errorf("%w: input %d %v: got %T with %d elements", ErrEval, i, t, inputs[i], dataLen(inputs[i]))
		}
		vals[t] = inputs[i]
	}
	for _, t := range g.tensors {
		if t.IsConst() {
			vals[t] = t.Data
		}
	}
	for i, op := range g.ops {
		ins := make([]any, len(op.Inputs))
		for j, t := range op.Inputs {
			ins[j] = vals[t]
		}
		out, err := evalOp(op, ins)
		if err != nil {
			return nil, fmt.Errorf("%w: op %d (%v): %w", ErrEval, i, op.Kind, err)
		}
		vals[op.Outputs[0]] = out
	}
	return vals, nil
}

func evalOp(op *Op, ins []any) (any, error) {
	in, out := op.Inputs[0], op.Outputs[0]
	switch op.Kind {
	case OpFullyConnected, OpConv2D, OpDepthwiseConv2D:
		g := newGeom(op)
		if hybrid(op) {
			w := dequantizeWeights(ins[1].([]int8), op.Inputs[1])
			return g.runFloat(ins[0].([]float32), w, ins[2].([]float32), op.Act), nil
		}
		if in.Type == Float32 {
			return g.runFloat(ins[0].([]float32), ins[1].([]float32), ins[2].([]float32), op.Act), nil
		}
		return g.runInt8(op, ins[0].([]int8), ins[1].([]int8), ins[2].([]int32)), nil
	case OpAdd:
		if in.Type == Float32 {
			return addFloat(ins[0].([]float32), ins[1].([]float32), op.Act), nil
		}
		return addInt8(op, ins[0].([]int8), ins[1].([]int8)), nil
	case OpMean:
		return mean(op, ins[0]), nil
	case OpReshape:
		return cloneData(ins[0]), nil
	case OpGather:
		idx, ok := ins[1].([]int32)
		if wide, is64 := ins[1].([]int64); is64 {
			idx, ok = make([]int32, len(wide)), true
			for i, v := range wide {
				idx[i] = int32(max(min(v, math.MaxInt32), math.MinInt32)) // out of range either way
			}
		}
		if !ok {
			return nil, fmt.Errorf("gather indices of type %T", ins[1])
		}
		return gather(in, ins[0], idx)
	case OpL2Normalization:
		if in.Type == Float32 {
			return l2NormFloat(ins[0].([]float32), in.Shape[len(in.Shape)-1]), nil
		}
		return l2NormInt8(ins[0].([]int8), in.Shape[len(in.Shape)-1], in.Quant.zp0()), nil
	case OpQuantize:
		return quantize(ins[0].([]float32), out), nil
	case OpDequantize:
		return dequantize(ins[0], in.Quant), nil
	}
	return nil, fmt.Errorf("no reference kernel for %v", op.Kind)
}

func cloneData(v any) any {
	switch d := v.(type) {
	case []float32:
		return append([]float32(nil), d...)
	case []int8:
		return append([]int8(nil), d...)
	case []int32:
		return append([]int32(nil), d...)
	case []uint8:
		return append([]uint8(nil), d...)
	case []int64:
		return append([]int64(nil), d...)
	}
	panic(fmt.Sprintf("modelgen: data of type %T", v))
}

func gather(params *Tensor, data any, idx []int32) (any, error) {
	rows, row := params.Shape[0], params.Len()/params.Shape[0]
	for _, i := range idx {
		if i < 0 || int(i) >= rows {
			return nil, fmt.Errorf("index %d out of range [0, %d)", i, rows)
		}
	}
	switch d := data.(type) {
	case []float32:
		return gatherRows(d, idx, row), nil
	case []int8:
		return gatherRows(d, idx, row), nil
	case []int32:
		return gatherRows(d, idx, row), nil
	case []uint8:
		return gatherRows(d, idx, row), nil
	}
	return nil, fmt.Errorf("params of type %T", data)
}

func gatherRows[T any](d []T, idx []int32, row int) []T {
	out := make([]T, 0, len(idx)*row)
	for _, i := range idx {
		out = append(out, d[int(i)*row:(int(i)+1)*row]...)
	}
	return out
}

func quantize(x []float32, out *Tensor) any {
	scale, zp := out.Quant.scale0(), out.Quant.zp0()
	lo, hi := qrange(out.Type)
	q := make([]int32, len(x))
	for i, v := range x {
		q[i] = clamp32(quantizeValue(v, scale, zp), lo, hi)
	}
	if out.Type == UInt8 {
		return convertInts[uint8](q)
	}
	return convertInts[int8](q)
}

func dequantize(v any, q *Quant) []float32 {
	scale, zp := float64(q.scale0()), q.zp0()
	var x []int32
	switch d := v.(type) {
	case []int8:
		x = convertInts[int32](d)
	case []uint8:
		x = convertInts[int32](d)
	}
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(scale * float64(v-zp))
	}
	return out
}

// dequantizeWeights is scale[c] * q for symmetric weights quantized per
// tensor or per channel along w.Quant.Dim.
func dequantizeWeights(q []int8, w *Tensor) []float32 {
	inner := 1 // elements between consecutive channels along Dim
	for _, d := range w.Shape[w.Quant.Dim+1:] {
		inner *= d
	}
	scales := w.Quant.Scale
	out := make([]float32, len(q))
	for i, v := range q {
		out[i] = scales[i/inner%len(scales)] * float32(v)
	}
	return out
}

func convertInts[D, S int8 | uint8 | int32](s []S) []D {
	d := make([]D, len(s))
	for i, v := range s {
		d[i] = D(v)
	}
	return d
}

func actFloat(x float32, act Activation) float32 {
	switch act {
	case ActRelu:
		return max(x, 0)
	case ActRelu6:
		return min(max(x, 0), 6)
	}
	return x
}
