package modelgen

import (
	"errors"
	"math"
	"slices"
	"testing"
)

// TestQuantizeTinyModels checks the int8 forms against the float model on
// the calibration input: one sample fixes the ranges, so only inputs inside
// them are represented without clipping. Input rounding (half a step on each
// of up to 64 inputs) moves an output by a few steps; we allow 2% of the
// output range, about 5 steps.
func TestQuantizeTinyModels(t *testing.T) {
	for _, m := range TinyModels() {
		fg, err := m.Graph(Float, 3)
		if err != nil {
			t.Fatal(err)
		}
		qg, err := m.Graph(Int8FloatIO, 3)
		if err != nil {
			t.Fatal(err)
		}
		calib := RandomInputs(fg, 3) // what m.Graph calibrated on
		want, err := fg.Eval(calib...)
		if err != nil {
			t.Fatal(err)
		}
		got, err := qg.Eval(calib...)
		if err != nil {
			t.Fatal(err)
		}
		out := qg.Outputs()[0]
		var step float64
		for _, op := range qg.Ops() {
			if op.Kind == OpDequantize && op.Outputs[0] == out {
				step = float64(op.Inputs[0].Quant.Scale[0])
			}
		}
		if step == 0 || out.Name != fg.Outputs()[0].Name || out.Type != Float32 {
			t.Fatalf("%s: output %v is not a DEQUANTIZE named like the float output", m.Name, out)
		}
		w, g := want[0].([]float32), got[0].([]float32)
		worst := 0.0
		for i := range w {
			worst = max(worst, math.Abs(float64(w[i]-g[i]))/step)
		}
		if worst > 0.02*255 {
			t.Errorf("%s: int8 differs from float by up to %.1f steps", m.Name, worst)
		}
	}
}

// TestQuantizeStructure checks what Quantize makes of a model with every
// kind of weight: per-channel scales along the output channels, a
// per-tensor FULLY_CONNECTED, biases at input*weight scale, the fixed
// L2_NORMALIZATION output, and QUANTIZE/DEQUANTIZE at a float boundary.
func TestQuantizeStructure(t *testing.T) {
	fg, err := MobileNetV2Like(MobileNetV2Options{Seed: 4, Resolution: 32, EmbedDim: 16})
	if err != nil {
		t.Fatal(err)
	}
	for _, io := range []IO{Int8IO, FloatIO} {
		qg, err := Quantize(fg, [][]any{RandomInputs(fg, 1), RandomInputs(fg, 2)}, io)
		if err != nil {
			t.Fatal(err)
		}
		ops := qg.Ops()
		kinds := func(ops []*Op) []OpKind {
			var k []OpKind
			for _, op := range ops {
				k = append(k, op.Kind)
			}
			return k
		}
		body := ops
		if io == FloatIO {
			if ops[0].Kind != OpQuantize || ops[len(ops)-1].Kind != OpDequantize {
				t.Fatalf("float IO: ops %v, want QUANTIZE first and DEQUANTIZE last", kinds(ops))
			}
			body = ops[1 : len(ops)-1]
		}
		if !slices.Equal(kinds(body), kinds(fg.Ops())) {
			t.Fatalf("%v: quantized ops %v, want %v", io, kinds(body), kinds(fg.Ops()))
		}
		in, out := qg.Inputs()[0], qg.Outputs()[0]
		wantType := map[IO]DType{Int8IO: Int8, FloatIO: Float32}[io]
		if in.Type != wantType || out.Type != wantType || in.Name != "image" || out.Name != "embedding" {
			t.Errorf("%v: input %v, output %v", io, in, out)
		}
		for _, op := range body {
			o := op.Outputs[0]
			if o.Type != Int8 {
				t.Errorf("%v output %v is not int8", op.Kind, o)
			}
			switch op.Kind {
			case OpConv2D, OpDepthwiseConv2D, OpFullyConnected:
				w, b := op.Inputs[1], op.Inputs[2]
				wantScales, wantDim := w.Shape[0], 0
				if op.Kind == OpDepthwiseConv2D {
					wantScales, wantDim = w.Shape[3], 3
				}
				if op.Kind == OpFullyConnected {
					wantScales = 1
				}
				if w.Type != Int8 || len(w.Quant.Scale) != wantScales || w.Quant.Dim != wantDim || b.Type != Int32 {
					t.Errorf("%v: weights %v %v, bias %v", op.Kind, w, w.Quant, b)
				}
				for c, s := range b.Quant.Scale {
					want := op.Inputs[0].Quant.Scale[0] * w.Quant.Scale[c]
					if math.Abs(float64(s-want)) > 1e-6*float64(want) {
						t.Errorf("%v: bias scale %g, want %g", op.Kind, s, want)
					}
				}
			case OpL2Normalization:
				if !o.Quant.equal(PerTensor(1.0/128, 0)) {
					t.Errorf("L2_NORMALIZATION output %v", o.Quant)
				}
			}
		}
	}
}

func TestQuantizeErrors(t *testing.T) {
	fg, err := TinyModels()[0].Graph(Float, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Quantize(fg, nil, Int8IO); err == nil {
		t.Error("no calibration input: no error")
	}
	if _, err := Quantize(fg, [][]any{{make([]float32, 3)}}, Int8IO); !errors.Is(err, ErrEval) {
		t.Errorf("calibration input of the wrong size: err = %v, want ErrEval", err)
	}
	qg, err := TinyModels()[0].Graph(Int8Full, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Quantize(qg, [][]any{RandomInputs(qg, 1)}, Int8IO); !errors.Is(err, ErrInvalidGraph) {
		t.Errorf("quantizing an int8 graph: err = %v, want ErrInvalidGraph", err)
	}
}
