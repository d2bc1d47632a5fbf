package modelgen

import (
	"encoding/binary"
	"fmt"
	"math"

	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/sightd/sightd/quant/tflite/tflschema"
)

// SchemaVersion is the TFLite schema version written into every model.
const SchemaVersion = 3

// FileIdentifier is the flatbuffer file identifier of TFLite models.
const FileIdentifier = "TFL3"

// Build validates the graph and serialises it as a .tflite flatbuffer: one
// subgraph, buffer 0 the empty sentinel, one buffer per constant (aligned to
// 16 bytes), one operator code per (operator, version) pair.
func (g *Graph) Build() ([]byte, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	index := make(map[*Tensor]int32, len(g.tensors))
	size := 1 << 12
	for i, t := range g.tensors {
		index[t] = int32(i)
		if t.IsConst() {
			size += t.Len()*t.Type.size() + 64
		}
	}
	b := flatbuffers.NewBuilder(size)

	// Buffers first: the builder writes back to front, and large data vectors
	// are best kept together. Buffer 0 is the sentinel for tensors without data.
	bufs := []flatbuffers.UOffsetT{emptyTable(b, tflschema.BufferStart, tflschema.BufferEnd)}
	bufferOf := make(map[*Tensor]uint32)
	for _, t := range g.tensors {
		if !t.IsConst() {
			continue
		}
		data := constBytes(t.Data)
		// TFLite reads constants in place; align them for vector loads.
		b.Prep(16, len(data))
		vec := b.CreateByteVector(data)
		tflschema.BufferStart(b)
		tflschema.BufferAddData(b, vec)
		bufferOf[t] = uint32(len(bufs))
		bufs = append(bufs, tflschema.BufferEnd(b))
	}

	tensors := make([]flatbuffers.UOffsetT, len(g.tensors))
	for i, t := range g.tensors {
		tensors[i] = writeTensor(b, t, bufferOf[t])
	}

	codes, opcodeIndex := writeOperatorCodes(b, g.ops)
	ops := make([]flatbuffers.UOffsetT, len(g.ops))
	for i, op := range g.ops {
		ops[i] = writeOperator(b, op, index, opcodeIndex[opCodeOf(op)])
	}

	name := b.CreateString("main")
	tensorVec := offsetVector(b, tensors)
	inVec := int32Vector(b, tensorIndices(g.inputs, index))
	outVec := int32Vector(b, tensorIndices(g.outputs, index))
	opVec := offsetVector(b, ops)
	tflschema.SubGraphStart(b)
	tflschema.SubGraphAddTensors(b, tensorVec)
	tflschema.SubGraphAddInputs(b, inVec)
	tflschema.SubGraphAddOutputs(b, outVec)
	tflschema.SubGraphAddOperators(b, opVec)
	tflschema.SubGraphAddName(b, name)
	subgraph := tflschema.SubGraphEnd(b)

	desc := b.CreateString(g.Description)
	codeVec := offsetVector(b, codes)
	subVec := offsetVector(b, []flatbuffers.UOffsetT{subgraph})
	bufVec := offsetVector(b, bufs)
	tflschema.ModelStart(b)
	tflschema.ModelAddVersion(b, SchemaVersion)
	tflschema.ModelAddOperatorCodes(b, codeVec)
	tflschema.ModelAddSubgraphs(b, subVec)
	tflschema.ModelAddDescription(b, desc)
	tflschema.ModelAddBuffers(b, bufVec)
	b.FinishWithFileIdentifier(tflschema.ModelEnd(b), []byte(FileIdentifier))
	return b.FinishedBytes(), nil
}

func emptyTable(b *flatbuffers.Builder, start func(*flatbuffers.Builder), end func(*flatbuffers.Builder) flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	start(b)
	return end(b)
}

func writeTensor(b *flatbuffers.Builder, t *Tensor, buffer uint32) flatbuffers.UOffsetT {
	var quant flatbuffers.UOffsetT
	if t.Quant != nil {
		scales := float32Vector(b, t.Quant.Scale)
		zps := int64Vector(b, t.Quant.ZeroPoint)
		tflschema.QuantizationParametersStart(b)
		tflschema.QuantizationParametersAddScale(b, scales)
		tflschema.QuantizationParametersAddZeroPoint(b, zps)
		tflschema.QuantizationParametersAddQuantizedDimension(b, int32(t.Quant.Dim))
		quant = tflschema.QuantizationParametersEnd(b)
	}
	name := b.CreateString(t.Name)
	shape := int32Vector(b, toInt32s(t.Shape))
	tflschema.TensorStart(b)
	tflschema.TensorAddShape(b, shape)
	tflschema.TensorAddType(b, schemaType(t.Type))
	tflschema.TensorAddBuffer(b, buffer)
	tflschema.TensorAddName(b, name)
	if t.Quant != nil {
		tflschema.TensorAddQuantization(b, quant)
	}
	return tflschema.TensorEnd(b)
}

func schemaType(d DType) tflschema.TensorType {
	switch d {
	case Float32:
		return tflschema.TensorTypeFLOAT32
	case Int8:
		return tflschema.TensorTypeINT8
	case Int32:
		return tflschema.TensorTypeINT32
	case UInt8:
		return tflschema.TensorTypeUINT8
	case Int64:
		return tflschema.TensorTypeINT64
	}
	panic(fmt.Sprintf("modelgen: no TFLite type for %v", d)) // Validate rules this out
}

// opCode is an entry of the model's operator_codes table.
type opCode struct {
	builtin tflschema.BuiltinOperator
	version int32
}

func opCodeOf(op *Op) opCode {
	return opCode{builtinOf[op.Kind], OpVersion(op)}
}

var builtinOf = map[OpKind]tflschema.BuiltinOperator{
	OpFullyConnected:  tflschema.BuiltinOperatorFULLY_CONNECTED,
	OpConv2D:          tflschema.BuiltinOperatorCONV_2D,
	OpDepthwiseConv2D: tflschema.BuiltinOperatorDEPTHWISE_CONV_2D,
	OpAdd:             tflschema.BuiltinOperatorADD,
	OpMean:            tflschema.BuiltinOperatorMEAN,
	OpReshape:         tflschema.BuiltinOperatorRESHAPE,
	OpGather:          tflschema.BuiltinOperatorGATHER,
	OpL2Normalization: tflschema.BuiltinOperatorL2_NORMALIZATION,
	OpQuantize:        tflschema.BuiltinOperatorQUANTIZE,
	OpDequantize:      tflschema.BuiltinOperatorDEQUANTIZE,
}

// OpVersion is the operator version written for op: the one TFLite's
// converter assigns to the op's type signature
// (tensorflow/lite/tools/versioning/op_version.cc). Float ops are version 1.
//
// Int8 FULLY_CONNECTED is version 4 whether its weights have one scale or one
// per output channel: op_version.cc does not tell them apart, and
// litert-torch's PT2E quantizer writes 4 as well. TensorFlow Lite 2.9
// registers version 4 and so loads a per-channel layer, which its kernel then
// computes wrong (see Validate). A hybrid FULLY_CONNECTED (float32 input and
// output, int8 weights) is version 12 with per-channel weights, else 9 with
// asymmetric_quantize_inputs, else 3; 2.9 refuses version 12 ("Didn't find
// op for builtin opcode 'FULLY_CONNECTED' version '12'").
func OpVersion(op *Op) int32 {
	in := op.Inputs[0].Type
	switch op.Kind {
	case OpFullyConnected:
		if in == Int8 {
			return 4
		}
		if hybrid(op) {
			switch {
			case !op.Inputs[1].Quant.perTensor():
				return 12
			case op.AsymmetricQuantizeInputs:
				return 9
			}
			return 3
		}
	case OpConv2D, OpDepthwiseConv2D:
		if in == Int8 {
			return 3
		}
	case OpAdd, OpMean, OpGather:
		if in == Int8 {
			return 2
		}
	case OpL2Normalization:
		if op.Outputs[0].Type == Int8 {
			return 2
		}
	case OpDequantize:
		if in == Int8 {
			return 2
		}
	}
	return 1
}

func writeOperatorCodes(b *flatbuffers.Builder, ops []*Op) ([]flatbuffers.UOffsetT, map[opCode]uint32) {
	index := map[opCode]uint32{}
	var codes []flatbuffers.UOffsetT
	for _, op := range ops {
		c := opCodeOf(op)
		if _, ok := index[c]; ok {
			continue
		}
		index[c] = uint32(len(codes))
		tflschema.OperatorCodeStart(b)
		// Readers take the larger of the two codes; ours all fit the old byte.
		tflschema.OperatorCodeAddDeprecatedBuiltinCode(b, int8(c.builtin))
		tflschema.OperatorCodeAddVersion(b, c.version)
		tflschema.OperatorCodeAddBuiltinCode(b, c.builtin)
		codes = append(codes, tflschema.OperatorCodeEnd(b))
	}
	return codes, index
}

func writeOperator(b *flatbuffers.Builder, op *Op, index map[*Tensor]int32, opcode uint32) flatbuffers.UOffsetT {
	optType, opts := writeOptions(b, op)
	ins := int32Vector(b, tensorIndices(op.Inputs, index))
	outs := int32Vector(b, tensorIndices(op.Outputs, index))
	tflschema.OperatorStart(b)
	tflschema.OperatorAddOpcodeIndex(b, opcode)
	tflschema.OperatorAddInputs(b, ins)
	tflschema.OperatorAddOutputs(b, outs)
	tflschema.OperatorAddBuiltinOptionsType(b, optType)
	tflschema.OperatorAddBuiltinOptions(b, opts)
	return tflschema.OperatorEnd(b)
}

// writeOptions writes the op's builtin options table.
func writeOptions(b *flatbuffers.Builder, op *Op) (tflschema.BuiltinOptions, flatbuffers.UOffsetT) {
	act := tflschema.ActivationFunctionType(op.Act)
	switch op.Kind {
	case OpFullyConnected:
		tflschema.FullyConnectedOptionsStart(b)
		tflschema.FullyConnectedOptionsAddFusedActivationFunction(b, act)
		tflschema.FullyConnectedOptionsAddAsymmetricQuantizeInputs(b, op.AsymmetricQuantizeInputs)
		return tflschema.BuiltinOptionsFullyConnectedOptions, tflschema.FullyConnectedOptionsEnd(b)
	case OpConv2D:
		tflschema.Conv2DOptionsStart(b)
		tflschema.Conv2DOptionsAddPadding(b, tflschema.Padding(op.Padding))
		tflschema.Conv2DOptionsAddStrideW(b, int32(op.StrideW))
		tflschema.Conv2DOptionsAddStrideH(b, int32(op.StrideH))
		tflschema.Conv2DOptionsAddFusedActivationFunction(b, act)
		tflschema.Conv2DOptionsAddDilationWFactor(b, 1)
		tflschema.Conv2DOptionsAddDilationHFactor(b, 1)
		return tflschema.BuiltinOptionsConv2DOptions, tflschema.Conv2DOptionsEnd(b)
	case OpDepthwiseConv2D:
		tflschema.DepthwiseConv2DOptionsStart(b)
		tflschema.DepthwiseConv2DOptionsAddPadding(b, tflschema.Padding(op.Padding))
		tflschema.DepthwiseConv2DOptionsAddStrideW(b, int32(op.StrideW))
		tflschema.DepthwiseConv2DOptionsAddStrideH(b, int32(op.StrideH))
		tflschema.DepthwiseConv2DOptionsAddDepthMultiplier(b, 1)
		tflschema.DepthwiseConv2DOptionsAddFusedActivationFunction(b, act)
		tflschema.DepthwiseConv2DOptionsAddDilationWFactor(b, 1)
		tflschema.DepthwiseConv2DOptionsAddDilationHFactor(b, 1)
		return tflschema.BuiltinOptionsDepthwiseConv2DOptions, tflschema.DepthwiseConv2DOptionsEnd(b)
	case OpAdd:
		tflschema.AddOptionsStart(b)
		tflschema.AddOptionsAddFusedActivationFunction(b, act)
		return tflschema.BuiltinOptionsAddOptions, tflschema.AddOptionsEnd(b)
	case OpMean:
		tflschema.ReducerOptionsStart(b)
		tflschema.ReducerOptionsAddKeepDims(b, false)
		return tflschema.BuiltinOptionsReducerOptions, tflschema.ReducerOptionsEnd(b)
	case OpReshape:
		shape := int32Vector(b, toInt32s(op.Outputs[0].Shape))
		tflschema.ReshapeOptionsStart(b)
		tflschema.ReshapeOptionsAddNewShape(b, shape)
		return tflschema.BuiltinOptionsReshapeOptions, tflschema.ReshapeOptionsEnd(b)
	case OpGather:
		tflschema.GatherOptionsStart(b)
		tflschema.GatherOptionsAddAxis(b, 0)
		return tflschema.BuiltinOptionsGatherOptions, tflschema.GatherOptionsEnd(b)
	case OpL2Normalization:
		tflschema.L2NormOptionsStart(b)
		tflschema.L2NormOptionsAddFusedActivationFunction(b, act)
		return tflschema.BuiltinOptionsL2NormOptions, tflschema.L2NormOptionsEnd(b)
	case OpQuantize:
		return tflschema.BuiltinOptionsQuantizeOptions, emptyTable(b, tflschema.QuantizeOptionsStart, tflschema.QuantizeOptionsEnd)
	case OpDequantize:
		return tflschema.BuiltinOptionsDequantizeOptions, emptyTable(b, tflschema.DequantizeOptionsStart, tflschema.DequantizeOptionsEnd)
	}
	panic(fmt.Sprintf("modelgen: no options for %v", op.Kind)) // Validate rules this out
}

func tensorIndices(ts []*Tensor, index map[*Tensor]int32) []int32 {
	out := make([]int32, len(ts))
	for i, t := range ts {
		out[i] = index[t]
	}
	return out
}

func toInt32s(v []int) []int32 {
	out := make([]int32, len(v))
	for i, x := range v {
		out[i] = int32(x)
	}
	return out
}

// The vector helpers prepend back to front, as flatbuffers builders do.

func offsetVector(b *flatbuffers.Builder, v []flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	b.StartVector(4, len(v), 4)
	for i := len(v) - 1; i >= 0; i-- {
		b.PrependUOffsetT(v[i])
	}
	return b.EndVector(len(v))
}

func int32Vector(b *flatbuffers.Builder, v []int32) flatbuffers.UOffsetT {
	b.StartVector(4, len(v), 4)
	for i := len(v) - 1; i >= 0; i-- {
		b.PrependInt32(v[i])
	}
	return b.EndVector(len(v))
}

func int64Vector(b *flatbuffers.Builder, v []int64) flatbuffers.UOffsetT {
	b.StartVector(8, len(v), 8)
	for i := len(v) - 1; i >= 0; i-- {
		b.PrependInt64(v[i])
	}
	return b.EndVector(len(v))
}

func float32Vector(b *flatbuffers.Builder, v []float32) flatbuffers.UOffsetT {
	b.StartVector(4, len(v), 4)
	for i := len(v) - 1; i >= 0; i-- {
		b.PrependFloat32(v[i])
	}
	return b.EndVector(len(v))
}

// constBytes is the little-endian encoding TFLite expects for a constant.
func constBytes(data any) []byte {
	switch d := data.(type) {
	case []float32:
		out := make([]byte, 4*len(d))
		for i, v := range d {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
		}
		return out
	case []int32:
		out := make([]byte, 4*len(d))
		for i, v := range d {
			binary.LittleEndian.PutUint32(out[4*i:], uint32(v))
		}
		return out
	case []int8:
		out := make([]byte, len(d))
		for i, v := range d {
			out[i] = byte(v)
		}
		return out
	case []uint8:
		return append([]byte(nil), d...)
	case []int64:
		out := make([]byte, 8*len(d))
		for i, v := range d {
			binary.LittleEndian.PutUint64(out[8*i:], uint64(v))
		}
		return out
	}
	panic(fmt.Sprintf("modelgen: constant of type %T", data)) // Validate rules this out
}
