// Package pipeline is one camera's loop: source -> gate -> regions ->
// encode -> match -> decide -> emit. Each pipeline owns its image encoder
// (interpreters are never shared across goroutines) and its rule state.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"gocv.io/x/gocv"

	"github.com/sightd/sightd/camera"
	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/quant/encoder"
)

// Source is what the pipeline reads frames from; *camera.Capture is one.
type Source interface {
	Next(ctx context.Context) (camera.Frame, error)
	Stats() camera.Stats
	Close() error
}

// Encoder embeds regions of a frame; *encoder.Image is one.
type Encoder interface {
	Encode(frame gocv.Mat, regions []image.Rectangle, dst []float32) error
	Dim() int
	Close() error
}

var (
	_ Source  = (*camera.Capture)(nil)
	_ Encoder = (*encoder.Image)(nil)
)

// Event is a rule's firing or change of state on this camera, with a
// snapshot of the frame (JPEG, the region outlined).
type Event struct {
	Detection rules.Detection
	Snapshot  []byte
	Rule      *rules.Rule // the rule that fired or changed
	// Update: a state rule that is ON scored clearly better than when it
	// turned on or was last updated (UpdateMargin): a better snapshot of
	// the same event, not a change.
	Update bool
}

// UpdateMargin is how much higher a calibrated score must be than the
// best so far of a state rule that is ON to give an update.
const UpdateMargin = 0.05

// Sink receives what the pipeline decides: events (to record and publish)
// and camera availability. It is called from the pipeline's goroutine and
// must not block for long: the store's outbox is where waiting happens.
type Sink interface {
	Event(ctx context.Context, e Event) error
	CameraStatus(ctx context.Context, camera string, online bool, reason error)
}

// Model is what a model swap hands each pipeline: a fresh image encoder of
// the new model and the rules compiled for it.
type Model struct {
	Encoder Encoder
	Rules   *rules.Set
}

// Stats are the pipeline's counters, safe to read from other goroutines.
type Stats struct {
	Frames, Gated, Encoded, Regions, Events atomic.Uint64
	// EncodeErrors counts frames the encoder failed on (an error, or a
	// vector that is zero or not finite): skipped, not fatal.
	EncodeErrors atomic.Uint64
	// GateNanos is the total time in the motion gate; EncodeNanos the
	// time encoding regions; MatchNanos the time matching them against
	// the rules and deciding.
	GateNanos, EncodeNanos, MatchNanos atomic.Int64
	// LastProgress is the Unix time in nanoseconds when the loop last
	// handled a frame or an outage: the watchdog's evidence of life.
	LastProgress atomic.Int64
}

// Pipeline runs one camera.
type Pipeline struct {
	Name  string
	Stats Stats
	// OnEncode, when set before Run, is told how long each frame's
	// encoding took (a latency histogram).
	OnEncode func(time.Duration)
	// OnResult, when set before Run, is told whether each encoding
	// succeeded: the evidence a model update's trial counts.
	OnResult func(ok bool)
	// Heartbeat, when set before Run, is ticked on every turn of the loop
	// (frames and outages alike): the watchdog's evidence of life. Done
	// tells it the loop ended on purpose (stopped, or a file came to its end).
	Heartbeat interface {
		Tick()
		Done()
	}
	// OnMotion, when set before Run, is told the motion at the first frame,
	// then when the motion gate starts seeing motion and when it has seen
	// none for MotionHold.
	OnMotion func(on bool)

	cfg     camera.Config
	log     zerolog.Logger
	src     Source
	gate    *camera.Gate
	regions *camera.Regions
	snap    *camera.Snapshotter
	sink    Sink
	eval    *rules.Camera
	enc     Encoder
	version int64 // model version of the rules in eval

	mu         sync.Mutex // guards the pending swaps and the last frame
	nextModel  *Model
	nextRules  *rules.Set
	last       gocv.Mat // the last encoded frame, for snapshots on request
	lastAt     time.Time
	found      []camera.Region
	rects      []image.Rectangle
	vecs       []float32
	wasOnline  bool
	reportedUp bool

	best       map[string]float64 // state rules that are ON: their best calibrated score so far
	detect     atomic.Bool        // the camera's detection switch
	paused     bool               // detection was off at the last frame
	moving     atomic.Bool
	lastMotion time.Time
	motionSent bool // the first frame's motion was reported
}

// MotionHold is how long the gate must see no motion before the camera's
// motion turns off, so that a person standing still does not flap it.
const MotionHold = 5 * time.Second

// New builds a pipeline for cfg reading from src with enc and the rules of
// set. It takes ownership of src and enc (Run closes them).
func New(cfg camera.Config, src Source, enc Encoder, set *rules.Set, sink Sink, log zerolog.Logger) (*Pipeline, error) {
	if enc.Dim() != set.Dim() {
		return nil, fmt.Errorf("pipeline %s: encoder gives %d values, the rules want %d", cfg.Name, enc.Dim(), set.Dim())
	}
	gate, err := camera.NewGate(cfg.Gate)
	if err != nil {
		return nil, err
	}
	regs, err := camera.NewRegions(cfg.Regions)
	if err != nil {
		gate.Close()
		return nil, err
	}
	snap, err := camera.NewSnapshotter(cfg.Snapshot)
	if err != nil {
		gate.Close()
		return nil, err
	}
	p := &Pipeline{Name: cfg.Name, cfg: cfg, log: log.With().Str("camera", cfg.Name).Logger(),
		src: src, gate: gate, regions: regs, snap: snap, sink: sink, enc: enc,
		eval: rules.NewCamera(cfg.Name, set), version: set.ModelVersion, last: gocv.NewMat()}
	p.detect.Store(true)
	return p, nil
}

// SetDetection turns the camera's detection on or off: while off, frames
// are read and the motion gate runs, but nothing is encoded or matched
// against the rules.
func (p *Pipeline) SetDetection(on bool) {
	if p.detect.Swap(on) != on {
		p.log.Info().Bool("detection", on).Msg("detection switched")
	}
}

// Detection reports whether the camera's detection is on.
func (p *Pipeline) Detection() bool { return p.detect.Load() }

// Motion reports whether the camera sees motion (with MotionHold).
func (p *Pipeline) Motion() bool { return p.moving.Load() }

// motion follows the gate's motion at frame time t.
func (p *Pipeline) motion(t time.Time, moving bool) {
	if moving {
		p.lastMotion = t
	}
	change := moving && !p.moving.Load() || !moving && p.moving.Load() && t.Sub(p.lastMotion) >= MotionHold
	// The first frame tells either way, so that subscribers know from the start.
	if !change && p.motionSent {
		return
	}
	p.motionSent = true
	p.moving.Store(moving)
	if p.OnMotion != nil {
		p.OnMotion(moving)
	}
}

// SetRules hands over new rules of the current model; they take effect at
// the next frame.
func (p *Pipeline) SetRules(set *rules.Set) {
	p.mu.Lock()
	p.nextRules = set
	p.mu.Unlock()
}

// SwapModel hands over a new model. The old encoder keeps serving until the
// next frame, then is closed.
func (p *Pipeline) SwapModel(m *Model) error {
	if m.Encoder.Dim() != m.Rules.Dim() {
		return fmt.Errorf("pipeline %s: new encoder gives %d values, its rules want %d", p.Name, m.Encoder.Dim(), m.Rules.Dim())
	}
	p.mu.Lock()
	if p.nextModel != nil { // a swap that never took effect
		p.nextModel.Encoder.Close()
	}
	p.nextModel = m
	p.mu.Unlock()
	return nil
}

// applyPending takes a waiting model swap or rule change, between frames.
func (p *Pipeline) applyPending() {
	p.mu.Lock()
	m, set := p.nextModel, p.nextRules
	p.nextModel, p.nextRules = nil, nil
	p.mu.Unlock()
	if m != nil {
		old := p.enc
		p.enc = m.Encoder
		p.eval.SetRules(m.Rules)
		p.version = m.Rules.ModelVersion
		old.Close()
		p.log.Info().Int64("model", p.version).Msg("model swapped")
	}
	if set != nil {
		if set.ModelVersion != p.version || set.Dim() != p.enc.Dim() {
			p.log.Warn().Int64("rules_model", set.ModelVersion).Int64("model", p.version).Msg("rules of another model ignored")
			return
		}
		p.eval.SetRules(set)
	}
}

// Run reads and handles frames until ctx ends or a non-looping file source
// ends; it closes everything the pipeline owns when it returns. A camera that
// is unavailable is reported to the sink and waited for; it is not an error.
func (p *Pipeline) Run(ctx context.Context) error {
	defer p.close()
	if p.Heartbeat != nil {
		defer p.Heartbeat.Done()
	}
	for {
		f, err := p.src.Next(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, camera.ErrUnavailable):
			p.progress()
			if p.wasOnline || !p.reportedUp {
				p.sink.CameraStatus(ctx, p.Name, false, err)
				p.wasOnline, p.reportedUp = false, true
			}
			continue
		case err != nil:
			return fmt.Errorf("camera %s: %w", p.Name, err)
		}
		if !p.wasOnline {
			p.sink.CameraStatus(ctx, p.Name, true, nil)
			p.wasOnline, p.reportedUp = true, true
		}
		if err := p.handle(ctx, f); err != nil {
			return fmt.Errorf("camera %s: %w", p.Name, err)
		}
		p.progress()
	}
}

func (p *Pipeline) progress() {
	p.Stats.LastProgress.Store(time.Now().UnixNano())
	if p.Heartbeat != nil {
		p.Heartbeat.Tick()
	}
}

// handle is the per-frame path: it allocates nothing in steady state
// except for events (JPEG and the detection).
func (p *Pipeline) handle(ctx context.Context, f camera.Frame) error {
	p.applyPending()
	p.Stats.Frames.Add(1)
	start := time.Now()
	var d camera.Decision
	if f.Gate != nil {
		d = *f.Gate // gated by the capture's reader (camera.OpenGated)
	} else {
		var err error
		if d, err = p.gate.Check(f.Mat, f.Time); err != nil {
			return err
		}
		p.Stats.GateNanos.Add(int64(time.Since(start)))
	}
	p.motion(f.Time, d.Motion)
	if !p.detect.Load() {
		if !p.paused {
			// Back on, every rule starts OFF, as its last published state
			// says (the daemon ends what was under way when switched off).
			p.eval.Reset()
			p.best, p.paused = nil, true
		}
		return nil
	}
	p.paused = false
	if !d.Encode {
		return nil
	}
	p.Stats.Gated.Add(1)
	p.found = p.regions.Build(p.found, image.Pt(f.Mat.Cols(), f.Mat.Rows()), d.Boxes)
	p.rects = camera.Rects(p.rects, p.found)
	n, dim := len(p.rects), p.enc.Dim()
	if cap(p.vecs) < n*dim {
		p.vecs = make([]float32, n*dim)
	}
	vecs := p.vecs[:n*dim]
	start = time.Now()
	if err := p.enc.Encode(f.Mat, p.rects, vecs); err != nil {
		// A model that fails on some frames must not stop the camera: the
		// frame is skipped, counted and, during an update's trial, held
		// against the new model.
		if n := p.Stats.EncodeErrors.Add(1); n&(n-1) == 0 { // 1st, 2nd, 4th, ...: the log stays readable
			p.log.Error().Err(err).Uint64("failures", n).Msg("frame not encoded")
		}
		if p.OnResult != nil {
			p.OnResult(false)
		}
		return nil
	}
	took := time.Since(start)
	if p.OnResult != nil {
		p.OnResult(true)
	}
	p.Stats.EncodeNanos.Add(int64(took))
	if p.OnEncode != nil {
		p.OnEncode(took)
	}
	p.Stats.Encoded.Add(1)
	p.Stats.Regions.Add(uint64(n))
	start = time.Now()
	results, err := p.eval.Evaluate(f.Time, vecs, n)
	if err != nil {
		return err
	}
	p.Stats.MatchNanos.Add(int64(time.Since(start)))
	// Snapshots on request show the last encoded frame; copying a large
	// frame every time costs more than the frame's matching, so the copy is
	// refreshed at most every snapshotEvery.
	if now := time.Now(); now.Sub(p.lastAt) >= snapshotEvery {
		p.mu.Lock()
		f.Mat.CopyTo(&p.last)
		p.lastAt = now
		p.mu.Unlock()
	}
	for i := range results {
		r := &results[i]
		update := p.follow(r)
		if update || r.Decision.Fire || (r.Rule.Kind == rules.State && r.Decision.Changed) {
			if err := p.emit(ctx, f, r, update); err != nil {
				p.log.Error().Err(err).Str("rule", r.Rule.ID).Msg("event not recorded")
			}
		}
	}
	return nil
}

// follow keeps the best score of each state rule while it is ON, and says
// whether r is an update: a clearly better view of an event under way.
func (p *Pipeline) follow(r *rules.Result) bool {
	if r.Rule.Kind != rules.State {
		return false
	}
	if p.best == nil {
		p.best = map[string]float64{}
	}
	id, score := r.Rule.ID, r.Score.Calibrated
	switch best, on := p.best[id]; {
	case r.Decision.Changed && r.Decision.On:
		p.best[id] = score
	case !r.Decision.On:
		delete(p.best, id)
	case on && score >= best+UpdateMargin:
		p.best[id] = score
		return true
	}
	return false
}

func (p *Pipeline) emit(ctx context.Context, f camera.Frame, r *rules.Result, update bool) error {
	region := p.found[r.Score.Region]
	det := rules.NewDetection(p.Name, time.Now(), *r, region.Rect, region.Kind.String(), p.version)
	label := fmt.Sprintf("%s %.2f", r.Rule.ID, r.Score.Calibrated)
	p.mu.Lock() // the snapshotter is shared with Snapshot
	jpeg, err := p.snap.JPEG(f.Mat, region.Rect, label)
	p.mu.Unlock()
	if err != nil {
		p.log.Warn().Err(err).Msg("snapshot failed; event sent without it")
	}
	p.Stats.Events.Add(1)
	p.log.Info().Str("rule", det.Rule).Str("state", det.State).Bool("update", update).Float64("calibrated", det.Calibrated).
		Float64("raw", det.Raw).Str("region", region.Kind.String()).Msg("detection")
	return p.sink.Event(ctx, Event{Detection: det, Snapshot: jpeg, Rule: r.Rule, Update: update})
}

// snapshotEvery bounds how stale a requested snapshot can be.
const snapshotEvery = 250 * time.Millisecond

// Snapshot returns a JPEG of a recent encoded frame (at most snapshotEvery
// older than the last), or ErrNoSnapshot.
func (p *Pipeline) Snapshot() ([]byte, time.Time, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last.Empty() {
		return nil, time.Time{}, ErrNoSnapshot
	}
	jpeg, err := p.snap.JPEG(p.last, image.Rectangle{}, "")
	return jpeg, p.lastAt, err
}

// ErrNoSnapshot: the camera has not encoded a frame yet.
var ErrNoSnapshot = errors.New("pipeline: no frame yet")

// SourceStats are the camera's own counters (read, dropped, outages).
func (p *Pipeline) SourceStats() camera.Stats { return p.src.Stats() }

func (p *Pipeline) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.src.Close()
	p.enc.Close()
	if p.nextModel != nil {
		p.nextModel.Encoder.Close()
	}
	p.gate.Close()
	p.snap.Close()
	p.last.Close()
}
