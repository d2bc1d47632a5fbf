package encoder

import (
	"fmt"
	"math"

	"github.com/sightd/sightd/quant/tflite"
)

// output reads embeddings out of a tower's output tensor: dequantised and
// L2-normalised float32 vectors.
type output struct {
	t     *tflite.Tensor
	dim   int
	scale float32
	zp    int32
}

func newOutput(t *tflite.Tensor) (*output, error) {
	if t == nil || t.NumDims() == 0 {
		return nil, fmt.Errorf("encoder: model has no usable output tensor")
	}
	switch t.Type() {
	case tflite.Float32, tflite.Int8, tflite.UInt8:
	default:
		return nil, fmt.Errorf("encoder: output %q is %s; want float32, int8 or uint8", t.Name(), t.Type())
	}
	o := &output{t: t, dim: t.Dim(t.NumDims() - 1)}
	o.scale, o.zp = t.Quantization()
	if t.Type() != tflite.Float32 && o.scale == 0 {
		return nil, fmt.Errorf("encoder: output %q is %s without quantisation parameters", t.Name(), t.Type())
	}
	return o, nil
}

// read writes rows [0, n) of the output into dst (n*dim values), each row
// dequantised and normalised. The views are taken per call because the
// tensor's buffer moves when the interpreter re-allocates.
func (o *output) read(dst []float32, n int) error {
	if len(dst) != n*o.dim {
		return fmt.Errorf("encoder: destination holds %d values, want %d (%d x %d)", len(dst), n*o.dim, n, o.dim)
	}
	switch o.t.Type() {
	case tflite.Float32:
		v, err := tflite.View[float32](o.t)
		if err != nil {
			return err
		}
		if len(v) < len(dst) {
			return fmt.Errorf("encoder: output holds %d values, want %d", len(v), len(dst))
		}
		copy(dst, v)
	case tflite.Int8:
		v, err := tflite.View[int8](o.t)
		if err != nil {
			return err
		}
		if err := dequantize(dst, v, o.scale, o.zp); err != nil {
			return err
		}
	case tflite.UInt8:
		v, err := tflite.View[uint8](o.t)
		if err != nil {
			return err
		}
		if err := dequantize(dst, v, o.scale, o.zp); err != nil {
			return err
		}
	}
	for i := 0; i < n; i++ {
		if !Normalize(dst[i*o.dim : (i+1)*o.dim]) {
			return fmt.Errorf("%w: embedding %d is zero or not finite", ErrDegenerate, i)
		}
	}
	return nil
}

func dequantize[T int8 | uint8](dst []float32, src []T, scale float32, zp int32) error {
	if len(src) < len(dst) {
		return fmt.Errorf("encoder: output holds %d values, want %d", len(src), len(dst))
	}
	for i := range dst {
		dst[i] = scale * float32(int32(src[i])-zp)
	}
	return nil
}

// Normalize scales v to unit length in place. It reports false, leaving v
// unchanged, when v is zero or holds a NaN or an infinity: such a vector
// would match nothing or everything.
func Normalize(v []float32) bool {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	if ss == 0 || math.IsNaN(ss) || math.IsInf(ss, 0) {
		return false
	}
	inv := float32(1 / math.Sqrt(ss))
	for i := range v {
		v[i] *= inv
	}
	return true
}
