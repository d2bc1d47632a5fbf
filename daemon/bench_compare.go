package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/sightd/sightd/quant/bundle"
	"github.com/sightd/sightd/quant/encoder"
	"github.com/sightd/sightd/quant/tflite"
)

// compareConfigs are the runtime configurations `sightd bench --compare` runs
// side by side, LiteRT first: the others' outputs are compared with its.
var compareConfigs = []struct {
	name string
	opts tflite.Options
}{
	{"litert/xnnpack", tflite.Options{Runtime: tflite.RuntimeLiteRT}},
	{"tflite2.9/xnnpack", tflite.Options{Runtime: tflite.RuntimeTFLite29, XNNPACK: true}},
	{"tflite2.9/builtin", tflite.Options{Runtime: tflite.RuntimeTFLite29}},
}

// compareRow is one tower on one runtime configuration.
type compareRow struct {
	tower, config string
	threads       int
	times         []time.Duration
	cosine        float64 // output against LiteRT's on the same input; NaN when not comparable
	err           error
}

// runCompare times both towers of a bundle on every runtime configuration
// with 1 and 2 threads, invokes times each on one fixed input, and reports
// the median and spread of an invoke and how far each output is from LiteRT's.
func runCompare(ctx context.Context, w io.Writer, bundlePath string, invokes int) error {
	if invokes < 1 {
		return fmt.Errorf("--invokes %d: want at least 1", invokes)
	}
	b, err := bundle.Open(bundlePath)
	if err != nil {
		return err
	}
	defer b.Close()
	m := b.Manifest
	fmt.Fprintf(w, "model    %s v%d, %d-d; %s\n", m.Name, m.Version, m.EmbeddingDim, tflite.Version())
	fmt.Fprintf(w, "%-6s %-18s %7s %10s %17s %10s\n", "tower", "runtime/kernels", "threads", "median ms", "spread ms", "cos LiteRT")
	for _, tw := range []struct{ name, file string }{{"image", m.Image.File}, {"text", m.Text.File}} {
		model, err := tflite.NewModelFromFile(b.Path(tw.file))
		if err != nil {
			return fmt.Errorf("%s tower: %w", tw.name, err)
		}
		var ref []float32
		for _, c := range compareConfigs {
			for _, threads := range []int{1, 2} {
				if err := ctx.Err(); err != nil {
					model.Close()
					return err
				}
				o := c.opts
				o.Threads = threads
				row := compareRow{tower: tw.name, config: c.name, threads: threads, cosine: math.NaN()}
				out, err := timeInvokes(model, o, invokes, &row)
				if err != nil {
					row.err = err
				} else if ref == nil {
					ref = out
				}
				if out != nil && ref != nil && len(out) == len(ref) {
					row.cosine = encoder.Cosine(out, ref)
				}
				printCompareRow(w, row)
			}
		}
		model.Close()
	}
	return nil
}

func printCompareRow(w io.Writer, r compareRow) {
	if r.err != nil {
		fmt.Fprintf(w, "%-6s %-18s %7d  fails: %v\n", r.tower, r.config, r.threads, r.err)
		return
	}
	s := slices.Clone(r.times)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	med := ms(s[len(s)/2])
	if len(s)%2 == 0 {
		med = (ms(s[len(s)/2-1]) + ms(s[len(s)/2])) / 2
	}
	cos := "-"
	if !math.IsNaN(r.cosine) {
		cos = fmt.Sprintf("%.4f", r.cosine)
	}
	fmt.Fprintf(w, "%-6s %-18s %7d %10.2f %8.2f-%-8.2f %10s\n", r.tower, r.config, r.threads, med, ms(s[0]), ms(s[len(s)-1]), cos)
}

// timeInvokes runs model n times (after one warm-up run) on a fixed input and
// returns the first output as floats.
func timeInvokes(model *tflite.Model, o tflite.Options, n int, row *compareRow) ([]float32, error) {
	ip, err := tflite.NewInterpreter(model, o)
	if err != nil {
		return nil, err
	}
	defer ip.Close()
	if err := ip.AllocateTensors(); err != nil {
		return nil, err
	}
	for i := range ip.InputCount() {
		if err := fillInput(ip.Input(i)); err != nil {
			return nil, err
		}
	}
	if err := ip.Invoke(); err != nil {
		return nil, err
	}
	for range n {
		t0 := time.Now()
		if err := ip.Invoke(); err != nil {
			return nil, err
		}
		row.times = append(row.times, time.Since(t0))
	}
	return outputFloats(ip.Output(0))
}

// fillInput writes the same pseudo-random input on every runtime: pixels in
// [0, 1) (or the int8 codes of [-1, 1)), token ids below 256.
func fillInput(t *tflite.Tensor) error {
	r := rand.New(rand.NewPCG(7, 11))
	switch t.Type() {
	case tflite.Float32:
		v, err := tflite.View[float32](t)
		for i := range v {
			v[i] = r.Float32()
		}
		return err
	case tflite.Int8:
		v, err := tflite.View[int8](t)
		for i := range v {
			v[i] = int8(r.IntN(256) - 128)
		}
		return err
	case tflite.UInt8:
		v, err := tflite.View[uint8](t)
		for i := range v {
			v[i] = uint8(r.IntN(256))
		}
		return err
	case tflite.Int32:
		v, err := tflite.View[int32](t)
		for i := range v {
			v[i] = int32(r.IntN(256))
		}
		return err
	case tflite.Int64:
		v, err := tflite.View[int64](t)
		for i := range v {
			v[i] = int64(r.IntN(256))
		}
		return err
	}
	return fmt.Errorf("input %q: type %s", t.Name(), t.Type())
}

// outputFloats reads a float or (dequantized) int8/uint8 output.
func outputFloats(t *tflite.Tensor) ([]float32, error) {
	scale, zp := t.Quantization()
	out := make([]float32, t.NumElements())
	switch t.Type() {
	case tflite.Float32:
		return out, tflite.CopyOut(t, out)
	case tflite.Int8:
		v, err := tflite.View[int8](t)
		for i := range v {
			out[i] = scale * float32(int32(v[i])-zp)
		}
		return out, err
	case tflite.UInt8:
		v, err := tflite.View[uint8](t)
		for i := range v {
			out[i] = scale * float32(int32(v[i])-zp)
		}
		return out, err
	}
	return nil, fmt.Errorf("output %q: type %s", t.Name(), t.Type())
}
