package encoder

import (
	"fmt"
	"image"
	"testing"

	"gocv.io/x/gocv"

	"github.com/sightd/sightd/quant/modelgen"
	"github.com/sightd/sightd/quant/tflite"
	"github.com/sightd/sightd/quant/tokenizer"
)

// benchRuntime is the configuration sightd uses on a 2-core board.
var benchRuntime = tflite.Options{Threads: 2, XNNPACK: true}

// benchImage is the foundation's benchmark encoder (MobileNetV2-like, int8,
// 224x224x3 -> 512) behind the full image path.
func benchImage(b *testing.B, batched bool) *Image {
	b.Helper()
	g, err := modelgen.MobileNetV2Like(modelgen.MobileNetV2Options{Seed: 7, Precision: modelgen.Int8Full})
	if err != nil {
		b.Fatal(err)
	}
	e, err := NewImage(buildModel(b, g), ImageConfig{Spec: clipSpec, Runtime: benchRuntime, DynamicBatch: batched})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	return e
}

func benchFrame(b *testing.B) gocv.Mat {
	frame := gocv.NewMatWithSize(720, 1280, gocv.MatTypeCV8UC3)
	gocv.RandU(&frame, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(255, 255, 255, 0))
	b.Cleanup(func() { frame.Close() })
	return frame
}

// BenchmarkImageEncode is the whole per-region cost on a 1280x720 frame:
// crop, resize, quantise, invoke, dequantise, normalise. Compare with
// BenchmarkImageInvokeOnly for the share that is not the model.
func BenchmarkImageEncode(b *testing.B) {
	frame := benchFrame(b)
	all := []image.Rectangle{image.Rect(0, 0, 1280, 720), image.Rect(0, 0, 640, 360),
		image.Rect(640, 0, 1280, 360), image.Rect(0, 360, 640, 720), image.Rect(500, 200, 800, 600)}
	for _, c := range []struct {
		n       int
		batched bool
	}{{1, false}, {5, false}, {5, true}} {
		n := c.n
		b.Run(fmt.Sprintf("regions=%d/batched=%v", n, c.batched), func(b *testing.B) {
			e := benchImage(b, c.batched)
			regions := all[:n]
			dst := make([]float32, n*e.Dim())
			b.ReportAllocs()
			for b.Loop() {
				if err := e.Encode(frame, regions, dst); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n)/1e6, "ms/region")
		})
	}
}

// BenchmarkImageInvokeOnly is the model alone, same interpreter settings.
func BenchmarkImageInvokeOnly(b *testing.B) {
	e := benchImage(b, false)
	b.ReportAllocs()
	for b.Loop() {
		if err := e.ip.Invoke(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkImageOverhead is everything but the invoke for one region:
// preprocessing of a 1280x720 frame plus dequantise and normalise.
func BenchmarkImageOverhead(b *testing.B) {
	e := benchImage(b, false)
	frame := benchFrame(b)
	r := image.Rect(0, 0, 1280, 720)
	dst := make([]float32, e.Dim())
	if err := e.Encode(frame, []image.Rectangle{r}, dst); err != nil { // an output to read
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := e.in.write(frame, r, 0); err != nil {
			b.Fatal(err)
		}
		if err := e.out.read(dst, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTextEncode tokenises and embeds a 20-word rule with a text tower
// over CLIP's real vocabulary (a small one: the cost here is tokenising and
// the binding, not a transformer).
func BenchmarkTextEncode(b *testing.B) {
	tok, err := tokenizer.LoadFile(clipVocab(b), tokenizer.Config{})
	if err != nil {
		b.Fatal(err)
	}
	e, err := NewText(buildModel(b, textTowerGraph(b, tok.VocabSize(), 512)), tok, TextConfig{Runtime: benchRuntime})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	dst := make([]float32, e.Dim())
	const rule = "a brown cardboard package left on the porch next to the front door while nobody is at home today"
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Encode(rule, dst); err != nil {
			b.Fatal(err)
		}
	}
}
