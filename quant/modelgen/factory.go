package modelgen

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Precision selects the numeric form of a generated model.
type Precision int

const (
	// Float is float32 throughout.
	Float Precision = iota
	// Int8Full is full-integer int8, inputs and outputs included.
	Int8Full
	// Int8FloatIO is an int8 body between QUANTIZE and DEQUANTIZE, with
	// float32 inputs and outputs.
	Int8FloatIO
)

func (p Precision) String() string {
	switch p {
	case Float:
		return "float32"
	case Int8Full:
		return "int8"
	case Int8FloatIO:
		return "int8-float-io"
	}
	return "Precision(?)"
}

// finish quantizes a float graph as p asks, calibrating on calib.
func finish(g *Graph, p Precision, calib []any) (*Graph, error) {
	switch p {
	case Float:
		return g, g.Validate()
	case Int8Full:
		return Quantize(g, [][]any{calib}, Int8IO)
	case Int8FloatIO:
		return Quantize(g, [][]any{calib}, FloatIO)
	}
	return nil, fmt.Errorf("modelgen: unknown precision %d", int(p))
}

// RandomImage returns a deterministic [height, width, 3] image (NHWC with
// batch 1, values in (-1, 1)): a few random oriented waves with random
// colours, squashed with tanh. Unlike RandomInputs' noise it has structure
// at several scales, so encoders give different images clearly different
// embeddings.
func RandomImage(seed uint64, height, width int) []float32 {
	rng := rand.New(rand.NewPCG(seed, 0x1a6e))
	img := make([]float32, height*width*3)
	for range 6 {
		fy, fx := rng.Float64()*0.3, rng.Float64()*0.3 // radians per pixel
		phase := 2 * math.Pi * rng.Float64()
		colour := [3]float64{rng.NormFloat64() / 3, rng.NormFloat64() / 3, rng.NormFloat64() / 3}
		for y := range height {
			for x := range width {
				v := math.Sin(fy*float64(y) + fx*float64(x) + phase)
				for c, a := range colour {
					img[(y*width+x)*3+c] += float32(a * v)
				}
			}
		}
	}
	for i, v := range img {
		img[i] = float32(math.Tanh(float64(v)))
	}
	return img
}

// RandomInputs returns deterministic inputs for g: float32 uniform in
// [-1, 1), int8 and uint8 uniform over their whole range, int32 uniform in
// [0, rows) when the input indexes a GATHER table of that many rows and in
// [0, 100) otherwise.
func RandomInputs(g *Graph, seed uint64) []any {
	rng := rand.New(rand.NewPCG(seed, 0x1a7a))
	out := make([]any, len(g.inputs))
	for i, t := range g.inputs {
		n := t.Len()
		switch t.Type {
		case Float32:
			v := make([]float32, n)
			for j := range v {
				v[j] = 2*rng.Float32() - 1
			}
			out[i] = v
		case Int8:
			v := make([]int8, n)
			for j := range v {
				v[j] = int8(rng.IntN(256) - 128)
			}
			out[i] = v
		case UInt8:
			v := make([]uint8, n)
			for j := range v {
				v[j] = uint8(rng.IntN(256))
			}
			out[i] = v
		case Int32:
			limit := 100
			for _, op := range g.ops {
				if op.Kind == OpGather && op.Inputs[1] == t {
					limit = op.Inputs[0].Shape[0]
				}
			}
			v := make([]int32, n)
			for j := range v {
				v[j] = int32(rng.IntN(limit))
			}
			out[i] = v
		}
	}
	return out
}
