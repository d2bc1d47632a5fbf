package quant

import (
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/sightd/sightd/quant/kernel"
)

// Matrix is a set of quantised vectors of one dimension stored as one
// contiguous block of int8 rows plus a scale per row: the concept vectors of
// the active rules, or the regions of one frame.
type Matrix struct {
	dim    int
	data   []int8
	scales []float32
}

// NewMatrix returns an empty matrix of vectors of length dim.
func NewMatrix(dim int) (*Matrix, error) {
	if dim <= 0 || dim > MaxDim {
		return nil, fmt.Errorf("%w: dimension %d", ErrDim, dim)
	}
	return &Matrix{dim: dim}, nil
}

// Dim is the length of each row.
func (m *Matrix) Dim() int { return m.dim }

// Len is the number of rows.
func (m *Matrix) Len() int { return len(m.scales) }

// Append copies v in as the last row and returns its index.
func (m *Matrix) Append(v Vector) (int, error) {
	if len(v.Data) != m.dim {
		return 0, fmt.Errorf("%w: vector of %d into a matrix of %d", ErrDim, len(v.Data), m.dim)
	}
	if !(v.Scale > 0) || math.IsInf(float64(v.Scale), 1) {
		return 0, fmt.Errorf("%w: scale %v is not positive and finite", ErrNonFinite, v.Scale)
	}
	m.data = append(m.data, v.Data...)
	m.scales = append(m.scales, v.Scale)
	return len(m.scales) - 1, nil
}

// AppendFloat quantises x (see Quantize) into a new last row.
func (m *Matrix) AppendFloat(x []float32) (int, error) {
	if len(x) != m.dim {
		return 0, fmt.Errorf("%w: vector of %d into a matrix of %d", ErrDim, len(x), m.dim)
	}
	m.data = slices.Grow(m.data, m.dim)[:len(m.data)+m.dim]
	scale, err := QuantizeInto(m.data[len(m.data)-m.dim:], x)
	if err != nil {
		m.data = m.data[:len(m.data)-m.dim]
		return 0, err
	}
	m.scales = append(m.scales, scale)
	return len(m.scales) - 1, nil
}

// Row returns row i; its Data shares the matrix's memory.
func (m *Matrix) Row(i int) Vector {
	return Vector{Data: m.data[i*m.dim : (i+1)*m.dim : (i+1)*m.dim], Scale: m.scales[i]}
}

// Reset empties the matrix and keeps its memory.
func (m *Matrix) Reset() {
	m.data, m.scales = m.data[:0], m.scales[:0]
}

// Dots sets dst[i*m.Len()+j] to the int32 dot product of query row i and
// row j of m. Each row of m is read once for all the queries (the matrix is
// the big operand; the queries stay in the CPU's cache). With cgo this runs
// the C kernel (quant/kernel), otherwise DotsGo; the results are identical.
func (m *Matrix) Dots(queries *Matrix, dst []int32) error {
	if err := m.checkDots(queries, len(dst)); err != nil {
		return err
	}
	if !kernel.Enabled {
		dotsGo(dst, queries, m)
		return nil
	}
	need := (queries.Len() + 1) * m.dim
	sp := scratchPool.Get().(*[]int16)
	if cap(*sp) < need {
		*sp = make([]int16, need)
	}
	kernel.Dots(dst, queries.data, m.data, m.dim, (*sp)[:need])
	scratchPool.Put(sp)
	return nil
}

var scratchPool = sync.Pool{New: func() any { return new([]int16) }}

// DotsGo is Dots in plain Go: the reference the C kernel is tested against.
func (m *Matrix) DotsGo(queries *Matrix, dst []int32) error {
	if err := m.checkDots(queries, len(dst)); err != nil {
		return err
	}
	dotsGo(dst, queries, m)
	return nil
}

func dotsGo(dst []int32, q, m *Matrix) {
	n := m.Len()
	for j := range n {
		row := m.data[j*m.dim : (j+1)*m.dim]
		for i := range q.Len() {
			dst[i*n+j] = Dot(q.data[i*q.dim:(i+1)*q.dim], row)
		}
	}
}

func (m *Matrix) checkDots(q *Matrix, dstLen int) error {
	if q.dim != m.dim {
		return fmt.Errorf("%w: queries of %d against rows of %d", ErrDim, q.dim, m.dim)
	}
	if dstLen < q.Len()*m.Len() {
		return fmt.Errorf("quant: dst holds %d scores, need %d x %d", dstLen, q.Len(), m.Len())
	}
	return nil
}

// Scores sets dst[i*m.Len()+j] to the cosine of query i and row j
// (dot * both scales). ints is scratch for the dot products; pass nil to
// allocate, or reuse one of at least queries.Len()*m.Len() per frame.
func (m *Matrix) Scores(queries *Matrix, dst []float32, ints []int32) ([]int32, error) {
	n := queries.Len() * m.Len()
	if len(dst) < n {
		return ints, fmt.Errorf("quant: dst holds %d scores, need %d x %d", len(dst), queries.Len(), m.Len())
	}
	if cap(ints) < n {
		ints = make([]int32, n)
	}
	ints = ints[:n]
	if err := m.Dots(queries, ints); err != nil {
		return ints, err
	}
	for i := range queries.Len() {
		qs := queries.scales[i]
		row := ints[i*m.Len() : (i+1)*m.Len()]
		out := dst[i*m.Len() : (i+1)*m.Len()]
		for j, d := range row {
			out[j] = float32(d) * qs * m.scales[j]
		}
	}
	return ints, nil
}

// TopK returns the indices of the k highest scores, highest first; equal
// scores keep index order. NaN scores rank last. k is capped at len(scores).
func TopK(scores []float32, k int) []int {
	k = min(max(k, 0), len(scores))
	if k == 0 {
		return nil
	}
	better := func(a, b int) bool { // does index a rank before index b?
		sa, sb := scores[a], scores[b]
		nanA, nanB := sa != sa, sb != sb
		switch {
		case nanA != nanB:
			return nanB
		case !nanA && sa != sb:
			return sa > sb
		}
		return a < b
	}
	// A min-heap of the k best so far (the root is the worst of them):
	// O(n log k), and no copy of scores.
	h := make([]int, 0, k)
	down := func(i int) {
		for {
			w, l, r := i, 2*i+1, 2*i+2
			if l < len(h) && better(h[w], h[l]) {
				w = l
			}
			if r < len(h) && better(h[w], h[r]) {
				w = r
			}
			if w == i {
				return
			}
			h[i], h[w] = h[w], h[i]
			i = w
		}
	}
	for i := range scores {
		if len(h) < k {
			h = append(h, i)
			for c := len(h) - 1; c > 0; {
				p := (c - 1) / 2
				if !better(h[p], h[c]) {
					break
				}
				h[p], h[c] = h[c], h[p]
				c = p
			}
			continue
		}
		if better(i, h[0]) {
			h[0] = i
			down(0)
		}
	}
	slices.SortFunc(h, func(a, b int) int {
		if better(a, b) {
			return -1
		}
		return 1 // indices are distinct, so one of them is better
	})
	return h
}
