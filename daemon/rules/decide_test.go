package rules

import (
	"math"
	"testing"
	"time"
)

type step struct {
	sec  float64
	p    float64
	want string // "" nothing, "on", "off", "fire" (on + fire)
}

func runSteps(t *testing.T, r Rule, steps []step) {
	t.Helper()
	r.ID = "r"
	r.Prompts = []string{"x"}
	r.Defaults()
	if err := r.Validate(nil); err != nil {
		t.Fatal(err)
	}
	d := NewDecider(&r)
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for i, s := range steps {
		got := d.Observe(t0.Add(time.Duration(s.sec*float64(time.Second))), s.p)
		var g string
		switch {
		case got.Fire:
			g = "fire"
		case got.Changed && got.On:
			g = "on"
		case got.Changed:
			g = "off"
		}
		if g != s.want {
			t.Fatalf("step %d (t=%vs p=%v): got %q (%+v), want %q", i, s.sec, s.p, g, got, s.want)
		}
		if got.On != d.On() {
			t.Fatalf("step %d: decision On=%v, decider On=%v", i, got.On, d.On())
		}
	}
}

func TestDecider(t *testing.T) {
	event := Rule{Kind: Event, Threshold: 0.6, Hysteresis: 0.1, Frames: 2, Window: 3, Cooldown: Duration(time.Minute)}
	state := Rule{Kind: State, Threshold: 0.6, Hysteresis: 0.1, Frames: 2, Window: 3, Cooldown: Duration(10 * time.Second)}
	for _, tc := range []struct {
		name  string
		rule  Rule
		steps []step
	}{
		{"event fires on 2 of 3", event, []step{{0, .5, ""}, {1, .7, ""}, {2, .5, ""}, {3, .7, "fire"}, {4, .9, ""}}},
		{"threshold is inclusive", event, []step{{0, .6, ""}, {1, .6, "fire"}}},
		{"a single spike is not enough", event, []step{{0, .9, ""}, {1, .1, ""}, {2, .1, ""}, {3, .9, ""}, {4, .1, ""}, {5, .1, ""}}},
		{"hysteresis holds between off and on", event, []step{
			{0, .7, ""}, {1, .7, "fire"}, {2, .55, ""}, {3, .51, ""}, {4, .5, ""}, {5, .55, ""}, {6, .49, ""}, {7, .3, "off"}}},
		{"off needs scores below threshold minus hysteresis", event, []step{
			{0, .7, ""}, {1, .7, "fire"}, {2, .50, ""}, {3, .50, ""}, {4, .499, ""}, {5, .499, "off"}}},
		{"one appearance fires once", event, []step{{0, .8, ""}, {1, .8, "fire"}, {2, .8, ""}, {3, .8, ""}, {4, .8, ""}}},
		{"cooldown swallows a quick second appearance", event, []step{
			{0, .8, ""}, {1, .8, "fire"}, {2, .1, ""}, {3, .1, "off"}, {30, .8, ""}, {31, .8, "on"},
			{32, .1, ""}, {33, .1, "off"}, {62, .8, ""}, {63, .8, "fire"}}},
		{"state turns on and off", state, []step{
			{0, .8, ""}, {1, .8, "on"}, {20, .2, ""}, {21, .2, "off"}, {40, .9, ""}, {41, .9, "on"}}},
		{"state holds for its cooldown", state, []step{
			{0, .8, ""}, {1, .8, "on"}, {2, .2, ""}, {3, .2, ""}, {5, .2, ""}, {11, .2, "off"}, {12, .9, ""}, {13, .9, ""}, {21, .9, "on"}}},
		{"window of 1 follows every frame", Rule{Kind: State, Threshold: .5, Hysteresis: .01, Frames: 1, Window: 1, Cooldown: Duration(time.Millisecond)}, []step{
			{0, .6, "on"}, {1, .4, "off"}, {2, .6, "on"}, {3, .495, ""}, {4, .48, "off"}}},
	} {
		t.Run(tc.name, func(t *testing.T) { runSteps(t, tc.rule, tc.steps) })
	}
}

func TestCalibrate(t *testing.T) {
	// Equal to the best alternative: at most one half.
	p, m := Calibrate(0.3, []float64{0.3}, nil, math.NaN(), 100)
	if math.Abs(p-0.5) > 1e-12 || m != 0 {
		t.Fatalf("tie: p=%v margin=%v", p, m)
	}
	// Well above everything: near 1; well below: near 0.
	if p, m := Calibrate(0.30, []float64{0.20}, []float64{0.22, 0.21}, math.NaN(), 100); p < 0.99 || math.Abs(m-0.08) > 1e-12 {
		t.Fatalf("clear winner: p=%v margin=%v", p, m)
	}
	if p, _ := Calibrate(0.20, []float64{0.30}, nil, math.NaN(), 100); p > 0.01 {
		t.Fatalf("clear loser: p=%v", p)
	}
	// The baseline is an alternative like any other.
	pNo, _ := Calibrate(0.40, nil, []float64{0.1}, math.NaN(), 100)
	pBase, _ := Calibrate(0.40, nil, []float64{0.1}, 0.42, 100)
	if pNo < 0.99 || pBase > 0.5 {
		t.Fatalf("baseline ignored: without %v, with %v", pNo, pBase)
	}
	// No alternatives at all: certain, and the margin is the raw score.
	if p, m := Calibrate(0.25, nil, nil, math.NaN(), 100); p != 1 || m != 0.25 {
		t.Fatalf("no alternatives: p=%v margin=%v", p, m)
	}
	// Large logit scales do not overflow.
	if p, _ := Calibrate(0.9, []float64{-0.9}, nil, math.NaN(), 1e4); p != 1 || math.IsNaN(p) {
		t.Fatalf("overflow: p=%v", p)
	}
}

func TestBaseline(t *testing.T) {
	var b Baseline
	for i := 0; i < baselineWarmup-1; i++ {
		b.Update(0.2)
		if !math.IsNaN(b.Mean()) || b.Z(0.9) != 0 {
			t.Fatalf("warm after %d updates", i+1)
		}
	}
	for i := 0; i < 200; i++ {
		b.Update(0.2 + 0.02*float64(i%2))
	}
	if m := b.Mean(); math.Abs(m-0.21) > 0.005 {
		t.Fatalf("mean %v, want about 0.21", m)
	}
	if z := b.Z(0.51); z < 10 {
		t.Fatalf("z of a clear outlier = %v", z)
	}
	if z := b.Z(0.21); math.Abs(z) > 1 {
		t.Fatalf("z of a usual score = %v", z)
	}
}
