package rules

import "math"

// Raw cosine scores of CLIP-like models drift from scene to scene and
// cluster tightly, so no single cutoff works everywhere. sightd turns them
// into a probability that the region shows the rule's concept rather than
// any of its alternatives: the rule's negatives, the shared background
// prompts, and, once it has seen enough frames, "what this camera usually
// looks like" (the running baseline of the rule's own score). A view that
// always scores 0.7 for "a dark scene" then needs more than 0.7 to fire, and
// a view that scores 0.05 fires at 0.4.

// Score is one rule's numbers on one region.
type Score struct {
	Raw        float64 // cosine of the region and the rule's positive vector
	Calibrated float64 // probability of the positive against the alternatives
	Margin     float64 // Raw minus the best negative or background cosine
	Z          float64 // (Raw - baseline mean) / baseline deviation; 0 until warm
	Region     int     // index of the region (best region for a frame)
}

// Calibrate computes the calibrated probability and the margin from the
// cosines of one region. baseline is the camera's usual score for the rule,
// or NaN when not yet known. logitScale is the model's (CLIP: 100).
func Calibrate(raw float64, negatives, backgrounds []float64, baseline, logitScale float64) (p, margin float64) {
	best := math.Inf(-1)
	for _, s := range negatives {
		best = math.Max(best, s)
	}
	for _, s := range backgrounds {
		best = math.Max(best, s)
	}
	alt := best
	if !math.IsNaN(baseline) {
		alt = math.Max(alt, baseline)
	}
	// Softmax with the largest logit subtracted, for stability.
	top := math.Max(raw, alt)
	sum := math.Exp(logitScale * (raw - top))
	num := sum
	for _, s := range negatives {
		sum += math.Exp(logitScale * (s - top))
	}
	for _, s := range backgrounds {
		sum += math.Exp(logitScale * (s - top))
	}
	if !math.IsNaN(baseline) {
		sum += math.Exp(logitScale * (baseline - top))
	}
	margin = raw - best
	if math.IsInf(best, -1) {
		margin = raw
	}
	return num / sum, margin
}

// Baseline is a running mean and deviation of a rule's raw score on one
// camera (exponentially weighted, so it follows the light of the day).
type Baseline struct {
	mean, varc float64
	n          int
}

// Baseline settings: about the last 50 updates count; the first 10 only warm up.
const (
	baselineAlpha  = 0.02
	baselineWarmup = 10
)

// Update adds a score. Callers update only while the rule is off, so a
// state that lasts all day does not become "usual".
func (b *Baseline) Update(x float64) {
	b.n++
	if b.n == 1 {
		b.mean = x
		return
	}
	a := baselineAlpha
	if b.n <= baselineWarmup { // plain average while warming up
		a = 1 / float64(b.n)
	}
	d := x - b.mean
	b.mean += a * d
	b.varc = (1 - a) * (b.varc + a*d*d)
}

// Warm reports whether enough scores have been seen to trust the baseline.
func (b *Baseline) Warm() bool { return b.n >= baselineWarmup }

// Mean is the usual score, NaN until warm.
func (b *Baseline) Mean() float64 {
	if !b.Warm() {
		return math.NaN()
	}
	return b.mean
}

// Z says how unusual x is for this camera; 0 until warm.
func (b *Baseline) Z(x float64) float64 {
	if !b.Warm() {
		return 0
	}
	// A floor on the deviation: a perfectly still view must not make every
	// rounding step look like a 10-sigma event.
	return (x - b.mean) / math.Max(math.Sqrt(b.varc), 0.01)
}
