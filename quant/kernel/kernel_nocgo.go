//go:build !cgo

package kernel

// Enabled reports whether this build has the C kernel (it needs cgo).
const Enabled = false

// ISA names the instruction set the kernel runs with: none without cgo.
func ISA() string { return "none (built without cgo)" }

// Dots is not available without cgo; package quant does not call it then.
func Dots(dst []int32, q, m []int8, dim int, scratch []int16) {
	panic("kernel.Dots: built without cgo")
}
