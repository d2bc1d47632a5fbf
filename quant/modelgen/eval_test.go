package modelgen

import (
	"errors"
	"math"
	"slices"
	"testing"
)

// The expected values here are worked out by hand in the comments.

func TestFixedPoint(t *testing.T) {
	for _, c := range []struct {
		m     float64
		q     int32
		shift int
	}{
		{0.5, 1 << 30, 0},          // 0.5 = 2^30/2^31
		{0.75, 3 << 29, 0},         // 0.75 = 0.75 * 2^0
		{3, 3 << 29, 2},            // 3 = 0.75 * 2^2
		{1.0 / 1024, 1 << 30, -9},  // 0.5 * 2^-9
		{0.9999999999, 1 << 30, 1}, // rounds up to 1 = 0.5 * 2^1
		{0, 0, 0},
	} {
		q, shift := quantizeMultiplier(c.m)
		if q != c.q || shift != c.shift {
			t.Errorf("quantizeMultiplier(%g) = %d, %d; want %d, %d", c.m, q, shift, c.q, c.shift)
		}
	}
	for _, c := range []struct {
		x    int32
		exp  int
		want int32
	}{
		{5, 1, 3},   // 2.5 rounds away from zero
		{-5, 1, -3}, // -2.5 too
		{3, 1, 2},   // 1.5
		{-3, 1, -2}, // -1.5
		{6, 2, 2},   // 1.5
		{5, 2, 1},   // 1.25
		{-7, 2, -2}, // -1.75
		{7, 0, 7},
	} {
		if got := roundingDivideByPOT(c.x, c.exp); got != c.want {
			t.Errorf("roundingDivideByPOT(%d, %d) = %d, want %d", c.x, c.exp, got, c.want)
		}
	}
	// 20 * 0.75 = 15; 10 * 3 = 30; 1000 / 1024 = 0.977 -> 1; 7 * 0.5 = 3.5 -> 4;
	// gemmlowp's high multiply rounds a negative half up: -3.5 -> -3.
	for _, c := range []struct {
		x    int32
		m    float64
		want int32
	}{{20, 0.75, 15}, {10, 3, 30}, {1000, 1.0 / 1024, 1}, {7, 0.5, 4}, {-7, 0.5, -3}} {
		if got := newRequant(c.m).apply(c.x); got != c.want {
			t.Errorf("%d * %g = %d, want %d", c.x, c.m, got, c.want)
		}
	}
	// RELU6 with scale 0.1 and zero point -50: 0 -> -50, 6 -> -50 + 60 = 10.
	if lo, hi := actRange(ActRelu6, Int8, 0.1, -50); lo != -50 || hi != 10 {
		t.Errorf("RELU6 range %d..%d, want -50..10", lo, hi)
	}
	if lo, hi := actRange(ActRelu, Int8, 0.1, -200+128); lo != -72 || hi != 127 {
		t.Errorf("RELU range %d..%d, want -72..127", lo, hi)
	}
	// [-1, 3] over 255 steps: scale 4/255, zero point -128 + 63.75 -> -64.
	if q := chooseQuant(-1, 3, Int8); q.Scale[0] != 4.0/255 || q.ZeroPoint[0] != -64 {
		t.Errorf("chooseQuant(-1, 3) = %v", q)
	}
}

// single builds a one-op graph with the given inputs (activations become
// graph inputs) and output, runs it and returns the output.
func single(t *testing.T, g *Graph, out *Tensor, inputs ...any) any {
	t.Helper()
	var ins []*Tensor
	for _, x := range g.tensors {
		if !x.IsConst() && x != out {
			ins = append(ins, x)
		}
	}
	g.SetInputs(ins...)
	g.SetOutputs(out)
	res, err := g.Eval(inputs...)
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

func TestEvalFullyConnected(t *testing.T) {
	// x = [1, 2], W = [[1, 0], [0.5, -1]], b = [0.5, 1]:
	// y = [1 + 0.5, 0.5 - 2 + 1] = [1.5, -0.5]; RELU gives [1.5, 0].
	for _, c := range []struct {
		act  Activation
		want []float32
	}{{ActNone, []float32{1.5, -0.5}}, {ActRelu, []float32{1.5, 0}}} {
		g := NewGraph("fc")
		x := g.NewTensor("x", Float32, []int{1, 2}, nil)
		w := g.NewConst("w", []int{2, 2}, []float32{1, 0, 0.5, -1}, nil)
		b := g.NewConst("b", []int{2}, []float32{0.5, 1}, nil)
		y := g.NewTensor("y", Float32, []int{1, 2}, nil)
		g.FullyConnected(x, w, b, y, c.act)
		if got := single(t, g, y, []float32{1, 2}); !slices.Equal(got.([]float32), c.want) {
			t.Errorf("%v: got %v, want %v", c.act, got, c.want)
		}
	}

	// The same in int8. x: scale 0.5, zero point 1, q = [3, -1] is [1, -1].
	// W: scale 0.25, q = [[4, 0], [2, -4]] is [[1, 0], [0.5, -1]].
	// b: scale 0.5*0.25 = 0.125, q = [4, 8] is [0.5, 1].
	// y = [1 + 0.5, 0.5 + 1 + 1] = [1.5, 2.5]; scale 0.25, zero point -2
	// gives q = [6 - 2, 10 - 2] = [4, 8]. In integers: acc = [4 + 2*4,
	// 8 + 2*2 + (-2)(-4)] = [12, 20], times 0.5*0.25/0.25, plus -2 = [4, 8].
	g := NewGraph("fc int8")
	x := g.NewTensor("x", Int8, []int{1, 2}, PerTensor(0.5, 1))
	w := g.NewConst("w", []int{2, 2}, []int8{4, 0, 2, -4}, PerTensor(0.25, 0))
	b := g.NewConst("b", []int{2}, []int32{4, 8}, PerTensor(0.125, 0))
	y := g.NewTensor("y", Int8, []int{1, 2}, PerTensor(0.25, -2))
	g.FullyConnected(x, w, b, y, ActNone)
	if got := single(t, g, y, []int8{3, -1}); !slices.Equal(got.([]int8), []int8{4, 8}) {
		t.Errorf("int8: got %v, want [4 8]", got)
	}
}

// TestEvalFullyConnectedPerChannel is the int8 case of TestEvalFullyConnected
// with one weight scale per output channel, and its hybrid (dynamic-range)
// form, with the operator versions of each.
func TestEvalFullyConnectedPerChannel(t *testing.T) {
	// W: scales [0.25, 0.0625], q = [[4, 0], [8, -16]] is again
	// [[1, 0], [0.5, -1]]; b: scales [0.125, 0.03125], q = [4, 32] is
	// [0.5, 1]. With x as before (q = [3, -1] is [1, -1]) y = [1.5, 2.5],
	// q = [4, 8]. In integers: channel 0 is (4 + 2*4) * 0.5*0.25/0.25 - 2 = 4;
	// channel 1 is (32 + 2*8 + (-2)(-16)) * 0.5*0.0625/0.25 - 2 = 80/8 - 2 = 8.
	// Channel 0's multiplier for channel 1 would give 38.
	g := NewGraph("fc int8 per channel")
	x := g.NewTensor("x", Int8, []int{1, 2}, PerTensor(0.5, 1))
	w := g.NewConst("w", []int{2, 2}, []int8{4, 0, 8, -16}, PerChannel([]float32{0.25, 0.0625}, 0))
	b := g.NewConst("b", []int{2}, []int32{4, 32}, PerChannel([]float32{0.125, 0.03125}, 0))
	y := g.NewTensor("y", Int8, []int{1, 2}, PerTensor(0.25, -2))
	op := g.FullyConnected(x, w, b, y, ActNone)
	if got := single(t, g, y, []int8{3, -1}); !slices.Equal(got.([]int8), []int8{4, 8}) {
		t.Errorf("int8 per channel: got %v, want [4 8]", got)
	}
	if v := OpVersion(op); v != 4 {
		t.Errorf("int8 per channel: version %d, want 4", v)
	}

	// Hybrid: float x = [1, 2] and bias [0.5, 1] with the same int8 weights:
	// y = [1 + 0.5, 0.5 - 2 + 1] = [1.5, -0.5].
	for _, c := range []struct {
		wq      *Quant
		wdata   []int8
		asym    bool
		version int32
	}{
		{PerChannel([]float32{0.25, 0.0625}, 0), []int8{4, 0, 8, -16}, true, 12},
		{PerTensor(0.25, 0), []int8{4, 0, 2, -4}, true, 9},
		{PerTensor(0.25, 0), []int8{4, 0, 2, -4}, false, 3},
	} {
		g := NewGraph("fc hybrid")
		x := g.NewTensor("x", Float32, []int{1, 2}, nil)
		w := g.NewConst("w", []int{2, 2}, c.wdata, c.wq)
		b := g.NewConst("b", []int{2}, []float32{0.5, 1}, nil)
		y := g.NewTensor("y", Float32, []int{1, 2}, nil)
		op := g.FullyConnected(x, w, b, y, ActNone)
		op.AsymmetricQuantizeInputs = c.asym
		if got := single(t, g, y, []float32{1, 2}); !slices.Equal(got.([]float32), []float32{1.5, -0.5}) {
			t.Errorf("hybrid %v: got %v, want [1.5 -0.5]", c.wq, got)
		}
		if v := OpVersion(op); v != c.version {
			t.Errorf("hybrid %v, asymmetric inputs %v: version %d, want %d", c.wq, c.asym, v, c.version)
		}
	}
}

// image3x3 is the NHWC image [[1 2 3] [4 5 6] [7 8 9]] with one channel.
var image3x3 = []float32{1, 2, 3, 4, 5, 6, 7, 8, 9}

func TestEvalConv2D(t *testing.T) {
	// SAME, stride 2, 3x3 ones: output 2x2, one pixel of padding on each side,
	// windows centred on (0,0), (0,2), (2,0), (2,2):
	// 1+2+4+5 = 12, 2+3+5+6 = 16, 4+5+7+8 = 24, 5+6+8+9 = 28; bias 1.
	g := NewGraph("conv same")
	x := g.NewTensor("x", Float32, []int{1, 3, 3, 1}, nil)
	w := g.NewConst("w", []int{1, 3, 3, 1}, []float32{1, 1, 1, 1, 1, 1, 1, 1, 1}, nil)
	b := g.NewConst("b", []int{1}, []float32{1}, nil)
	y := g.NewTensor("y", Float32, []int{1, 2, 2, 1}, nil)
	g.Conv2D(x, w, b, y, Conv{StrideH: 2, StrideW: 2, Padding: PadSame})
	if got := single(t, g, y, image3x3); !slices.Equal(got.([]float32), []float32{13, 17, 25, 29}) {
		t.Errorf("SAME: got %v", got)
	}

	// VALID, stride 1, 2x2 kernel [[1 2] [3 4]], two output channels (the
	// second is the first negated, bias 0): 1+4+12+20 = 37, 2+6+15+24 = 47,
	// 4+10+21+32 = 67, 5+12+24+36 = 77. RELU6 clips channel 0 to 6 and
	// channel 1 to 0.
	g = NewGraph("conv valid")
	x = g.NewTensor("x", Float32, []int{1, 3, 3, 1}, nil)
	w = g.NewConst("w", []int{2, 2, 2, 1}, []float32{1, 2, 3, 4, -1, -2, -3, -4}, nil)
	b = g.NewConst("b", []int{2}, []float32{0, 0}, nil)
	y = g.NewTensor("y", Float32, []int{1, 2, 2, 2}, nil)
	op := g.Conv2D(x, w, b, y, Conv{Padding: PadValid})
	if got := single(t, g, y, image3x3); !slices.Equal(got.([]float32), []float32{37, -37, 47, -47, 67, -67, 77, -77}) {
		t.Errorf("VALID: got %v", got)
	}
	op.Act = ActRelu6
	if got := single(t, g, y, image3x3); !slices.Equal(got.([]float32), []float32{6, 0, 6, 0, 6, 0, 6, 0}) {
		t.Errorf("VALID RELU6: got %v", got)
	}
}

func TestEvalConv2DInt8PerChannel(t *testing.T) {
	// Input scale 1, zero point 0: q = image. Filter 1x1, two output channels
	// with scales 0.5 and 2 (q = 2 and 1: real weights 1 and 2). Output scale
	// 1, zero point 10: channel 0 = x + 10, channel 1 = 2x + 10, bias 0.
	g := NewGraph("conv int8")
	x := g.NewTensor("x", Int8, []int{1, 1, 3, 1}, PerTensor(1, 0))
	w := g.NewConst("w", []int{2, 1, 1, 1}, []int8{2, 1}, PerChannel([]float32{0.5, 2}, 0))
	b := g.NewConst("b", []int{2}, []int32{0, 0}, PerChannel([]float32{0.5, 2}, 0))
	y := g.NewTensor("y", Int8, []int{1, 1, 3, 2}, PerTensor(1, 10))
	g.Conv2D(x, w, b, y, Conv{Padding: PadValid})
	want := []int8{11, 12, 12, 14, 13, 16}
	if got := single(t, g, y, []int8{1, 2, 3}); !slices.Equal(got.([]int8), want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestEvalDepthwise(t *testing.T) {
	// Two channels, 3x3 SAME stride 1 at the centre pixel only (1x1 image):
	// only the filter's centre tap sees data. Channel 0 filter centre 2,
	// channel 1 centre -1; input [3, 4]; bias [1, 1] -> [7, -3].
	g := NewGraph("dw")
	x := g.NewTensor("x", Float32, []int{1, 1, 1, 2}, nil)
	wd := make([]float32, 18)
	wd[4*2], wd[4*2+1] = 2, -1 // tap (1,1) of [1, 3, 3, 2]
	w := g.NewConst("w", []int{1, 3, 3, 2}, wd, nil)
	b := g.NewConst("b", []int{2}, []float32{1, 1}, nil)
	y := g.NewTensor("y", Float32, []int{1, 1, 1, 2}, nil)
	g.DepthwiseConv2D(x, w, b, y, Conv{Padding: PadSame})
	if got := single(t, g, y, []float32{3, 4}); !slices.Equal(got.([]float32), []float32{7, -3}) {
		t.Errorf("got %v, want [7 -3]", got)
	}

	// A 2x2 image, 2x2 VALID filter per channel: channel 0 sums its four
	// pixels with weights 1, 2, 3, 4; channel 1 with weight 1 each.
	// Pixels (channel 0, channel 1): (1,10) (2,20) (3,30) (4,40):
	// 1+4+9+16 = 30 and 100.
	g = NewGraph("dw valid")
	x = g.NewTensor("x", Float32, []int{1, 2, 2, 2}, nil)
	w = g.NewConst("w", []int{1, 2, 2, 2}, []float32{1, 1, 2, 1, 3, 1, 4, 1}, nil)
	b = g.NewConst("b", []int{2}, []float32{0, 0}, nil)
	y = g.NewTensor("y", Float32, []int{1, 1, 1, 2}, nil)
	g.DepthwiseConv2D(x, w, b, y, Conv{Padding: PadValid})
	if got := single(t, g, y, []float32{1, 10, 2, 20, 3, 30, 4, 40}); !slices.Equal(got.([]float32), []float32{30, 100}) {
		t.Errorf("VALID: got %v, want [30 100]", got)
	}
}

func TestEvalAdd(t *testing.T) {
	// a: scale 0.5, zero point 0; b: scale 0.25, zero point 10.
	// a = 4 (2.0), b = 14 (1.0): 3.0 at scale 0.1 -> 30.
	// a = -6 (-3.0), b = 10 (0): -3.0 -> -30.
	g := NewGraph("add int8")
	a := g.NewTensor("a", Int8, []int{2}, PerTensor(0.5, 0))
	b := g.NewTensor("b", Int8, []int{2}, PerTensor(0.25, 10))
	y := g.NewTensor("y", Int8, []int{2}, PerTensor(0.1, 0))
	op := g.Add(a, b, y, ActNone)
	if got := single(t, g, y, []int8{4, -6}, []int8{14, 10}); !slices.Equal(got.([]int8), []int8{30, -30}) {
		t.Errorf("got %v, want [30 -30]", got)
	}
	// RELU6 at output zero point -50: 8.0 clips to 6.0 = 10, -3.0 to 0 = -50.
	y.Quant = PerTensor(0.1, -50)
	op.Act = ActRelu6
	if got := single(t, g, y, []int8{14, -6}, []int8{14, 10}); !slices.Equal(got.([]int8), []int8{10, -50}) {
		t.Errorf("RELU6: got %v, want [10 -50]", got)
	}
}

func TestEvalMean(t *testing.T) {
	// [1, 2, 2, 2] over H and W: channel 0 = (1+2+3+4)/4 = 2.5,
	// channel 1 = (10+20+30+40)/4 = 25.
	g := NewGraph("mean")
	x := g.NewTensor("x", Float32, []int{1, 2, 2, 2}, nil)
	axes := g.NewConst("axes", []int{2}, []int32{1, 2}, nil)
	y := g.NewTensor("y", Float32, []int{1, 2}, nil)
	g.Mean(x, axes, y)
	if got := single(t, g, y, []float32{1, 10, 2, 20, 3, 30, 4, 40}); !slices.Equal(got.([]float32), []float32{2.5, 25}) {
		t.Errorf("got %v, want [2.5 25]", got)
	}

	// int8, input scale 1 zero point 2 (q = real + 2), output scale 0.5
	// zero point -1: means 2.5 and 25 -> 5 - 1 = 4 and 50 - 1 = 49.
	g = NewGraph("mean int8")
	x = g.NewTensor("x", Int8, []int{1, 2, 2, 2}, PerTensor(1, 2))
	axes = g.NewConst("axes", []int{2}, []int32{1, 2}, nil)
	y = g.NewTensor("y", Int8, []int{1, 2}, PerTensor(0.5, -1))
	g.Mean(x, axes, y)
	if got := single(t, g, y, []int8{3, 12, 4, 22, 5, 32, 6, 42}); !slices.Equal(got.([]int8), []int8{4, 49}) {
		t.Errorf("int8: got %v, want [4 49]", got)
	}
}

func TestEvalL2Norm(t *testing.T) {
	// [3, 4] / 5 = [0.6, 0.8]; a zero row stays zero.
	g := NewGraph("l2")
	x := g.NewTensor("x", Float32, []int{2, 2}, nil)
	y := g.NewTensor("y", Float32, []int{2, 2}, nil)
	g.L2Normalize(x, y)
	got := single(t, g, y, []float32{3, 4, 0, 0}).([]float32)
	if math.Abs(float64(got[0]-0.6)) > 1e-7 || math.Abs(float64(got[1]-0.8)) > 1e-7 || got[2] != 0 || got[3] != 0 {
		t.Errorf("got %v, want [0.6 0.8 0 0]", got)
	}

	// int8 with input zero point 1: q = [4, 5] is [3, 4]; output 128*[0.6,
	// 0.8] = [76.8, 102.4] -> [77, 102].
	g = NewGraph("l2 int8")
	x = g.NewTensor("x", Int8, []int{1, 2}, PerTensor(0.3, 1))
	y = g.NewTensor("y", Int8, []int{1, 2}, PerTensor(1.0/128, 0))
	g.L2Normalize(x, y)
	if got := single(t, g, y, []int8{4, 5}); !slices.Equal(got.([]int8), []int8{77, 102}) {
		t.Errorf("int8: got %v, want [77 102]", got)
	}
}

func TestEvalQuantizeDequantize(t *testing.T) {
	// scale 0.5, zero point 3: 1.25 -> round(2.5) = 3 (away from zero) + 3 = 6;
	// -0.25 -> round(-0.5) = -1 + 3 = 2; 100 -> 203 clamps to 127;
	// -100 -> -197 clamps to -128. Back: (6-3)*0.5 = 1.5, -0.5, 62, -65.5.
	g := NewGraph("q/dq")
	x := g.NewTensor("x", Float32, []int{4}, nil)
	q := g.NewTensor("q", Int8, []int{4}, PerTensor(0.5, 3))
	y := g.NewTensor("y", Float32, []int{4}, nil)
	g.Quantize(x, q)
	g.Dequantize(q, y)
	g.SetInputs(x)
	g.SetOutputs(q, y)
	out, err := g.Eval([]float32{1.25, -0.25, 100, -100})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out[0].([]int8), []int8{6, 2, 127, -128}) || !slices.Equal(out[1].([]float32), []float32{1.5, -0.5, 62, -65.5}) {
		t.Errorf("got %v and %v", out[0], out[1])
	}
}

func TestEvalGatherReshape(t *testing.T) {
	// Rows 2 and 0 of [[1 2] [3 4] [5 6]] = [5 6 1 2], reshaped to [1, 4].
	g := NewGraph("gather")
	table := g.NewConst("table", []int{3, 2}, []float32{1, 2, 3, 4, 5, 6}, nil)
	ids := g.NewTensor("ids", Int32, []int{2}, nil)
	rows := g.NewTensor("rows", Float32, []int{2, 2}, nil)
	shape := g.NewConst("shape", []int{2}, []int32{1, 4}, nil)
	flat := g.NewTensor("flat", Float32, []int{1, 4}, nil)
	g.Gather(table, ids, rows)
	g.Reshape(rows, shape, flat)
	g.SetInputs(ids)
	g.SetOutputs(flat)
	out, err := g.Eval([]int32{2, 0})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out[0].([]float32), []float32{5, 6, 1, 2}) {
		t.Errorf("got %v, want [5 6 1 2]", out[0])
	}
	if _, err := g.Eval([]int32{3, 0}); !errors.Is(err, ErrEval) {
		t.Errorf("index 3 of 3 rows: err = %v, want ErrEval", err)
	}
}

func TestEvalInputErrors(t *testing.T) {
	g, err := TinyModels()[0].Graph(Float, 1)
	if err != nil {
		t.Fatal(err)
	}
	n := g.Inputs()[0].Len()
	for name, in := range map[string][]any{
		"no input":    nil,
		"wrong type":  {make([]int8, n)},
		"wrong size":  {make([]float32, n-1)},
		"extra input": {make([]float32, n), make([]float32, n)},
	} {
		if _, err := g.Eval(in...); !errors.Is(err, ErrEval) {
			t.Errorf("%s: err = %v, want ErrEval", name, err)
		}
	}
}
