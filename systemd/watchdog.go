package systemd

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"
)

// Watchdog keeps systemd's service watchdog (WatchdogSec=) satisfied while
// every registered component makes progress. It sends WATCHDOG=1 every half
// interval, but only when each component has ticked within the last interval;
// when one has not, it stops, so that systemd restarts sightd, and puts the
// stuck components' names on the service's status line.
type Watchdog struct {
	log      zerolog.Logger
	interval time.Duration // WatchdogSec; 0 when systemd set no watchdog
	origin   time.Time     // Beat times are offsets from it (monotonic)

	mu    sync.Mutex
	beats []*Beat

	reported string // the stuck names at the last check; Run's alone
}

// Beat is one component's heartbeat, from Watchdog.Register.
type Beat struct {
	w    *Watchdog
	name string
	last atomic.Int64 // time of the last Tick, as a duration since w.origin
}

// NewWatchdog reads the interval that systemd passes in WATCHDOG_USEC. Without
// one (not under systemd, or no WatchdogSec=) the watchdog never notifies.
func NewWatchdog(log zerolog.Logger) (*Watchdog, error) {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return nil, fmt.Errorf("systemd: watchdog: %w", err)
	}
	return newWatchdog(log, d), nil
}

func newWatchdog(log zerolog.Logger, interval time.Duration) *Watchdog {
	return &Watchdog{log: log, interval: interval, origin: time.Now()}
}

// Interval is systemd's watchdog interval, 0 when there is none. It is also
// how long a component may go without a Tick before it counts as stuck.
func (w *Watchdog) Interval() time.Duration { return w.interval }

// Register adds a component under name (such as "camera/porch"). It counts as
// having just ticked. The component must Tick more often than Interval, also
// while idle or retrying: a tick means "my loop still turns", not "all is well".
func (w *Watchdog) Register(name string) *Beat {
	b := &Beat{w: w, name: name}
	b.Tick()
	w.mu.Lock()
	w.beats = append(w.beats, b)
	w.mu.Unlock()
	return b
}

// Tick records progress. It is cheap enough to call on every frame.
func (b *Beat) Tick() { b.last.Store(int64(time.Since(b.w.origin))) }

// Done unregisters the component. Call it when the component stops on
// purpose (a camera removed, shutdown), so that its silence is no hang.
func (b *Beat) Done() {
	w := b.w
	w.mu.Lock()
	w.beats = slices.DeleteFunc(w.beats, func(x *Beat) bool { return x == b })
	w.mu.Unlock()
}

// Stuck names the components that have not ticked within Interval, sorted.
// Without a watchdog nothing is stuck.
func (w *Watchdog) Stuck() []string {
	var names []string
	for _, s := range w.stale() {
		names = append(names, s.name)
	}
	return names
}

type stale struct {
	name string
	age  time.Duration // since the last Tick
}

func (w *Watchdog) stale() []stale {
	if w.interval == 0 {
		return nil
	}
	now := time.Since(w.origin)
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []stale
	for _, b := range w.beats {
		if age := now - time.Duration(b.last.Load()); age > w.interval {
			out = append(out, stale{b.name, age})
		}
	}
	slices.SortFunc(out, func(a, b stale) int { return strings.Compare(a.name, b.name) })
	return out
}

// Run checks the components every half interval and notifies systemd until
// ctx is done. Without a watchdog it returns at once. Run it once.
func (w *Watchdog) Run(ctx context.Context) {
	if w.interval == 0 {
		return
	}
	w.log.Debug().Dur("interval", w.interval).Msg("systemd watchdog on")
	t := time.NewTicker(w.interval / 2)
	defer t.Stop()
	for {
		w.check()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check pets the watchdog when nothing is stuck, and otherwise says what is.
func (w *Watchdog) check() {
	stale := w.stale()
	names := make([]string, len(stale))
	parts := make([]string, len(stale))
	for i, s := range stale {
		names[i] = s.name
		parts[i] = fmt.Sprintf("%s (no progress for %s)", s.name, roundAge(s.age))
	}
	if key := strings.Join(names, "\x00"); key != w.reported {
		if key == "" {
			w.log.Info().Msg("watchdog: every component makes progress again")
		} else {
			w.log.Error().Strs("stuck", names).Dur("allowed", w.interval).
				Msg("watchdog: no progress; no longer notifying systemd, which will restart sightd")
		}
		w.reported = key
	}
	report := ""
	if len(stale) > 0 {
		report = "stuck: " + strings.Join(parts, ", ") + "; systemd restarts sightd when its watchdog runs out"
	}
	if err := setStuck(report); err != nil {
		w.log.Warn().Err(err).Msg("watchdog: status")
	}
	if len(stale) > 0 {
		return
	}
	if err := notify(daemon.SdNotifyWatchdog); err != nil {
		w.log.Warn().Err(err).Msg("watchdog")
	}
}

// roundAge keeps a duration short to read: whole seconds, or milliseconds
// below one second.
func roundAge(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}
