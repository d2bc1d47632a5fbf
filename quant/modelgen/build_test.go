package modelgen

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/sightd/sightd/quant/tflite/tflschema"
)

// TestBuildRoundTrip reads every tiny model, in every precision, and an int8
// MobileNetV2Like back with the generated flatbuffers code and checks that
// the file says what the graph says.
func TestBuildRoundTrip(t *testing.T) {
	var graphs []*Graph
	for _, m := range TinyModels() {
		for _, p := range []Precision{Float, Int8Full, Int8FloatIO} {
			g, err := m.Graph(p, 5)
			if err != nil {
				t.Fatal(err)
			}
			graphs = append(graphs, g)
		}
	}
	g, err := MobileNetV2Like(MobileNetV2Options{Seed: 2, Precision: Int8Full, Resolution: 64})
	if err != nil {
		t.Fatal(err)
	}
	graphs = append(graphs, g)
	for _, m := range TinyModels()[:3] { // the FULLY_CONNECTED models
		fg, err := m.Graph(Float, 5)
		if err != nil {
			t.Fatal(err)
		}
		pc, err := QuantizeWith(fg, [][]any{RandomInputs(fg, 5)}, QuantizeOptions{PerChannelFullyConnected: true})
		if err != nil {
			t.Fatal(err)
		}
		dr, err := QuantizeDynamicRange(fg)
		if err != nil {
			t.Fatal(err)
		}
		graphs = append(graphs, pc, dr)
	}
	for _, g := range graphs {
		data, err := g.Build()
		if err != nil {
			t.Fatal(err)
		}
		checkFile(t, g, data)
	}
}

func checkFile(t *testing.T, g *Graph, data []byte) {
	t.Helper()
	if len(data) < 8 || string(data[4:8]) != "TFL3" {
		t.Fatalf("%s: file identifier %q, want TFL3", g.Description, data[4:min(8, len(data))])
	}
	m := tflschema.GetRootAsModel(data, 0)
	if m.Version() != 3 || string(m.Description()) != g.Description || m.SubgraphsLength() != 1 {
		t.Fatalf("model version %d, description %q, %d subgraphs", m.Version(), m.Description(), m.SubgraphsLength())
	}
	var buf tflschema.Buffer
	if !m.Buffers(&buf, 0) || buf.DataLength() != 0 {
		t.Fatalf("%s: buffer 0 is not the empty sentinel", g.Description)
	}
	var sg tflschema.SubGraph
	m.Subgraphs(&sg, 0)
	if sg.TensorsLength() != len(g.tensors) || sg.OperatorsLength() != len(g.ops) {
		t.Fatalf("%s: %d tensors and %d ops in the file, %d and %d in the graph",
			g.Description, sg.TensorsLength(), sg.OperatorsLength(), len(g.tensors), len(g.ops))
	}
	index := map[*Tensor]int32{}
	seenBuffers := map[uint32]bool{}
	for i, want := range g.tensors {
		index[want] = int32(i)
		var ft tflschema.Tensor
		sg.Tensors(&ft, i)
		checkFileTensor(t, m, &ft, want, seenBuffers)
	}
	if got := indices(sg.InputsLength(), sg.Inputs); !slices.Equal(got, tensorIndices(g.inputs, index)) {
		t.Errorf("%s: subgraph inputs %v", g.Description, got)
	}
	if got := indices(sg.OutputsLength(), sg.Outputs); !slices.Equal(got, tensorIndices(g.outputs, index)) {
		t.Errorf("%s: subgraph outputs %v", g.Description, got)
	}
	for i, op := range g.ops {
		var fo tflschema.Operator
		sg.Operators(&fo, i)
		var code tflschema.OperatorCode
		if !m.OperatorCodes(&code, int(fo.OpcodeIndex())) {
			t.Fatalf("op %d: opcode index %d out of range", i, fo.OpcodeIndex())
		}
		if code.BuiltinCode() != builtinOf[op.Kind] || int32(code.DeprecatedBuiltinCode()) != int32(builtinOf[op.Kind]) ||
			code.Version() != OpVersion(op) {
			t.Errorf("op %d (%v): code %v (deprecated %d) version %d", i, op.Kind, code.BuiltinCode(), code.DeprecatedBuiltinCode(), code.Version())
		}
		if got := indices(fo.InputsLength(), fo.Inputs); !slices.Equal(got, tensorIndices(op.Inputs, index)) {
			t.Errorf("op %d (%v): inputs %v", i, op.Kind, got)
		}
		if got := indices(fo.OutputsLength(), fo.Outputs); !slices.Equal(got, tensorIndices(op.Outputs, index)) {
			t.Errorf("op %d (%v): outputs %v", i, op.Kind, got)
		}
		checkOptions(t, &fo, op)
	}
}

func checkFileTensor(t *testing.T, m *tflschema.Model, ft *tflschema.Tensor, want *Tensor, seenBuffers map[uint32]bool) {
	t.Helper()
	shape := make([]int, ft.ShapeLength())
	for j := range shape {
		shape[j] = int(ft.Shape(j))
	}
	if string(ft.Name()) != want.Name || ft.Type() != schemaType(want.Type) || !slices.Equal(shape, want.Shape) {
		t.Errorf("tensor %q %v %v, want %v", ft.Name(), ft.Type(), shape, want)
	}
	q := ft.Quantization(nil)
	switch {
	case want.Quant == nil && q != nil:
		t.Errorf("tensor %q: quantization in the file, none in the graph", want.Name)
	case want.Quant != nil:
		got := &Quant{Dim: int(q.QuantizedDimension())}
		for j := range q.ScaleLength() {
			got.Scale = append(got.Scale, q.Scale(j))
		}
		for j := range q.ZeroPointLength() {
			got.ZeroPoint = append(got.ZeroPoint, q.ZeroPoint(j))
		}
		if !got.equal(want.Quant) {
			t.Errorf("tensor %q: quantization %+v, want %+v", want.Name, got, want.Quant)
		}
	}
	if !want.IsConst() {
		if ft.Buffer() != 0 {
			t.Errorf("activation %q uses buffer %d, want 0", want.Name, ft.Buffer())
		}
		return
	}
	if ft.Buffer() == 0 || seenBuffers[ft.Buffer()] {
		t.Errorf("constant %q uses buffer %d, want its own", want.Name, ft.Buffer())
	}
	seenBuffers[ft.Buffer()] = true
	var b tflschema.Buffer
	m.Buffers(&b, int(ft.Buffer()))
	if !bytes.Equal(b.DataBytes(), encodeLE(want.Data)) {
		t.Errorf("constant %q: buffer data differs", want.Name)
	}
	tab := b.Table()
	if start := tab.Vector(flatbuffers.UOffsetT(tab.Offset(4))); start%16 != 0 {
		t.Errorf("constant %q: data at offset %d, not 16-byte aligned", want.Name, start)
	}
}

// checkOptions checks the builtin options table of op.
func checkOptions(t *testing.T, fo *tflschema.Operator, op *Op) {
	t.Helper()
	var tab flatbuffers.Table
	if !fo.BuiltinOptions(&tab) {
		t.Errorf("%v: no builtin options", op.Kind)
		return
	}
	act := tflschema.ActivationFunctionType(op.Act)
	typ := fo.BuiltinOptionsType()
	ok := false
	switch op.Kind {
	case OpConv2D:
		var o tflschema.Conv2DOptions
		o.Init(tab.Bytes, tab.Pos)
		ok = typ == tflschema.BuiltinOptionsConv2DOptions && o.Padding() == tflschema.Padding(op.Padding) &&
			o.StrideH() == int32(op.StrideH) && o.StrideW() == int32(op.StrideW) &&
			o.FusedActivationFunction() == act && o.DilationHFactor() == 1 && o.DilationWFactor() == 1
	case OpDepthwiseConv2D:
		var o tflschema.DepthwiseConv2DOptions
		o.Init(tab.Bytes, tab.Pos)
		ok = typ == tflschema.BuiltinOptionsDepthwiseConv2DOptions && o.Padding() == tflschema.Padding(op.Padding) &&
			o.StrideH() == int32(op.StrideH) && o.StrideW() == int32(op.StrideW) && o.DepthMultiplier() == 1 &&
			o.FusedActivationFunction() == act && o.DilationHFactor() == 1 && o.DilationWFactor() == 1
	case OpFullyConnected:
		var o tflschema.FullyConnectedOptions
		o.Init(tab.Bytes, tab.Pos)
		ok = typ == tflschema.BuiltinOptionsFullyConnectedOptions && o.FusedActivationFunction() == act &&
			o.WeightsFormat() == tflschema.FullyConnectedOptionsWeightsFormatDEFAULT && !o.KeepNumDims() &&
			o.AsymmetricQuantizeInputs() == op.AsymmetricQuantizeInputs
	case OpAdd:
		var o tflschema.AddOptions
		o.Init(tab.Bytes, tab.Pos)
		ok = typ == tflschema.BuiltinOptionsAddOptions && o.FusedActivationFunction() == act
	case OpMean:
		var o tflschema.ReducerOptions
		o.Init(tab.Bytes, tab.Pos)
		ok = typ == tflschema.BuiltinOptionsReducerOptions && !o.KeepDims()
	case OpReshape:
		var o tflschema.ReshapeOptions
		o.Init(tab.Bytes, tab.Pos)
		ok = typ == tflschema.BuiltinOptionsReshapeOptions &&
			slices.Equal(indices(o.NewShapeLength(), o.NewShape), toInt32s(op.Outputs[0].Shape))
	case OpGather:
		var o tflschema.GatherOptions
		o.Init(tab.Bytes, tab.Pos)
		ok = typ == tflschema.BuiltinOptionsGatherOptions && o.Axis() == 0 && o.BatchDims() == 0
	case OpL2Normalization:
		ok = typ == tflschema.BuiltinOptionsL2NormOptions
	case OpQuantize:
		ok = typ == tflschema.BuiltinOptionsQuantizeOptions
	case OpDequantize:
		ok = typ == tflschema.BuiltinOptionsDequantizeOptions
	}
	if !ok {
		t.Errorf("%v: options of type %v do not match the op %+v", op.Kind, typ, *op)
	}
}

func indices(n int, at func(int) int32) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = at(i)
	}
	return out
}

// encodeLE is the test's own little-endian encoding of constant data.
func encodeLE(data any) []byte {
	var buf bytes.Buffer
	switch d := data.(type) {
	case []float32, []int32, []int8, []uint8:
		binary.Write(&buf, binary.LittleEndian, d)
	}
	return buf.Bytes()
}

// TestSchemaConstants pins the values that must equal the upstream TFLite
// schema: flatbuffers matches enum values and union type ids, not names.
func TestSchemaConstants(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"TensorType FLOAT32", int(tflschema.TensorTypeFLOAT32), 0},
		{"TensorType INT32", int(tflschema.TensorTypeINT32), 2},
		{"TensorType UINT8", int(tflschema.TensorTypeUINT8), 3},
		{"TensorType INT8", int(tflschema.TensorTypeINT8), 9},
		{"ADD", int(tflschema.BuiltinOperatorADD), 0},
		{"CONV_2D", int(tflschema.BuiltinOperatorCONV_2D), 3},
		{"DEPTHWISE_CONV_2D", int(tflschema.BuiltinOperatorDEPTHWISE_CONV_2D), 4},
		{"DEQUANTIZE", int(tflschema.BuiltinOperatorDEQUANTIZE), 6},
		{"FULLY_CONNECTED", int(tflschema.BuiltinOperatorFULLY_CONNECTED), 9},
		{"L2_NORMALIZATION", int(tflschema.BuiltinOperatorL2_NORMALIZATION), 11},
		{"RESHAPE", int(tflschema.BuiltinOperatorRESHAPE), 22},
		{"GATHER", int(tflschema.BuiltinOperatorGATHER), 36},
		{"MEAN", int(tflschema.BuiltinOperatorMEAN), 40},
		{"QUANTIZE", int(tflschema.BuiltinOperatorQUANTIZE), 114},
		{"Conv2DOptions", int(tflschema.BuiltinOptionsConv2DOptions), 1},
		{"DepthwiseConv2DOptions", int(tflschema.BuiltinOptionsDepthwiseConv2DOptions), 2},
		{"FullyConnectedOptions", int(tflschema.BuiltinOptionsFullyConnectedOptions), 8},
		{"AddOptions", int(tflschema.BuiltinOptionsAddOptions), 11},
		{"L2NormOptions", int(tflschema.BuiltinOptionsL2NormOptions), 12},
		{"ReshapeOptions", int(tflschema.BuiltinOptionsReshapeOptions), 17},
		{"GatherOptions", int(tflschema.BuiltinOptionsGatherOptions), 23},
		{"ReducerOptions", int(tflschema.BuiltinOptionsReducerOptions), 27},
		{"DequantizeOptions", int(tflschema.BuiltinOptionsDequantizeOptions), 38},
		{"QuantizeOptions", int(tflschema.BuiltinOptionsQuantizeOptions), 89},
		{"RELU6", int(tflschema.ActivationFunctionTypeRELU6), 3},
		{"VALID", int(tflschema.PaddingVALID), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, upstream schema has %d", c.name, c.got, c.want)
		}
	}
	if int(ActRelu6) != int(tflschema.ActivationFunctionTypeRELU6) || int(PadValid) != int(tflschema.PaddingVALID) {
		t.Error("Activation and Padding values must equal the schema's")
	}
}

// TestBuildDeterministic: a seed gives the same bytes every time, another
// seed other weights.
func TestBuildDeterministic(t *testing.T) {
	m := TinyModels()[3]
	build := func(seed uint64) []byte {
		g, err := m.Graph(Int8Full, seed)
		if err != nil {
			t.Fatal(err)
		}
		data, err := g.Build()
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	if !bytes.Equal(build(1), build(1)) {
		t.Error("the same seed gave different files")
	}
	if bytes.Equal(build(1), build(2)) {
		t.Error("different seeds gave the same file")
	}
}
