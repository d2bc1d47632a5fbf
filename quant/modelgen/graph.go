// Package modelgen writes real TensorFlow Lite (.tflite) models from Go and
// evaluates them with an independent plain-Go reference.
//
// A Graph is a list of tensors and operators in execution order, close to the
// file format: the caller creates every tensor (activations with NewTensor,
// constants with NewConst), connects them with operators, marks the inputs and
// outputs, and calls Build for the flatbuffer or Eval for the reference result.
// Validate (called by both) turns a malformed graph into an error that names
// the operator and tensor at fault.
//
// Float32 models compute in float32. Int8 models follow TensorFlow Lite's
// full-integer scheme: int8 activations with a scale and zero point, int8
// weights with per-channel scales (per-tensor for FULLY_CONNECTED unless
// asked) and zero point 0, int32 biases with scale
// input_scale*weight_scale[c]. Quantize turns a float graph into such a
// model from calibration inputs, QuantizeWith with per-channel
// FULLY_CONNECTED weights, and QuantizeDynamicRange into a dynamic-range
// (hybrid) model: float32 activations, int8 FULLY_CONNECTED weights. The
// model factories (TinyModels, MobileNetV2Like) build graphs for tests and
// benchmarks.
//
// The files use schema version 3, file identifier "TFL3", and the operator
// versions TFLite's converter would assign (OpVersion). The default forms
// run on TensorFlow Lite 2.9 as well as LiteRT; per-channel and hybrid
// FULLY_CONNECTED layers run right on LiteRT only. The flatbuffers code comes from our own subset of the schema
// in schema/tflite.fbs (go generate).
package modelgen

import (
	"errors"
	"fmt"
)

// ErrInvalidGraph is wrapped by every error that reports a malformed graph.
var ErrInvalidGraph = errors.New("modelgen: invalid graph")

// DType is a tensor element type.
type DType int

// Element types. The zero DType is invalid, so a forgotten type is caught.
const (
	Float32 DType = iota + 1
	Int8
	Int32
	UInt8
	// Int64 is only for GATHER indices: token ids of text towers exported
	// with 64-bit inputs.
	Int64
)

func (d DType) String() string {
	switch d {
	case Float32:
		return "float32"
	case Int8:
		return "int8"
	case Int32:
		return "int32"
	case UInt8:
		return "uint8"
	case Int64:
		return "int64"
	}
	return fmt.Sprintf("DType(%d)", int(d))
}

// size is the element size in bytes.
func (d DType) size() int {
	switch d {
	case Float32, Int32:
		return 4
	case Int8, UInt8:
		return 1
	case Int64:
		return 8
	}
	return 0
}

// quantized reports whether values of this type need a scale and zero point.
func (d DType) quantized() bool { return d == Int8 || d == UInt8 }

// Quant holds affine quantization parameters: real = Scale * (q - ZeroPoint).
// One scale means per-tensor; several mean per-channel along dimension Dim
// (TFLite's quantized_dimension).
type Quant struct {
	Scale     []float32
	ZeroPoint []int64
	Dim       int
}

// PerTensor returns per-tensor quantization parameters.
func PerTensor(scale float32, zeroPoint int64) *Quant {
	return &Quant{Scale: []float32{scale}, ZeroPoint: []int64{zeroPoint}}
}

// PerChannel returns symmetric per-channel parameters (zero points 0) along
// dimension dim.
func PerChannel(scales []float32, dim int) *Quant {
	return &Quant{Scale: scales, ZeroPoint: make([]int64, len(scales)), Dim: dim}
}

// scale0 and zp0 are the per-tensor parameters; callers validate first.
func (q *Quant) scale0() float32 { return q.Scale[0] }
func (q *Quant) zp0() int32      { return int32(q.ZeroPoint[0]) }

func (q *Quant) perTensor() bool { return q != nil && len(q.Scale) == 1 && len(q.ZeroPoint) == 1 }

func (q *Quant) equal(o *Quant) bool {
	if q == nil || o == nil {
		return q == o
	}
	if len(q.Scale) != len(o.Scale) || len(q.ZeroPoint) != len(o.ZeroPoint) || q.Dim != o.Dim {
		return false
	}
	for i := range q.Scale {
		if q.Scale[i] != o.Scale[i] {
			return false
		}
	}
	for i := range q.ZeroPoint {
		if q.ZeroPoint[i] != o.ZeroPoint[i] {
			return false
		}
	}
	return true
}

func (q *Quant) String() string {
	if q == nil {
		return "none"
	}
	if q.perTensor() {
		return fmt.Sprintf("scale %g zero point %d", q.Scale[0], q.ZeroPoint[0])
	}
	return fmt.Sprintf("%d scales along dim %d", len(q.Scale), q.Dim)
}

// Tensor is a graph tensor. Data is nil for activations; for constants it is
// a []float32, []int8, []int32 or []uint8 matching Type, with one element per
// entry of Shape (row-major). The fields may be changed before Build; Validate
// checks them.
type Tensor struct {
	Name  string
	Type  DType
	Shape []int
	Quant *Quant // required for int8 and uint8, and for the int32 bias of an int8 op
	Data  any

	g *Graph
}

// Len is the number of elements.
func (t *Tensor) Len() int { return numElements(t.Shape) }

// IsConst reports whether the tensor holds constant data.
func (t *Tensor) IsConst() bool { return t.Data != nil }

func (t *Tensor) String() string { return fmt.Sprintf("%q %v%v", t.Name, t.Type, t.Shape) }

func numElements(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Graph is a single-subgraph TFLite model under construction.
type Graph struct {
	// Description is written as the model's description string.
	Description string

	tensors []*Tensor
	ops     []*Op
	inputs  []*Tensor
	outputs []*Tensor
}

// NewGraph returns an empty graph.
func NewGraph(description string) *Graph { return &Graph{Description: description} }

// NewTensor adds an activation tensor (an input, an output or an
// intermediate result). q may be nil for float32 and int32 tensors.
func (g *Graph) NewTensor(name string, typ DType, shape []int, q *Quant) *Tensor {
	t := &Tensor{Name: name, Type: typ, Shape: append([]int(nil), shape...), Quant: q, g: g}
	g.tensors = append(g.tensors, t)
	return t
}

// NewConst adds a constant tensor; its type follows from data, which must be
// a []float32, []int8, []int32 or []uint8 (Validate reports anything else).
func (g *Graph) NewConst(name string, shape []int, data any, q *Quant) *Tensor {
	t := g.NewTensor(name, dataType(data), shape, q)
	t.Data = data
	return t
}

func dataType(data any) DType {
	switch data.(type) {
	case []float32:
		return Float32
	case []int8:
		return Int8
	case []int32:
		return Int32
	case []uint8:
		return UInt8
	case []int64:
		return Int64
	}
	return 0
}

func dataLen(data any) int {
	switch d := data.(type) {
	case []float32:
		return len(d)
	case []int8:
		return len(d)
	case []int32:
		return len(d)
	case []uint8:
		return len(d)
	case []int64:
		return len(d)
	}
	return -1
}

// SetInputs marks the graph's inputs, in order.
func (g *Graph) SetInputs(ts ...*Tensor) { g.inputs = append([]*Tensor(nil), ts...) }

// SetOutputs marks the graph's outputs, in order.
func (g *Graph) SetOutputs(ts ...*Tensor) { g.outputs = append([]*Tensor(nil), ts...) }

// Inputs returns the graph's input tensors.
func (g *Graph) Inputs() []*Tensor { return append([]*Tensor(nil), g.inputs...) }

// Outputs returns the graph's output tensors.
func (g *Graph) Outputs() []*Tensor { return append([]*Tensor(nil), g.outputs...) }

// Tensors returns all tensors in creation order (their index in the file).
func (g *Graph) Tensors() []*Tensor { return append([]*Tensor(nil), g.tensors...) }

// Ops returns the operators in execution order.
func (g *Graph) Ops() []*Op { return append([]*Op(nil), g.ops...) }

// MACs counts the multiply-accumulates of one inference: those of
// CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED (the other ops do no
// multiply-accumulates worth counting). It assumes a valid graph.
func (g *Graph) MACs() int64 {
	var n int64
	for _, op := range g.ops {
		switch op.Kind {
		case OpConv2D:
			w := op.Inputs[1].Shape // [O, KH, KW, C]
			n += int64(op.Outputs[0].Len()) * int64(w[1]*w[2]*w[3])
		case OpDepthwiseConv2D:
			w := op.Inputs[1].Shape // [1, KH, KW, C]
			n += int64(op.Outputs[0].Len()) * int64(w[1]*w[2])
		case OpFullyConnected:
			n += int64(op.Outputs[0].Len()) * int64(op.Inputs[1].Shape[1])
		}
	}
	return n
}
