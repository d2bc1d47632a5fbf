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

// TestQuantizeOptionsFullyConnected checks the two other forms of a
// FULLY_CONNECTED model: static int8 with per-channel weights (QuantizeWith)
// and dynamic range (QuantizeDynamicRange), against the float model.
func TestQuantizeOptionsFullyConnected(t *testing.T) {
	for _, m := range TinyModels()[:3] { // the FULLY_CONNECTED models
		fg, err := m.Graph(Float, 3)
		if err != nil {
			t.Fatal(err)
		}
		calib := RandomInputs(fg, 3)
		want, err := fg.Eval(calib...)
		if err != nil {
			t.Fatal(err)
		}

		pc, err := QuantizeWith(fg, [][]any{calib}, QuantizeOptions{IO: FloatIO, PerChannelFullyConnected: true})
		if err != nil {
			t.Fatal(err)
		}
		op := pc.Ops()[1] // after the input's QUANTIZE
		w, b := op.Inputs[1], op.Inputs[2]
		if op.Kind != OpFullyConnected || len(w.Quant.Scale) != w.Shape[0] || w.Quant.Dim != 0 || len(b.Quant.Scale) != w.Shape[0] {
			t.Fatalf("%s: %v weights %v %v, bias %v; want per-channel weights and bias", m.Name, op.Kind, w, w.Quant, b.Quant)
		}
		// The float graph's weights, quantized row by row, are within half a
		// step of their channel's scale.
		fw := fg.Ops()[0].Inputs[1].Data.([]float32)
		k := w.Shape[1]
		for i, q := range w.Data.([]int8) {
			s := w.Quant.Scale[i/k]
			if d := math.Abs(float64(fw[i] - s*float32(q))); d > 0.5001*float64(s) {
				t.Fatalf("%s: weight %d is %g, quantized %d * %g", m.Name, i, fw[i], q, s)
			}
		}
		got, err := pc.Eval(calib...)
		if err != nil {
			t.Fatal(err)
		}
		step := float64(pc.Ops()[len(pc.Ops())-1].Inputs[0].Quant.Scale[0])
		worst := 0.0
		for i, v := range want[0].([]float32) {
			worst = max(worst, math.Abs(float64(v-got[0].([]float32)[i]))/step)
		}
		if worst > 0.02*255 {
			t.Errorf("%s: per-channel int8 differs from float by up to %.1f steps", m.Name, worst)
		}

		dr, err := QuantizeDynamicRange(fg)
		if err != nil {
			t.Fatal(err)
		}
		if len(dr.Ops()) != 1 || !dr.Ops()[0].AsymmetricQuantizeInputs || OpVersion(dr.Ops()[0]) != 12 ||
			dr.Inputs()[0].Type != Float32 || dr.Outputs()[0].Type != Float32 || dr.Ops()[0].Inputs[2].Type != Float32 {
			t.Fatalf("%s: dynamic range ops %v, input %v, output %v", m.Name, dr.Ops(), dr.Inputs()[0], dr.Outputs()[0])
		}
		dw := dr.Ops()[0].Inputs[1]
		if !dw.Quant.equal(w.Quant) || !slices.Equal(dw.Data.([]int8), w.Data.([]int8)) {
			t.Errorf("%s: dynamic-range weights differ from the static per-channel ones", m.Name)
		}
		// The reference computes with the dequantized weights: each is off by
		// at most half its channel's step, so output c moves by at most
		// sum_k |x_k| * scale_c / 2.
		got, err = dr.Eval(calib...)
		if err != nil {
			t.Fatal(err)
		}
		x := calib[0].([]float32)
		n := dr.Outputs()[0].Shape[1]
		for i, v := range want[0].([]float32) {
			r, c := i/n, i%n
			var sum float64
			for _, xv := range x[r*k : (r+1)*k] {
				sum += math.Abs(float64(xv))
			}
			bound := sum*float64(dw.Quant.Scale[c])/2 + 1e-5*math.Abs(float64(v)) + 1e-6
			if d := math.Abs(float64(v - got[0].([]float32)[i])); d > bound {
				t.Errorf("%s: dynamic-range output %d differs from float by %g, bound %g", m.Name, i, d, bound)
			}
		}
	}
	if _, err := QuantizeDynamicRange(NewGraph("empty")); !errors.Is(err, ErrInvalidGraph) {
		t.Errorf("empty graph: err = %v, want ErrInvalidGraph", err)
	}
}
