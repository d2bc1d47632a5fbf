package quant

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/sightd/sightd/quant/kernel"
)

// naiveDot is the textbook sum in int64: the reference for Dot.
func naiveDot(a, b []int8) int64 {
	var s int64
	for i := range a {
		s += int64(a[i]) * int64(b[i])
	}
	return s
}

// randInt8 fills a vector; mode picks plain random values, only the
// extremes -128 and 127, or all -128 (the largest products).
func randInt8(rng *rand.Rand, n, mode int) []int8 {
	v := make([]int8, n)
	for i := range v {
		switch mode {
		case 0:
			v[i] = int8(rng.IntN(256) - 128)
		case 1:
			v[i] = [2]int8{-128, 127}[rng.IntN(2)]
		default:
			v[i] = -128
		}
	}
	return v
}

func TestDot(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 511, 512, 513, MaxDim} {
		for mode := range 3 {
			a, b := randInt8(rng, n, mode), randInt8(rng, n, mode)
			if got, want := Dot(a, b), naiveDot(a, b); int64(got) != want {
				t.Fatalf("n=%d mode=%d: Dot = %d, want %d", n, mode, got, want)
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Dot of different lengths did not panic")
		}
	}()
	Dot(make([]int8, 3), make([]int8, 4))
}

// The C kernel and the pure Go loops give the same int32 sums, for lengths
// that are and are not multiples of the vector width, query counts around
// the kernel's block of four, and extreme values.
func TestKernelMatchesGo(t *testing.T) {
	if !kernel.Enabled {
		t.Fatal("built without cgo: the kernel is missing (the project builds with cgo)")
	}
	t.Logf("kernel: %s", kernel.ISA())
	rng := rand.New(rand.NewPCG(5, 6))
	for _, dim := range []int{1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 500, 512, 513, 768, 1031} {
		for _, nq := range []int{1, 3, 4, 5, 8, 17} {
			for mode := range 3 {
				n := 1 + rng.IntN(40)
				q, m := mustMatrix(t, dim), mustMatrix(t, dim)
				for range nq {
					q.Append(Vector{Data: randInt8(rng, dim, mode), Scale: 1})
				}
				for range n {
					m.Append(Vector{Data: randInt8(rng, dim, mode), Scale: 1})
				}
				got, want := make([]int32, nq*n), make([]int32, nq*n)
				if err := m.Dots(q, got); err != nil {
					t.Fatal(err)
				}
				if err := m.DotsGo(q, want); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("dim=%d nq=%d n=%d mode=%d: kernel and Go differ", dim, nq, n, mode)
				}
				for i := range nq {
					for j := range n {
						if int64(want[i*n+j]) != naiveDot(q.Row(i).Data, m.Row(j).Data) {
							t.Fatalf("dim=%d: DotsGo[%d,%d] wrong", dim, i, j)
						}
					}
				}
			}
		}
	}
}

func mustMatrix(t testing.TB, dim int) *Matrix {
	t.Helper()
	m, err := NewMatrix(dim)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// cosineBound is the worst case of |quantised cosine - true cosine| for unit
// vectors a, b quantised with scales sa, sb (each component off by at most
// half its scale), plus float32 rounding.
func cosineBound(a, b []float32, sa, sb float32) float64 {
	var l1a, l1b float64
	for i := range a {
		l1a += math.Abs(float64(a[i]))
		l1b += math.Abs(float64(b[i]))
	}
	n := float64(len(a))
	return float64(sa)/2*l1b + float64(sb)/2*l1a + n*float64(sa)*float64(sb)/4 + 1e-5
}

func TestQuantizeErrorBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	worst := 0.0
	for _, dim := range []int{1, 2, 16, 512, 768} {
		for range 50 {
			x, y := randUnit(rng, dim), randUnit(rng, dim)
			// Not normalised on input: Quantize normalises.
			xs := slices.Clone(x)
			for i := range xs {
				xs[i] *= 37
			}
			qx, err := Quantize(xs)
			if err != nil {
				t.Fatal(err)
			}
			qy, err := Quantize(y)
			if err != nil {
				t.Fatal(err)
			}
			maxAbs := 0.0
			for i, v := range x {
				maxAbs = max(maxAbs, math.Abs(float64(v)))
				if d := math.Abs(float64(qx.Data[i])*float64(qx.Scale) - float64(v)); d > float64(qx.Scale)/2+1e-6 {
					t.Fatalf("dim %d: component %d off by %g, more than scale/2 = %g", dim, i, d, qx.Scale/2)
				}
			}
			if math.Abs(float64(qx.Scale)-maxAbs/127) > 1e-6 {
				t.Fatalf("scale %g, want max|x|/127 = %g", qx.Scale, maxAbs/127)
			}
			if !slices.ContainsFunc(qx.Data, func(v int8) bool { return v == 127 || v == -127 }) {
				t.Fatal("the largest component does not map to ±127")
			}
			want, _ := CosineFloat(x, y)
			got := float64(Cosine(qx, qy))
			bound := cosineBound(x, y, qx.Scale, qy.Scale)
			if math.Abs(got-want) > bound {
				t.Fatalf("dim %d: cosine %g, float %g: error above the bound %g", dim, got, want, bound)
			}
			if dim == 512 {
				worst = max(worst, math.Abs(got-want))
			}
		}
	}
	// What the bound means in practice for CLIP-sized vectors.
	if worst > 0.01 {
		t.Fatalf("512-d cosine error up to %g", worst)
	}
	t.Logf("worst 512-d cosine error: %.5f", worst)
}

func TestQuantizeRejects(t *testing.T) {
	inf := float32(math.Inf(1))
	tests := []struct {
		name string
		x    []float32
		want error
	}{
		{"zero", make([]float32, 8), ErrZero},
		{"empty", nil, ErrDim},
		{"too long", make([]float32, MaxDim+1), ErrDim},
		{"NaN", []float32{1, float32(math.NaN()), 0}, ErrNonFinite},
		{"+Inf", []float32{1, inf}, ErrNonFinite},
		{"-Inf", []float32{-inf, 1}, ErrNonFinite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Quantize(tt.x); !errors.Is(err, tt.want) {
				t.Fatalf("Quantize = %v, want %v", err, tt.want)
			}
			x := slices.Clone(tt.x)
			if err := Normalize(x); !errors.Is(err, tt.want) {
				t.Fatalf("Normalize = %v, want %v", err, tt.want)
			}
			m := mustMatrix(t, min(max(len(tt.x), 1), MaxDim))
			if _, err := m.AppendFloat(tt.x); err == nil || m.Len() != 0 || len(m.data) != 0 {
				t.Fatalf("AppendFloat = %v, Len %d", err, m.Len())
			}
		})
	}
	if _, err := QuantizeInto(make([]int8, 2), []float32{1, 2, 3}); !errors.Is(err, ErrDim) {
		t.Fatalf("QuantizeInto with a short dst = %v", err)
	}
	if _, err := CosineFloat([]float32{0, 0}, []float32{1, 0}); !errors.Is(err, ErrZero) {
		t.Fatalf("CosineFloat of a zero vector = %v", err)
	}
	// Extremes that are finite still work: huge and tiny magnitudes.
	for _, x := range [][]float32{{math.MaxFloat32, -math.MaxFloat32, 1}, {math.SmallestNonzeroFloat32, 0, 0}} {
		v, err := Quantize(x)
		if err != nil || !(v.Scale > 0) {
			t.Fatalf("Quantize(%v) = %v, %v", x, v, err)
		}
		if c := Cosine(v, v); math.Abs(float64(c)-1) > 0.01 {
			t.Fatalf("self-cosine of %v = %v", x, c)
		}
	}
}

func TestNormalize(t *testing.T) {
	x := []float32{3, 4}
	if err := Normalize(x); err != nil || x[0] != 0.6 || x[1] != 0.8 {
		t.Fatalf("Normalize = %v, %v", x, err)
	}
	big := []float32{math.MaxFloat32, math.MaxFloat32}
	if err := Normalize(big); err != nil || math.Abs(float64(big[0])-math.Sqrt2/2) > 1e-6 {
		t.Fatalf("Normalize overflowed: %v, %v", big, err)
	}
}

func TestMatrix(t *testing.T) {
	m := mustMatrix(t, 3)
	if _, err := NewMatrix(0); !errors.Is(err, ErrDim) {
		t.Fatal("NewMatrix(0) accepted")
	}
	if _, err := m.Append(Vector{Data: []int8{1, 2}, Scale: 1}); !errors.Is(err, ErrDim) {
		t.Fatalf("Append of the wrong length: %v", err)
	}
	for _, s := range []float32{0, -1, float32(math.NaN()), float32(math.Inf(1))} {
		if _, err := m.Append(Vector{Data: []int8{1, 2, 3}, Scale: s}); err == nil {
			t.Fatalf("Append with scale %v accepted", s)
		}
	}
	i, err := m.Append(Vector{Data: []int8{1, -2, 3}, Scale: 0.5})
	if err != nil || i != 0 {
		t.Fatal(i, err)
	}
	if r := m.Row(0); !slices.Equal(r.Data, []int8{1, -2, 3}) || r.Scale != 0.5 {
		t.Fatalf("Row(0) = %v", r)
	}
	q := mustMatrix(t, 4)
	if err := m.Dots(q, nil); !errors.Is(err, ErrDim) {
		t.Fatalf("Dots with another dimension: %v", err)
	}
	q = mustMatrix(t, 3)
	q.Append(Vector{Data: []int8{2, 2, 2}, Scale: 0.25})
	if err := m.Dots(q, nil); err == nil {
		t.Fatal("Dots into a short dst accepted")
	}
	scores := make([]float32, 1)
	if _, err := m.Scores(q, scores, nil); err != nil || scores[0] != float32(2-4+6)*0.25*0.5 {
		t.Fatalf("Scores = %v, %v", scores, err)
	}
	m.Reset()
	if m.Len() != 0 {
		t.Fatal("Reset left rows")
	}
	// An empty side gives no scores and no error.
	if _, err := m.Scores(q, nil, nil); err != nil {
		t.Fatal(err)
	}
}

// Scores are the quantised cosines: equal to the float64 cosine of the
// dequantised vectors, and within the quantisation bound of the true ones.
func TestScores(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	const dim, nq, n = 512, 17, 300
	q, m := mustMatrix(t, dim), mustMatrix(t, dim)
	var qf, mf [][]float32
	for range nq {
		x := randUnit(rng, dim)
		qf = append(qf, x)
		q.AppendFloat(x)
	}
	for range n {
		x := randUnit(rng, dim)
		mf = append(mf, x)
		m.AppendFloat(x)
	}
	dst := make([]float32, nq*n)
	if _, err := m.Scores(q, dst, nil); err != nil {
		t.Fatal(err)
	}
	for i := range nq {
		for j := range n {
			got := float64(dst[i*n+j])
			deq := float64(Dot(q.Row(i).Data, m.Row(j).Data)) * float64(q.Row(i).Scale) * float64(m.Row(j).Scale)
			if math.Abs(got-deq) > 1e-6 {
				t.Fatalf("score[%d,%d] = %g, dequantised %g", i, j, got, deq)
			}
			want, _ := CosineFloat(qf[i], mf[j])
			if b := cosineBound(qf[i], mf[j], q.Row(i).Scale, m.Row(j).Scale); math.Abs(got-want) > b {
				t.Fatalf("score[%d,%d] = %g, float %g, bound %g", i, j, got, want, b)
			}
		}
	}
}

func TestTopK(t *testing.T) {
	nan := float32(math.NaN())
	if got := TopK([]float32{0.1, 0.9, nan, 0.5, 0.9, -1}, 4); !slices.Equal(got, []int{1, 4, 3, 0}) {
		t.Fatalf("TopK = %v", got)
	}
	if got := TopK([]float32{nan, 0.2, nan}, 3); !slices.Equal(got, []int{1, 0, 2}) {
		t.Fatalf("TopK with NaNs = %v", got)
	}
	if got := TopK([]float32{1, 2}, 0); got != nil {
		t.Fatalf("k=0: %v", got)
	}
	if got := TopK([]float32{1, 2}, -1); got != nil {
		t.Fatalf("k=-1: %v", got)
	}
	if got := TopK(nil, 3); got != nil {
		t.Fatalf("empty: %v", got)
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for range 200 {
		n := rng.IntN(60)
		scores := make([]float32, n)
		for i := range scores {
			scores[i] = float32(rng.IntN(8)) / 8 // many ties
		}
		k := rng.IntN(n + 3)
		want := make([]int, n)
		for i := range want {
			want[i] = i
		}
		sort.SliceStable(want, func(a, b int) bool { return scores[want[a]] > scores[want[b]] })
		want = want[:min(k, n)]
		if got := TopK(scores, k); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("TopK(%v, %d) = %v, want %v", scores, k, got, want)
		}
	}
}
