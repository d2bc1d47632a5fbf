package modelgen

import (
	"math"
	"testing"
	"time"
)

// mobileNetMACs counts MobileNetV2Like's multiply-accumulates from the
// architecture (Sandler et al. 2018, table 2) with SAME padding, layer by
// layer, independently of the graph.
func mobileNetMACs(res, embed int64) int64 {
	h := (res + 1) / 2
	macs := h * h * 32 * 3 * 3 * 3 // stem, stride 2
	c := int64(32)
	for _, st := range []struct{ t, c, n, s int64 }{
		{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2}, {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1},
	} {
		for i := range st.n {
			hidden := c * st.t
			if st.t != 1 {
				macs += h * h * c * hidden // 1x1 expand, before any stride
			}
			if i == 0 {
				h = (h + st.s - 1) / st.s
			}
			macs += h * h * hidden * 9    // 3x3 depthwise
			macs += h * h * hidden * st.c // 1x1 project
			c = st.c
		}
	}
	macs += h * h * c * 1280 // head
	macs += 1280 * embed     // embedding
	return macs
}

func TestMobileNetV2Like(t *testing.T) {
	start := time.Now()
	fg, err := MobileNetV2Like(MobileNetV2Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	floatTime := time.Since(start)
	start = time.Now()
	qg, err := MobileNetV2Like(MobileNetV2Options{Seed: 1, Precision: Int8Full})
	if err != nil {
		t.Fatal(err)
	}
	int8Time := time.Since(start)

	want := mobileNetMACs(224, 512)
	if got := fg.MACs(); got != want || qg.MACs() != want {
		t.Errorf("MACs %d (int8 %d), want %d", got, qg.MACs(), want)
	}
	if want < 290e6 || want > 310e6 {
		t.Errorf("%d MACs, want about 300 M", want)
	}
	if got, want := mustMobileNet(t, 96, 64).MACs(), mobileNetMACs(96, 64); got != want {
		t.Errorf("at 96x96 -> 64: MACs %d, want %d", want, got)
	}

	counts := map[OpKind]int{}
	for _, op := range fg.Ops() {
		counts[op.Kind]++
	}
	// 17 blocks: 16 expand + 17 project + stem + head convolutions, 17
	// depthwise, 10 residual adds.
	for k, n := range map[OpKind]int{OpConv2D: 35, OpDepthwiseConv2D: 17, OpAdd: 10, OpMean: 1, OpFullyConnected: 1, OpL2Normalization: 1} {
		if counts[k] != n {
			t.Errorf("%d %v ops, want %d", counts[k], k, n)
		}
	}
	if in, out := qg.Inputs()[0], qg.Outputs()[0]; in.Type != Int8 || out.Type != Int8 || out.Shape[1] != 512 {
		t.Errorf("int8 model: input %v, output %v", in, out)
	}

	fdata, err := fg.Build()
	if err != nil {
		t.Fatal(err)
	}
	qdata, err := qg.Build()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d MACs; float32 %d bytes in %v, int8 %d bytes in %v", want, len(fdata), floatTime, len(qdata), int8Time)
	// Weights take 4 bytes in float32 and 1 in int8 (biases stay 4).
	if ratio := float64(len(qdata)) / float64(len(fdata)); ratio > 0.3 {
		t.Errorf("int8 file is %.2f of the float file", ratio)
	}

	// The int8 model is the float model quantized: on images not used for
	// calibration their embeddings point the same way, much more than those
	// of two different images do.
	embed := func(g *Graph, img []float32) []float32 {
		var in any = img
		if g.Inputs()[0].Type == Int8 {
			in = quantize(img, g.Inputs()[0])
		}
		out, err := g.Eval(in)
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := out[0].([]float32); ok {
			return o
		}
		return dequantize(out[0], g.Outputs()[0].Quant)
	}
	a, b := RandomImage(1, 224, 224), RandomImage(2, 224, 224)
	fa, fb := embed(fg, a), embed(fg, b)
	chance := cosine(fa, fb)
	for i, img := range [][]float32{a, b} {
		c := cosine(embed(fg, img), embed(qg, img))
		t.Logf("image %d: float vs int8 embedding cosine %.4f (two images: %.4f)", i, c, chance)
		if c < 0.95 || chance > 0.8 {
			t.Errorf("image %d: float vs int8 cosine %.4f, want at least 0.95; two different images %.4f, want under 0.8", i, c, chance)
		}
	}
}

func mustMobileNet(t *testing.T, res, embed int) *Graph {
	t.Helper()
	g, err := MobileNetV2Like(MobileNetV2Options{Seed: 3, Resolution: res, EmbedDim: embed})
	if err != nil {
		t.Fatal(err)
	}
	return g
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

func BenchmarkMobileNetV2LikeInt8(b *testing.B) {
	for b.Loop() {
		g, err := MobileNetV2Like(MobileNetV2Options{Seed: 1, Precision: Int8Full})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := g.Build(); err != nil {
			b.Fatal(err)
		}
	}
}
