package modelgen

import (
	"errors"
	"strings"
	"testing"
)

// convGraph is a valid int8 CONV_2D graph for the error cases to break.
type convGraph struct {
	g          *Graph
	x, w, b, y *Tensor
	op         *Op
}

func newConvGraph() *convGraph {
	g := NewGraph("conv")
	c := &convGraph{g: g}
	c.x = g.NewTensor("x", Int8, []int{1, 4, 4, 2}, PerTensor(0.5, -3))
	c.w = g.NewConst("w", []int{3, 3, 3, 2}, make([]int8, 54), PerChannel([]float32{0.1, 0.2, 0.4}, 0))
	c.b = g.NewConst("b", []int{3}, []int32{1, 2, 3}, PerChannel([]float32{0.05, 0.1, 0.2}, 0))
	c.y = g.NewTensor("y", Int8, []int{1, 2, 2, 3}, PerTensor(0.25, 7))
	c.op = g.Conv2D(c.x, c.w, c.b, c.y, Conv{StrideH: 2, StrideW: 2, Padding: PadSame, Act: ActRelu})
	g.SetInputs(c.x)
	g.SetOutputs(c.y)
	return c
}

func TestValidateErrors(t *testing.T) {
	if err := newConvGraph().g.Validate(); err != nil {
		t.Fatalf("the base graph is invalid: %v", err)
	}
	for _, c := range []struct {
		name   string
		mutate func(c *convGraph)
		want   string // in the message
	}{
		{"dangling tensor", func(c *convGraph) {
			ghost := c.g.NewTensor("ghost", Int8, []int{1, 2, 2, 3}, PerTensor(0.25, 7))
			sum := c.g.NewTensor("sum", Int8, []int{1, 2, 2, 3}, PerTensor(0.25, 7))
			c.g.Add(c.y, ghost, sum, ActNone)
			c.g.SetOutputs(sum)
		}, `reads dangling tensor "ghost"`},
		{"unused tensor", func(c *convGraph) {
			c.g.NewTensor("spare", Float32, []int{4}, nil)
		}, `dangling tensor "spare" float32[4] is not used`},
		{"tensor of another graph", func(c *convGraph) {
			c.op.Inputs[0] = NewGraph("other").NewTensor("x", Int8, []int{1, 4, 4, 2}, PerTensor(0.5, -3))
		}, "does not belong to this graph"},
		{"wrong weight shape", func(c *convGraph) {
			c.w.Shape = []int{3, 3, 6, 1}
		}, `filter "w" int8[3 3 6 1] does not fit input "x" int8[1 4 4 2]: want [O KH KW 2]`},
		{"wrong output shape", func(c *convGraph) {
			c.y.Shape = []int{1, 4, 4, 3}
		}, "want shape [1 2 2 3]"},
		{"missing quantization", func(c *convGraph) {
			c.y.Quant = nil
		}, `tensor "y" int8[1 2 2 3] has no quantization parameters`},
		{"per-channel scales on the wrong dimension", func(c *convGraph) {
			c.w.Quant = PerChannel([]float32{0.1, 0.2, 0.4}, 1)
		}, "want one scale or 3 along dimension 0"},
		{"asymmetric weights", func(c *convGraph) {
			c.w.Quant.ZeroPoint[1] = 4
		}, "zero point 4; int8 weights must be symmetric"},
		{"bias scale", func(c *convGraph) {
			c.b.Quant.Scale[2] = 0.3
		}, "bias \"b\" int32[3] channel 2 has scale 0.3"},
		{"constant size", func(c *convGraph) {
			c.w.Data = make([]int8, 5)
		}, "holds 5 elements, its shape needs 54"},
		{"constant type", func(c *convGraph) {
			c.w.Data = make([]float32, 54)
		}, "holds []float32"},
		{"zero point out of range", func(c *convGraph) {
			c.y.Quant = PerTensor(0.25, 200)
		}, "zero point 200 outside [-128, 127]"},
		{"activation on MEAN", func(c *convGraph) {
			axes := c.g.NewConst("axes", []int{2}, []int32{1, 2}, nil)
			m := c.g.NewTensor("m", Int8, []int{1, 3}, PerTensor(0.25, 7))
			c.g.Mean(c.y, axes, m).Act = ActRelu
			c.g.SetOutputs(m)
		}, "takes no fused activation"},
		{"output not produced", func(c *convGraph) {
			c.g.SetOutputs(c.y, c.g.NewTensor("z", Float32, []int{1}, nil))
		}, `output 1 "z" float32[1] is not produced by any op`},
		{"op writes a constant", func(c *convGraph) {
			c.op.Outputs[0] = c.b
		}, `writes tensor "b"`},
		{"no inputs", func(c *convGraph) {
			c.g.SetInputs()
		}, "at least one input"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cg := newConvGraph()
			c.mutate(cg)
			err := cg.g.Validate()
			if !errors.Is(err, ErrInvalidGraph) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrInvalidGraph mentioning %q", err, c.want)
			}
			t.Log(err)
			if _, berr := cg.g.Build(); berr == nil || berr.Error() != err.Error() {
				t.Errorf("Build: %v, want the Validate error", berr)
			}
			if _, eerr := cg.g.Eval(make([]int8, 32)); !errors.Is(eerr, ErrInvalidGraph) {
				t.Errorf("Eval: %v, want ErrInvalidGraph", eerr)
			}
		})
	}
}

func TestValidateOpRules(t *testing.T) {
	for _, c := range []struct {
		name  string
		build func(g *Graph)
		want  string
	}{
		{"asymmetric_quantize_inputs on an int8 FULLY_CONNECTED", func(g *Graph) {
			x := g.NewTensor("x", Int8, []int{1, 2}, PerTensor(0.5, 0))
			w := g.NewConst("w", []int{2, 2}, make([]int8, 4), PerChannel([]float32{0.1, 0.2}, 0))
			b := g.NewConst("b", []int{2}, make([]int32, 2), PerChannel([]float32{0.05, 0.1}, 0))
			y := g.NewTensor("y", Int8, []int{1, 2}, PerTensor(0.1, 0))
			g.FullyConnected(x, w, b, y, ActNone).AsymmetricQuantizeInputs = true
			g.SetInputs(x)
			g.SetOutputs(y)
		}, "only for a hybrid FULLY_CONNECTED"},
		{"hybrid FULLY_CONNECTED with an int32 bias", func(g *Graph) {
			x := g.NewTensor("x", Float32, []int{1, 2}, nil)
			w := g.NewConst("w", []int{2, 2}, make([]int8, 4), PerChannel([]float32{0.1, 0.2}, 0))
			b := g.NewConst("b", []int{2}, make([]int32, 2), PerChannel([]float32{0.05, 0.1}, 0))
			y := g.NewTensor("y", Float32, []int{1, 2}, nil)
			g.FullyConnected(x, w, b, y, ActNone)
			g.SetInputs(x)
			g.SetOutputs(y)
		}, "or (FULLY_CONNECTED only) float32 with int8 weights"},
		{"hybrid FULLY_CONNECTED weights with a zero point", func(g *Graph) {
			x := g.NewTensor("x", Float32, []int{1, 2}, nil)
			w := g.NewConst("w", []int{2, 2}, make([]int8, 4), PerTensor(0.1, 3))
			b := g.NewConst("b", []int{2}, make([]float32, 2), nil)
			y := g.NewTensor("y", Float32, []int{1, 2}, nil)
			g.FullyConnected(x, w, b, y, ActNone)
			g.SetInputs(x)
			g.SetOutputs(y)
		}, "must be symmetric"},
		{"hybrid CONV_2D", func(g *Graph) {
			x := g.NewTensor("x", Float32, []int{1, 2, 2, 1}, nil)
			w := g.NewConst("w", []int{1, 1, 1, 1}, make([]int8, 1), PerTensor(0.1, 0))
			b := g.NewConst("b", []int{1}, make([]float32, 1), nil)
			y := g.NewTensor("y", Float32, []int{1, 2, 2, 1}, nil)
			g.Conv2D(x, w, b, y, Conv{})
			g.SetInputs(x)
			g.SetOutputs(y)
		}, "or (FULLY_CONNECTED only) float32 with int8 weights"},
		{"int8 L2_NORMALIZATION output scale", func(g *Graph) {
			x := g.NewTensor("x", Int8, []int{1, 8}, PerTensor(0.5, 0))
			y := g.NewTensor("y", Int8, []int{1, 8}, PerTensor(0.01, 0))
			g.L2Normalize(x, y)
			g.SetInputs(x)
			g.SetOutputs(y)
		}, "requires scale 1/128 and zero point 0"},
		{"RESHAPE shape constant", func(g *Graph) {
			x := g.NewTensor("x", Float32, []int{2, 3}, nil)
			s := g.NewConst("s", []int{2}, []int32{3, 2}, nil)
			y := g.NewTensor("y", Float32, []int{1, 6}, nil)
			g.Reshape(x, s, y)
			g.SetInputs(x)
			g.SetOutputs(y)
		}, "shape constant [3 2] does not match output"},
		{"RESHAPE changes quantization", func(g *Graph) {
			x := g.NewTensor("x", Int8, []int{2, 3}, PerTensor(0.5, 0))
			s := g.NewConst("s", []int{1}, []int32{6}, nil)
			y := g.NewTensor("y", Int8, []int{6}, PerTensor(0.25, 0))
			g.Reshape(x, s, y)
			g.SetInputs(x)
			g.SetOutputs(y)
		}, "it must keep the input's scale 0.5"},
		{"GATHER constant index out of range", func(g *Graph) {
			x := g.NewTensor("x", Float32, []int{4, 2}, nil)
			ids := g.NewConst("ids", []int{1}, []int32{4}, nil)
			y := g.NewTensor("y", Float32, []int{1, 2}, nil)
			g.Gather(x, ids, y)
			g.SetInputs(x)
			g.SetOutputs(y)
		}, "constant index 4 out of range [0, 4)"},
		{"ADD broadcasting", func(g *Graph) {
			a := g.NewTensor("a", Float32, []int{2, 3}, nil)
			b := g.NewTensor("b", Float32, []int{1, 3}, nil)
			y := g.NewTensor("y", Float32, []int{2, 3}, nil)
			g.Add(a, b, y, ActNone)
			g.SetInputs(a, b)
			g.SetOutputs(y)
		}, "no broadcasting"},
		{"MEAN axis", func(g *Graph) {
			x := g.NewTensor("x", Float32, []int{2, 3}, nil)
			axes := g.NewConst("axes", []int{1}, []int32{2}, nil)
			y := g.NewTensor("y", Float32, []int{2}, nil)
			g.Mean(x, axes, y)
			g.SetInputs(x)
			g.SetOutputs(y)
		}, "axes [2] invalid"},
		{"QUANTIZE to float", func(g *Graph) {
			x := g.NewTensor("x", Float32, []int{3}, nil)
			y := g.NewTensor("y", Float32, []int{3}, nil)
			g.Quantize(x, y)
			g.SetInputs(x)
			g.SetOutputs(y)
		}, "want float32 and int8 or uint8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := NewGraph(c.name)
			c.build(g)
			if err := g.Validate(); !errors.Is(err, ErrInvalidGraph) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrInvalidGraph mentioning %q", err, c.want)
			}
		})
	}
}
