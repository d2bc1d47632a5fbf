package litert

/*
#include "litert_c.h"
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Element types (TfLiteType's numbering, shared by LiteRT).
const (
	TypeFloat32 = 1
	TypeInt32   = 2
	TypeUInt8   = 3
	TypeInt64   = 4
	TypeInt16   = 7
	TypeInt8    = 9
)

var elemSize = map[int]int{TypeFloat32: 4, TypeInt32: 4, TypeUInt8: 1, TypeInt64: 8, TypeInt16: 2, TypeInt8: 1, 6: 1, 10: 2, 11: 8}

// Tensor is an input or output of a Runner, with its own host buffer. It is
// valid while the runner is open.
type Tensor struct {
	name      string
	typ       C.LiteRtRankedTensorType
	scale     float32
	zeroPoint int32
	buf       C.LiteRtTensorBuffer
	data      unsafe.Pointer
	// The shape and packed size, read from typ whenever it changes: the hot
	// path asks for them on every frame and must not allocate.
	shape []int
	bytes int
}

// refresh re-reads the shape and size from the tensor type.
func (t *Tensor) refresh() {
	n := int(C.sightd_layout_rank(&t.typ.layout))
	t.shape = t.shape[:0]
	t.bytes = elemSize[int(t.typ.element_type)]
	for i := 0; i < n; i++ {
		d := int(t.typ.layout.dimensions[i])
		t.shape = append(t.shape, d)
		t.bytes *= d
	}
}

func newTensor(t C.LiteRtTensor) (*Tensor, error) {
	var cname *C.char
	C.lrt_GetTensorName(t, &cname)
	ts := &Tensor{name: C.GoString(cname)}
	var id C.LiteRtTensorTypeId
	if st := C.lrt_GetTensorTypeId(t, &id); st != C.SIGHTD_LITERT_OK || id != 0 {
		return nil, fmt.Errorf("%w: tensor %q has no fixed rank", ErrTensorMismatch, ts.name)
	}
	if st := C.lrt_GetRankedTensorType(t, &ts.typ); st != C.SIGHTD_LITERT_OK {
		return nil, statusErr("tensor type of "+ts.name, st)
	}
	if _, ok := elemSize[int(ts.typ.element_type)]; !ok {
		return nil, fmt.Errorf("%w: tensor %q has element type %d, which sightd does not handle", ErrTensorMismatch, ts.name, int(ts.typ.element_type))
	}
	ts.refresh()
	var q C.LiteRtQuantizationTypeId
	C.lrt_GetQuantizationTypeId(t, &q)
	switch q {
	case 1:
		var p C.LiteRtQuantizationPerTensor
		if C.lrt_GetPerTensorQuantization(t, &p) == C.SIGHTD_LITERT_OK {
			ts.scale, ts.zeroPoint = float32(p.scale), int32(p.zero_point)
		}
	}
	return ts, nil
}

// allocate gives the tensor a host buffer of the size the compiled model
// requires (at least the packed size) and wraps it in a LiteRT buffer.
func (t *Tensor) allocate(req C.LiteRtTensorBufferRequirements, handle *C.LiteRtTensorBuffer) error {
	var size C.size_t
	if st := C.lrt_GetTensorBufferRequirementsBufferSize(req, &size); st != C.SIGHTD_LITERT_OK {
		return statusErr("buffer size of "+t.name, st)
	}
	t.refresh()
	if n := C.size_t(t.bytes); size < n {
		size = n
	}
	t.free()
	t.data = C.sightd_aligned_alloc(size)
	if t.data == nil {
		return fmt.Errorf("%w: out of memory for %q (%d bytes)", ErrRuntime, t.name, int(size))
	}
	if st := C.lrt_CreateTensorBufferFromHostMemory(&t.typ, t.data, size, nil, &t.buf); st != C.SIGHTD_LITERT_OK {
		t.buf = nil
		return statusErr("tensor buffer for "+t.name, st)
	}
	*handle = t.buf
	return nil
}

func (t *Tensor) free() {
	if t.buf != nil {
		C.lrt_DestroyTensorBuffer(t.buf)
		t.buf = nil
	}
	if t.data != nil {
		C.sightd_aligned_free(t.data)
		t.data = nil
	}
}

// Name is the tensor's name in the model's signature.
func (t *Tensor) Name() string { return t.name }

// Type is the element type (TypeFloat32, TypeInt8, ...).
func (t *Tensor) Type() int { return int(t.typ.element_type) }

// Shape is the tensor's dimensions (a new slice).
func (t *Tensor) Shape() []int { return append([]int(nil), t.shape...) }

// NumDims is the number of dimensions.
func (t *Tensor) NumDims() int { return len(t.shape) }

// Dim is the size of dimension i (0 when out of range).
func (t *Tensor) Dim(i int) int {
	if i < 0 || i >= len(t.shape) {
		return 0
	}
	return t.shape[i]
}

// ByteSize is the size of the tensor's packed data in bytes.
func (t *Tensor) ByteSize() int { return t.bytes }

// Quantization returns the per-tensor affine parameters (real = scale * (q -
// zeroPoint)); scale is 0 for a tensor that is not quantized per tensor.
func (t *Tensor) Quantization() (scale float32, zeroPoint int32) { return t.scale, t.zeroPoint }

// Data is the tensor's host memory, ByteSize bytes, or nil once closed. It
// stays valid until the runner is resized or closed.
func (t *Tensor) Data() unsafe.Pointer { return t.data }
