package modelgen_test

import (
	"fmt"

	"github.com/sightd/sightd/quant/modelgen"
)

// A one-layer int8 model: y = RELU(x·Wᵀ + b), written as a .tflite file and
// evaluated by the reference.
func Example() {
	g := modelgen.NewGraph("example")
	// x = scale 0.5 * (q - 1); W symmetric with scale 0.25; b at 0.5*0.25.
	x := g.NewTensor("x", modelgen.Int8, []int{1, 2}, modelgen.PerTensor(0.5, 1))
	w := g.NewConst("w", []int{2, 2}, []int8{4, 0, 2, -4}, modelgen.PerTensor(0.25, 0))
	b := g.NewConst("b", []int{2}, []int32{4, -40}, modelgen.PerTensor(0.125, 0))
	y := g.NewTensor("y", modelgen.Int8, []int{1, 2}, modelgen.PerTensor(0.25, -2))
	g.FullyConnected(x, w, b, y, modelgen.ActRelu)
	g.SetInputs(x)
	g.SetOutputs(y)

	data, err := g.Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	out, err := g.Eval([]int8{3, -1}) // x = [1, -1]
	if err != nil {
		fmt.Println(err)
		return
	}
	// Real outputs: 1 + 0.5 = 1.5 -> q 4; 0.5 + 1 - 5 = -3.5, RELU -> 0 -> q -2.
	fmt.Printf("%s, %v\n", data[4:8], out[0])
	// Output: TFL3, [4 -2]
}
