package camera

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"image"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"gocv.io/x/gocv"
)

// Source delivers a camera's newest frame.
type Source interface {
	// Next waits for a frame newer than the last one returned. Its Mat
	// belongs to the source and stays valid until the next call to Next or
	// Close. Errors: ErrUnavailable (once per outage, then again every stall
	// interval while it lasts; Next may be called again), io.EOF at the end
	// of a file without loop, ErrClosed, or ctx's error.
	Next(ctx context.Context) (Frame, error)
	Stats() Stats
	Close() error
}

var (
	// ErrUnavailable: the source delivers no frames; it is being retried.
	ErrUnavailable = errors.New("unavailable")
	// ErrClosed: the source was closed, or its context ended.
	ErrClosed = errors.New("closed")
)

// Frame is one captured picture.
type Frame struct {
	Mat gocv.Mat // 8-bit BGR
	// Seq numbers the frames read from the backend, from 1: a gap between
	// two delivered frames is the frames dropped in between.
	Seq uint64
	// Time is when the frame was captured. For files it is the media clock
	// (open time plus the frame's position), so that time-based decisions
	// come out the same however fast the file is read.
	Time time.Time
	// Gate is the motion gate's decision on this frame (merged with those
	// of frames dropped before it), when the capture runs the gate
	// (OpenGated); nil otherwise. It is valid until the next Next.
	Gate *Decision
}

// Stats is a snapshot of a source's state and counters.
type Stats struct {
	Available bool
	Err       error       // why it is unavailable; nil when available
	Size      image.Point // of the frames, once one was read
	FPS       float64     // the rate the backend reports (a file's native rate)
	FourCC    string      // the pixel format or codec the backend reports
	Read      uint64      // frames read; the newest Seq
	Delivered uint64      // frames returned by Next
	Dropped   uint64      // frames replaced by a newer one before Next took them
	Outages   uint64      // times the source became unavailable (a failed first open counts)
	// SizeChanges counts frames whose size differs from the frame before
	// them (a camera reconfigured mid-stream); Size follows.
	SizeChanges uint64
	// GateNanos is the reader's total time in the motion gate (OpenGated).
	GateNanos int64
}

// grabber is one opened backend.
type grabber interface {
	// grab reads the next frame into dst, reusing its memory; io.EOF at the
	// end of a file.
	grab(dst *gocv.Mat) error
	info() (fps float64, fourcc string)
	close()
}

// interrupter is a grabber whose blocked grab can be ended from another
// goroutine (Close does, instead of waiting for a network timeout).
type interrupter interface{ interrupt() }

// ErrStuck: a camera that delivered changing frames now delivers the same
// frame over and over, for Config.Stuck: the decoder is stuck (FFmpeg's
// scaler refusing a new frame size keeps returning the old picture).
var ErrStuck = errors.New("decoder stuck")

// Capture is the Source on a gocv backend: a reader goroutine keeps the
// newest frame in three rotating Mats (the reader's, the newest, the
// consumer's), so nothing queues and nothing is allocated per frame.
type Capture struct {
	cfg  Config
	log  zerolog.Logger
	open func() (grabber, error)
	file bool // a video file or images: media clock, pacing, Fast
	// stallAfter is Config.Stall, longer for slowly replayed images.
	stallAfter time.Duration

	cancel    context.CancelFunc
	done      chan struct{}
	ready     chan struct{} // to Next: a frame or a state change
	taken     chan struct{} // to the reader: Next took a frame
	stall     *time.Timer   // Next's
	timer     *time.Timer   // the reader's (pacing, back-off)
	closeOnce sync.Once

	back gocv.Mat // the reader's, outside mu
	// resizeLogged is when the reader last logged a size change at info.
	resizeLogged time.Time
	// gate, when set (OpenGated), runs on every frame the reader decodes,
	// on the reader's core; backD, midD and frontD are the decisions of
	// back, mid and front, rotating with them.
	gate  *Gate
	backD Decision

	mu      sync.Mutex
	mid     gocv.Mat // newest frame
	front   gocv.Mat // the consumer's
	midD    Decision
	frontD  Decision
	midSeq  uint64
	midTime time.Time
	given   uint64 // Seq of the last frame returned
	told    uint64 // outages reported by Next
	end     error  // io.EOF or ErrClosed once the reader stopped
	closed  bool
	stats   Stats
}

var _ Source = (*Capture)(nil)

// Open checks cfg and starts reading. A camera that cannot be opened yet
// (unplugged, stream down, file missing) is not an error here: it is
// retried with back-off and Next reports ErrUnavailable meanwhile. Only
// bad configuration is, a FieldError naming the camera.
func Open(ctx context.Context, cfg Config, log zerolog.Logger) (*Capture, error) {
	return open(ctx, cfg, log, false)
}

// OpenGated is Open with the motion gate (cfg.Gate) run by the reader
// goroutine on every decoded frame: while the consumer works on one frame,
// the next is decoded and gated on another core. Each Frame carries the
// decision; when frames are dropped, their decisions are merged into the
// next one, so motion or a keyframe on a dropped frame is not lost.
func OpenGated(ctx context.Context, cfg Config, log zerolog.Logger) (*Capture, error) {
	return open(ctx, cfg, log, true)
}

func open(ctx context.Context, cfg Config, log zerolog.Logger, gated bool) (*Capture, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	spec, _ := ParseSource(cfg.Source) // validated
	openBackend, kind, err := backend(cfg, spec)
	if err != nil {
		return nil, &FieldError{Field: cfg.Field() + ".source", Err: err}
	}
	var g *Gate
	if gated {
		if g, err = NewGate(cfg.Gate); err != nil {
			return nil, &FieldError{Field: cfg.Field() + ".gate", Err: err}
		}
	}
	log = log.With().Str("component", "camera").Str("camera", cfg.Name).
		Str("source", spec.String()).Str("kind", kind.String()).Logger()
	return startGated(ctx, cfg, kind, openBackend, log, g), nil
}

func start(ctx context.Context, cfg Config, kind Kind, open func() (grabber, error), log zerolog.Logger) *Capture {
	return startGated(ctx, cfg, kind, open, log, nil)
}

func startGated(ctx context.Context, cfg Config, kind Kind, open func() (grabber, error), log zerolog.Logger, gate *Gate) *Capture {
	c := &Capture{
		cfg: cfg, log: log, open: open,
		file:       kind == Video || kind == Images,
		stallAfter: cfg.Stall,
		done:       make(chan struct{}),
		ready:      make(chan struct{}, 1),
		taken:      make(chan struct{}, 1),
		stall:      time.NewTimer(time.Hour),
		timer:      time.NewTimer(time.Hour),
		back:       gocv.NewMat(),
		mid:        gocv.NewMat(),
		front:      gocv.NewMat(),
		gate:       gate,
	}
	c.stall.Stop()
	c.timer.Stop()
	if kind == Images {
		c.stallAfter = max(c.stallAfter, time.Duration(3*float64(time.Second)/cfg.FPS))
	}
	ctx, c.cancel = context.WithCancel(ctx)
	go c.run(ctx)
	return c
}

// Next implements Source. Not safe for concurrent use.
func (c *Capture) Next(ctx context.Context) (Frame, error) {
	c.stall.Reset(c.stallAfter)
	for {
		c.mu.Lock()
		switch {
		case c.closed:
			c.mu.Unlock()
			return Frame{}, fmt.Errorf("camera %s: %w", c.cfg.Name, ErrClosed)
		case c.stats.Outages > c.told:
			c.told = c.stats.Outages
			err := c.stats.Err
			c.mu.Unlock()
			return Frame{}, c.unavailable(err)
		case c.midSeq > c.given:
			c.mid, c.front = c.front, c.mid
			c.midD, c.frontD = c.frontD, c.midD
			c.given = c.midSeq
			c.stats.Delivered++
			f := Frame{Mat: c.front, Seq: c.given, Time: c.midTime}
			if c.gate != nil {
				f.Gate = &c.frontD
			}
			c.mu.Unlock()
			notify(c.taken)
			return f, nil
		case c.end != nil:
			err := c.end
			c.mu.Unlock()
			if errors.Is(err, io.EOF) {
				return Frame{}, err
			}
			return Frame{}, fmt.Errorf("camera %s: %w", c.cfg.Name, err)
		}
		c.mu.Unlock()
		select {
		case <-c.ready:
		case <-ctx.Done():
			return Frame{}, ctx.Err()
		case <-c.stall.C:
			return Frame{}, c.stalled()
		}
	}
}

// stalled marks the source unavailable when no frame came for stallAfter:
// a reader blocked in the backend cannot say so itself.
func (c *Capture) stalled() error {
	c.mu.Lock()
	if c.stats.Available || c.stats.Err == nil {
		c.stats.Available = false
		c.stats.Err = fmt.Errorf("no frame for %v", c.stallAfter)
		c.stats.Outages++
		c.log.Warn().Err(c.stats.Err).Msg("camera stalled")
	}
	c.told = c.stats.Outages
	err := c.stats.Err
	c.mu.Unlock()
	return c.unavailable(err)
}

func (c *Capture) unavailable(cause error) error {
	return fmt.Errorf("camera %s: %w: %w", c.cfg.Name, ErrUnavailable, cause)
}

// Stats implements Source.
func (c *Capture) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// closeWait bounds how long Close waits for a reader blocked in the backend
// (FFmpeg gives up on a dead stream after 30 s); the reader frees its own
// resources when it returns.
const closeWait = 2 * time.Second

// Close stops the reader and frees the frames. The last frame returned by
// Next must not be used after Close.
func (c *Capture) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		select {
		case <-c.done:
		case <-time.After(closeWait):
			c.log.Warn().Msg("camera reader still blocked in the backend; it will exit on its own")
		}
		c.mu.Lock()
		c.closed = true
		c.mid.Close()
		c.front.Close()
		c.mu.Unlock()
		notify(c.ready)
	})
	return nil
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// run is the reader: open, read until the backend fails, back off, reopen.
func (c *Capture) run(ctx context.Context) {
	defer close(c.done)
	defer c.back.Close()
	if c.gate != nil {
		defer c.gate.Close()
	}
	var (
		attempt int
		clock   mediaClock
	)
	for ctx.Err() == nil {
		opened := time.Now()
		g, err := c.open()
		if err == nil {
			stop := func() bool { return false }
			if i, ok := g.(interrupter); ok {
				stop = context.AfterFunc(ctx, i.interrupt)
			}
			var n int
			n, err = c.pump(ctx, g, &clock)
			stop()
			g.close()
			// The back-off starts over after a connection that lasted; one
			// that fails again soon after its first frames (a stream that
			// crashes its decoder every time) keeps backing off.
			if n > 0 && time.Since(opened) >= c.cfg.RetryMax {
				attempt = 0
			}
			if ctx.Err() != nil {
				break
			}
			// Only a file ends. A live stream that ends (an MJPEG
			// response closed cleanly by the camera or a proxy) is an
			// outage, and reopened.
			if errors.Is(err, io.EOF) && n > 0 && c.file {
				if c.cfg.Loop {
					continue
				}
				c.finish(io.EOF)
				return
			}
			if errors.Is(err, io.EOF) && n == 0 {
				err = errors.New("ended before its first frame")
			}
		}
		attempt++
		c.down(err, attempt)
		if !c.sleep(ctx, backoff(c.cfg.RetryMin, c.cfg.RetryMax, attempt)) {
			break
		}
	}
	c.finish(ErrClosed)
}

// pump reads frames from g until it fails or ctx ends, and returns how many
// it read.
func (c *Capture) pump(ctx context.Context, g grabber, clock *mediaClock) (int, error) {
	fps, fourcc := g.info()
	var interval time.Duration // of a file's media clock
	if fps > 0 {
		interval = time.Duration(float64(time.Second) / fps)
	}
	n := 0
	var (
		size  image.Point
		stuck = stuckDetector{after: c.cfg.Stuck}
	)
	for ctx.Err() == nil {
		if err := g.grab(&c.back); err != nil {
			return n, err
		}
		if c.back.Empty() {
			return n, errors.New("the backend returned an empty frame")
		}
		t := time.Now()
		resized := false
		if s := image.Pt(c.back.Cols(), c.back.Rows()); s != size {
			// The gate lays itself out again (a keyframe without motion:
			// there is nothing to compare with); the stuck detector starts
			// over.
			resized = n > 0
			if resized {
				// A camera that changes size on every frame logs once a minute.
				ev := c.log.Debug()
				if time.Since(c.resizeLogged) >= time.Minute {
					ev, c.resizeLogged = c.log.Info(), time.Now()
				}
				ev.Str("from", fmtSize(size)).Str("to", fmtSize(s)).Msg("camera frame size changed")
			}
			size = s
			stuck.reset()
		}
		if !c.file {
			if err := stuck.check(c.back, t); err != nil {
				return n, err
			}
		}
		if c.file {
			t = clock.next(t, interval, !c.cfg.Fast)
			if !c.cfg.Fast && !c.sleep(ctx, time.Until(t)) {
				break
			}
			if c.cfg.Fast && !c.waitTaken(ctx) {
				break
			}
		}
		n++
		var gated time.Duration
		if c.gate != nil {
			start := time.Now()
			d, err := c.gate.Check(c.back, t)
			if err != nil {
				return n, err
			}
			gated = time.Since(start)
			c.backD.Encode, c.backD.Motion, c.backD.Keyframe, c.backD.Ratio = d.Encode, d.Motion, d.Keyframe, d.Ratio
			c.backD.Boxes = append(c.backD.Boxes[:0], d.Boxes...) // the gate reuses its slice
		}
		c.publish(t, n == 1, resized, fps, fourcc, gated)
	}
	return n, ctx.Err()
}

func fmtSize(p image.Point) string { return fmt.Sprintf("%dx%d", p.X, p.Y) }

// stuckDetector notices a decoder that returns the same picture over and
// over. A live camera's frames always differ a little (sensor noise); a
// decoder that stopped decoding keeps handing out its last frame. Only a
// source that delivered two different frames on this connection can be
// stuck, so a still image served as a stream is not.
type stuckDetector struct {
	after time.Duration // 0: off
	seed  maphash.Seed
	hash  uint64
	has   bool
	moved bool
	since time.Time // of the first frame of the identical run
}

func (s *stuckDetector) reset() { s.has, s.moved = false, false }

func (s *stuckDetector) check(m gocv.Mat, t time.Time) error {
	if s.after <= 0 || !m.IsContinuous() {
		return nil
	}
	b, err := m.DataPtrUint8()
	if err != nil {
		return nil
	}
	if !s.has {
		s.seed = maphash.MakeSeed()
	}
	h := maphash.Bytes(s.seed, b)
	switch {
	case !s.has || h != s.hash:
		s.moved = s.moved || s.has
		s.has, s.hash, s.since = true, h, t
	case s.moved && t.Sub(s.since) >= s.after:
		return fmt.Errorf("%w: identical frames for %v", ErrStuck, t.Sub(s.since).Round(time.Second))
	}
	return nil
}

// mergeDropped folds the decision of a frame that is being dropped into
// the decision of the frame replacing it: the consumer still learns of the
// motion (and where) or the keyframe it would have seen.
func mergeDropped(next, dropped *Decision) {
	if dropped.Motion && !next.Motion {
		next.Boxes = append(next.Boxes[:0], dropped.Boxes...)
		next.Ratio = dropped.Ratio
	}
	next.Motion = next.Motion || dropped.Motion
	next.Keyframe = next.Keyframe || dropped.Keyframe
	next.Encode = next.Motion || next.Keyframe
}

// mediaClock stamps file frames: one interval apart, starting when the file
// is first read. When a paced reader falls a second behind (a slow machine,
// an outage), the clock jumps to now rather than rushing to catch up.
type mediaClock struct{ t time.Time }

func (m *mediaClock) next(now time.Time, interval time.Duration, paced bool) time.Time {
	if m.t.IsZero() || paced && now.Sub(m.t) > time.Second {
		m.t = now
	}
	t := m.t
	m.t = m.t.Add(interval)
	return t
}

// waitTaken holds a Fast file reader until Next took the newest frame.
func (c *Capture) waitTaken(ctx context.Context) bool {
	for {
		c.mu.Lock()
		pending := c.midSeq > c.given && !c.closed
		c.mu.Unlock()
		if !pending {
			return true
		}
		select {
		case <-c.taken:
		case <-ctx.Done():
			return false
		}
	}
}

// publish makes the reader's Mat the newest frame.
func (c *Capture) publish(t time.Time, first, resized bool, fps float64, fourcc string, gated time.Duration) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if c.midSeq > c.given {
		c.stats.Dropped++
		if c.gate != nil {
			mergeDropped(&c.backD, &c.midD)
		}
	}
	c.stats.GateNanos += int64(gated)
	c.back, c.mid = c.mid, c.back
	c.backD, c.midD = c.midD, c.backD
	c.stats.Read++
	c.midSeq, c.midTime = c.stats.Read, t
	recovered := !c.stats.Available
	if resized {
		c.stats.SizeChanges++
	}
	c.stats.Size = image.Pt(c.mid.Cols(), c.mid.Rows())
	if first || recovered {
		c.stats.FPS, c.stats.FourCC = fps, fourcc
		c.stats.Available, c.stats.Err = true, nil
	}
	st := c.stats
	c.mu.Unlock()
	notify(c.ready)
	if recovered {
		c.log.Info().Int("width", st.Size.X).Int("height", st.Size.Y).Float64("fps", st.FPS).
			Str("fourcc", st.FourCC).Uint64("outages", st.Outages).Msg("camera delivering")
	}
}

// down marks the source unavailable. The frame waiting for Next, if any, is
// dropped: it predates the outage.
func (c *Capture) down(err error, attempt int) {
	if errors.Is(err, io.EOF) {
		// The reason keeps its words but not io.EOF, which to a
		// consumer of Next means the end of a file.
		err = errors.New(err.Error())
	}
	c.mu.Lock()
	wasUp := c.stats.Available || c.stats.Outages == 0
	if wasUp {
		c.stats.Outages++
	}
	c.stats.Available, c.stats.Err = false, err
	if c.midSeq > c.given {
		c.stats.Dropped++
		c.given = c.midSeq
	}
	c.mu.Unlock()
	notify(c.ready)
	if wasUp {
		c.log.Warn().Err(err).Msg("camera unavailable; retrying")
	} else {
		c.log.Debug().Err(err).Int("attempt", attempt).Msg("camera still unavailable")
	}
}

func (c *Capture) finish(end error) {
	c.mu.Lock()
	c.end = end
	c.mu.Unlock()
	notify(c.ready)
}

// sleep waits for d on the reader's timer; false when ctx ended.
func (c *Capture) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	c.timer.Reset(d)
	select {
	case <-c.timer.C:
		return true
	case <-ctx.Done():
		c.timer.Stop()
		return false
	}
}

// backoff is lo doubled per failed attempt up to hi, with ±25% jitter so
// that cameras behind one failed switch do not retry in lockstep.
func backoff(lo, hi time.Duration, attempt int) time.Duration {
	d := lo
	for i := 1; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d*3/4 + rand.N(d/2+1)
}
