package tflite_test

import (
	"testing"

	"github.com/sightd/sightd/quant/modelgen"
	"github.com/sightd/sightd/quant/tflite"
)

// FuzzNewModel feeds arbitrary bytes to the model loader and runs what loads:
// nothing may crash the process (LiteRT 2.3 itself does not verify a file's
// flatbuffer, so quant/tflite verifies first). Seeds: the tiny models
// modelgen writes, whole, truncated and with a flipped byte, plus the files
// in testdata/fuzz/FuzzNewModel.
func FuzzNewModel(f *testing.F) {
	for _, m := range modelgen.TinyModels()[:6] {
		g, err := m.Graph(modelgen.Int8Full, 3)
		if err != nil {
			f.Fatal(err)
		}
		b, err := g.Build()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)*2/3])
		flipped := append([]byte(nil), b...)
		flipped[len(flipped)/2] ^= 0x5a
		f.Add(flipped)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := tflite.NewModel(b)
		if err != nil {
			return
		}
		defer m.Close()
		ip, err := tflite.NewInterpreter(m, tflite.Options{Threads: 1})
		if err != nil {
			return
		}
		defer ip.Close()
		if ip.AllocateTensors() != nil {
			return
		}
		for i := range ip.InputCount() {
			if ip.Input(i).ByteSize() > 16<<20 {
				return // a mutated shape asking for more memory than a test should take
			}
		}
		_ = ip.Invoke()
	})
}
