package tfl29

/*
#include "tensorflow/lite/c/c_api.h"
#include "tensorflow/lite/c/common.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// TensorType is a tensor's element type (TfLiteType).
type TensorType int

// The element types sightd uses; values are TfLiteType's.
const (
	NoType  TensorType = C.kTfLiteNoType
	Float32 TensorType = C.kTfLiteFloat32
	Int32   TensorType = C.kTfLiteInt32
	UInt8   TensorType = C.kTfLiteUInt8
	Int64   TensorType = C.kTfLiteInt64
	Int16   TensorType = C.kTfLiteInt16
	Int8    TensorType = C.kTfLiteInt8
)

func (t TensorType) String() string { return C.GoString(C.TfLiteTypeGetName(C.TfLiteType(t))) }

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
	ip *Interpreter
	t  *C.TfLiteTensor
}

func (t *Tensor) ok() error {
	if t == nil {
		return fmt.Errorf("%w: nil tensor", ErrIndex)
	}
	if t.t == nil {
		return fmt.Errorf("tensor: %w", ErrClosed)
	}
	return nil
}

// Name is the tensor's name in the model.
func (t *Tensor) Name() string {
	if t.ok() != nil {
		return ""
	}
	return C.GoString(C.TfLiteTensorName(t.t))
}

// Type is the element type.
func (t *Tensor) Type() TensorType {
	if t.ok() != nil {
		return NoType
	}
	return TensorType(C.TfLiteTensorType(t.t))
}

// NumDims is the number of dimensions.
func (t *Tensor) NumDims() int {
	if t.ok() != nil {
		return 0
	}
	return int(C.TfLiteTensorNumDims(t.t))
}

// Dim is the size of dimension i.
func (t *Tensor) Dim(i int) int {
	if t.ok() != nil || i < 0 || i >= t.NumDims() {
		return 0
	}
	return int(C.TfLiteTensorDim(t.t, C.int32_t(i)))
}

// Shape is the tensor's dimensions (a new slice).
func (t *Tensor) Shape() []int {
	n := t.NumDims()
	s := make([]int, n)
	for i := range s {
		s[i] = t.Dim(i)
	}
	return s
}

// NumElements is the product of the dimensions.
func (t *Tensor) NumElements() int {
	n := 1
	for i := 0; i < t.NumDims(); i++ {
		n *= t.Dim(i)
	}
	return n
}

// ByteSize is the size of the tensor's data in bytes.
func (t *Tensor) ByteSize() int {
	if t.ok() != nil {
		return 0
	}
	return int(C.TfLiteTensorByteSize(t.t))
}

// Quantization returns the per-tensor affine parameters: real = scale *
// (q - zeroPoint). Scale is 0 for a tensor that is not quantized.
func (t *Tensor) Quantization() (scale float32, zeroPoint int32) {
	if t.ok() != nil {
		return 0, 0
	}
	q := C.TfLiteTensorQuantizationParams(t.t)
	return float32(q.scale), int32(q.zero_point)
}

func (t *Tensor) check(want TensorType, n int, what string) error {
	if err := t.ok(); err != nil {
		return err
	}
	if !t.ip.allocated {
		return fmt.Errorf("%s %q: %w", what, t.Name(), ErrNotAllocated)
	}
	if got := t.Type(); got != want {
		return fmt.Errorf("%w: %s %q: tensor is %s, data is %s", ErrTensorMismatch, what, t.Name(), got, want)
	}
	if need := t.ByteSize(); n != need {
		return fmt.Errorf("%w: %s %q: %d bytes for a %d-byte tensor %v", ErrTensorMismatch, what, t.Name(), n, need, t.Shape())
	}
	return nil
}

// CopyIn copies src into the tensor; its type and length must match exactly.
func CopyIn[T Elem](t *Tensor, src []T) error {
	var z T
	n := len(src) * int(unsafe.Sizeof(z))
	if err := t.check(TypeOf[T](), n, "copy into"); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	st := C.TfLiteTensorCopyFromBuffer(t.t, unsafe.Pointer(&src[0]), C.size_t(n))
	return statusErr("copy into tensor", st, t.ip.eb)
}

// CopyOut copies the tensor into dst; its type and length must match exactly.
func CopyOut[T Elem](t *Tensor, dst []T) error {
	var z T
	n := len(dst) * int(unsafe.Sizeof(z))
	if err := t.check(TypeOf[T](), n, "copy out of"); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	st := C.TfLiteTensorCopyToBuffer(t.t, unsafe.Pointer(&dst[0]), C.size_t(n))
	return statusErr("copy out of tensor", st, t.ip.eb)
}

// View is a zero-copy view of the tensor's data for the hot path: fill an
// input in place, read an output without copying. It is valid until the next
// AllocateTensors, ResizeInput or Close; an output view is overwritten by the
// next Invoke.
func View[T Elem](t *Tensor) ([]T, error) {
	var z T
	if err := t.ok(); err != nil {
		return nil, err
	}
	size := int(unsafe.Sizeof(z))
	if err := t.check(TypeOf[T](), t.ByteSize()/size*size, "view of"); err != nil {
		return nil, err
	}
	p := C.TfLiteTensorData(t.t)
	if p == nil {
		return nil, fmt.Errorf("view of %q: %w", t.Name(), ErrNotAllocated)
	}
	return unsafe.Slice((*T)(p), t.ByteSize()/size), nil
}

// Data is the tensor's data pointer (nil before allocation or once closed).
func (t *Tensor) Data() unsafe.Pointer {
	if t.ok() != nil {
		return nil
	}
	return C.TfLiteTensorData(t.t)
}

// Allocated reports whether the interpreter's tensors are allocated.
func (t *Tensor) Allocated() bool { return t.ok() == nil && t.ip.allocated }
