package kernel

import (
	"math/rand/v2"
	"testing"
)

// Package quant tests the kernel against its pure Go reference on many
// shapes; this is the kernel's own check, with no dependency on quant.
func TestDots(t *testing.T) {
	if !Enabled {
		t.Fatal("built without cgo: the kernel is missing (the project builds with cgo)")
	}
	t.Logf("ISA: %s", ISA())
	rng := rand.New(rand.NewPCG(1, 1))
	for _, dim := range []int{1, 5, 16, 31, 512, 515} {
		for _, nq := range []int{1, 4, 6, 17} {
			n := 9
			q, m := make([]int8, nq*dim), make([]int8, n*dim)
			for i := range q {
				q[i] = int8(rng.IntN(256) - 128)
			}
			for i := range m {
				m[i] = int8(rng.IntN(256) - 128)
			}
			m[0], q[0] = -128, -128 // the largest product
			dst := make([]int32, nq*n)
			Dots(dst, q, m, dim, make([]int16, (nq+1)*dim))
			for i := range nq {
				for j := range n {
					var want int32
					for k := range dim {
						want += int32(q[i*dim+k]) * int32(m[j*dim+k])
					}
					if dst[i*n+j] != want {
						t.Fatalf("dim %d nq %d: dst[%d,%d] = %d, want %d", dim, nq, i, j, dst[i*n+j], want)
					}
				}
			}
		}
	}
}

func TestDotsRejectsBadSizes(t *testing.T) {
	for name, f := range map[string]func(){
		"dim 0":         func() { Dots(nil, nil, nil, 0, nil) },
		"ragged q":      func() { Dots(make([]int32, 4), make([]int8, 5), make([]int8, 4), 2, make([]int16, 8)) },
		"short dst":     func() { Dots(make([]int32, 3), make([]int8, 4), make([]int8, 4), 2, make([]int16, 8)) },
		"short scratch": func() { Dots(make([]int32, 4), make([]int8, 4), make([]int8, 4), 2, make([]int16, 5)) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			f()
		})
	}
	// Nothing to do is not an error.
	Dots(nil, nil, make([]int8, 4), 2, nil)
}
