package rules

import (
	"math/bits"
	"time"
)

// Decision is what one observation did to a rule on one camera.
type Decision struct {
	On      bool // the rule's state after this observation
	Changed bool // On differs from before (a state rule publishes it)
	Fire    bool // an event rule fires: a detection to publish
}

// Decider turns a rule's calibrated scores on one camera into ON/OFF
// changes and firings: hysteresis (on at the threshold, off below threshold
// minus hysteresis), N-of-M frames for each change, and a cooldown. Not
// safe for concurrent use: one per (camera, rule), owned by the pipeline.
type Decider struct {
	on, off    float64
	n, m       int
	kind       Kind
	cooldown   time.Duration
	window     uint64 // last m observations, 1 = votes for a change
	state      bool
	lastChange time.Time
	lastFire   time.Time
}

// NewDecider makes a decider for a validated rule.
func NewDecider(r *Rule) *Decider {
	return &Decider{on: r.Threshold, off: r.Threshold - r.Hysteresis, n: r.Frames, m: r.Window,
		kind: r.Kind, cooldown: time.Duration(r.Cooldown)}
}

// On is the current state.
func (d *Decider) On() bool { return d.state }

// Observe takes the rule's calibrated score for the frame taken at t.
func (d *Decider) Observe(t time.Time, p float64) Decision {
	// While off, a frame votes for "on" when it reaches the threshold; while
	// on, it votes for "off" when it falls below threshold - hysteresis.
	vote := p >= d.on
	if d.state {
		vote = p < d.off
	}
	d.window <<= 1
	if vote {
		d.window |= 1
	}
	d.window &= (1 << d.m) - 1
	if bits.OnesCount64(d.window) < d.n {
		return Decision{On: d.state}
	}
	// State rules hold a change for the cooldown, so a flickering scene
	// does not flap Home Assistant; the votes stay until it has passed.
	if d.kind == State && !d.lastChange.IsZero() && t.Sub(d.lastChange) < d.cooldown {
		return Decision{On: d.state}
	}
	d.state = !d.state
	d.window = 0
	d.lastChange = t
	dec := Decision{On: d.state, Changed: true}
	// An event fires on the way up, once per appearance, and not again
	// within the cooldown of the last firing.
	if d.kind == Event && d.state && (d.lastFire.IsZero() || t.Sub(d.lastFire) >= d.cooldown) {
		dec.Fire = true
		d.lastFire = t
	}
	return dec
}
