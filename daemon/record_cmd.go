package main

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"gocv.io/x/gocv"
	"golang.org/x/sys/unix"

	"github.com/sightd/sightd/camera"
	"github.com/sightd/sightd/daemon/record"
)

// recordOptions are camera record's flags.
type recordOptions struct {
	camera, config, source string
	grid                   string
	frames                 int
	out                    string
	every                  time.Duration
	minChange              float64
	// outageLimit: how long a live camera may stay unavailable before
	// the recording stops; 0 stops at the first outage.
	outageLimit time.Duration
}

const recordHelp = `Saves N varied frames of a camera and the regions sightd would embed in each,
as a data set for distilling a model (sightd-export distill, compare).

A frame is kept when the camera's motion gate passes it (motion, or a keyframe
of a still scene every gate.keyframe), at least --every after the last frame
kept, and when it differs from that frame as the gate counts motion (at least
--min-change of the frame moved): a still scene gives a few keyframes, not N
copies. The regions are built by the daemon's own code for the camera's
configuration (--camera; with --source: the defaults, and --grid): the full
frame, the grid cells, the motion crops.

A file (video or images) is read as fast as it decodes, with its own
timestamps, to its end: fewer than N frames may be kept, and the command says
how many. A live camera's frames are stamped when captured; its index counts
the frames read (a gap is frames dropped while sightd was busy). A source that
gives no frame, or an --out that exists and is not empty, is an error and
nothing is written. A live camera that goes away after its first frame is
reconnected as the daemon does, and waited for up to --outage-limit (a line
says when it went and when it came back; record.json is saved meanwhile).
A full disk, a camera away for longer, or an interruption (Ctrl-C) stops
the recording; the frames already written stay listed, with
"complete": false ("complete": true: N frames kept, or a file read to its end).

Output, in --out:
  record.json   {"format": "sightd-record/1", "source": "...", "camera": "name" or null,
                 "created": RFC3339, "frames_seen": int, "frames_kept": int,
                 "complete": bool, "frame_size": [w, h],
                 "frames": [{"index": int (frame number in the source, from 0),
                             "time_s": float (seconds since the source's first frame),
                             "file": "frames/000123.jpg", "motion": bool,
                             "regions": [{"file": "regions/000123-00.png",
                                          "kind": "full|grid|motion", "rect": [x, y, w, h]}]}]}
                written atomically at the end, and every 10 s while recording
                with "complete": false; frames in source order.
  frames/NNNNNN.jpg     each kept frame, JPEG quality 95 (NNNNNN: its index)
  regions/NNNNNN-KK.png region KK of that frame, cropped at full resolution, lossless
                        RGB: what the encoder is given before its own crop and resize

A progress line on stderr counts the frames kept and seen.`

func newCameraRecordCmd() *cobra.Command {
	var o recordOptions
	cmd := &cobra.Command{
		Use:   "record (--camera NAME [--config FILE] | --source FILE|URL) --frames N --out DIR",
		Short: "Save varied frames and their regions as a data set for distillation",
		Long:  recordHelp,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, name, err := recordConfig(o)
			if err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			log := zerolog.New(zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.TimeOnly, NoColor: true}).
				Level(zerolog.ErrorLevel).With().Timestamp().Logger()
			r := &recorder{opts: o, progressOut: stderr, tty: writesToTerminal(stderr)}
			return r.run(cmd.Context(), cfg, name, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.camera, "camera", "", "a camera of the configuration: its source, gate and regions")
	f.StringVarP(&o.config, "config", "c", DefaultConfig, "configuration file (with --camera)")
	f.StringVar(&o.source, "source", "", "a source instead of a configured camera: file.mp4, dir/, 0, /dev/video0, rtsp://...")
	f.StringVar(&o.grid, "grid", "", "with --source: grid cells as regions too, ROWSxCOLS")
	f.IntVar(&o.frames, "frames", 0, "frames to keep (required)")
	f.StringVar(&o.out, "out", "", "directory to create, or an empty one (required)")
	f.DurationVar(&o.every, "every", time.Second, "keep at most one frame per this much source time")
	f.Float64Var(&o.minChange, "min-change", 0, "share of the frame that must differ from the last kept frame (0: the gate's min_ratio)")
	f.DurationVar(&o.outageLimit, "outage-limit", 30*time.Minute, "how long a live camera may be away before the recording stops (0: stop at the first outage)")
	return cmd
}

// recordConfig is the camera to record: a configured one, or a source with
// the defaults.
func recordConfig(o recordOptions) (camera.Config, *string, error) {
	switch {
	case (o.camera == "") == (o.source == ""):
		return camera.Config{}, nil, errors.New("give either --camera NAME or --source FILE|URL")
	case o.frames < 1:
		return camera.Config{}, nil, fmt.Errorf("--frames %d: want at least 1", o.frames)
	case o.out == "":
		return camera.Config{}, nil, errors.New("--out is required")
	case o.every < 0:
		return camera.Config{}, nil, fmt.Errorf("--every %v: want >= 0", o.every)
	case !(o.minChange >= 0 && o.minChange < 1):
		return camera.Config{}, nil, fmt.Errorf("--min-change %v: want 0 <= ratio < 1", o.minChange)
	case o.outageLimit < 0:
		return camera.Config{}, nil, fmt.Errorf("--outage-limit %v: want >= 0", o.outageLimit)
	}
	if o.source != "" {
		cfg := camera.Defaults()
		cfg.Name, cfg.Source = "record", o.source
		if err := parseGrid(o.grid, &cfg.Regions.Grid); err != nil {
			return camera.Config{}, nil, err
		}
		return cfg, nil, nil
	}
	if o.grid != "" {
		return camera.Config{}, nil, errors.New("--grid: only with --source; a configured camera's regions are its own")
	}
	c, err := loadConfig(o.config)
	if err != nil {
		return camera.Config{}, nil, err
	}
	var names []string
	for _, cc := range c.Cameras {
		if cc.Name == o.camera {
			return cc, &cc.Name, nil
		}
		names = append(names, cc.Name)
	}
	return camera.Config{}, nil, fmt.Errorf("camera %q is not in %s (cameras: %s)", o.camera, o.config, strings.Join(names, ", "))
}

// parseGrid reads ROWSxCOLS into g; empty leaves g as it is.
func parseGrid(s string, g *camera.GridConfig) error {
	if s == "" {
		return nil
	}
	if _, err := fmt.Sscanf(s, "%dx%d", &g.Rows, &g.Cols); err != nil {
		return fmt.Errorf("--grid %q: want ROWSxCOLS, such as 2x3", s)
	}
	return nil
}

func writesToTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminal(f)
}

// checkOutDir refuses a directory with anything in it: a recording never
// overwrites or mixes with another.
func checkOutDir(dir string) error {
	st, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("--out %s: exists and is not a directory", dir)
	}
	names, err := readNames(dir, 1)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if len(names) > 0 {
		return fmt.Errorf("--out %s: exists and is not empty; refusing to write into it (give a new directory)", dir)
	}
	return nil
}

func readNames(dir string, n int) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(n)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return names, err
}

// saveEvery is how often record.json is rewritten while recording, so that
// a run that is killed leaves a usable set.
const saveEvery = 10 * time.Second

// recorder keeps frames of one source and writes the data set.
type recorder struct {
	opts        recordOptions
	progressOut io.Writer
	tty         bool
	// onKept, when set (tests), is called after each frame kept.
	onKept func(kept int)

	man        record.Manifest
	saved      int // frames listed in the last record.json written
	savedAt    time.Time
	shownAt    time.Time
	motion     int // kept frames with motion
	nearDup    int // gated frames skipped as near-duplicates of the last kept
	otherSize  int // frames skipped: not the size of the first
	outages    int // of a live camera, ridden out
	bytes      int64
	sourceTime time.Duration // of the last frame seen
}

func (r *recorder) run(ctx context.Context, cfg camera.Config, name *string, log zerolog.Logger) (err error) {
	o := r.opts
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := checkOutDir(o.out); err != nil {
		return err
	}
	spec, _ := camera.ParseSource(cfg.Source) // validated
	live := spec.Kind != camera.Video && spec.Kind != camera.Images
	if !live {
		// Every frame of a file, once, on its own media clock.
		cfg.Fast, cfg.Loop = true, false
	}
	builder, err := camera.NewRegions(cfg.Regions)
	if err != nil {
		return err
	}
	// The near-duplicate test is the gate's own motion test, between the
	// last kept frame and a candidate.
	dupCfg := cfg.Gate
	if o.minChange > 0 {
		dupCfg.MinRatio = o.minChange
	}
	dup, err := camera.NewGate(dupCfg)
	if err != nil {
		return err
	}
	defer dup.Close()
	src, err := camera.OpenGated(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer src.Close()

	r.man = record.Manifest{Format: record.Format, Source: spec.String(), Camera: name,
		Created: time.Now().UTC().Truncate(time.Second), Frames: []record.Frame{}}
	var (
		start    = time.Now()
		t0, last time.Time // source time of the first frame and of the last kept
		size     image.Point
		lastKept = gocv.NewMat()
		regions  []camera.Region
		ended    bool // the file was read to its end
		// down: when the live camera went away (zero while it delivers),
		// and why
		down   time.Time
		downBy error
	)
	defer lastKept.Close()
	for r.man.FramesKept < o.frames {
		f, err := r.next(ctx, src, down)
		if ctx.Err() != nil {
			return r.stop(fmt.Errorf("interrupted: %w", ctx.Err()))
		}
		if errors.Is(err, errOutageLimit) {
			return r.stop(fmt.Errorf("source away for %v (--outage-limit): %w", o.outageLimit, downBy))
		}
		if errors.Is(err, io.EOF) {
			ended = true
			break
		}
		if errors.Is(err, camera.ErrUnavailable) {
			if r.man.FramesSeen == 0 {
				return fmt.Errorf("%s gives no frames: %w", spec, err)
			}
			if !live || o.outageLimit == 0 {
				return r.stop(fmt.Errorf("source lost after %d frames: %w", r.man.FramesSeen, err))
			}
			downBy = err
			if down.IsZero() {
				// Ridden out as the daemon does (the camera reconnects),
				// with what was kept saved meanwhile.
				down = time.Now()
				r.outages++
				if err := r.save(); err != nil {
					return r.stop(err)
				}
				r.progress(true)
				fmt.Fprintf(r.progressOut, "record: %v; waiting for it (at most --outage-limit %v)\n", err, o.outageLimit)
			}
			continue
		}
		if err != nil {
			return r.stop(err)
		}
		if !down.IsZero() {
			fmt.Fprintf(r.progressOut, "record: the source is back after %v\n", time.Since(down).Round(time.Second))
			down = time.Time{}
		}
		r.man.FramesSeen++
		fs := image.Pt(f.Mat.Cols(), f.Mat.Rows())
		if r.man.FramesSeen == 1 {
			t0, size = f.Time, fs
			r.man.FrameSize = [2]int{fs.X, fs.Y}
			if err := r.create(); err != nil {
				return err
			}
		}
		r.sourceTime = f.Time.Sub(t0)
		r.progress(false)
		d := *f.Gate
		switch {
		case fs != size:
			r.otherSize++ // one data set has one frame size
			continue
		case !d.Encode:
			continue
		case r.man.FramesKept > 0 && f.Time.Sub(last) < o.every:
			continue
		}
		if r.man.FramesKept > 0 {
			dd, err := dup.Check(f.Mat, f.Time)
			if err != nil {
				return r.stop(err)
			}
			if !dd.Motion {
				r.nearDup++
				if _, err := dup.Check(lastKept, f.Time); err != nil { // compare with the kept frame again
					return r.stop(err)
				}
				continue
			}
		} else if _, err := dup.Check(f.Mat, f.Time); err != nil {
			return r.stop(err)
		}
		f.Mat.CopyTo(&lastKept)
		last = f.Time
		// The daemon's own region builder, on the gate's boxes, as
		// pipeline.handle calls it.
		regions = builder.Build(regions, fs, d.Boxes)
		if err := r.keep(f, d, int(f.Seq-1), f.Time.Sub(t0).Seconds(), regions); err != nil {
			return r.stop(err)
		}
		if r.onKept != nil {
			r.onKept(r.man.FramesKept)
		}
		if time.Since(r.savedAt) >= saveEvery {
			if err := r.save(); err != nil {
				return r.stop(err)
			}
		}
	}
	if r.man.FramesSeen == 0 {
		return fmt.Errorf("%s gives no frames: it ended at once", spec)
	}
	r.man.Complete = true
	if err := r.save(); err != nil {
		return r.stop(err)
	}
	r.progress(true)
	if ended && r.man.FramesKept < o.frames {
		fmt.Fprintf(r.progressOut, "record: the source ended after %d frames: kept %d of the %d asked\n",
			r.man.FramesSeen, r.man.FramesKept, o.frames)
	}
	away := ""
	switch {
	case r.outages == 1:
		away = " (the source went away once and came back)"
	case r.outages > 1:
		away = fmt.Sprintf(" (the source went away %d times and came back)", r.outages)
	}
	fmt.Fprintf(r.progressOut, "record: %s: %d frames (%d with motion), %d regions, %.1f MB in %.1fs%s\n",
		o.out, r.man.FramesKept, r.motion, r.regionCount(), float64(r.bytes)/1e6, time.Since(start).Seconds(), away)
	return nil
}

// errOutageLimit: the live camera stayed away for --outage-limit.
var errOutageLimit = errors.New("outage limit reached")

// next is the source's next frame; while the camera is away (since down),
// waiting no later than down + --outage-limit (errOutageLimit).
func (r *recorder) next(ctx context.Context, src camera.Source, down time.Time) (camera.Frame, error) {
	if down.IsZero() {
		return src.Next(ctx)
	}
	wait, cancel := context.WithDeadline(ctx, down.Add(r.opts.outageLimit))
	defer cancel()
	f, err := src.Next(wait)
	if err != nil && wait.Err() != nil && ctx.Err() == nil {
		return f, errOutageLimit
	}
	return f, err
}

// create makes the output directory, once the source has given a frame: a
// source that gives none leaves nothing behind.
func (r *recorder) create() error {
	for _, d := range []string{record.FramesDir, record.RegionsDir} {
		if err := os.MkdirAll(filepath.Join(r.opts.out, d), 0o755); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	return r.save()
}

var (
	jpegParams = []int{gocv.IMWriteJpegQuality, 95}
	// The fastest lossless setting: on vtest.avi, zlib level 6 saved 8% of
	// the bytes for 3 times the time.
	pngParams = []int{gocv.IMWritePngCompression, 1, gocv.IMWritePngStrategy, gocv.IMWritePngStrategyRle}
)

// keep writes a frame and its regions; on failure it removes what it wrote
// of them, so that every file listed is whole and nothing else lies about.
func (r *recorder) keep(f camera.Frame, d camera.Decision, index int, t float64, regions []camera.Region) (err error) {
	fr := record.Frame{Index: index, TimeS: t, File: record.FrameFile(index), Motion: d.Motion,
		Regions: make([]record.Region, 0, len(regions))}
	var written []string
	defer func() {
		if err != nil {
			for _, p := range written {
				os.Remove(p)
			}
		}
	}()
	write := func(rel string, m gocv.Mat, ext gocv.FileExt, params []int) error {
		buf, err := gocv.IMEncodeWithParams(ext, m, params)
		if err != nil {
			return fmt.Errorf("encoding %s: %w", rel, err)
		}
		defer buf.Close()
		p := filepath.Join(r.opts.out, rel)
		written = append(written, p)
		if err := os.WriteFile(p, buf.GetBytes(), 0o644); err != nil {
			return err
		}
		r.bytes += int64(buf.Len())
		return nil
	}
	if err := write(fr.File, f.Mat, gocv.JPEGFileExt, jpegParams); err != nil {
		return err
	}
	for k, reg := range regions {
		rel := record.RegionFile(index, k)
		// The crop as the encoder is given it (a view of the BGR frame);
		// PNG stores it as RGB.
		roi := f.Mat.Region(reg.Rect)
		err := write(rel, roi, gocv.PNGFileExt, pngParams)
		roi.Close()
		if err != nil {
			return err
		}
		rc := reg.Rect
		fr.Regions = append(fr.Regions, record.Region{File: rel, Kind: reg.Kind.String(),
			Rect: [4]int{rc.Min.X, rc.Min.Y, rc.Dx(), rc.Dy()}})
	}
	r.man.Frames = append(r.man.Frames, fr)
	r.man.FramesKept++
	if d.Motion {
		r.motion++
	}
	return nil
}

// save writes record.json atomically, after the frames it lists are on
// disk.
func (r *recorder) save() error {
	data, err := r.man.Marshal()
	if err != nil {
		return err
	}
	if err := syncFS(r.opts.out); err != nil {
		return err
	}
	path := filepath.Join(r.opts.out, record.ManifestName)
	if err := writeAtomic(path, 0o644, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	r.saved, r.savedAt = r.man.FramesKept, time.Now()
	return nil
}

// syncFS flushes the filesystem of dir: the frames before the manifest that
// names them.
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// stop ends a recording that cannot go on: record.json keeps the frames
// written, marked incomplete, and the error says so in one line.
func (r *recorder) stop(cause error) error {
	if r.man.FramesSeen == 0 || r.savedAt.IsZero() { // nothing was created
		return cause
	}
	r.progress(true)
	r.man.Complete = false
	path := filepath.Join(r.opts.out, record.ManifestName)
	if err := r.save(); err != nil {
		return fmt.Errorf("%w; and %s could not be updated (%w): it lists the first %d frames (complete: false)",
			cause, path, err, r.saved)
	}
	return fmt.Errorf("%w; %s lists the %d frames written (complete: false)", cause, path, r.saved)
}

func (r *recorder) regionCount() int {
	n := 0
	for _, f := range r.man.Frames {
		n += len(f.Regions)
	}
	return n
}

// progress shows frames kept and seen: one line rewritten on a terminal,
// else a line every few seconds.
func (r *recorder) progress(final bool) {
	every := 5 * time.Second
	if r.tty {
		every = 100 * time.Millisecond
	}
	if !final && time.Since(r.shownAt) < every {
		return
	}
	r.shownAt = time.Now()
	line := fmt.Sprintf("record: kept %d/%d frames, seen %d (%.1fs of source); %d with motion, %d near-duplicates skipped",
		r.man.FramesKept, r.opts.frames, r.man.FramesSeen, r.sourceTime.Seconds(), r.motion, r.nearDup)
	if r.otherSize > 0 {
		line += fmt.Sprintf(", %d of another size skipped", r.otherSize)
	}
	switch {
	case r.tty && final:
		fmt.Fprintf(r.progressOut, "\r%s\x1b[K\n", line)
	case r.tty:
		fmt.Fprintf(r.progressOut, "\r%s\x1b[K", line)
	default:
		fmt.Fprintln(r.progressOut, line)
	}
}
