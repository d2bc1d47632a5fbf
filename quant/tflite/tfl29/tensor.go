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

// Data is the tensor's data pointer (nil before allocation or once closed).
func (t *Tensor) Data() unsafe.Pointer {
	if t.ok() != nil {
		return nil
	}
	return C.TfLiteTensorData(t.t)
}
