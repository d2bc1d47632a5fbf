package rules

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sightd/sightd/quant"
	"github.com/sightd/sightd/quant/encoder"
)

func randUnit(r *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	encoder.Normalize(v)
	return v
}

// A set of random rules scored on 17 regions: the int8 path agrees with
// float cosines, the best region is reported, and steady-state frames do not
// allocate.
func TestEvaluateInt8MatchesFloat(t *testing.T) {
	const dim, nRules, nRegions = 512, 40, 17
	r := rand.New(rand.NewPCG(5, 6))
	var compiled []*Compiled
	var concepts []*Concept
	for i := 0; i < nRules; i++ {
		rule := &Rule{ID: "r" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Prompts: []string{"x"}}
		if i%2 == 1 {
			rule.Cameras = []string{"elsewhere"}
		}
		rule.Defaults()
		c := &Concept{Positive: randUnit(r, dim), Negatives: [][]float32{randUnit(r, dim)}}
		cc, err := Compile(rule, c)
		if err != nil {
			t.Fatal(err)
		}
		compiled, concepts = append(compiled, cc), append(concepts, c)
	}
	bg, _ := quant.Quantize(randUnit(r, dim))
	set, err := NewSet(3, 100, dim, compiled, []quant.Vector{bg})
	if err != nil {
		t.Fatal(err)
	}
	cam := NewCamera("porch", set)
	regions := make([]float32, 0, nRegions*dim)
	for i := 0; i < nRegions; i++ {
		regions = append(regions, randUnit(r, dim)...)
	}
	t0 := time.Now()
	res, err := cam.Evaluate(t0, regions, nRegions)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != nRules/2 {
		t.Fatalf("%d results, want %d (the other rules watch another camera)", len(res), nRules/2)
	}
	for _, rs := range res {
		var c *Concept
		for i, cc := range compiled {
			if cc.Rule == rs.Rule {
				c = concepts[i]
			}
		}
		reg := regions[rs.Score.Region*dim : (rs.Score.Region+1)*dim]
		if d := math.Abs(encoder.Cosine(reg, c.Positive) - rs.Score.Raw); d > 0.01 {
			t.Errorf("rule %s: int8 raw %.4f, float %.4f", rs.Rule.ID, rs.Score.Raw, encoder.Cosine(reg, c.Positive))
		}
		if !rs.Learning {
			t.Errorf("rule %s decided on its first frame", rs.Rule.ID)
		}
	}
	for i := 1; i < 20; i++ { // warm the baselines and the buffers
		cam.Evaluate(t0.Add(time.Duration(i)*time.Second), regions, nRegions)
	}
	if n := testing.AllocsPerRun(10, func() { cam.Evaluate(t0.Add(time.Minute), regions, nRegions) }); n > 0 {
		t.Errorf("Evaluate allocates %v times per frame", n)
	}
	if _, err := cam.Evaluate(t0, regions[:dim], 2); err == nil {
		t.Error("short regions accepted")
	}
}

// BenchmarkEvaluate is one frame of 17 regions against 1,000 rules with a
// negative each: matching, calibration and decisions.
func BenchmarkEvaluate(b *testing.B) {
	const dim, nRules, nRegions = 512, 1000, 17
	r := rand.New(rand.NewPCG(7, 8))
	var compiled []*Compiled
	for i := 0; i < nRules; i++ {
		rule := &Rule{ID: "rule", Prompts: []string{"x"}}
		rule.ID = rule.ID + string(rune('a'+i%26)) + string(rune('a'+(i/26)%26)) + string(rune('a'+i/676))
		rule.Defaults()
		cc, err := Compile(rule, &Concept{Positive: randUnit(r, dim), Negatives: [][]float32{randUnit(r, dim)}})
		if err != nil {
			b.Fatal(err)
		}
		compiled = append(compiled, cc)
	}
	set, err := NewSet(1, 100, dim, compiled, nil)
	if err != nil {
		b.Fatal(err)
	}
	cam := NewCamera("porch", set)
	regions := make([]float32, 0, nRegions*dim)
	for i := 0; i < nRegions; i++ {
		regions = append(regions, randUnit(r, dim)...)
	}
	t0 := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := cam.Evaluate(t0.Add(time.Duration(i)*time.Second), regions, nRegions); err != nil {
			b.Fatal(err)
		}
	}
}

// A state rule that is ON starts OFF again after Reset (its camera's
// detection was switched off) and after being disabled and enabled.
func TestResetAndDisableForgetState(t *testing.T) {
	const dim = 64
	r := rand.New(rand.NewPCG(7, 8))
	concept := &Concept{Positive: randUnit(r, dim)}
	compile := func(enabled bool) *Set {
		t.Helper()
		rule := &Rule{ID: "door", Prompts: []string{"x"}, Kind: State, Threshold: 0.5, Frames: 1, Window: 1, Cooldown: Duration(time.Nanosecond), Enabled: &enabled}
		rule.Defaults()
		cc, err := Compile(rule, concept)
		if err != nil {
			t.Fatal(err)
		}
		set, err := NewSet(1, 100, dim, []*Compiled{cc}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return set
	}
	on := compile(true)
	cam := NewCamera("porch", on)
	turnOn := func() {
		t.Helper()
		// The concept itself as the only region: the best score there is.
		for i := range 50 {
			res, err := cam.Evaluate(time.Unix(int64(i), 0), concept.Positive, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) == 1 && res[0].Decision.On {
				return
			}
		}
		t.Fatal("the rule never turned on")
	}
	state := func() bool { return cam.state["door"].decider.On() }
	turnOn()
	cam.Reset()
	if state() {
		t.Error("ON after Reset")
	}
	turnOn()
	cam.SetRules(on) // the same rules again: the state stays
	if !state() {
		t.Error("OFF after the same rules were set again")
	}
	cam.SetRules(compile(false))
	cam.SetRules(on)
	if state() {
		t.Error("ON after being disabled and enabled")
	}
}
