package tflite_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/sightd/sightd/quant/modelgen"
	"github.com/sightd/sightd/quant/tflite"
)

var (
	benchModelsOnce sync.Once
	benchModels     map[modelgen.Precision][]byte
	benchMACs       int64
	benchErr        error
)

// benchEncoder is the foundation's benchmark image encoder: MobileNetV2-like,
// 224x224x3 in, 512-d out, random weights (speed does not depend on them).
func benchEncoder(b *testing.B, p modelgen.Precision) []byte {
	benchModelsOnce.Do(func() {
		benchModels = map[modelgen.Precision][]byte{}
		for _, p := range []modelgen.Precision{modelgen.Float, modelgen.Int8Full} {
			g, err := modelgen.MobileNetV2Like(modelgen.MobileNetV2Options{Seed: 7, Precision: p})
			if err != nil {
				benchErr = err
				return
			}
			benchMACs = g.MACs()
			if benchModels[p], err = g.Build(); err != nil {
				benchErr = err
				return
			}
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchModels[p]
}

// BenchmarkInvoke is one invoke of the benchmark encoder in each runtime
// configuration. Reported: ns/op and GMAC/s.
func BenchmarkInvoke(b *testing.B) {
	for _, p := range []modelgen.Precision{modelgen.Int8Full, modelgen.Float} {
		for _, xnn := range []bool{false, true} {
			for _, threads := range []int{1, 2} {
				kernels := "builtin"
				if xnn {
					kernels = "xnnpack"
				}
				name := fmt.Sprintf("%s/%s/threads=%d", p, kernels, threads)
				b.Run(name, func(b *testing.B) {
					m, err := tflite.NewModel(benchEncoder(b, p))
					if err != nil {
						b.Fatal(err)
					}
					defer m.Close()
					ip, err := tflite.NewInterpreter(m, tflite.Options{Threads: threads, XNNPACK: xnn})
					if err != nil {
						b.Fatal(err)
					}
					defer ip.Close()
					if err := ip.AllocateTensors(); err != nil {
						b.Fatal(err)
					}
					if err := ip.Invoke(); err != nil { // warm up: first-run packing
						b.Fatal(err)
					}
					b.ReportAllocs()
					b.ResetTimer()
					for b.Loop() {
						if err := ip.Invoke(); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(benchMACs)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GMAC/s")
				})
			}
		}
	}
}
