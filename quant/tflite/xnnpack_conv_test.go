package tflite_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/sightd/sightd/quant/modelgen"
	"github.com/sightd/sightd/quant/tflite"
)

// XNNPACK 2.9 computes a SAME-padded convolution whose stride is larger than
// its kernel (3x3, stride 4) from the bias alone, ignoring the input; 2.9's
// built-in kernels are right. The test checks each runtime against modelgen's
// reference and asserts what each does, so a change either way shows.
func TestStridedSameConvolution(t *testing.T) {
	g := modelgen.NewGraph("sightd strided same conv")
	const h, w, cin, cout = 16, 16, 3, 4
	rng := rand.New(rand.NewPCG(5, 9))
	x := g.NewTensor("x", modelgen.Float32, []int{1, h, w, cin}, nil)
	filt := make([]float32, cout*3*3*cin)
	for i := range filt {
		filt[i] = float32(rng.NormFloat64() * 0.3)
	}
	bias := []float32{0.1, -0.2, 0.05, 0.3}
	f := g.NewConst("filter", []int{cout, 3, 3, cin}, filt, nil)
	b := g.NewConst("bias", []int{cout}, bias, nil)
	y := g.NewTensor("y", modelgen.Float32, []int{1, 4, 4, cout}, nil)
	g.Conv2D(x, f, b, y, modelgen.Conv{StrideH: 4, StrideW: 4, Padding: modelgen.PadSame})
	g.SetInputs(x)
	g.SetOutputs(y)
	in := make([]float32, h*w*cin)
	for i := range in {
		in[i] = rng.Float32()*2 - 1
	}
	want := evalRef[float32, float32](t, g, in)
	for _, c := range []struct {
		name  string
		o     tflite.Options
		right bool
	}{
		{"litert", liteRT, true},
		{"tflite2.9-builtin", tfl29, true},
		{"tflite2.9-xnnpack", tfl29XNN, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := runOn[float32, float32](t, g, c.o, in)
			if err != nil {
				t.Fatal(err)
			}
			diff := maxAbsDiff(got, want)
			biasOnly := true
			for i, v := range got {
				if v != bias[i%cout] {
					biasOnly = false
				}
			}
			t.Logf("max difference to the reference %.3g, bias alone: %v", diff, biasOnly)
			if right := diff < 1e-4; right != c.right || biasOnly == c.right {
				t.Fatalf("%s: %s", c.name, fmt.Sprintf("right=%v (want %v), outputs are the bias alone: %v", right, c.right, biasOnly))
			}
		})
	}
}
