package tflite

import (
	"fmt"
	"os"
	"syscall"

	"github.com/sightd/sightd/quant/tflite/tflschema"
)

// checkStructure checks what LiteRT 2.3 takes on trust when it compiles a
// model and crashes on when it is wrong: every index in the graph (operator
// codes, tensors, buffers) in range, quantization vectors of matching
// lengths, a subgraph to run. TensorFlow Lite's verifier has already checked
// the flatbuffer itself, so reading it cannot go out of bounds; a panic of the
// reader is still turned into an error.
func checkStructure(b []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: unreadable model structure: %v", ErrModelInvalid, r)
		}
	}()
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrModelInvalid, fmt.Sprintf(format, a...))
	}
	m := tflschema.GetRootAsModel(b, 0)
	codes, buffers := m.OperatorCodesLength(), m.BuffersLength()
	if m.SubgraphsLength() == 0 {
		return bad("no subgraph")
	}
	var sg tflschema.SubGraph
	var op tflschema.Operator
	var t tflschema.Tensor
	var q tflschema.QuantizationParameters
	for s := range m.SubgraphsLength() {
		if !m.Subgraphs(&sg, s) {
			return bad("subgraph %d missing", s)
		}
		n := sg.TensorsLength()
		if s == 0 && (sg.InputsLength() == 0 || sg.OutputsLength() == 0) {
			return bad("the main subgraph has %d inputs and %d outputs", sg.InputsLength(), sg.OutputsLength())
		}
		index := func(what string, i int32, optional bool) error {
			if (optional && i == -1) || (i >= 0 && int(i) < n) {
				return nil
			}
			return bad("subgraph %d: %s refers to tensor %d of %d", s, what, i, n)
		}
		for i := range sg.InputsLength() {
			if err := index("input", sg.Inputs(i), false); err != nil {
				return err
			}
		}
		for i := range sg.OutputsLength() {
			if err := index("output", sg.Outputs(i), false); err != nil {
				return err
			}
		}
		for k := range n {
			if !sg.Tensors(&t, k) {
				return bad("subgraph %d: tensor %d missing", s, k)
			}
			if bi := t.Buffer(); int(bi) >= buffers {
				return bad("subgraph %d: tensor %d refers to buffer %d of %d", s, k, bi, buffers)
			}
			for d := range t.ShapeLength() {
				if t.Shape(d) < -1 {
					return bad("subgraph %d: tensor %d has dimension %d", s, k, t.Shape(d))
				}
			}
			if t.Quantization(&q) != nil {
				ns, nz := q.ScaleLength(), q.ZeroPointLength()
				if ns > 0 && nz > 0 && ns != nz {
					return bad("subgraph %d: tensor %d has %d scales and %d zero points", s, k, ns, nz)
				}
				if ns > 1 && (q.QuantizedDimension() < 0 || int(q.QuantizedDimension()) >= max(t.ShapeLength(), 1)) {
					return bad("subgraph %d: tensor %d is quantized along dimension %d of %d", s, k, q.QuantizedDimension(), t.ShapeLength())
				}
			}
		}
		for o := range sg.OperatorsLength() {
			if !sg.Operators(&op, o) {
				return bad("subgraph %d: operator %d missing", s, o)
			}
			if c := op.OpcodeIndex(); int(c) >= codes {
				return bad("subgraph %d: operator %d has operator code %d of %d", s, o, c, codes)
			}
			for i := range op.InputsLength() {
				if err := index(fmt.Sprintf("operator %d input %d", o, i), op.Inputs(i), true); err != nil {
					return err
				}
			}
			for i := range op.OutputsLength() {
				if err := index(fmt.Sprintf("operator %d output %d", o, i), op.Outputs(i), false); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// checkFile maps a model file read-only and checks its structure.
func checkFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("tflite: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("tflite: %w", err)
	}
	if fi.Size() == 0 {
		return fmt.Errorf("%w: %s is empty", ErrModelInvalid, path)
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("tflite: map %s: %w", path, err)
	}
	defer syscall.Munmap(b)
	if err := checkStructure(b); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
