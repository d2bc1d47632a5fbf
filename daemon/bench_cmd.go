package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/sightd/sightd/camera"
	"github.com/sightd/sightd/daemon/pipeline"
	"github.com/sightd/sightd/daemon/procstat"
	"github.com/sightd/sightd/daemon/rules"
)

func newBenchCmd() *cobra.Command {
	var bundlePath, source, grid string
	var frames, invokes int
	var compare bool
	var prompts []string
	var rt runtimeFlags
	cmd := &cobra.Command{
		Use:   "bench --bundle B (--source S | --compare)",
		Short: "Run the real pipeline on a source and report its speed",
		Long: "Runs source -> gate -> regions -> encode -> match -> decide for N frames (files as\n" +
			"fast as the pipeline takes them) and prints frames/s, the invoke time alone (the\n" +
			"engine's own limit on this model), the pipeline's cost above it, the gate's pass\n" +
			"rate, matching time, memory (peak RSS; RSS, PSS and private memory at the end;\n" +
			"the shared libraries mapped) and the time to the first encoded frame.\n\n" +
			"--compare instead times the bundle's two towers alone on LiteRT and on\n" +
			"TensorFlow Lite 2.9 (XNNPACK and built-in kernels), 1 and 2 threads, and shows\n" +
			"how far each runtime's output is from LiteRT's on the same input.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if compare {
				return runCompare(cmd.Context(), cmd.OutOrStdout(), bundlePath, invokes)
			}
			cc := camera.Defaults()
			cc.Name, cc.Source, cc.Fast, cc.Loop = "bench", source, true, true
			if grid != "" {
				if _, err := fmt.Sscanf(grid, "%dx%d", &cc.Regions.Grid.Rows, &cc.Regions.Grid.Cols); err != nil {
					return fmt.Errorf("--grid %q: want ROWSxCOLS", grid)
				}
			}
			if err := cc.Validate(); err != nil {
				return err
			}
			return runBench(cmd.Context(), cmd.OutOrStdout(), bundlePath, cc, frames, prompts, rt)
		},
	}
	cmd.Flags().StringVar(&bundlePath, "bundle", "", "model bundle (directory or tar)")
	cmd.Flags().StringVar(&source, "source", "", "camera source (a video file is read as fast as possible, looped)")
	cmd.Flags().IntVar(&frames, "frames", 300, "frames to run")
	cmd.Flags().BoolVar(&compare, "compare", false, "time the towers on every runtime side by side (no --source)")
	cmd.Flags().IntVar(&invokes, "invokes", 50, "with --compare: invokes per tower, runtime and thread count")
	cmd.Flags().StringVar(&grid, "grid", "", "grid regions ROWSxCOLS besides the full frame")
	cmd.Flags().StringArrayVar(&prompts, "prompt", []string{"a package on the porch", "a person at the door", "the garage door is open"}, "rule prompts to match (repeatable)")
	rt.register(cmd)
	return cmd
}

// benchSink counts and drops events.
type benchSink struct{ events int }

func (b *benchSink) Event(context.Context, pipeline.Event) error       { b.events++; return nil }
func (b *benchSink) CameraStatus(context.Context, string, bool, error) {}

func runBench(ctx context.Context, w io.Writer, bundlePath string, cc camera.Config, frames int, prompts []string, rt runtimeFlags) error {
	start := time.Now()
	towers, done, err := openTowers(bundlePath)
	if err != nil {
		return err
	}
	defer done()
	m := towers.Manifest()
	opts, err := rt.options()
	if err != nil {
		return err
	}
	text, err := towers.NewText(opts)
	if err != nil {
		return err
	}
	defer text.Close()
	var compiled []*rules.Compiled
	for i, p := range prompts {
		r := &rules.Rule{ID: fmt.Sprintf("bench-%d", i), Prompts: []string{p}}
		r.Defaults()
		cr, err := rules.CompileRule(text, r, nil)
		if err != nil {
			return err
		}
		compiled = append(compiled, cr)
	}
	bgs, err := rules.Backgrounds(text, rules.DefaultBackgrounds)
	if err != nil {
		return err
	}
	set, err := rules.NewSet(m.Version, m.LogitScale, text.Dim(), compiled, bgs)
	if err != nil {
		return err
	}
	enc, err := towers.NewImage(opts)
	if err != nil {
		return err
	}
	accels := enc.Accelerators()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	src, err := camera.OpenGated(runCtx, cc, zerolog.Nop()) // as sightd run does
	if err != nil {
		enc.Close()
		return err
	}
	p, err := pipeline.New(cc, src, enc, set, &benchSink{}, zerolog.Nop())
	if err != nil {
		return err
	}
	var first time.Time
	p.OnEncode = func(time.Duration) {
		if first.IsZero() {
			first = time.Now()
		}
	}
	fmt.Fprintf(w, "model    %s v%d, %d-d, on %s with %d threads\nsource   %s\n", m.Name, m.Version, m.EmbeddingDim,
		strings.Join(accels, "+"), opts.Threads, cc.Source)
	errc := make(chan error, 1)
	t0 := time.Now()
	go func() { errc <- p.Run(runCtx) }()
	progress := newProgress(w, frames)
	var peakAnon int64 // sampled: the kernel keeps no high-water mark of it
	for p.Stats.Frames.Load() < uint64(frames) {
		peakAnon = max(peakAnon, procStatus("RssAnon:"))
		select {
		case err := <-errc:
			if err != nil {
				return err
			}
			return fmt.Errorf("the source ended after %d frames", p.Stats.Frames.Load())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
			progress(int(p.Stats.Frames.Load()))
		}
	}
	elapsed := time.Since(t0)
	n, gated, encoded, regions := p.Stats.Frames.Load(), p.Stats.Gated.Load(), p.Stats.Encoded.Load(), p.Stats.Regions.Load()
	encodeNs, matchNs := p.Stats.EncodeNanos.Load(), p.Stats.MatchNanos.Load()
	gateNs := p.Stats.GateNanos.Load() + src.Stats().GateNanos // the reader's, off the frame path
	// Memory while the pipeline still runs (after it, its buffers are freed).
	mem, memErr := procstat.Self()
	libs, libsErr := procstat.LibrariesOf(0)
	cancel()
	<-errc
	progress(-1)

	// The engine's own limit: the same interpreter settings, invoke alone.
	probe, err := towers.NewImage(opts)
	if err != nil {
		return err
	}
	invoke, err := probe.TimeInvoke(20)
	probe.Close()
	if err != nil {
		return err
	}
	perFrame := elapsed / time.Duration(n)
	// The model's time inside the run, measured around each invoke: the
	// rest of the frame time is the pipeline's own cost (or waiting).
	invokePerFrame := enc.Invoked() / time.Duration(n)
	fmt.Fprintf(w, "frames   %d in %.1fs: %.1f frames/s (%.1f ms a frame)\n", n, elapsed.Seconds(), float64(n)/elapsed.Seconds(), ms(perFrame))
	fmt.Fprintf(w, "gate     %.1f%% of frames encoded, %.1f regions each; %.2f ms a frame, on the camera reader's core\n", 100*float64(gated)/float64(n),
		float64(regions)/float64(max(encoded, 1)), ms(time.Duration(gateNs/int64(max(src.Stats().Read, 1)))))
	fmt.Fprintf(w, "encode   %.2f ms a region, of which invoke %.2f ms; invoke alone, outside the pipeline, %.2f ms\n",
		ms(time.Duration(encodeNs/int64(max(regions, 1)))), ms(enc.Invoked()/time.Duration(max(regions, 1))), ms(invoke))
	fmt.Fprintf(w, "overhead %.1f%% of the frame time is not the model's invoke (%.2f of %.2f ms)\n",
		100*(1-float64(invokePerFrame)/float64(perFrame)), ms(perFrame-invokePerFrame), ms(perFrame))
	fmt.Fprintf(w, "matching %.3f ms a frame (%d rules, %.1f regions)\n", ms(time.Duration(matchNs/int64(max(encoded, 1)))), len(compiled), float64(regions)/float64(max(encoded, 1)))
	if err := errors.Join(memErr, libsErr); err != nil {
		return err
	}
	peakPrivate, models := max(peakAnon, mem.Private()), m.Image.Size+m.Text.Size
	fmt.Fprintf(w, "memory   peak RSS %s MB, peak private %s MB (sampled); running: %s\n", procstat.MB(procStatus("VmHWM:")), procstat.MB(peakPrivate), memoryLine(mem, len(libs)))
	verdict := "met"
	if peakPrivate > models+60e6 {
		verdict = "NOT met"
	}
	fmt.Fprintf(w, "goal     private memory <= model files + 60 MB: %s MB against %s + 60 MB, %s\n", procstat.MB(peakPrivate), procstat.MB(models), verdict)
	fmt.Fprintf(w, "start    %.0f ms to the first encoded frame, %s\n", ms(first.Sub(start)), sinceProcessStart(first))
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// procStatus reads a memory field of /proc/self/status ("VmHWM:", the
// high-water resident set; "RssAnon:", memory sightd allocated; "RssFile:",
// pages mapped from files, mostly shared libraries), in bytes.
func procStatus(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// newProgress draws a progress line of frames on a terminal and nothing
// elsewhere; progress(-1) ends the line.
func newProgress(w io.Writer, total int) func(int) {
	bar := newPercentBar(w)
	return func(done int) {
		if done < 0 {
			bar(-1, "")
			return
		}
		bar(done*100/max(total, 1), fmt.Sprintf("%d/%d frames", done, total))
	}
}
