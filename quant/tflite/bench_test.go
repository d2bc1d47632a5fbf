package tflite_test

import (
	"fmt"
	"strings"
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

// invokeConfigs are the runtime configurations BenchmarkInvoke compares, named
// <runtime>/<kernels>: LiteRT's CPU kernels are XNNPACK's; TensorFlow Lite
// 2.9 runs its built-in kernels unless the XNNPACK delegate is applied.
var invokeConfigs = []struct {
	name string
	opts tflite.Options
}{
	{"litert/xnnpack", tflite.Options{Runtime: tflite.RuntimeLiteRT}},
	{"tflite2.9/xnnpack", tflite.Options{Runtime: tflite.RuntimeTFLite29, XNNPACK: true}},
	{"tflite2.9/builtin", tflite.Options{Runtime: tflite.RuntimeTFLite29}},
}

// BenchmarkInvoke is one invoke of the benchmark encoder in each runtime
// configuration, named BenchmarkInvoke/<runtime>/<precision>/<kernels>/threads=N
// so that numbers compare over time. Reported: ns/op and GMAC/s.
func BenchmarkInvoke(b *testing.B) {
	for _, c := range invokeConfigs {
		rt, kernels, _ := strings.Cut(c.name, "/")
		for _, p := range []modelgen.Precision{modelgen.Int8Full, modelgen.Float} {
			for _, threads := range []int{1, 2} {
				name := fmt.Sprintf("%s/%s/%s/threads=%d", rt, p, kernels, threads)
				b.Run(name, func(b *testing.B) {
					m, err := tflite.NewModel(benchEncoder(b, p))
					if err != nil {
						b.Fatal(err)
					}
					defer m.Close()
					o := c.opts
					o.Threads = threads
					ip, err := tflite.NewInterpreter(m, o)
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
