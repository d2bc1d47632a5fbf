package encoder

import "fmt"

// Part is one embedding of a composed query and its weight.
type Part struct {
	Vec    []float32 // a unit vector from either tower
	Weight float32
}

// Compose writes the normalised weighted sum of parts into dst: a joint
// query such as "this snapshot of my car" + "in the driveway". Both towers map
// into one space, so the sum points between its parts; the weights say how
// far towards each: equal weights give the bisector, so neither the words
// nor one particular snapshot dominate. Weights need not sum to 1; only
// their ratio matters after normalisation.
func Compose(dst []float32, parts ...Part) error {
	clear(dst)
	for i, p := range parts {
		if len(p.Vec) != len(dst) {
			return fmt.Errorf("encoder: compose: part %d has %d values, want %d", i, len(p.Vec), len(dst))
		}
		for k, x := range p.Vec {
			dst[k] += p.Weight * x
		}
	}
	if !Normalize(dst) {
		return fmt.Errorf("encoder: compose: the weighted sum is zero or not finite")
	}
	return nil
}
