package tflite

import (
	"fmt"
	"slices"
	"unsafe"

	"github.com/sightd/sightd/quant/tflite/litert"
	"github.com/sightd/sightd/quant/tflite/tfl29"
)

// TensorType is a tensor's element type; the values are TfLiteType's, which
// LiteRT shares.
type TensorType int

// The element types sightd uses.
const (
	NoType  TensorType = 0
	Float32 TensorType = 1
	Int32   TensorType = 2
	UInt8   TensorType = 3
	Int64   TensorType = 4
	Int16   TensorType = 7
	Int8    TensorType = 9
)

var typeNames = map[TensorType]string{NoType: "NOTYPE", Float32: "FLOAT32", Int32: "INT32", UInt8: "UINT8", Int64: "INT64", Int16: "INT16", Int8: "INT8"}

func (t TensorType) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("TYPE(%d)", int(t))
}

// Elem is a Go element type that maps onto a tensor type.
type Elem interface {
	float32 | int32 | uint8 | int64 | int16 | int8
}

// TypeOf is the tensor type that holds elements of T.
func TypeOf[T Elem]() TensorType {
	var z T
	switch any(z).(type) {
	case float32:
		return Float32
	case int32:
		return Int32
	case uint8:
		return UInt8
	case int64:
		return Int64
	case int16:
		return Int16
	default:
		return Int8
	}
}

// Tensor is an input or output of an Interpreter. It is valid while the
// interpreter is open.
type Tensor struct {
	ip  *Interpreter
	lr  *litert.Tensor
	t29 *tfl29.Tensor
}

func (t *Tensor) ok() error {
	if t == nil {
		return fmt.Errorf("%w: nil tensor", ErrIndex)
	}
	if t.ip.model == nil {
		return fmt.Errorf("tensor: %w", ErrClosed)
	}
	return nil
}

// Name is the tensor's name in the model.
func (t *Tensor) Name() string {
	if t.ok() != nil {
		return ""
	}
	if t.t29 != nil {
		return t.t29.Name()
	}
	return t.lr.Name()
}

// Type is the element type.
func (t *Tensor) Type() TensorType {
	if t.ok() != nil {
		return NoType
	}
	if t.t29 != nil {
		return TensorType(t.t29.Type())
	}
	return TensorType(t.lr.Type())
}

// Shape is the tensor's dimensions (a new slice). An input resized but not
// yet allocated shows its new shape.
func (t *Tensor) Shape() []int {
	if t.ok() != nil {
		return nil
	}
	if t.t29 != nil {
		return t.t29.Shape()
	}
	if s, ok := t.pending(); ok {
		return slices.Clone(s)
	}
	return t.lr.Shape()
}

// pending is the shape a LiteRT input was resized to before AllocateTensors.
func (t *Tensor) pending() ([]int, bool) {
	if len(t.ip.pending) == 0 {
		return nil, false
	}
	for i, in := range t.ip.inputs {
		if in == t {
			s, ok := t.ip.pending[i]
			return s, ok
		}
	}
	return nil, false
}

// NumDims is the number of dimensions.
func (t *Tensor) NumDims() int {
	if t.ok() != nil {
		return 0
	}
	if t.t29 != nil {
		return t.t29.NumDims()
	}
	if s, ok := t.pending(); ok {
		return len(s)
	}
	return t.lr.NumDims()
}

// Dim is the size of dimension i.
func (t *Tensor) Dim(i int) int {
	if t.ok() != nil || i < 0 || i >= t.NumDims() {
		return 0
	}
	if t.t29 != nil {
		return t.t29.Dim(i)
	}
	if s, ok := t.pending(); ok {
		return s[i]
	}
	return t.lr.Dim(i)
}

// NumElements is the product of the dimensions.
func (t *Tensor) NumElements() int {
	n := 1
	for i := range t.NumDims() {
		n *= t.Dim(i)
	}
	return n
}

// ByteSize is the size of the tensor's data in bytes.
func (t *Tensor) ByteSize() int {
	if t.ok() != nil {
		return 0
	}
	if t.t29 != nil {
		return t.t29.ByteSize()
	}
	return t.lr.ByteSize()
}

// Quantization returns the per-tensor affine parameters: real = scale *
// (q - zeroPoint). Scale is 0 for a tensor that is not quantized per tensor.
func (t *Tensor) Quantization() (scale float32, zeroPoint int32) {
	if t.ok() != nil {
		return 0, 0
	}
	if t.t29 != nil {
		return t.t29.Quantization()
	}
	return t.lr.Quantization()
}

// data checks that the tensor may be read or written as n bytes of want and
// returns its memory.
func (t *Tensor) data(want TensorType, n int, what string) (unsafe.Pointer, error) {
	if err := t.ok(); err != nil {
		return nil, err
	}
	if !t.ip.allocated {
		return nil, fmt.Errorf("%s %q: %w", what, t.Name(), ErrNotAllocated)
	}
	if got := t.Type(); got != want {
		return nil, fmt.Errorf("%w: %s %q: tensor is %s, data is %s", ErrTensorMismatch, what, t.Name(), got, want)
	}
	if need := t.ByteSize(); n != need {
		return nil, fmt.Errorf("%w: %s %q: %d bytes for a %d-byte tensor %v", ErrTensorMismatch, what, t.Name(), n, need, t.Shape())
	}
	var p unsafe.Pointer
	if t.t29 != nil {
		p = t.t29.Data()
	} else {
		p = t.lr.Data()
	}
	if p == nil && n > 0 {
		return nil, fmt.Errorf("%s %q: %w", what, t.Name(), ErrNotAllocated)
	}
	return p, nil
}

// CopyIn copies src into the tensor; its type and length must match exactly.
func CopyIn[T Elem](t *Tensor, src []T) error {
	n := len(src) * int(unsafe.Sizeof(*new(T)))
	p, err := t.data(TypeOf[T](), n, "copy into")
	if err != nil || n == 0 {
		return err
	}
	copy(unsafe.Slice((*T)(p), len(src)), src)
	return nil
}

// CopyOut copies the tensor into dst; its type and length must match exactly.
func CopyOut[T Elem](t *Tensor, dst []T) error {
	n := len(dst) * int(unsafe.Sizeof(*new(T)))
	p, err := t.data(TypeOf[T](), n, "copy out of")
	if err != nil || n == 0 {
		return err
	}
	copy(dst, unsafe.Slice((*T)(p), len(dst)))
	return nil
}

// View is a zero-copy view of the tensor's data for the hot path: fill an
// input in place, read an output without copying. It is valid until the next
// AllocateTensors, ResizeInput or Close; an output view is overwritten by the
// next Invoke.
func View[T Elem](t *Tensor) ([]T, error) {
	if err := t.ok(); err != nil {
		return nil, err
	}
	size := int(unsafe.Sizeof(*new(T)))
	n := t.ByteSize() / size
	p, err := t.data(TypeOf[T](), n*size, "view of")
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	return unsafe.Slice((*T)(p), n), nil
}
