package rules

import (
	"fmt"
	"strings"

	"github.com/sightd/sightd/quant"
	"github.com/sightd/sightd/quant/encoder"
)

// TextEncoder embeds text into unit vectors; encoder.Text is one.
type TextEncoder interface {
	Encode(text string, dst []float32) error
	Dim() int
}

// Concept is a rule's vectors for one model: meaningless to any other model.
type Concept struct {
	Positive  []float32   // prompt ensemble, blended with reference images
	Negatives [][]float32 // one ensemble per negative prompt
}

// ReferenceWeight is the share of reference images in a rule's positive
// vector when it has any: equal parts words and pictures, so neither the
// phrasing nor one particular snapshot dominates.
const ReferenceWeight = 0.5

// DefaultBackgrounds are scene descriptions shared by every rule: the
// calibrated score is a probability that the region shows the rule's concept
// rather than an ordinary view.
var DefaultBackgrounds = []string{"an empty scene", "a photo of an ordinary day", "a blurry photo"}

// ensemble embeds every prompt through every template and returns the
// normalised mean: CLIP's prompt ensembling.
func ensemble(enc TextEncoder, prompts, templates []string) ([]float32, error) {
	dim := enc.Dim()
	sum := make([]float32, dim)
	v := make([]float32, dim)
	for _, p := range prompts {
		p = strings.TrimSpace(p)
		for _, t := range templates {
			text := strings.Replace(t, "{}", p, 1)
			if err := enc.Encode(text, v); err != nil {
				return nil, fmt.Errorf("embed %q: %w", text, err)
			}
			for i, x := range v {
				sum[i] += x
			}
		}
	}
	if !encoder.Normalize(sum) {
		return nil, fmt.Errorf("prompts %q average to a zero vector", prompts)
	}
	return sum, nil
}

// Embed computes a rule's concept with the text encoder; refs are the
// embeddings of its reference images (unit vectors from the image tower).
func Embed(enc TextEncoder, r *Rule, refs [][]float32) (*Concept, error) {
	templates := r.TemplatesOrDefault()
	pos, err := ensemble(enc, r.Prompts, templates)
	if err != nil {
		return nil, fmt.Errorf("rule %s: %w", r.ID, err)
	}
	if len(refs) > 0 {
		mean := make([]float32, len(pos))
		for _, ref := range refs {
			if len(ref) != len(pos) {
				return nil, fmt.Errorf("rule %s: reference vector of %d values, want %d", r.ID, len(ref), len(pos))
			}
			for i, x := range ref {
				mean[i] += x
			}
		}
		if !encoder.Normalize(mean) {
			return nil, fmt.Errorf("rule %s: reference images average to a zero vector", r.ID)
		}
		blended := make([]float32, len(pos))
		if err := encoder.Compose(blended, encoder.Part{Vec: pos, Weight: 1 - ReferenceWeight},
			encoder.Part{Vec: mean, Weight: ReferenceWeight}); err != nil {
			return nil, fmt.Errorf("rule %s: %w", r.ID, err)
		}
		pos = blended
	}
	c := &Concept{Positive: pos}
	for _, n := range r.Negatives {
		v, err := ensemble(enc, []string{n}, templates)
		if err != nil {
			return nil, fmt.Errorf("rule %s negative: %w", r.ID, err)
		}
		c.Negatives = append(c.Negatives, v)
	}
	return c, nil
}

// Backgrounds embeds the shared background prompts, quantised for matching.
func Backgrounds(enc TextEncoder, prompts []string) ([]quant.Vector, error) {
	out := make([]quant.Vector, 0, len(prompts))
	for _, p := range prompts {
		v, err := ensemble(enc, []string{p}, DefaultTemplates)
		if err != nil {
			return nil, fmt.Errorf("background: %w", err)
		}
		q, err := quant.Quantize(v)
		if err != nil {
			return nil, fmt.Errorf("background %q: %w", p, err)
		}
		out = append(out, q)
	}
	return out, nil
}

// CompileRule embeds a rule with the text encoder (and its reference
// images' embeddings, if any) and quantises it for matching.
func CompileRule(enc TextEncoder, r *Rule, refs [][]float32) (*Compiled, error) {
	c, err := Embed(enc, r, refs)
	if err != nil {
		return nil, err
	}
	return Compile(r, c)
}
