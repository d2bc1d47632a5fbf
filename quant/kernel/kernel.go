//go:build cgo

// Package kernel is the C fast path of quant's matrix scoring: int8 dot
// products of a few queries against many rows, auto-vectorised by GCC (AVX2
// chosen at load time on x86-64, with an SSE2 fallback; NEON on arm64).
// Package quant's pure Go loops are the reference it is tested against:
// the int32 results are identical.
package kernel

/*
#cgo CFLAGS: -O3 -std=c11
#include "dots.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Enabled reports whether this build has the C kernel (it needs cgo).
const Enabled = true

// ISA names the instruction set the kernel runs with on this CPU.
func ISA() string { return C.GoString(C.sightd_isa()) }

// Dots sets dst[i*n+j] to the dot product of query i (q[i*dim:(i+1)*dim])
// and row j of m (m[j*dim:(j+1)*dim]), for nq = len(q)/dim queries and
// n = len(m)/dim rows. Each row of m is read once for all queries. scratch
// must hold at least (nq+1)*dim values; it is overwritten. Dots panics on
// sizes that do not fit.
func Dots(dst []int32, q, m []int8, dim int, scratch []int16) {
	if dim <= 0 || len(q)%dim != 0 || len(m)%dim != 0 {
		panic(fmt.Sprintf("kernel.Dots: dim %d, len(q) %d, len(m) %d", dim, len(q), len(m)))
	}
	nq, n := len(q)/dim, len(m)/dim
	if nq == 0 || n == 0 {
		return
	}
	if len(dst) < nq*n || len(scratch) < (nq+1)*dim {
		panic(fmt.Sprintf("kernel.Dots: dst %d < %d or scratch %d < %d", len(dst), nq*n, len(scratch), (nq+1)*dim))
	}
	C.sightd_dots((*C.int32_t)(unsafe.Pointer(&dst[0])),
		(*C.int8_t)(unsafe.Pointer(&q[0])), C.size_t(nq),
		(*C.int8_t)(unsafe.Pointer(&m[0])), C.size_t(n),
		C.size_t(dim), (*C.int16_t)(unsafe.Pointer(&scratch[0])))
}
