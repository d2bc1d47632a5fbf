package tflite_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sightd/sightd/quant/modelgen"
	"github.com/sightd/sightd/quant/tflite"
)

// Correctness across runtimes: small models written by quant/modelgen, whose
// plain-Go reference evaluator gives the right answers independently of
// either runtime. LiteRT must compute them right. For TensorFlow Lite 2.9 the
// tests assert what it does, measured: that is what makes the int8 cases
// discriminative (a test that 2.9 also passed would not show that LiteRT
// computes something 2.9 does not).

var (
	liteRT    = tflite.Options{Runtime: tflite.RuntimeLiteRT, Threads: 1}
	tfl29     = tflite.Options{Runtime: tflite.RuntimeTFLite29, Threads: 1}
	tfl29XNN  = tflite.Options{Runtime: tflite.RuntimeTFLite29, Threads: 1, XNNPACK: true}
	mlpBatch  = 4
	mlpLayers = [3]int{64, 128, 32}
)

// mlp is a float32 two-layer perceptron 64 -> 128 (RELU) -> 32 with batch 4.
// The rows of each weight matrix (the output channels) are scaled by gains
// spread log-uniformly over [0.1, 3], so their per-channel scales differ by
// up to 30x: one scale for the whole tensor would leave the small rows with
// a few levels each, and a kernel that applies the wrong scale to a channel
// is far off.
func mlp(seed uint64) *modelgen.Graph {
	rng := rand.New(rand.NewPCG(seed, 0xfc))
	g := modelgen.NewGraph("sightd correctness mlp")
	x := g.NewTensor("x", modelgen.Float32, []int{mlpBatch, mlpLayers[0]}, nil)
	h := x
	for l := range 2 {
		in, out := mlpLayers[l], mlpLayers[l+1]
		w := make([]float32, out*in)
		for c := range out {
			gain := 0.1 * math.Pow(30, float64(c)/float64(out-1))
			if c%2 == 1 { // interleave large and small rows
				gain = 0.1 * math.Pow(30, 1-float64(c)/float64(out-1))
			}
			for k := range in {
				w[c*in+k] = float32(rng.NormFloat64() * gain / math.Sqrt(float64(in)))
			}
		}
		b := make([]float32, out)
		for c := range b {
			b[c] = float32(rng.NormFloat64() * 0.05)
		}
		name := fmt.Sprintf("fc%d", l+1)
		wt := g.NewConst(name+"/weights", []int{out, in}, w, nil)
		bt := g.NewConst(name+"/bias", []int{out}, b, nil)
		y := g.NewTensor(name, modelgen.Float32, []int{mlpBatch, out}, nil)
		act := modelgen.ActRelu
		if l == 1 {
			act = modelgen.ActNone
		}
		g.FullyConnected(h, wt, bt, y, act)
		h = y
	}
	g.SetInputs(x)
	g.SetOutputs(h)
	return g
}

// mlpInput is a float input; seeds below 100 calibrate, the others test.
func mlpInput(seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 0x1a7a))
	x := make([]float32, mlpBatch*mlpLayers[0])
	for i := range x {
		x[i] = 2*rng.Float32() - 1
	}
	return x
}

// runOn builds g and runs it once on in with o. Any error, from loading to
// invoking, is returned with the step that failed.
func runOn[In, Out tflite.Elem](t *testing.T, g *modelgen.Graph, o tflite.Options, in []In) ([]Out, error) {
	t.Helper()
	data, err := g.Build()
	if err != nil {
		t.Fatal(err)
	}
	m, err := tflite.NewModel(data)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	t.Cleanup(func() { m.Close() })
	ip, err := tflite.NewInterpreter(m, o)
	if err != nil {
		return nil, fmt.Errorf("new interpreter: %w", err)
	}
	t.Cleanup(func() { ip.Close() })
	if err := ip.AllocateTensors(); err != nil {
		return nil, fmt.Errorf("allocate tensors: %w", err)
	}
	if err := tflite.CopyIn(ip.Input(0), in); err != nil {
		t.Fatal(err)
	}
	if err := ip.Invoke(); err != nil {
		return nil, fmt.Errorf("invoke: %w", err)
	}
	out := make([]Out, g.Outputs()[0].Len())
	if err := tflite.CopyOut(ip.Output(0), out); err != nil {
		t.Fatal(err)
	}
	return out, nil
}

func evalRef[In, Out any](t *testing.T, g *modelgen.Graph, in []In) []Out {
	t.Helper()
	out, err := g.Eval(in)
	if err != nil {
		t.Fatal(err)
	}
	return out[0].([]Out)
}

// cosineSim is the cosine similarity of a and b, and 0 when either is zero
// (a runtime that writes nothing is as far as can be from any answer).
func cosineSim(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return ab / math.Sqrt(aa*bb)
}

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

func maxAbsOf(v []float32) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, math.Abs(float64(x)))
	}
	return m
}

// dequant is scale * (q - zero point) for the output tensor t.
func dequant(t *modelgen.Tensor, q []int8) []float32 {
	s, zp := t.Quant.Scale[0], t.Quant.ZeroPoint[0]
	f := make([]float32, len(q))
	for i, v := range q {
		f[i] = s * float32(int64(v)-zp)
	}
	return f
}

// TestFloatAcrossRuntimes: all three runtime configurations agree with the
// float32 reference to 1e-5 of the output's largest magnitude (the runtimes
// sum in other orders, XNNPACK with fused multiply-adds).
func TestFloatAcrossRuntimes(t *testing.T) {
	g := mlp(1)
	for _, rt := range []struct {
		name string
		o    tflite.Options
	}{{"litert", liteRT}, {"tflite2.9", tfl29}, {"tflite2.9-xnnpack", tfl29XNN}} {
		t.Run(rt.name, func(t *testing.T) {
			for seed := uint64(100); seed < 103; seed++ {
				x := mlpInput(seed)
				want := evalRef[float32, float32](t, g, x)
				got, err := runOn[float32, float32](t, g, rt.o, x)
				if err != nil {
					t.Fatal(err)
				}
				diff, tol := maxAbsDiff(got, want), 1e-5*maxAbsOf(want)
				t.Logf("input %d: max difference %.3g (tolerance %.3g), cosine %.9f", seed, diff, tol, cosineSim(got, want))
				if diff > tol {
					t.Errorf("input %d: max difference %g exceeds %g", seed, diff, tol)
				}
			}
		})
	}
}

// TestPerChannelFullyConnected: static int8 with one weight scale per output
// channel and operator version 4, as litert-torch's PT2E quantizer writes.
// LiteRT must match the reference within one quantization step per element.
// TensorFlow Lite 2.9 loads the model and runs it without an error, but its
// int8 kernel takes the weights' tensor-wide scale, which it leaves 0 for a
// per-channel tensor: every output of such a layer is the zero point, so the
// model's output is a constant that does not depend on the input.
func TestPerChannelFullyConnected(t *testing.T) {
	fg := mlp(1)
	var calib [][]any
	for seed := range uint64(8) {
		calib = append(calib, []any{mlpInput(seed)})
	}
	g, err := modelgen.QuantizeWith(fg, calib, modelgen.QuantizeOptions{IO: modelgen.Int8IO, PerChannelFullyConnected: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range g.Ops() {
		w := op.Inputs[1]
		if op.Kind != modelgen.OpFullyConnected || modelgen.OpVersion(op) != 4 || len(w.Quant.Scale) != w.Shape[0] {
			t.Fatalf("op %v version %d, weights %v with %d scales; want per-channel FULLY_CONNECTED version 4",
				op.Kind, modelgen.OpVersion(op), w, len(w.Quant.Scale))
		}
		lo, hi := minMax(w.Quant.Scale)
		t.Logf("%s: weight scales from %.3g to %.3g (%.0fx)", w.Name, lo, hi, hi/lo)
		if hi < 10*lo {
			t.Fatalf("%s: the weight scales differ by only %.1fx, want 10x or more", w.Name, hi/lo)
		}
	}
	in, out := g.Inputs()[0], g.Outputs()[0]
	quantizeIn := func(x []float32) []int8 {
		s, zp := in.Quant.Scale[0], float64(in.Quant.ZeroPoint[0])
		q := make([]int8, len(x))
		for i, v := range x {
			q[i] = int8(min(max(math.Round(float64(v/s))+zp, -128), 127))
		}
		return q
	}

	// The reference's answers depend on the input: a constant output could
	// not be mistaken for them.
	ref0 := evalRef[int8, int8](t, g, quantizeIn(mlpInput(100)))
	ref1 := evalRef[int8, int8](t, g, quantizeIn(mlpInput(101)))
	if c := cosineSim(dequant(out, ref0), dequant(out, ref1)); c > 0.5 {
		t.Fatalf("the reference gives two inputs outputs with cosine %.3f; the test could not tell answers apart", c)
	}

	t.Run("litert", func(t *testing.T) {
		for seed := uint64(100); seed < 103; seed++ {
			x := quantizeIn(mlpInput(seed))
			want := evalRef[int8, int8](t, g, x)
			got, err := runOn[int8, int8](t, g, liteRT, x)
			if err != nil {
				t.Fatal(err)
			}
			steps, differing := 0, 0
			for i := range want {
				d := int(got[i]) - int(want[i])
				steps = max(steps, d, -d)
				if d != 0 {
					differing++
				}
			}
			c := cosineSim(dequant(out, got), dequant(out, want))
			t.Logf("input %d: max difference %d steps (%d of %d elements differ), cosine %.6f", seed, steps, differing, len(want), c)
			if steps > 1 {
				t.Errorf("input %d: LiteRT differs from the reference by up to %d steps, want at most 1", seed, steps)
			}
		}
	})
	for _, rt := range []struct {
		name string
		o    tflite.Options
	}{{"tflite2.9", tfl29}, {"tflite2.9-xnnpack", tfl29XNN}} {
		t.Run(rt.name, func(t *testing.T) {
			for seed := uint64(100); seed < 103; seed++ {
				x := quantizeIn(mlpInput(seed))
				want := evalRef[int8, int8](t, g, x)
				got, err := runOn[int8, int8](t, g, rt.o, x)
				if err != nil {
					t.Fatalf("2.9 was measured to run this model without an error; now: %v", err)
				}
				steps := 0
				zeroPoint := 0
				for i := range want {
					d := int(got[i]) - int(want[i])
					steps = max(steps, d, -d)
					if int64(got[i]) == out.Quant.ZeroPoint[0] {
						zeroPoint++
					}
				}
				c := cosineSim(dequant(out, got), dequant(out, want))
				t.Logf("input %d: cosine %.4f to the reference, max difference %d steps, %d of %d outputs are the zero point %d",
					seed, c, steps, zeroPoint, len(got), out.Quant.ZeroPoint[0])
				if c > 0.9 {
					t.Errorf("input %d: 2.9's output has cosine %.4f to the reference; it was measured far off", seed, c)
				}
				if zeroPoint != len(got) {
					t.Errorf("input %d: %d of %d outputs are the zero point; 2.9 was measured to write only the zero point", seed, zeroPoint, len(got))
				}
			}
		})
	}
}

// TestDynamicRangeFullyConnected: a dynamic-range (hybrid) model, as TFLite's
// converter writes with Optimize.DEFAULT and no calibration: float32 input
// and output, int8 per-channel weights, asymmetric_quantize_inputs,
// FULLY_CONNECTED version 12. LiteRT quantizes each input row to int8 on
// every invoke, so it agrees with the reference (float32 arithmetic on the
// dequantized weights) only to within that rounding: we want a cosine above
// 0.999 and every element within the worst-case bound of errBound.
// TensorFlow Lite 2.9 does not register FULLY_CONNECTED version 12 and
// refuses the model.
func TestDynamicRangeFullyConnected(t *testing.T) {
	g, err := modelgen.QuantizeDynamicRange(mlp(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range g.Ops() {
		if v := modelgen.OpVersion(op); v != 12 || !op.AsymmetricQuantizeInputs {
			t.Fatalf("op %v version %d asymmetric inputs %v; want a hybrid FULLY_CONNECTED version 12", op.Kind, v, op.AsymmetricQuantizeInputs)
		}
	}

	t.Run("litert", func(t *testing.T) {
		for seed := uint64(100); seed < 103; seed++ {
			x := mlpInput(seed)
			want := evalRef[float32, float32](t, g, x)
			got, err := runOn[float32, float32](t, g, liteRT, x)
			if err != nil {
				t.Fatal(err)
			}
			bound := errBound(t, g, x)
			c := cosineSim(got, want)
			worst := 0.0 // largest error as a fraction of its element's bound
			for i := range want {
				worst = max(worst, math.Abs(float64(got[i])-float64(want[i]))/float64(bound[i]))
			}
			t.Logf("input %d: cosine %.7f, max difference %.3g (output magnitude %.3g), at most %.2f of the bound",
				seed, c, maxAbsDiff(got, want), maxAbsOf(want), worst)
			if c < 0.999 {
				t.Errorf("input %d: cosine %.6f to the reference, want at least 0.999", seed, c)
			}
			if worst > 1 {
				t.Errorf("input %d: an element differs by %.2f times its worst-case bound", seed, worst)
			}
		}
	})
	for _, rt := range []struct {
		name string
		o    tflite.Options
	}{{"tflite2.9", tfl29}, {"tflite2.9-xnnpack", tfl29XNN}} {
		t.Run(rt.name, func(t *testing.T) {
			_, err := runOn[float32, float32](t, g, rt.o, mlpInput(100))
			t.Logf("2.9: %v", err)
			if err == nil {
				t.Fatal("2.9 ran a model with FULLY_CONNECTED version 12; it was measured to refuse it")
			}
			if msg := err.Error(); !strings.Contains(msg, "FULLY_CONNECTED") || !strings.Contains(msg, "12") {
				t.Errorf("error %q does not name FULLY_CONNECTED version 12", msg)
			}
		})
	}
}

// errBound is, for each output element of the hybrid model g on input x, the
// most that a runtime quantizing the layers' inputs can differ from the
// reference. A hybrid FULLY_CONNECTED quantizes each input row to 8 bits with
// a range that covers the row and zero, so the step is at most
// 2*max|x_row|/255 (asymmetric) or max|x_row|/127 (symmetric), and rounding
// and clamping move an element by at most one step s. Output channel c then
// moves by at most s * sum_k |W[c,k]|, with W the dequantized weights; the
// error a layer's input already carries, e[k], adds sum_k |W[c,k]| e[k], and
// RELU does not enlarge it. Each layer's step is taken for the runtime's
// input, whose magnitude can exceed the reference's by the error carried. A
// relative 1e-5 of the sum of |W[c,k] x[k]| plus |bias| covers float32
// rounding in another summation order.
func errBound(t *testing.T, g *modelgen.Graph, x []float32) []float32 {
	t.Helper()
	carried := make([]float64, len(x)) // error bound of the current activations
	act := x
	for _, op := range g.Ops() {
		w, b := op.Inputs[1], op.Inputs[2]
		out, in := w.Shape[0], w.Shape[1]
		wq, bias := w.Data.([]int8), b.Data.([]float32)
		rows := len(act) / in
		next := make([]float64, rows*out)
		for r := range rows {
			row, rowErr := act[r*in:(r+1)*in], carried[r*in:(r+1)*in]
			step := 0.0
			for k := range row {
				step = max(step, math.Abs(float64(row[k]))+rowErr[k])
			}
			step /= 127
			for c := range out {
				var e, mag float64
				for k := range in {
					wf := math.Abs(float64(w.Quant.Scale[c]) * float64(wq[c*in+k]))
					e += wf * (step + rowErr[k])
					mag += wf * math.Abs(float64(row[k]))
				}
				next[r*out+c] = e + 1e-5*(mag+math.Abs(float64(bias[c])))
			}
		}
		// The reference's activations for the next layer.
		sub := modelgen.NewGraph("layer")
		xi := sub.NewTensor("x", modelgen.Float32, op.Inputs[0].Shape, nil)
		wi := sub.NewConst("w", w.Shape, wq, w.Quant)
		bi := sub.NewConst("b", b.Shape, bias, nil)
		yi := sub.NewTensor("y", modelgen.Float32, op.Outputs[0].Shape, nil)
		sub.FullyConnected(xi, wi, bi, yi, op.Act).AsymmetricQuantizeInputs = true
		sub.SetInputs(xi)
		sub.SetOutputs(yi)
		act = evalRef[float32, float32](t, sub, act)
		carried = next
	}
	bound := make([]float32, len(carried))
	for i, e := range carried {
		bound[i] = float32(e)
	}
	return bound
}

func minMax(v []float32) (lo, hi float32) {
	lo, hi = v[0], v[0]
	for _, x := range v[1:] {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}
