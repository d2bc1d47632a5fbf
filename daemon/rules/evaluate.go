package rules

import (
	"fmt"
	"github.com/sightd/sightd/quant"
	"math"
	"slices"
	"time"
)

// Compiled is a rule with its int8 concept vectors for one model.
type Compiled struct {
	Rule      *Rule
	Positive  quant.Vector
	Negatives []quant.Vector
	pos       int   // row of the positive vector
	negs      []int // rows of the negatives
}

// Compile quantises a concept for matching.
func Compile(r *Rule, c *Concept) (*Compiled, error) {
	pos, err := quant.Quantize(c.Positive)
	if err != nil {
		return nil, fmt.Errorf("rule %s: %w", r.ID, err)
	}
	cc := &Compiled{Rule: r, Positive: pos}
	for _, n := range c.Negatives {
		v, err := quant.Quantize(n)
		if err != nil {
			return nil, fmt.Errorf("rule %s negative: %w", r.ID, err)
		}
		cc.Negatives = append(cc.Negatives, v)
	}
	return cc, nil
}

// Set is every rule of one model version, compiled, with the shared
// background vectors: all of them rows of one int8 matrix, so that a frame's
// regions are scored against everything in one pass of the matching kernel.
type Set struct {
	ModelVersion int64
	LogitScale   float64
	Rules        []*Compiled
	mat          *quant.Matrix // positives, negatives, then backgrounds
	bgs          []int
}

// NewSet lays out the rules' and backgrounds' vectors (all of dimension dim).
func NewSet(modelVersion int64, logitScale float64, dim int, rules []*Compiled, backgrounds []quant.Vector) (*Set, error) {
	mat, err := quant.NewMatrix(dim)
	if err != nil {
		return nil, err
	}
	s := &Set{ModelVersion: modelVersion, LogitScale: logitScale, mat: mat}
	for _, c := range rules {
		cc := &Compiled{Rule: c.Rule, Positive: c.Positive, Negatives: c.Negatives}
		if cc.pos, err = mat.Append(c.Positive); err != nil {
			return nil, fmt.Errorf("rule %s: %w", c.Rule.ID, err)
		}
		for _, n := range c.Negatives {
			i, err := mat.Append(n)
			if err != nil {
				return nil, fmt.Errorf("rule %s: %w", c.Rule.ID, err)
			}
			cc.negs = append(cc.negs, i)
		}
		s.Rules = append(s.Rules, cc)
	}
	for _, b := range backgrounds {
		i, err := mat.Append(b)
		if err != nil {
			return nil, fmt.Errorf("background: %w", err)
		}
		s.bgs = append(s.bgs, i)
	}
	return s, nil
}

// Dim is the embedding dimension.
func (s *Set) Dim() int { return s.mat.Dim() }

// Rows is the number of vectors regions are scored against.
func (s *Set) Rows() int { return s.mat.Len() }

// Result is one rule's outcome on one frame.
type Result struct {
	Rule     *Rule
	Score    Score   // of the best region
	Baseline float64 // the camera's usual raw score for the rule (NaN while learning)
	Learning bool    // the baseline is still warming up: no decision yet
	Decision Decision
}

type ruleState struct {
	decider  *Decider
	baseline Baseline
}

// Camera evaluates a Set on one camera's frames, keeping each rule's
// decider and baseline. Not safe for concurrent use: the camera's pipeline
// owns it.
type Camera struct {
	Name    string
	set     *Set
	state   map[string]*ruleState
	queries *quant.Matrix // this frame's regions, quantised
	ints    []int32
	scores  []float32
	negs    []float64
	bgs     []float64
	results []Result
}

// NewCamera starts evaluating set on the camera called name.
func NewCamera(name string, set *Set) *Camera {
	c := &Camera{Name: name, state: map[string]*ruleState{}}
	c.SetRules(set)
	return c
}

// SetRules switches to another set (rules changed, or a new model). A rule
// whose settings did not change keeps its state and baseline; the baseline
// is dropped when the model changes, because scores of two models differ.
func (c *Camera) SetRules(set *Set) {
	newModel := c.set != nil && c.set.ModelVersion != set.ModelVersion
	keep := map[string]*ruleState{}
	for _, r := range set.Rules {
		// A disabled rule starts OFF when it is enabled again, as the OFF
		// published when it was disabled says.
		if st, ok := c.state[r.Rule.ID]; ok && !newModel && sameDecision(st.decider, r.Rule) && r.Rule.IsEnabled() {
			keep[r.Rule.ID] = st
			continue
		}
		keep[r.Rule.ID] = &ruleState{decider: NewDecider(r.Rule)}
	}
	c.set, c.state = set, keep
}

// Reset forgets every rule's state on this camera: all start OFF again
// (the camera's detection was switched off).
// The baselines stay: they describe the scene, not the rules' state.
func (c *Camera) Reset() {
	if c.set == nil {
		return
	}
	for _, r := range c.set.Rules {
		if st, ok := c.state[r.Rule.ID]; ok {
			st.decider = NewDecider(r.Rule)
		}
	}
}

func sameDecision(d *Decider, r *Rule) bool {
	n := NewDecider(r)
	return d.on == n.on && d.off == n.off && d.n == n.n && d.m == n.m && d.kind == n.kind && d.cooldown == n.cooldown
}

// watches reports whether rule r applies to this camera.
func (c *Camera) watches(r *Rule) bool {
	return r.IsEnabled() && (len(r.Cameras) == 0 || slices.Contains(r.Cameras, c.Name))
}

// score calibrates one rule on one region's row of scores.
func (c *Camera) score(r *Compiled, row []float32, baseline float64) Score {
	c.negs, c.bgs = c.negs[:0], c.bgs[:0]
	for _, k := range r.negs {
		c.negs = append(c.negs, float64(row[k]))
	}
	for _, k := range c.set.bgs {
		c.bgs = append(c.bgs, float64(row[k]))
	}
	raw := float64(row[r.pos])
	p, margin := Calibrate(raw, c.negs, c.bgs, baseline, c.set.LogitScale)
	return Score{Raw: raw, Calibrated: p, Margin: margin}
}

// Explain scores rule i of the set on each of n regions, without a
// baseline or a decision: what `sightd rule test` shows for a still image.
func (s *Set) Explain(i int, regions []float32, n int) ([]Score, error) {
	if i < 0 || i >= len(s.Rules) {
		return nil, fmt.Errorf("rules: no rule %d in the set", i)
	}
	c := NewCamera("", s)
	if _, err := c.Evaluate(time.Time{}, regions, n); err != nil { // fills c.scores
		return nil, err
	}
	rows := s.Rows()
	out := make([]Score, n)
	for reg := range out {
		out[reg] = c.score(s.Rules[i], c.scores[reg*rows:(reg+1)*rows], math.NaN())
		out[reg].Region = reg
	}
	return out, nil
}

// Evaluate scores n regions (n*Dim() values of unit vectors, as the image
// encoder writes them) taken at t, and returns each watching rule's result.
// The returned slice is reused by the next call.
func (c *Camera) Evaluate(t time.Time, regions []float32, n int) ([]Result, error) {
	s := c.set
	dim, rows := s.Dim(), s.Rows()
	if len(regions) != n*dim {
		return nil, fmt.Errorf("rules: %d values for %d regions of dimension %d", len(regions), n, dim)
	}
	if c.queries == nil || c.queries.Dim() != dim {
		q, err := quant.NewMatrix(dim)
		if err != nil {
			return nil, err
		}
		c.queries = q
	}
	c.queries.Reset()
	for r := 0; r < n; r++ {
		if _, err := c.queries.AppendFloat(regions[r*dim : (r+1)*dim]); err != nil {
			return nil, fmt.Errorf("rules: region %d: %w", r, err)
		}
	}
	if need := n * rows; cap(c.scores) < need {
		c.scores = make([]float32, need)
		c.ints = make([]int32, need)
	}
	scores := c.scores[:n*rows]
	var err error
	if c.ints, err = s.mat.Scores(c.queries, scores, c.ints); err != nil {
		return nil, err
	}

	c.results = c.results[:0]
	for _, r := range s.Rules {
		if !c.watches(r.Rule) {
			continue
		}
		st := c.state[r.Rule.ID]
		base := st.baseline.Mean()
		best := Score{Calibrated: math.Inf(-1), Raw: math.Inf(-1)}
		for reg := 0; reg < n; reg++ {
			sc := c.score(r, scores[reg*rows:(reg+1)*rows], base)
			if sc.Calibrated > best.Calibrated || (sc.Calibrated == best.Calibrated && sc.Raw > best.Raw) {
				best = sc
				best.Region = reg
			}
		}
		if n == 0 {
			continue
		}
		if !st.baseline.Warm() {
			// The first frames teach the camera's usual view; deciding before
			// that would fire on every view that happens to score high.
			st.baseline.Update(best.Raw)
			c.results = append(c.results, Result{Rule: r.Rule, Score: best, Baseline: base, Learning: true})
			continue
		}
		best.Z = st.baseline.Z(best.Raw)
		wasOn := st.decider.On()
		dec := st.decider.Observe(t, best.Calibrated)
		if !wasOn && !dec.On {
			st.baseline.Update(best.Raw)
		}
		c.results = append(c.results, Result{Rule: r.Rule, Score: best, Baseline: base, Decision: dec})
	}
	return c.results, nil
}
