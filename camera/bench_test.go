package camera

import (
	"context"
	"fmt"
	"image"
	"path/filepath"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/sightd/sightd/quant/encoder"
)

var benchSizes = []image.Point{{640, 480}, {1280, 720}}

// scaledVtest writes the first n frames of vtest.avi scaled to size as an
// MJPG .avi, the format USB cameras send: real motion at the benchmark's
// resolution.
func scaledVtest(tb testing.TB, size image.Point, n int) string {
	tb.Helper()
	vc, err := gocv.VideoCaptureFile(opencvData(tb, "vtest.avi"))
	if err != nil {
		tb.Fatal(err)
	}
	defer vc.Close()
	src := gocv.NewMat()
	defer src.Close()
	path := filepath.Join(tb.TempDir(), fmt.Sprintf("vtest_%dx%d.avi", size.X, size.Y))
	writeVideo(tb, path, size, 10, n, func(i int, m *gocv.Mat) {
		if !vc.Read(&src) {
			tb.Fatalf("vtest.avi ended at frame %d", i)
		}
		gocv.Resize(src, m, size, 0, 0, gocv.InterpolationArea)
	})
	return path
}

// pipeline is one camera's per-frame work up to the encoder's input: the
// newest frame, the gate, the regions, and one region preprocessed to the
// 224x224 int8 input of a CLIP-style tower.
type pipeline struct {
	src     *Capture
	gate    *Gate
	regions *Regions
	writer  *encoder.Writer[int8]
	input   []int8
	built   []Region
	passed  int
}

func newPipeline(tb testing.TB, cfg Config) *pipeline {
	tb.Helper()
	pre, err := encoder.NewPreprocessor(encoder.ImageSpec{Width: 224, Height: 224,
		Mean: [3]float32{0.4815, 0.4578, 0.4082}, Std: [3]float32{0.2686, 0.2613, 0.2758}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pre.Close() })
	rb, err := NewRegions(cfg.Regions)
	if err != nil {
		tb.Fatal(err)
	}
	return &pipeline{
		src: openTest(tb, cfg), gate: newTestGate(tb, cfg.Gate), regions: rb,
		writer: encoder.NewWriter(pre, encoder.Quantizer[int8]{Scale: 0.0186, ZeroPoint: -14}),
		input:  make([]int8, 224*224*3),
		built:  make([]Region, 0, 16),
	}
}

// step runs one frame. Every frame is cut and preprocessed, passed by the
// gate or not, so that each op costs the same: the most a frame can cost
// short of the model.
func (p *pipeline) step(ctx context.Context) error {
	f, err := p.src.Next(ctx)
	if err != nil {
		return err
	}
	d, err := p.gate.Check(f.Mat, f.Time)
	if err != nil {
		return err
	}
	if d.Encode {
		p.passed++
	}
	p.built = p.regions.Build(p.built, image.Pt(f.Mat.Cols(), f.Mat.Rows()), d.Boxes)
	// The last region: a motion crop when there is one, else the full frame.
	return p.writer.Write(p.input, f.Mat, p.built[len(p.built)-1].Rect)
}

func benchConfig(path string) Config {
	cfg := fileConfig("bench", path)
	cfg.Fast, cfg.Loop = true, true
	return cfg
}

// BenchmarkPipeline is the per-frame cost before the encoder: read (decode
// an MJPG file frame), gate, build regions, preprocess one region. Fast
// mode hands over every frame, the reader decoding the next one meanwhile.
// The vtest case is the recording itself (768x576, DivX): its gated/frame is
// the share of frames the default gate passes on a busy street.
func BenchmarkPipeline(b *testing.B) {
	for _, size := range append(benchSizes, image.Point{}) {
		name := fmt.Sprintf("%dx%d", size.X, size.Y)
		if size == (image.Point{}) {
			name = "vtest.avi"
		}
		b.Run(name, func(b *testing.B) {
			path := opencvData(b, "vtest.avi")
			if size != (image.Point{}) {
				path = scaledVtest(b, size, 200)
			}
			p := newPipeline(b, benchConfig(path))
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := p.step(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(p.passed)/float64(b.N), "gated/frame")
		})
	}
}

// BenchmarkRead is the source alone: decoding and handing over a frame.
func BenchmarkRead(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dx%d", size.X, size.Y), func(b *testing.B) {
			src := openTest(b, benchConfig(scaledVtest(b, size, 200)))
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := src.Next(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// frameRing holds n real frames of vtest.avi at size in memory, so that the
// gate is measured without the decoder.
func frameRing(b *testing.B, size image.Point, n int) []gocv.Mat {
	vc, err := gocv.VideoCaptureFile(opencvData(b, "vtest.avi"))
	if err != nil {
		b.Fatal(err)
	}
	defer vc.Close()
	src := gocv.NewMat()
	defer src.Close()
	ring := make([]gocv.Mat, n)
	for i := range ring {
		if !vc.Read(&src) {
			b.Fatal("vtest.avi ended")
		}
		ring[i] = gocv.NewMat()
		gocv.Resize(src, &ring[i], size, 0, 0, gocv.InterpolationArea)
	}
	b.Cleanup(func() {
		for i := range ring {
			ring[i].Close()
		}
	})
	return ring
}

// BenchmarkGate is the gate alone, on consecutive street frames.
func BenchmarkGate(b *testing.B) {
	for _, size := range append(benchSizes, image.Pt(768, 576)) {
		for _, m := range gateMethods {
			b.Run(fmt.Sprintf("%dx%d/%s", size.X, size.Y, m.name), func(b *testing.B) {
				ring := frameRing(b, size, 50)
				g, err := newGate(GateDefaults(), m.fg)
				if err != nil {
					b.Fatal(err)
				}
				defer g.Close()
				var t0 = benchEpoch
				passed := 0
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					d, err := g.Check(ring[i%len(ring)], t0.Add(frameTime(i)))
					if err != nil {
						b.Fatal(err)
					}
					if d.Encode {
						passed++
					}
				}
				b.ReportMetric(float64(passed)/float64(b.N), "gated/frame")
			})
		}
	}
}

var benchEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// frameTime is frame i's time at vtest.avi's 10 fps.
func frameTime(i int) time.Duration { return time.Duration(i) * 100 * time.Millisecond }

// TestPipelineDoesNotAllocate: in steady state, a frame costs no Go
// allocation anywhere (the reader goroutine included): read, gate, regions,
// preprocessing.
func TestPipelineDoesNotAllocate(t *testing.T) {
	cfg := benchConfig(scaledVtest(t, image.Pt(640, 480), 120))
	cfg.Loop = false // a reopen allocates; steady state is within one pass
	p := newPipeline(t, cfg)
	ctx := testCtx(t)
	for range 10 { // Mats take their sizes
		if err := p.step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := p.step(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per frame", allocs)
	}
	if p.passed == 0 {
		t.Fatal("the gate passed no frame of a street scene")
	}
}
