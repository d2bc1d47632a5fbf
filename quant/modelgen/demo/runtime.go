package demo

import (
	"fmt"
	"math"

	"github.com/sightd/sightd/quant/tflite"
)

// session is one model loaded in sightd's runtime (LiteRT by default).
type session struct {
	m  *tflite.Model
	ip *tflite.Interpreter
}

func newSession(model []byte, opts tflite.Options) (_ *session, err error) {
	m, err := tflite.NewModel(model)
	if err != nil {
		return nil, err
	}
	ip, err := tflite.NewInterpreter(m, opts)
	if err != nil {
		m.Close()
		return nil, err
	}
	s := &session{m: m, ip: ip}
	if err := ip.AllocateTensors(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *session) Close() error {
	err := s.ip.Close()
	if cerr := s.m.Close(); err == nil {
		err = cerr
	}
	return err
}

// image embeds an RGB image of InputSize x InputSize pixels (HWC, bytes) as
// the manifest says (pixel/255, mean 0, std 1, quantized with the input
// tensor's parameters) and returns the dequantized output.
func (s *session) image(rgb []uint8) ([]float32, error) {
	in := s.ip.Input(0)
	if len(rgb) != in.NumElements() {
		return nil, fmt.Errorf("demo: image of %d values for input %v", len(rgb), in.Shape())
	}
	switch in.Type() {
	case tflite.Int8:
		scale, zp := in.Quantization()
		q := make([]int8, len(rgb))
		for i, p := range rgb {
			v := math.Round(float64(p)/255/float64(scale)) + float64(zp)
			q[i] = int8(min(max(v, math.MinInt8), math.MaxInt8))
		}
		if err := tflite.CopyIn(in, q); err != nil {
			return nil, err
		}
	case tflite.Float32:
		f := make([]float32, len(rgb))
		for i, p := range rgb {
			f[i] = float32(p) / 255
		}
		if err := tflite.CopyIn(in, f); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("demo: image input of type %v", in.Type())
	}
	return s.invoke()
}

// text embeds token ids (ContextLength of them, padded with 0).
func (s *session) text(ids []int32) ([]float32, error) {
	if err := tflite.CopyIn(s.ip.Input(0), ids); err != nil {
		return nil, err
	}
	return s.invoke()
}

func (s *session) invoke() ([]float32, error) {
	if err := s.ip.Invoke(); err != nil {
		return nil, err
	}
	out := s.ip.Output(0)
	switch out.Type() {
	case tflite.Float32:
		v := make([]float32, out.NumElements())
		return v, tflite.CopyOut(out, v)
	case tflite.Int8:
		q := make([]int8, out.NumElements())
		if err := tflite.CopyOut(out, q); err != nil {
			return nil, err
		}
		scale, zp := out.Quantization()
		v := make([]float32, len(q))
		for i, x := range q {
			v[i] = scale * float32(int32(x)-zp)
		}
		return v, nil
	}
	return nil, fmt.Errorf("demo: output of type %v", out.Type())
}

// normalized returns v scaled to length 1 (v itself when it is zero).
func normalized(v []float32) []float32 {
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	if n == 0 {
		copy(out, v)
		return out
	}
	n = math.Sqrt(n)
	for i, x := range v {
		out[i] = float32(float64(x) / n)
	}
	return out
}

// cosine is the cosine similarity of a and b.
func cosine(a, b []float32) float64 {
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
