// Package quant holds sightd's int8 vector maths: L2-normalised embeddings
// quantised to int8 with one scale per vector, int8 dot products (int32
// sums), cosine scores from them, and a matrix of concept vectors scored
// against all regions of a frame in one pass. The subpackages are the
// TFLite binding, the model writer, the tokenizer, bundles and encoders.
package quant

import (
	"errors"
	"fmt"
	"math"
)

var (
	// ErrZero: a vector with no direction (all zeros) has no cosine.
	ErrZero = errors.New("quant: zero vector")
	// ErrNonFinite: a NaN or an infinity in a vector.
	ErrNonFinite = errors.New("quant: non-finite component")
	// ErrDim: vectors of different lengths, or a length outside [1, MaxDim].
	ErrDim = errors.New("quant: dimension mismatch")
)

// MaxDim bounds vector lengths so that an int32 dot product of any int8
// vectors cannot overflow: 65536 * 128 * 128 = 2^30.
const MaxDim = 1 << 16

// Vector is an int8 vector with its scale: component i is Data[i]*Scale.
type Vector struct {
	Data  []int8
	Scale float32
}

// Normalize scales x in place to unit L2 length. The length is summed in
// float64, so long vectors of large components do not overflow.
func Normalize(x []float32) error {
	if len(x) == 0 || len(x) > MaxDim {
		return fmt.Errorf("%w: length %d", ErrDim, len(x))
	}
	var ss float64
	for i, v := range x {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%w: x[%d] = %v", ErrNonFinite, i, v)
		}
		ss += f * f
	}
	if ss == 0 {
		return ErrZero
	}
	inv := 1 / math.Sqrt(ss)
	for i, v := range x {
		x[i] = float32(float64(v) * inv)
	}
	return nil
}

// Quantize quantises the L2-normalised x symmetrically: with n = x/|x|,
// Scale = max|n|/127 and Data[i] = round(n[i]/Scale), so every component is
// within Scale/2 of n[i] and Data stays in [-127, 127].
func Quantize(x []float32) (Vector, error) {
	v := Vector{Data: make([]int8, len(x))}
	var err error
	v.Scale, err = QuantizeInto(v.Data, x)
	if err != nil {
		return Vector{}, err
	}
	return v, nil
}

// QuantizeInto is Quantize writing into dst (len(dst) == len(x)) and
// returning the scale; x is not modified.
func QuantizeInto(dst []int8, x []float32) (float32, error) {
	if len(dst) != len(x) {
		return 0, fmt.Errorf("%w: %d values into %d", ErrDim, len(x), len(dst))
	}
	if len(x) == 0 || len(x) > MaxDim {
		return 0, fmt.Errorf("%w: length %d", ErrDim, len(x))
	}
	var ss, maxAbs float64
	for i, v := range x {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("%w: x[%d] = %v", ErrNonFinite, i, v)
		}
		ss += f * f
		maxAbs = max(maxAbs, math.Abs(f))
	}
	if maxAbs == 0 {
		return 0, ErrZero
	}
	norm := math.Sqrt(ss)
	// In units of the normalised vector: max|x|/norm maps to 127.
	k := 127 / maxAbs
	for i, v := range x {
		dst[i] = int8(math.Round(float64(v) * k))
	}
	return float32(maxAbs / norm / 127), nil
}

// Float returns the dequantised vector, Data[i]*Scale.
func (v Vector) Float() []float32 {
	out := make([]float32, len(v.Data))
	for i, q := range v.Data {
		out[i] = float32(q) * v.Scale
	}
	return out
}

// Dot is the int8 dot product. It panics if the lengths differ (a
// programming error, like an index out of range).
func Dot(a, b []int8) int32 {
	if len(a) != len(b) {
		panic(fmt.Sprintf("quant.Dot: lengths %d and %d", len(a), len(b)))
	}
	// Four independent sums let the CPU overlap the multiply-adds.
	var s0, s1, s2, s3 int32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += int32(a[i]) * int32(b[i])
		s1 += int32(a[i+1]) * int32(b[i+1])
		s2 += int32(a[i+2]) * int32(b[i+2])
		s3 += int32(a[i+3]) * int32(b[i+3])
	}
	for ; i < len(a); i++ {
		s0 += int32(a[i]) * int32(b[i])
	}
	return s0 + s1 + s2 + s3
}

// Cosine of two quantised unit vectors: Dot * both scales.
func Cosine(a, b Vector) float32 {
	return float32(Dot(a.Data, b.Data)) * a.Scale * b.Scale
}

// DotFloat is the float32 dot product, the reference path for checking.
func DotFloat(a, b []float32) float32 {
	if len(a) != len(b) {
		panic(fmt.Sprintf("quant.DotFloat: lengths %d and %d", len(a), len(b)))
	}
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// CosineFloat is the cosine of two float32 vectors of any length (not
// necessarily normalised), summed in float64.
func CosineFloat(a, b []float32) (float64, error) {
	if len(a) != len(b) || len(a) == 0 {
		return 0, fmt.Errorf("%w: lengths %d and %d", ErrDim, len(a), len(b))
	}
	var ab, aa, bb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		ab += x * y
		aa += x * x
		bb += y * y
	}
	if math.IsNaN(ab+aa+bb) || math.IsInf(ab+aa+bb, 0) {
		return 0, ErrNonFinite
	}
	if aa == 0 || bb == 0 {
		return 0, ErrZero
	}
	return ab / math.Sqrt(aa*bb), nil
}
