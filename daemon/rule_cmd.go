package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/sightd/sightd/camera"
	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/quant/encoder"
	"github.com/sightd/sightd/store"
)

// DefaultStoreDir is where the daemon keeps its database under systemd
// (StateDirectory=sightd).
const DefaultStoreDir = "/var/lib/sightd/db"

func newRuleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "rule", Short: "Add, list, remove and test rules written in words"}
	cmd.AddCommand(newRuleAddCmd(), newRuleListCmd(), newRuleRmCmd(), newRuleTestCmd())
	return cmd
}

// ruleEnv is what the rule commands open: the store, and the bundle's
// towers when vectors are needed.
type ruleEnv struct {
	st      *store.Store
	towers  *encoder.Towers
	text    *encoder.Text
	image   *encoder.Image
	mgr     *rules.Manager
	closers []func()
}

func (e *ruleEnv) Close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

func openRuleEnv(ctx context.Context, storeDir, bundlePath string, rt runtimeFlags) (_ *ruleEnv, err error) {
	e := &ruleEnv{}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if storeDir != "" {
		cfg := store.Defaults()
		cfg.Dir = storeDir
		if e.st, err = store.Open(ctx, cfg, zerolog.Nop()); err != nil {
			return nil, err
		}
		e.closers = append(e.closers, func() { e.st.Close() })
	}
	if bundlePath == "" {
		return e, nil
	}
	towers, done, err := openTowers(bundlePath)
	if err != nil {
		return nil, err
	}
	e.towers = towers
	e.closers = append(e.closers, done)
	opts, err := rt.options()
	if err != nil {
		return nil, err
	}
	if e.text, err = towers.NewText(opts); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { e.text.Close() })
	if e.image, err = towers.NewImage(opts); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { e.image.Close() })
	if e.st != nil {
		m := towers.Manifest()
		model := rules.Model{Version: m.Version, LogitScale: m.LogitScale, Text: e.text, Image: e.image}
		if e.mgr, err = rules.NewManager(e.st, model, nil); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// ruleFlags build a rule from the command line.
type ruleFlags struct {
	id, kind, jsonFile             string
	prompts, negatives, cams, refs []string
	threshold, hysteresis          float64
	frames, window                 int
	cooldown                       time.Duration
}

func (f *ruleFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.id, "id", "", "rule id (a-z, 0-9, '-', '_')")
	fl.StringArrayVar(&f.prompts, "prompt", nil, "what to look for, in words (repeatable: phrasings are averaged)")
	fl.StringArrayVar(&f.negatives, "negative", nil, "what it is easily confused with (repeatable)")
	fl.StringArrayVar(&f.cams, "camera", nil, "camera the rule watches (repeatable; all when omitted)")
	fl.StringArrayVar(&f.refs, "reference", nil, "a JPEG or PNG showing *your* object (repeatable)")
	fl.StringVar(&f.kind, "kind", "", "event (fires once) or state (holds ON/OFF); default event")
	fl.Float64Var(&f.threshold, "threshold", 0, "calibrated score to turn on (0..1; default 0.6)")
	fl.Float64Var(&f.hysteresis, "hysteresis", 0, "how far below the threshold to turn off (default 0.1)")
	fl.IntVar(&f.frames, "frames", 0, "frames of the window that must agree (default 2)")
	fl.IntVar(&f.window, "window", 0, "window of frames (default 3)")
	fl.DurationVar(&f.cooldown, "cooldown", 0, "least time between two firings (event) or two changes (state) (default 1m for events, 10s for states)")
	fl.StringVar(&f.jsonFile, "json", "", "read the rule as JSON from this file ('-' for standard input) instead")
}

func (f *ruleFlags) rule(in io.Reader) (*rules.Rule, error) {
	if f.jsonFile != "" {
		var data []byte
		var err error
		if f.jsonFile == "-" {
			data, err = io.ReadAll(io.LimitReader(in, rules.MaxRuleJSONSize+1))
		} else {
			data, err = os.ReadFile(f.jsonFile)
		}
		if err != nil {
			return nil, err
		}
		return rules.Parse(data, nil)
	}
	r := &rules.Rule{ID: f.id, Prompts: f.prompts, Negatives: f.negatives, Cameras: f.cams,
		Kind: rules.Kind(f.kind), Threshold: f.threshold, Hysteresis: f.hysteresis,
		Frames: f.frames, Window: f.window, Cooldown: rules.Duration(f.cooldown)}
	r.Defaults()
	return r, r.Validate(nil)
}

func newRuleAddCmd() *cobra.Command {
	var storeDir, bundlePath string
	var f ruleFlags
	var rt runtimeFlags
	var replace bool
	cmd := &cobra.Command{
		Use:   "add --bundle B --id ID --prompt TEXT [--negative TEXT]... | --json FILE",
		Short: "Save a rule and its concept vectors",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := f.rule(cmd.InOrStdin())
			if err != nil {
				return err
			}
			if bundlePath == "" {
				return errors.New("--bundle is required: the rule's vectors come from its text tower")
			}
			env, err := openRuleEnv(ctx, storeDir, bundlePath, rt)
			if err != nil {
				return err
			}
			defer env.Close()
			for i, p := range f.refs {
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				id := fmt.Sprintf("%s-ref-%d", r.ID, i)
				if err := env.mgr.PutReference(ctx, id, data); err != nil {
					return err
				}
				r.References = append(r.References, id)
			}
			if replace {
				err = env.mgr.Put(ctx, r)
			} else {
				err = env.mgr.Add(ctx, r)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "saved rule %s (%s) with vectors of %s v%d\n", r.ID, r.Kind,
				env.towers.Manifest().Name, env.towers.Manifest().Version)
			return nil
		},
	}
	cmd.Flags().StringVar(&storeDir, "store", DefaultStoreDir, "database directory")
	cmd.Flags().StringVar(&bundlePath, "bundle", "", "model bundle (directory or tar)")
	cmd.Flags().BoolVar(&replace, "replace", false, "replace a rule with the same id")
	f.register(cmd)
	rt.register(cmd)
	return cmd
}

func newRuleListCmd() *cobra.Command {
	var storeDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the saved rules",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			env, err := openRuleEnv(ctx, storeDir, "", runtimeFlags{})
			if err != nil {
				return err
			}
			defer env.Close()
			stored, err := env.st.Rules(ctx)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				list := make([]json.RawMessage, len(stored))
				for i, s := range stored {
					list[i] = s.JSON
				}
				return json.NewEncoder(w).Encode(list)
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tTHRESHOLD\tFRAMES\tCAMERAS\tENABLED\tPROMPTS")
			for _, s := range stored {
				var r rules.Rule
				if err := json.Unmarshal(s.JSON, &r); err != nil {
					return fmt.Errorf("stored rule %s: %w", s.ID, err)
				}
				r.Defaults()
				cams := "all"
				if len(r.Cameras) > 0 {
					cams = strings.Join(r.Cameras, ",")
				}
				fmt.Fprintf(tw, "%s\t%s\t%.2f\t%d of %d\t%s\t%v\t%q\n", r.ID, r.Kind, r.Threshold, r.Frames, r.Window, cams, r.IsEnabled(), r.Prompts)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&storeDir, "store", DefaultStoreDir, "database directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the rules as JSON")
	return cmd
}

func newRuleRmCmd() *cobra.Command {
	var storeDir string
	cmd := &cobra.Command{
		Use:   "rm ID...",
		Short: "Remove rules and their vectors",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, ids []string) error {
			ctx := cmd.Context()
			env, err := openRuleEnv(ctx, storeDir, "", runtimeFlags{})
			if err != nil {
				return err
			}
			defer env.Close()
			for _, id := range ids {
				if _, err := env.st.Rule(ctx, id); err != nil {
					return err
				}
				if err := env.st.DeleteRule(ctx, id); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed rule %s\n", id)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&storeDir, "store", DefaultStoreDir, "database directory")
	return cmd
}

func newRuleTestCmd() *cobra.Command {
	var storeDir, bundlePath, imagePath, videoPath string
	var f ruleFlags
	var rt runtimeFlags
	var grid string
	var maxFrames int
	var verbose bool
	cmd := &cobra.Command{
		Use:   "test [ID] --bundle B (--image F | --video F)",
		Short: "Explain a rule's scores on an image or a video",
		Long: "Scores a saved rule (by id, from --store) or one given by flags on every region of\n" +
			"an image or of each frame of a video the motion gate passes, and explains the\n" +
			"raw cosine, the calibrated score, the margin, the camera's baseline and the decision.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if (imagePath == "") == (videoPath == "") {
				return errors.New("give exactly one of --image and --video")
			}
			if bundlePath == "" {
				return errors.New("--bundle is required")
			}
			var r *rules.Rule
			var err error
			if len(args) == 1 {
				if storeDir == "" {
					return errors.New("a rule id needs --store")
				}
			} else {
				storeDir = "" // an ad-hoc rule: nothing to open
				if r, err = f.rule(cmd.InOrStdin()); err != nil {
					return err
				}
			}
			env, err := openRuleEnv(ctx, storeDir, bundlePath, rt)
			if err != nil {
				return err
			}
			defer env.Close()
			if r == nil {
				if r, err = env.mgr.Get(ctx, args[0]); err != nil {
					return err
				}
			}
			set, err := testSet(ctx, env, r)
			if err != nil {
				return err
			}
			regCfg := camera.RegionsDefaults()
			if grid != "" {
				if _, err := fmt.Sscanf(grid, "%dx%d", &regCfg.Grid.Rows, &regCfg.Grid.Cols); err != nil {
					return fmt.Errorf("--grid %q: want ROWSxCOLS", grid)
				}
			}
			m := env.towers.Manifest()
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "rule %s: %q (%s; on at %.2f, off below %.2f; %d of %d frames; cooldown %v)\nmodel %s v%d\n",
				r.ID, r.Prompts, r.Kind, r.Threshold, r.Threshold-r.Hysteresis, r.Frames, r.Window,
				time.Duration(r.Cooldown), m.Name, m.Version)
			if imagePath != "" {
				return explainImage(w, env, set, regCfg, imagePath)
			}
			return explainVideo(ctx, w, env, set, regCfg, videoPath, maxFrames, verbose)
		},
	}
	cmd.Flags().StringVar(&storeDir, "store", DefaultStoreDir, "database directory (for a saved rule)")
	cmd.Flags().StringVar(&bundlePath, "bundle", "", "model bundle (directory or tar)")
	cmd.Flags().StringVar(&imagePath, "image", "", "JPEG or PNG file")
	cmd.Flags().StringVar(&videoPath, "video", "", "video file")
	cmd.Flags().StringVar(&grid, "grid", "", "also score grid cells, ROWSxCOLS (e.g. 2x2)")
	cmd.Flags().IntVar(&maxFrames, "max-frames", 0, "stop after this many video frames (0: all)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print every evaluated frame")
	f.register(cmd)
	rt.register(cmd)
	return cmd
}

// testSet compiles r alone with the bundle's model.
func testSet(ctx context.Context, env *ruleEnv, r *rules.Rule) (*rules.Set, error) {
	var refs [][]float32
	for _, id := range r.References {
		if env.st == nil {
			return nil, fmt.Errorf("rule %s has reference images: give --store", r.ID)
		}
		data, err := env.st.Reference(ctx, id)
		if err != nil {
			return nil, err
		}
		v := make([]float32, env.text.Dim())
		if err := env.image.EncodeBytes(data, v); err != nil {
			return nil, err
		}
		refs = append(refs, v)
	}
	compiled, err := rules.CompileRule(env.text, r, refs)
	if err != nil {
		return nil, err
	}
	bgs, err := rules.Backgrounds(env.text, rules.DefaultBackgrounds)
	if err != nil {
		return nil, err
	}
	m := env.towers.Manifest()
	return rules.NewSet(m.Version, m.LogitScale, env.text.Dim(), []*rules.Compiled{compiled}, bgs)
}

func explainImage(w io.Writer, env *ruleEnv, set *rules.Set, regCfg camera.RegionsConfig, path string) error {
	frame, err := encoder.ReadImage(path)
	if err != nil {
		return err
	}
	defer frame.Close()
	builder, err := camera.NewRegions(regCfg)
	if err != nil {
		return err
	}
	regions := builder.Build(nil, image.Pt(frame.Cols(), frame.Rows()), nil)
	rects := camera.Rects(nil, regions)
	dim := env.image.Dim()
	vecs := make([]float32, len(rects)*dim)
	if err := env.image.Encode(frame, rects, vecs); err != nil {
		return err
	}
	scores, err := set.Explain(0, vecs, len(rects))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "image %s (%dx%d), %d regions\n", filepath.Base(path), frame.Cols(), frame.Rows(), len(rects))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tKIND\tRECT\tRAW\tCALIBRATED\tMARGIN")
	best := 0
	for i, s := range scores {
		fmt.Fprintf(tw, "%d\t%s\t%v\t%.3f\t%.3f\t%+.3f\n", i, regions[i].Kind, regions[i].Rect, s.Raw, s.Calibrated, s.Margin)
		if s.Calibrated > scores[best].Calibrated {
			best = i
		}
	}
	tw.Flush()
	r := set.Rules[0].Rule
	s := scores[best]
	verdict := fmt.Sprintf("below the threshold %.2f: the rule stays off", r.Threshold)
	if s.Calibrated >= r.Threshold {
		verdict = fmt.Sprintf("reaches the threshold %.2f: the rule turns on once %d of %d frames agree", r.Threshold, r.Frames, r.Window)
	}
	fmt.Fprintf(w, "best region %d: calibrated %.3f %s\n", best, s.Calibrated, verdict)
	fmt.Fprintln(w, "(a still image has no baseline: on a camera, the first frames teach the usual score of the view)")
	return nil
}

func explainVideo(ctx context.Context, w io.Writer, env *ruleEnv, set *rules.Set, regCfg camera.RegionsConfig, path string, maxFrames int, verbose bool) error {
	cfg := camera.Defaults()
	cfg.Name = "test"
	cfg.Source = path
	cfg.Fast = true
	cfg.Regions = regCfg
	if err := cfg.Validate(); err != nil {
		return err
	}
	gate, err := camera.NewGate(cfg.Gate)
	if err != nil {
		return err
	}
	defer gate.Close()
	builder, err := camera.NewRegions(cfg.Regions)
	if err != nil {
		return err
	}
	src, err := camera.Open(ctx, cfg, zerolog.Nop())
	if err != nil {
		return err
	}
	defer src.Close()
	cam := rules.NewCamera("test", set)
	dim := env.image.Dim()
	var (
		regions []camera.Region
		rects   []image.Rectangle
		vecs    []float32
		frames  int
		gated   int
		fired   int
		on      bool
		start   time.Time
		maxP    = math.Inf(-1)
	)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FRAME\tTIME\tREGION\tRAW\tCALIBRATED\tMARGIN\tBASELINE\tZ\tDECISION")
	for maxFrames == 0 || frames < maxFrames {
		f, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		frames++
		if frames == 1 {
			start = f.Time
		}
		d, err := gate.Check(f.Mat, f.Time)
		if err != nil {
			return err
		}
		if !d.Encode {
			continue
		}
		gated++
		regions = builder.Build(regions, image.Pt(f.Mat.Cols(), f.Mat.Rows()), d.Boxes)
		rects = camera.Rects(rects, regions)
		if need := len(rects) * dim; cap(vecs) < need {
			vecs = make([]float32, need)
		}
		if err := env.image.Encode(f.Mat, rects, vecs[:len(rects)*dim]); err != nil {
			return err
		}
		res, err := cam.Evaluate(f.Time, vecs[:len(rects)*dim], len(rects))
		if err != nil {
			return err
		}
		r := res[0]
		maxP = math.Max(maxP, r.Score.Calibrated)
		decision := ""
		switch {
		case r.Learning:
			decision = "learning the view"
		case r.Decision.Fire:
			decision, fired = "FIRE", fired+1
		case r.Decision.Changed && r.Decision.On:
			decision = "ON"
		case r.Decision.Changed:
			decision = "OFF"
		}
		on = r.Decision.On
		if verbose || (decision != "" && decision != "learning the view") {
			base := "-"
			if !math.IsNaN(r.Baseline) {
				base = fmt.Sprintf("%.3f", r.Baseline)
			}
			fmt.Fprintf(tw, "%d\t%.1fs\t%d %s %v\t%.3f\t%.3f\t%+.3f\t%s\t%+.1f\t%s\n", frames, f.Time.Sub(start).Seconds(),
				r.Score.Region, regions[r.Score.Region].Kind, regions[r.Score.Region].Rect,
				r.Score.Raw, r.Score.Calibrated, r.Score.Margin, base, r.Score.Z, decision)
		}
	}
	tw.Flush()
	if on {
		fmt.Fprintln(w, "(the rule is still on at the end)")
	}
	fmt.Fprintf(w, "frames=%d gated=%d fired=%d max_calibrated=%.3f\n", frames, gated, fired, maxP)
	return nil
}
