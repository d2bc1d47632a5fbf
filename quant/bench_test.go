package quant

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/sightd/sightd/quant/kernel"
)

// The matcher's work per frame: 17 regions (a 4x4 grid and the full frame)
// against every rule's concept vector, 512 dimensions (CLIP ViT-B).
const (
	benchRegions = 17
	benchDim     = 512
)

func randUnit(rng *rand.Rand, dim int) []float32 {
	x := make([]float32, dim)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	if err := Normalize(x); err != nil {
		panic(err)
	}
	return x
}

func benchMatrices(b *testing.B, rules int) (q, m *Matrix, qf, mf [][]float32) {
	rng := rand.New(rand.NewPCG(1, 2))
	q, _ = NewMatrix(benchDim)
	m, _ = NewMatrix(benchDim)
	for range benchRegions {
		x := randUnit(rng, benchDim)
		qf = append(qf, x)
		if _, err := q.AppendFloat(x); err != nil {
			b.Fatal(err)
		}
	}
	for range rules {
		x := randUnit(rng, benchDim)
		mf = append(mf, x)
		if _, err := m.AppendFloat(x); err != nil {
			b.Fatal(err)
		}
	}
	return q, m, qf, mf
}

// BenchmarkMatch reports the time to score one frame and, as MB/s, the
// speed at which the rule matrix is consumed (each of its bytes once a frame).
func BenchmarkMatch(b *testing.B) {
	b.Logf("kernel: %s", kernel.ISA())
	for _, rules := range []int{1000, 10000} {
		q, m, qf, mf := benchMatrices(b, rules)
		dst := make([]float32, benchRegions*rules)
		ints := make([]int32, benchRegions*rules)
		b.Run(fmt.Sprintf("rules=%d/int8-kernel", rules), func(b *testing.B) {
			if !kernel.Enabled {
				b.Fatal("built without cgo: no kernel to measure")
			}
			b.SetBytes(int64(rules * benchDim))
			for b.Loop() {
				if _, err := m.Scores(q, dst, ints); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("rules=%d/int8-go", rules), func(b *testing.B) {
			b.SetBytes(int64(rules * benchDim))
			for b.Loop() {
				if err := m.DotsGo(q, ints); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("rules=%d/float32-go", rules), func(b *testing.B) {
			b.SetBytes(int64(rules * benchDim * 4))
			for b.Loop() {
				for j, row := range mf {
					for i, x := range qf {
						dst[i*rules+j] = DotFloat(x, row)
					}
				}
			}
		})
	}
}

// BenchmarkMemCopy measures memory bandwidth with buffers far larger than
// the caches: MB/s counts the bytes copied (each is read once and written
// once).
func BenchmarkMemCopy(b *testing.B) {
	const size = 512 << 20
	src, dst := make([]byte, size), make([]byte, size)
	for i := range src {
		src[i] = byte(i)
	}
	copy(dst, src) // fault the pages in before timing
	b.SetBytes(size)
	for b.Loop() {
		copy(dst, src)
	}
}

// BenchmarkMemRead measures read bandwidth alone: a sum over a buffer
// larger than the caches, eight independent lanes.
func BenchmarkMemRead(b *testing.B) {
	const size = 512 << 20
	buf := make([]uint64, size/8)
	for i := range buf {
		buf[i] = uint64(i)
	}
	b.SetBytes(size)
	var sink uint64
	for b.Loop() {
		var s0, s1, s2, s3, s4, s5, s6, s7 uint64
		for i := 0; i+8 <= len(buf); i += 8 {
			s0 += buf[i]
			s1 += buf[i+1]
			s2 += buf[i+2]
			s3 += buf[i+3]
			s4 += buf[i+4]
			s5 += buf[i+5]
			s6 += buf[i+6]
			s7 += buf[i+7]
		}
		sink += s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7
	}
	if sink == 1 {
		b.Log(sink)
	}
}
