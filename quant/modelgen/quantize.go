package modelgen

import (
	"fmt"
	"math"
)

// IO says how a quantized model presents its inputs and outputs.
type IO int

const (
	// Int8IO makes float inputs and outputs int8, with the calibrated
	// scale and zero point (int32 inputs such as token ids stay int32).
	Int8IO IO = iota
	// FloatIO keeps float32 inputs and outputs around the int8 body, with
	// QUANTIZE after each float input and DEQUANTIZE before each output.
	FloatIO
)

// QuantizeOptions configure QuantizeWith.
type QuantizeOptions struct {
	// IO is how the model presents its inputs and outputs.
	IO IO
	// PerChannelFullyConnected gives FULLY_CONNECTED weights one scale per
	// output channel, as today's converters (TFLite's, litert-torch's PT2E)
	// do; by default they get one scale for the tensor. The operator stays
	// version 4 (OpVersion). LiteRT runs such a layer right; TensorFlow Lite
	// 2.9 loads it and computes it wrong (see Validate).
	PerChannelFullyConnected bool
}

// Quantize turns a float32 graph into a full-integer int8 model, as TFLite's
// post-training quantization does. The float reference runs on each
// calibration input set (one []any per run, as for Eval), and every float
// activation gets asymmetric int8 parameters covering its observed range.
// Weights get symmetric per-channel scales (per-tensor for FULLY_CONNECTED,
// which TFLite 2.9 requires; see QuantizeWith); biases become int32 with scale input scale *
// weight scale. An embedding table for GATHER gets per-tensor parameters
// that its output keeps, as a RESHAPE output keeps its input's;
// L2_NORMALIZATION outputs use the fixed scale 1/128. Tensor names stay.
func Quantize(g *Graph, calibration [][]any, io IO) (*Graph, error) {
	return QuantizeWith(g, calibration, QuantizeOptions{IO: io})
}

// QuantizeWith is Quantize with options.
func QuantizeWith(g *Graph, calibration [][]any, o QuantizeOptions) (*Graph, error) {
	io := o.IO
	if len(calibration) == 0 {
		return nil, fmt.Errorf("modelgen: quantize: no calibration input")
	}
	for _, t := range g.tensors {
		if t.Type != Float32 && t.Type != Int32 {
			return nil, fmt.Errorf("%w: quantize: tensor %v is not float32 or int32; want a float graph", ErrInvalidGraph, t)
		}
	}
	lo, hi := map[*Tensor]float32{}, map[*Tensor]float32{}
	for i, in := range calibration {
		vals, err := g.evalAll(in)
		if err != nil {
			return nil, fmt.Errorf("modelgen: quantize: calibration input %d: %w", i, err)
		}
		for t, v := range vals {
			if f, ok := v.([]float32); ok && !t.IsConst() {
				l, h := minMax(f)
				if i == 0 || l < lo[t] {
					lo[t] = l
				}
				if i == 0 || h > hi[t] {
					hi[t] = h
				}
			}
		}
	}

	q := &quantizer{dst: NewGraph(g.Description), m: map[*Tensor]*Tensor{}, perChannelFC: o.PerChannelFullyConnected}
	act := func(t *Tensor) *Quant { return chooseQuant(lo[t], hi[t], Int8) }

	var inputs []*Tensor
	for _, t := range g.inputs {
		if t.Type != Float32 {
			q.m[t] = q.dst.NewTensor(t.Name, t.Type, t.Shape, nil)
			inputs = append(inputs, q.m[t])
			continue
		}
		if io == Int8IO {
			q.m[t] = q.dst.NewTensor(t.Name, Int8, t.Shape, act(t))
			inputs = append(inputs, q.m[t])
			continue
		}
		f := q.dst.NewTensor(t.Name, Float32, t.Shape, nil)
		q.m[t] = q.dst.NewTensor(t.Name+"/int8", Int8, t.Shape, act(t))
		q.dst.Quantize(f, q.m[t])
		inputs = append(inputs, f)
	}
	q.dst.SetInputs(inputs...)

	for i, op := range g.ops {
		if err := q.op(op, act); err != nil {
			return nil, fmt.Errorf("modelgen: quantize: op %d (%v): %w", i, op.Kind, err)
		}
	}

	var outputs []*Tensor
	for _, t := range g.outputs {
		qt := q.m[t]
		if io == FloatIO && t.Type == Float32 {
			qt.Name = t.Name + "/int8"
			f := q.dst.NewTensor(t.Name, Float32, t.Shape, nil)
			q.dst.Dequantize(qt, f)
			qt = f
		}
		outputs = append(outputs, qt)
	}
	q.dst.SetOutputs(outputs...)
	if err := q.dst.Validate(); err != nil {
		return nil, fmt.Errorf("modelgen: quantize: %w", err)
	}
	return q.dst, nil
}

type quantizer struct {
	dst          *Graph
	m            map[*Tensor]*Tensor // source tensor -> quantized tensor
	perChannelFC bool
}

// op adds the quantized counterpart of op; act gives an activation's
// calibrated parameters.
func (q *quantizer) op(op *Op, act func(*Tensor) *Quant) error {
	ins := make([]*Tensor, len(op.Inputs))
	for i, t := range op.Inputs {
		if qt, ok := q.m[t]; ok {
			ins[i] = qt
		} else if t.IsConst() && t.Type == Int32 {
			ins[i] = q.dst.NewConst(t.Name, t.Shape, cloneData(t.Data), nil)
			q.m[t] = ins[i]
		} else if !isParam(op, i) {
			return fmt.Errorf("input %v has no quantized counterpart", t)
		}
	}
	out := op.Outputs[0]
	newOut := func(qp *Quant) *Tensor {
		t := q.dst.NewTensor(out.Name, Int8, out.Shape, qp)
		q.m[out] = t
		return t
	}
	switch op.Kind {
	case OpFullyConnected, OpConv2D, OpDepthwiseConv2D:
		dim := 0 // output channels: [O, ...] filters
		if op.Kind == OpDepthwiseConv2D {
			dim = 3 // [1, KH, KW, C]
		}
		w, b := op.Inputs[1], op.Inputs[2]
		perChannel := op.Kind != OpFullyConnected || q.perChannelFC
		wq, wdata := quantizeWeights(w.Data.([]float32), w.Shape, dim, perChannel)
		qw := q.dst.NewConst(w.Name, w.Shape, wdata, wq)
		bq, bdata := quantizeBias(b.Data.([]float32), ins[0].Quant.scale0(), wq.Scale)
		qb := q.dst.NewConst(b.Name, b.Shape, bdata, bq)
		c := Conv{StrideH: op.StrideH, StrideW: op.StrideW, Padding: op.Padding, Act: op.Act}
		switch op.Kind {
		case OpFullyConnected:
			q.dst.FullyConnected(ins[0], qw, qb, newOut(act(out)), op.Act)
		case OpConv2D:
			q.dst.Conv2D(ins[0], qw, qb, newOut(act(out)), c)
		default:
			q.dst.DepthwiseConv2D(ins[0], qw, qb, newOut(act(out)), c)
		}
	case OpAdd:
		q.dst.Add(ins[0], ins[1], newOut(act(out)), op.Act)
	case OpMean:
		q.dst.Mean(ins[0], ins[1], newOut(act(out)))
	case OpReshape:
		q.dst.Reshape(ins[0], ins[1], newOut(ins[0].Quant))
	case OpGather:
		params := ins[0]
		if params == nil { // a float constant table
			p := op.Inputs[0]
			data := p.Data.([]float32)
			lo, hi := minMax(data)
			pq := chooseQuant(lo, hi, Int8)
			params = q.dst.NewConst(p.Name, p.Shape, quantizeAll(data, pq), pq)
		}
		q.dst.Gather(params, ins[1], newOut(params.Quant))
	case OpL2Normalization:
		q.dst.L2Normalize(ins[0], newOut(PerTensor(1.0/128, 0)))
	default:
		return fmt.Errorf("cannot quantize %v", op.Kind)
	}
	return nil
}

// QuantizeDynamicRange makes a dynamic-range (hybrid) model of a float32
// graph, as TFLite's converter does with Optimize.DEFAULT and no
// calibration data, for FULLY_CONNECTED: its weights become int8 with
// symmetric per-output-channel scales, and the layer gets
// asymmetric_quantize_inputs, so the runtime quantizes each input row to
// int8 on every invoke (the operator is version 12). Inputs, outputs,
// activations, biases and the other operators stay float32; tensor names
// stay. TensorFlow Lite 2.9 does not load such a model.
func QuantizeDynamicRange(g *Graph) (*Graph, error) {
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("modelgen: quantize dynamic range: %w", err)
	}
	dst := NewGraph(g.Description)
	m := map[*Tensor]*Tensor{}
	for _, t := range g.tensors {
		if t.Type != Float32 && t.Type != Int32 {
			return nil, fmt.Errorf("%w: quantize dynamic range: tensor %v is not float32 or int32; want a float graph", ErrInvalidGraph, t)
		}
	}
	weights := map[*Tensor]bool{}
	for _, op := range g.ops {
		if op.Kind == OpFullyConnected {
			weights[op.Inputs[1]] = true
		}
	}
	for _, t := range g.tensors {
		switch {
		case weights[t]:
			wq, data := quantizeWeights(t.Data.([]float32), t.Shape, 0, true)
			m[t] = dst.NewConst(t.Name, t.Shape, data, wq)
		case t.IsConst():
			m[t] = dst.NewConst(t.Name, t.Shape, cloneData(t.Data), t.Quant)
		default:
			m[t] = dst.NewTensor(t.Name, t.Type, t.Shape, t.Quant)
		}
	}
	mapAll := func(ts []*Tensor) []*Tensor {
		out := make([]*Tensor, len(ts))
		for i, t := range ts {
			out[i] = m[t]
		}
		return out
	}
	for _, op := range g.ops {
		c := *op
		c.Inputs, c.Outputs = mapAll(op.Inputs), mapAll(op.Outputs)
		c.AsymmetricQuantizeInputs = op.Kind == OpFullyConnected
		dst.ops = append(dst.ops, &c)
	}
	dst.SetInputs(mapAll(g.inputs)...)
	dst.SetOutputs(mapAll(g.outputs)...)
	if err := dst.Validate(); err != nil {
		return nil, fmt.Errorf("modelgen: quantize dynamic range: %w", err)
	}
	return dst, nil
}

// isParam reports whether input i of op is a float constant that the
// quantizer converts itself: weights, bias, an embedding table.
func isParam(op *Op, i int) bool {
	if !op.Inputs[i].IsConst() {
		return false
	}
	switch op.Kind {
	case OpFullyConnected, OpConv2D, OpDepthwiseConv2D:
		return i > 0
	case OpGather:
		return i == 0
	}
	return false
}

// quantizeWeights quantizes symmetrically to [-127, 127] with one scale per
// slice along dim (or one for all when perChannel is false).
func quantizeWeights(w []float32, shape []int, dim int, perChannel bool) (*Quant, []int8) {
	channels := 1
	if perChannel {
		channels = shape[dim]
	}
	inner := 1 // elements between consecutive channels along dim
	for _, d := range shape[dim+1:] {
		inner *= d
	}
	chanOf := func(i int) int {
		if !perChannel {
			return 0
		}
		return i / inner % channels
	}
	maxAbs := make([]float32, channels)
	for i, v := range w {
		c := chanOf(i)
		maxAbs[c] = max(maxAbs[c], float32(math.Abs(float64(v))))
	}
	scales := make([]float32, channels)
	for c, m := range maxAbs {
		scales[c] = m / 127
		if m == 0 {
			scales[c] = 1 // an all-zero channel: any positive scale
		}
	}
	out := make([]int8, len(w))
	for i, v := range w {
		q := roundAway(v / scales[chanOf(i)])
		out[i] = int8(min(max(q, -127), 127))
	}
	if !perChannel {
		return PerTensor(scales[0], 0), out
	}
	return PerChannel(scales, dim), out
}

// quantizeBias quantizes a bias to int32 with scale inScale*wScale[c].
func quantizeBias(b []float32, inScale float32, wScales []float32) (*Quant, []int32) {
	scales := make([]float32, len(wScales))
	for c, ws := range wScales {
		scales[c] = float32(float64(inScale) * float64(ws))
	}
	out := make([]int32, len(b))
	for i, v := range b {
		s := scales[0]
		if len(scales) > 1 {
			s = scales[i]
		}
		r := math.Round(float64(v) / float64(s))
		out[i] = int32(min(max(r, math.MinInt32), math.MaxInt32))
	}
	return PerChannel(scales, 0), out
}

func quantizeAll(x []float32, q *Quant) []int8 {
	out := make([]int8, len(x))
	for i, v := range x {
		out[i] = int8(clamp32(quantizeValue(v, q.scale0(), q.zp0()), math.MinInt8, math.MaxInt8))
	}
	return out
}

func minMax(x []float32) (lo, hi float32) {
	if len(x) == 0 {
		return 0, 0
	}
	lo, hi = x[0], x[0]
	for _, v := range x[1:] {
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}
