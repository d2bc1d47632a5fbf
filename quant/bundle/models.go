package bundle

import (
	"fmt"
	"strings"

	"github.com/sightd/sightd/quant/tflite"
)

// CheckModels loads both encoders with sightd's runtime (LiteRT) and
// checks them against the manifest: exactly one input, and input 0 and
// output 0 with the manifest's shape (a batch of -1 matches any) and element
// type; int8 and uint8 tensors must carry quantization parameters, which the
// encoders need to convert values. Every problem is reported, naming the
// tower and the tensor, under ErrInvalid; mismatches also wrap
// ErrModelMismatch, and a model the runtime refuses wraps the tflite error.
func (b *Bundle) CheckModels() error {
	m := b.Manifest
	var p []error
	p = append(p, checkModel(TowerImage, b.Path(m.Image.File), m.Image.Input.Tensor, m.Image.Output)...)
	p = append(p, checkModel(TowerText, b.Path(m.Text.File), m.Text.Input, m.Text.Output)...)
	return invalid(p...)
}

func checkModel(tower, path string, in, out Tensor) []error {
	model, err := tflite.NewModelFromFile(path)
	if err != nil {
		return []error{fmt.Errorf("%s tower: %w", tower, err)}
	}
	defer model.Close()
	ip, err := tflite.NewInterpreter(model, tflite.Options{})
	if err != nil {
		return []error{fmt.Errorf("%s tower: %w", tower, err)}
	}
	defer ip.Close() // before model.Close
	if err := ip.AllocateTensors(); err != nil {
		return []error{fmt.Errorf("%s tower: %w", tower, err)}
	}

	var p []error
	if n := ip.InputCount(); n != 1 {
		// The encoder fills only input 0; others would hold garbage.
		p = append(p, fmt.Errorf("%s tower: %w: %d inputs, want 1", tower, ErrModelMismatch, n))
	}
	if ip.InputCount() > 0 {
		p = append(p, checkTensor(tower+" tower: input 0", ip.Input(0), in)...)
	}
	if ip.OutputCount() == 0 {
		p = append(p, fmt.Errorf("%s tower: %w: no outputs", tower, ErrModelMismatch))
	} else {
		p = append(p, checkTensor(tower+" tower: output 0", ip.Output(0), out)...)
	}
	return p
}

func checkTensor(what string, t *tflite.Tensor, want Tensor) []error {
	what = fmt.Sprintf("%s %q", what, t.Name())
	var p []error
	if got := t.Shape(); !shapeMatches(want.Shape, got) {
		p = append(p, fmt.Errorf("%s: %w: shape %v, manifest %v", what, ErrModelMismatch, got, want.Shape))
	}
	got := dtypeOf(t.Type())
	if got != want.DType {
		p = append(p, fmt.Errorf("%s: %w: dtype %s, manifest %s", what, ErrModelMismatch, got, want.DType))
	}
	if scale, _ := t.Quantization(); (got == Int8 || got == UInt8) && scale == 0 {
		p = append(p, fmt.Errorf("%s: %w: %s tensor without quantization parameters", what, ErrModelMismatch, got))
	}
	return p
}

// shapeMatches compares a model's shape with the manifest's, where -1 (a
// dynamic batch) matches any size.
func shapeMatches(want, got []int) bool {
	if len(want) != len(got) {
		return false
	}
	for i := range want {
		if want[i] != -1 && want[i] != got[i] {
			return false
		}
	}
	return true
}

func dtypeOf(t tflite.TensorType) DType {
	switch t {
	case tflite.Float32:
		return Float32
	case tflite.Int8:
		return Int8
	case tflite.UInt8:
		return UInt8
	case tflite.Int32:
		return Int32
	case tflite.Int64:
		return Int64
	}
	return DType(strings.ToLower(t.String()))
}
