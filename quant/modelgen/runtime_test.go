package modelgen_test

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/sightd/sightd/quant/modelgen"
	"github.com/sightd/sightd/quant/tflite"
)

// These tests run the generated models in both real runtimes (LiteRT, and
// TensorFlow Lite 2.9 with and without XNNPACK) and compare with modelgen's
// reference.

var precisions = []modelgen.Precision{modelgen.Float, modelgen.Int8Full, modelgen.Int8FloatIO}

var runtimes = []struct {
	name string
	opts tflite.Options
}{
	{"litert", tflite.Options{Runtime: tflite.RuntimeLiteRT, Threads: 2}},
	{"tflite2.9-builtin", tflite.Options{Runtime: tflite.RuntimeTFLite29, Threads: 1}},
	{"tflite2.9-xnnpack", tflite.Options{Runtime: tflite.RuntimeTFLite29, Threads: 2, XNNPACK: true}},
}

func TestRuntimeTinyModels(t *testing.T) {
	for _, m := range modelgen.TinyModels() {
		for _, p := range precisions {
			for _, rt := range runtimes {
				t.Run(fmt.Sprintf("%s/%v/%s", m.Name, p, rt.name), func(t *testing.T) {
					g, err := m.Graph(p, 11)
					if err != nil {
						t.Fatal(err)
					}
					for seed := range uint64(3) {
						in := modelgen.RandomInputs(g, 100+seed)
						want, err := g.Eval(in...)
						if err != nil {
							t.Fatal(err)
						}
						got := runModel(t, g, rt.opts, in)
						compareOutputs(t, g, got, want)
					}
				})
			}
		}
	}
}

// TestRuntimeMobileNetV2Like runs the benchmark encoder once per precision
// and runtime on an image that was not used to build or calibrate it, and
// compares the embedding with the reference's by cosine similarity.
//
// Float: the sums run in another order over ~65 layers, so elements agree to
// about 1e-6; the cosine must be 1 to within 1e-5.
//
// Int8: each kernel agrees with the reference exactly or by one step
// (TestRuntimeTinyModels), but the runtime's kernels round some ties
// differently, and a one-step difference early on moves later activations by
// a few steps. The embedding's direction, which is what sightd matches on,
// stays: we want a cosine of at least 0.99. The test checks that the
// embeddings of two different images are well below that, so the bound does
// tell a right answer from a wrong one.
func TestRuntimeMobileNetV2Like(t *testing.T) {
	if testing.Short() {
		t.Skip("300 M MAC model; skipped in -short")
	}
	for _, p := range []modelgen.Precision{modelgen.Float, modelgen.Int8Full} {
		g, err := modelgen.MobileNetV2Like(modelgen.MobileNetV2Options{Seed: 1, Precision: p})
		if err != nil {
			t.Fatal(err)
		}
		in := imageInput(g, modelgen.RandomImage(99, 224, 224))
		want := referenceEmbedding(t, g, in)
		other := referenceEmbedding(t, g, imageInput(g, modelgen.RandomImage(98, 224, 224)))
		chance := cosine(want, other)
		minCos := 0.99
		if p == modelgen.Float {
			minCos = 1 - 1e-5
		}
		if chance > minCos-0.05 {
			t.Fatalf("%v: two different images give embeddings with cosine %.4f; the comparison could not tell them apart", p, chance)
		}
		for _, rt := range runtimes {
			t.Run(fmt.Sprintf("%v/%s", p, rt.name), func(t *testing.T) {
				got := embedding(g, runModel(t, g, rt.opts, in)[0])
				cos := cosine(got, want)
				maxDiff := 0.0
				for i := range got {
					maxDiff = max(maxDiff, math.Abs(float64(got[i]-want[i])))
				}
				t.Logf("cosine %.7f (another image: %.4f), max element difference %.3g", cos, chance, maxDiff)
				if cos < minCos {
					t.Errorf("cosine similarity %.7f to the reference, want at least %g", cos, minCos)
				}
			})
		}
	}
}

// imageInput is img as g's input: as is, or quantized like TFLite's QUANTIZE.
func imageInput(g *modelgen.Graph, img []float32) []any {
	in := g.Inputs()[0]
	if in.Type == modelgen.Float32 {
		return []any{img}
	}
	scale, zp := in.Quant.Scale[0], float64(in.Quant.ZeroPoint[0])
	q := make([]int8, len(img))
	for i, v := range img {
		q[i] = int8(min(max(math.Round(float64(v/scale))+zp, -128), 127))
	}
	return []any{q}
}

func referenceEmbedding(t *testing.T, g *modelgen.Graph, in []any) []float32 {
	t.Helper()
	out, err := g.Eval(in...)
	if err != nil {
		t.Fatal(err)
	}
	return embedding(g, out[0])
}

// embedding dequantizes a model output to float32.
func embedding(g *modelgen.Graph, out any) []float32 {
	switch v := out.(type) {
	case []float32:
		return v
	case []int8:
		q := g.Outputs()[0].Quant
		f := make([]float32, len(v))
		for i, x := range v {
			f[i] = q.Scale[0] * float32(int64(x)-q.ZeroPoint[0])
		}
		return f
	}
	panic(fmt.Sprintf("output of type %T", out))
}

func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

// runModel builds g, runs it once in the runtime and returns its outputs.
func runModel(t testing.TB, g *modelgen.Graph, opts tflite.Options, inputs []any) []any {
	t.Helper()
	data, err := g.Build()
	if err != nil {
		t.Fatal(err)
	}
	m, err := tflite.NewModel(data)
	if err != nil {
		t.Fatal(err)
	}
	ip, err := tflite.NewInterpreter(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ip.Close(); err != nil {
			t.Error(err)
		}
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := ip.AllocateTensors(); err != nil {
		t.Fatal(err)
	}
	for i, gt := range g.Inputs() {
		checkTensor(t, ip.Input(i), gt)
		if err := copyIn(ip.Input(i), inputs[i]); err != nil {
			t.Fatalf("input %d: %v", i, err)
		}
	}
	if err := ip.Invoke(); err != nil {
		t.Fatal(err)
	}
	outs := make([]any, len(g.Outputs()))
	for i, gt := range g.Outputs() {
		rt := ip.Output(i)
		checkTensor(t, rt, gt)
		var err error
		switch gt.Type {
		case modelgen.Float32:
			v := make([]float32, gt.Len())
			err, outs[i] = tflite.CopyOut(rt, v), v
		case modelgen.Int8:
			v := make([]int8, gt.Len())
			err, outs[i] = tflite.CopyOut(rt, v), v
		case modelgen.Int32:
			v := make([]int32, gt.Len())
			err, outs[i] = tflite.CopyOut(rt, v), v
		case modelgen.UInt8:
			v := make([]uint8, gt.Len())
			err, outs[i] = tflite.CopyOut(rt, v), v
		}
		if err != nil {
			t.Fatalf("output %d: %v", i, err)
		}
	}
	return outs
}

func copyIn(rt *tflite.Tensor, v any) error {
	switch v := v.(type) {
	case []float32:
		return tflite.CopyIn(rt, v)
	case []int8:
		return tflite.CopyIn(rt, v)
	case []int32:
		return tflite.CopyIn(rt, v)
	case []uint8:
		return tflite.CopyIn(rt, v)
	}
	return fmt.Errorf("input of type %T", v)
}

// checkTensor checks that the runtime read the tensor's name, shape and
// quantization from the file as written.
func checkTensor(t testing.TB, rt *tflite.Tensor, gt *modelgen.Tensor) {
	t.Helper()
	if rt.Name() != gt.Name || !slices.Equal(rt.Shape(), gt.Shape) {
		t.Fatalf("runtime tensor %q %v, want %q %v", rt.Name(), rt.Shape(), gt.Name, gt.Shape)
	}
	scale, zp := rt.Quantization()
	if gt.Quant == nil {
		if scale != 0 {
			t.Fatalf("tensor %q: runtime scale %g for an unquantized tensor", gt.Name, scale)
		}
		return
	}
	if scale != gt.Quant.Scale[0] || int64(zp) != gt.Quant.ZeroPoint[0] {
		t.Fatalf("tensor %q: runtime quantization %g/%d, want %v", gt.Name, scale, zp, gt.Quant)
	}
}

// compareOutputs allows one quantized step for int8 outputs (and for float
// outputs that DEQUANTIZE an int8 tensor, one step of its scale), and 1e-5
// of the output's largest magnitude for float outputs: the runtime sums in
// another order (XNNPACK also with fused multiply-adds), so float results
// agree to rounding only, and an element near zero can be the difference of
// large terms.
func compareOutputs(t testing.TB, g *modelgen.Graph, got, want []any) {
	t.Helper()
	for i, out := range g.Outputs() {
		switch w := want[i].(type) {
		case []int8:
			gi := got[i].([]int8)
			steps := 0
			for j := range w {
				steps = max(steps, absInt(int(gi[j])-int(w[j])))
			}
			if steps > 1 {
				t.Errorf("output %q differs by up to %d steps; got %v, want %v", out.Name, steps, head(gi), head(w))
			}
			t.Logf("output %q: max difference %d steps", out.Name, steps)
		case []float32:
			gf := got[i].([]float32)
			tol := 1e-5 * maxAbs(w)
			if step := dequantizeStep(g, out); step > 0 {
				tol += step
			}
			diff := 0.0
			for j := range w {
				diff = max(diff, math.Abs(float64(gf[j])-float64(w[j])))
			}
			if diff > tol {
				t.Errorf("output %q differs by up to %g (tolerance %g); got %v, want %v", out.Name, diff, tol, head(gf), head(w))
			}
			t.Logf("output %q: max difference %.3g (%.2g of tolerance)", out.Name, diff, diff/tol)
		default:
			t.Fatalf("output %q of type %T", out.Name, w)
		}
	}
}

// dequantizeStep is the scale of the int8 tensor that a DEQUANTIZE turns
// into out, or 0 when out is not such an output.
func dequantizeStep(g *modelgen.Graph, out *modelgen.Tensor) float64 {
	for _, op := range g.Ops() {
		if op.Kind == modelgen.OpDequantize && op.Outputs[0] == out {
			return float64(op.Inputs[0].Quant.Scale[0])
		}
	}
	return 0
}

func maxAbs(v []float32) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, math.Abs(float64(x)))
	}
	return m
}

func absInt(x int) int { return max(x, -x) }

func head[T any](v []T) []T { return v[:min(len(v), 8)] }
