package modelgen

import "math"

// TFLite's integer kernels requantize an int32 accumulator by a real
// multiplier m = input_scale*weight_scale/output_scale held as a Q31
// fixed-point significand and a power-of-two exponent (gemmlowp's scheme,
// tensorflow/lite/kernels/internal/quantization_util.cc and common.h). The
// reference does the same so that it matches the built-in kernels bit for bit;
// it is round-to-nearest of acc*m up to ties.

// quantizeMultiplier splits m into a Q31 significand and an exponent, with
// m ≈ q * 2^(shift-31).
func quantizeMultiplier(m float64) (q int32, shift int) {
	if m == 0 {
		return 0, 0
	}
	frac, exp := math.Frexp(m) // m = frac * 2^exp, frac in [0.5, 1)
	qf := int64(math.Round(frac * (1 << 31)))
	if qf == 1<<31 {
		qf /= 2
		exp++
	}
	if exp < -31 {
		return 0, 0
	}
	return int32(qf), exp
}

// saturatingRoundingDoublingHighMul is gemmlowp's (a*b*2) >> 32, rounded.
func saturatingRoundingDoublingHighMul(a, b int32) int32 {
	if a == math.MinInt32 && b == math.MinInt32 {
		return math.MaxInt32
	}
	ab := int64(a) * int64(b)
	nudge := int64(1 << 30)
	if ab < 0 {
		nudge = 1 - (1 << 30)
	}
	return int32((ab + nudge) / (1 << 31)) // truncates toward zero, as C++ does
}

// roundingDivideByPOT is x / 2^exp rounded to nearest, ties away from zero.
func roundingDivideByPOT(x int32, exp int) int32 {
	mask := int32(1)<<exp - 1
	remainder := x & mask
	threshold := mask >> 1
	if x < 0 {
		threshold++
	}
	out := x >> exp
	if remainder > threshold {
		out++
	}
	return out
}

// multiplyByQuantizedMultiplier returns x * q * 2^(shift-31), rounded.
func multiplyByQuantizedMultiplier(x, q int32, shift int) int32 {
	left, right := 0, 0
	if shift > 0 {
		left = shift
	} else {
		right = -shift
	}
	return roundingDivideByPOT(saturatingRoundingDoublingHighMul(x*(1<<left), q), right)
}

// requant is a precomputed multiplier.
type requant struct {
	q     int32
	shift int
}

func newRequant(m float64) requant {
	q, s := quantizeMultiplier(m)
	return requant{q, s}
}

func (r requant) apply(x int32) int32 { return multiplyByQuantizedMultiplier(x, r.q, r.shift) }

// roundAway is TfLiteRound: nearest integer, halves away from zero.
func roundAway(x float32) float32 { return float32(math.Round(float64(x))) }

// quantizeValue is TFLite's Quantize(): zero_point + round(f / scale).
func quantizeValue(f, scale float32, zp int32) int32 {
	return zp + int32(roundAway(f/scale))
}

// actRange is TFLite's CalculateActivationRangeQuantized for an output of
// type d with the given parameters.
func actRange(act Activation, d DType, scale float32, zp int32) (lo, hi int32) {
	lo, hi = qrange(d)
	switch act {
	case ActRelu:
		lo = max(lo, quantizeValue(0, scale, zp))
	case ActRelu6:
		lo = max(lo, quantizeValue(0, scale, zp))
		hi = min(hi, quantizeValue(6, scale, zp))
	}
	return lo, hi
}

func clamp32(x, lo, hi int32) int32 { return min(max(x, lo), hi) }

// chooseQuant picks asymmetric per-tensor parameters that cover [lo, hi] and
// represent 0 exactly, as TFLite's converter does for activations.
func chooseQuant(lo, hi float32, d DType) *Quant {
	lo, hi = min(lo, 0), max(hi, 0)
	if hi == lo {
		hi = lo + 1e-6 // a constant-zero tensor still needs a positive scale
	}
	qlo, qhi := qrange(d)
	scale := (hi - lo) / float32(qhi-qlo)
	zp := int64(float64(qlo) - math.Round(float64(lo/scale)))
	zp = min(max(zp, int64(qlo)), int64(qhi))
	return PerTensor(scale, zp)
}
