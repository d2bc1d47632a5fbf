package main

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"gocv.io/x/gocv"

	"github.com/sightd/sightd/camera"
)

func newCameraCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "camera",
		Short: "Camera tools",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newCameraCheckCmd(), newCameraRecordCmd(), newCaptureWorkerCmd())
	return cmd
}

// newCaptureWorkerCmd is the process one network camera is decoded in (see
// camera.RunWorker): the daemon starts it, writes the request on its stdin
// and reads raw frames from its stdout. Not for people.
func newCaptureWorkerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "capture-worker",
		Short:  "Decode one network camera for the daemon (internal)",
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return camera.RunWorker(os.Stdin, os.Stdout)
		},
	}
}

// useCaptureWorkers makes every network camera this process opens decode in
// a worker process of its own: this binary, run as `camera capture-worker`.
func useCaptureWorkers() {
	exe, err := os.Executable()
	if err != nil {
		return // decoded in this process, as before
	}
	camera.UseWorker(&camera.WorkerCommand{Path: exe, Args: []string{"camera", "capture-worker"}})
}

// checkOptions are camera check's own flags; the rest go into the camera's
// Config.
type checkOptions struct {
	frames   int
	snapshot string
	verbose  bool
	grid     string
}

func newCameraCheckCmd() *cobra.Command {
	cfg := camera.Defaults()
	cfg.Name = "check"
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check --source S [--frames N] [--snapshot out.jpg]",
		Short: "Open a camera as the daemon would and print what it sees",
		Long: "Opens the source as the daemon would (same retries, same newest-frame reading), runs\n" +
			"the motion gate and builds the regions on each frame, and prints the resolution, the\n" +
			"frames read and dropped, the measured rate, the share of frames the gate passes and the\n" +
			"regions per frame. The last line is a summary: frames=N decoded=N gated=N fps=F.\n" +
			"Exits non-zero when the source cannot be opened or gives no frame.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Source == "" {
				return errors.New("--source is required")
			}
			if o.frames < 1 {
				return fmt.Errorf("--frames %d: want at least 1", o.frames)
			}
			if err := parseGrid(o.grid, &cfg.Regions.Grid); err != nil {
				return err
			}
			// Outages are printed by the command itself; the logs add the
			// retries with -v.
			level := zerolog.ErrorLevel
			if o.verbose {
				level = zerolog.DebugLevel
			}
			out := cmd.ErrOrStderr()
			f, isFile := out.(*os.File)
			tty := false
			if isFile {
				st, err := f.Stat()
				tty = err == nil && st.Mode()&os.ModeCharDevice != 0
			}
			log := zerolog.New(zerolog.ConsoleWriter{Out: out, TimeFormat: time.TimeOnly, NoColor: !tty}).
				Level(level).With().Timestamp().Logger()
			return checkCamera(cmd.Context(), cmd.OutOrStdout(), cfg, o, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Source, "source", "", "camera: 0, /dev/video0, rtsp://..., http://..., file.mp4, image.jpg, dir/, 'dir/*.jpg'")
	f.IntVar(&o.frames, "frames", 100, "frames to look at")
	f.StringVar(&o.snapshot, "snapshot", "", "write the last passed frame as JPEG, its largest region outlined")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "print every frame and debug logs")
	f.IntVar(&cfg.Width, "width", cfg.Width, "width requested from a device")
	f.IntVar(&cfg.Height, "height", cfg.Height, "height requested from a device")
	f.Float64Var(&cfg.FPS, "fps", cfg.FPS, "rate requested from a device; replay rate of still images")
	f.StringVar(&cfg.FourCC, "fourcc", cfg.FourCC, "pixel format requested from a device (empty: the device's)")
	f.BoolVar(&cfg.Loop, "loop", false, "replay a file from the start when it ends")
	f.BoolVar(&cfg.Fast, "fast", false, "read a file as fast as possible instead of at its own rate")
	f.DurationVar(&cfg.Stall, "timeout", cfg.Stall, "how long to wait for a frame before giving up")
	f.IntVar(&cfg.Gate.Threshold, "threshold", cfg.Gate.Threshold, "gate: grey levels a pixel must change to count as moving")
	f.DurationVar(&cfg.Gate.Keyframe, "keyframe", cfg.Gate.Keyframe, "gate: encode a still scene this often")
	f.StringArrayVar(&cfg.Gate.Masks, "mask", nil, "gate: ignore motion inside this polygon, \"x,y x,y x,y ...\" (repeatable)")
	f.StringVar(&o.grid, "grid", "", "regions: grid cells, ROWSxCOLS")
	return cmd
}

// checkTally is what camera check counts.
type checkTally struct {
	frames, gated, motion, keyframes int
	ratio                            float64
	boxes                            int
	regions                          [camera.MotionCrop + 1]int
	first, last                      time.Time // wall clock of the first and last frame
}

func checkCamera(ctx context.Context, w io.Writer, cfg camera.Config, o checkOptions, log zerolog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	spec, _ := camera.ParseSource(cfg.Source) // validated
	gate, err := camera.NewGate(cfg.Gate)
	if err != nil {
		return err
	}
	defer gate.Close()
	builder, err := camera.NewRegions(cfg.Regions)
	if err != nil {
		return err
	}
	src, err := camera.Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer src.Close()
	fmt.Fprintf(w, "source      %s (%s)\n", spec, spec.Kind)

	var (
		t       checkTally
		regions []camera.Region
		keep    = gocv.NewMat() // the last passed frame, for --snapshot
		keepR   camera.Region
		keepD   camera.Decision
		stopped error
	)
	defer keep.Close()
	for t.frames < o.frames {
		f, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, camera.ErrUnavailable) && t.frames > 0 {
			stopped = err // what happened is worth seeing; the frames read still count
			break
		}
		if err != nil {
			return err
		}
		now := time.Now()
		if t.frames == 0 {
			st := src.Stats()
			t.first = now
			if st.FPS > 0 {
				fmt.Fprintf(w, "opened      %dx%d%s at %.2f fps (reported by the source)\n", st.Size.X, st.Size.Y, fourcc(st.FourCC), st.FPS)
			} else { // MJPEG over HTTP carries no rate
				fmt.Fprintf(w, "opened      %dx%d%s (the source reports no rate)\n", st.Size.X, st.Size.Y, fourcc(st.FourCC))
			}
		}
		t.frames++
		t.last = now
		d, err := gate.Check(f.Mat, f.Time)
		if err != nil {
			return err
		}
		t.ratio += d.Ratio
		t.boxes += len(d.Boxes)
		regions = regions[:0]
		if d.Encode {
			t.gated++
			if d.Motion {
				t.motion++
			} else {
				t.keyframes++
			}
			regions = builder.Build(regions, image.Pt(f.Mat.Cols(), f.Mat.Rows()), d.Boxes)
			for _, r := range regions {
				t.regions[r.Kind]++
			}
			if o.snapshot != "" && len(regions) > 0 {
				f.Mat.CopyTo(&keep)
				keepR, keepD = outlined(regions), d
			}
		}
		if o.verbose {
			fmt.Fprintf(w, "frame %-5d seq=%d motion=%.2f%% boxes=%d encode=%v keyframe=%v regions=%d\n",
				t.frames, f.Seq, 100*d.Ratio, len(d.Boxes), d.Encode, d.Keyframe, len(regions))
		}
	}
	st := src.Stats()
	if t.frames == 0 {
		return fmt.Errorf("camera %s: no frames: the source ended at once", cfg.Name)
	}
	if stopped != nil {
		fmt.Fprintf(w, "stopped     %v\n", stopped)
	}
	fps := 0.0
	if el := t.last.Sub(t.first); t.frames > 1 && el > 0 {
		fps = float64(t.frames-1) / el.Seconds()
	}
	n := float64(t.frames)
	fmt.Fprintf(w, "frames      %d read, %d decoded, %d dropped, %d outages; %.2f fps measured over %.1fs\n",
		t.frames, st.Read, st.Dropped, st.Outages, fps, t.last.Sub(t.first).Seconds())
	fmt.Fprintf(w, "gate        %d of %d frames pass (%.0f%%): %d with motion, %d keyframe only; %.2f%% of the frame moving, %.1f boxes per frame on average\n",
		t.gated, t.frames, 100*float64(t.gated)/n, t.motion, t.keyframes, 100*t.ratio/n, float64(t.boxes)/n)
	if t.gated > 0 {
		g := float64(t.gated)
		fmt.Fprintf(w, "regions     %.2f per passed frame: %.2f full, %.2f grid, %.2f motion\n",
			float64(t.regions[camera.Full]+t.regions[camera.Grid]+t.regions[camera.MotionCrop])/g,
			float64(t.regions[camera.Full])/g, float64(t.regions[camera.Grid])/g, float64(t.regions[camera.MotionCrop])/g)
	}
	if o.snapshot != "" {
		if err := writeCheckSnapshot(w, o.snapshot, cfg.Snapshot, keep, keepR, keepD); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "frames=%d decoded=%d gated=%d fps=%.2f\n", t.frames, st.Read, t.gated, fps)
	return nil
}

// outlined is the region a snapshot shows: the largest motion crop, else
// the first region.
func outlined(regions []camera.Region) camera.Region {
	for _, r := range regions {
		if r.Kind == camera.MotionCrop {
			return r
		}
	}
	return regions[0]
}

func fourcc(s string) string {
	if s == "" {
		return ""
	}
	return " " + s
}

func writeCheckSnapshot(w io.Writer, path string, cfg camera.SnapshotConfig, frame gocv.Mat, r camera.Region, d camera.Decision) error {
	if frame.Empty() {
		fmt.Fprintf(w, "snapshot    none: no frame passed the gate\n")
		return nil
	}
	s, err := camera.NewSnapshotter(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	label := fmt.Sprintf("%s, %.1f%% moving", r.Kind, 100*d.Ratio)
	if !d.Motion {
		label = "keyframe"
	}
	jpg, err := s.JPEG(frame, r.Rect, label)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, jpg, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(w, "snapshot    %s (%d KB): %s region %v outlined\n", path, (len(jpg)+1023)/1024, r.Kind, r.Rect)
	return nil
}
