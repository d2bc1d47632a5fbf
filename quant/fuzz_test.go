package quant

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"

	"github.com/sightd/sightd/quant/kernel"
)

// FuzzQuantizeDot splits the input into two float32 vectors, quantises
// them, and checks: Quantize accepts exactly the finite non-zero vectors,
// every component is within half a scale step, the quantised cosine is
// within its bound, and the C kernel's dot products equal the Go ones.
func FuzzQuantizeDot(f *testing.F) {
	f.Add(floatsBytes(1, 0, 0, 0, 1, 0))
	f.Add(floatsBytes(3, -4, 5, 6, 0.5, -1, 2, 2))
	f.Add(floatsBytes(math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 1))
	f.Add(floatsBytes(0, 0, 1, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		vals := make([]float32, len(b)/4)
		for i := range vals {
			vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		half := len(vals) / 2
		x, y := vals[:half], vals[half:2*half]
		qx, errx := Quantize(x)
		qy, erry := Quantize(y)
		if valid(x) != (errx == nil) || valid(y) != (erry == nil) {
			t.Fatalf("Quantize accepted/refused wrongly: %v %v", errx, erry)
		}
		if errx != nil || erry != nil {
			return
		}
		nx := slices.Clone(x)
		ny := slices.Clone(y)
		if Normalize(nx) != nil || Normalize(ny) != nil {
			t.Fatal("Normalize refused what Quantize accepted")
		}
		for i, v := range nx {
			if d := math.Abs(float64(qx.Data[i])*float64(qx.Scale) - float64(v)); d > float64(qx.Scale)/2*1.0001+1e-30 {
				t.Fatalf("component %d off by %g (scale %g)", i, d, qx.Scale)
			}
		}
		want, err := CosineFloat(nx, ny)
		if err != nil {
			// Normalised components can underflow to zero in float32.
			return
		}
		if got := float64(Cosine(qx, qy)); math.Abs(got-want) > cosineBound(nx, ny, qx.Scale, qy.Scale)+1e-4 {
			t.Fatalf("cosine %g, float %g", got, want)
		}
		if !kernel.Enabled {
			return
		}
		q, m := mustMatrix(t, half), mustMatrix(t, half)
		for range 5 { // more than the kernel's block of four queries
			q.Append(qx)
			m.Append(qy)
		}
		q.Append(qy)
		got, ref := make([]int32, 6*5), make([]int32, 6*5)
		m.Dots(q, got)
		m.DotsGo(q, ref)
		if !slices.Equal(got, ref) {
			t.Fatalf("kernel %v, Go %v", got, ref)
		}
	})
}

func valid(x []float32) bool {
	if len(x) == 0 || len(x) > MaxDim {
		return false
	}
	nonZero := false
	for _, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return false
		}
		nonZero = nonZero || v != 0
	}
	return nonZero
}

func floatsBytes(v ...float32) []byte {
	var b []byte
	for _, f := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return b
}
