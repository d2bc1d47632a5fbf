package rules

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/sightd/sightd/quant/encoder"
	"github.com/sightd/sightd/store"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	cfg := store.Defaults()
	cfg.Dir = t.TempDir()
	st, err := store.Open(context.Background(), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func (d *demoTowers) model(version int64) Model {
	return Model{Version: version, LogitScale: d.towers.Manifest().LogitScale, Text: d.text, Image: d.image}
}

func TestManagerLifecycle(t *testing.T) {
	ctx := context.Background()
	d := loadDemo(t)
	st := openStore(t)
	m, err := NewManager(st, d.model(1), map[string]bool{"porch": true})
	if err != nil {
		t.Fatal(err)
	}
	orange := &Rule{ID: "orange", Prompts: []string{"something orange"}, Negatives: []string{"something red"}, Cameras: []string{"porch"}}
	if err := m.Add(ctx, orange); err != nil {
		t.Fatal(err)
	}
	if err := m.Add(ctx, &Rule{ID: "orange", Prompts: []string{"x"}}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate id: %v", err)
	}

	// Bad rules are refused and leave nothing behind.
	for name, r := range map[string]*Rule{
		"unknown camera": {ID: "a", Prompts: []string{"x"}, Cameras: []string{"attic"}},
		"empty prompt":   {ID: "b", Prompts: []string{""}},
		"10 kB prompt":   {ID: "c", Prompts: []string{strings.Repeat("a", 10000)}},
		"bad threshold":  {ID: "d", Prompts: []string{"x"}, Threshold: 3},
		"missing ref":    {ID: "e", Prompts: []string{"x"}, References: []string{"nope"}},
	} {
		if err := m.Put(ctx, r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	rules, err := m.List(ctx)
	if err != nil || len(rules) != 1 || rules[0].ID != "orange" {
		t.Fatalf("after bad rules: %v %v", rules, err)
	}
	if _, err := st.Vector(ctx, 1, "e", vecPositive); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused rule left a vector: %v", err)
	}

	// The stored set scores the real photo as the freshly embedded concept does.
	set, err := m.Set(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Rules) != 1 || len(set.Rules[0].Negatives) != 1 || set.ModelVersion != 1 {
		t.Fatalf("set: %+v", set)
	}
	fresh, _ := Embed(d.text, orange, nil)
	got := set.Rules[0].Positive.Float()
	if c := encoder.Cosine(got, fresh.Positive); c < 0.999 {
		t.Fatalf("stored vector cosine %.5f to a fresh embedding", c)
	}

	// A reference image pulls the concept towards itself.
	jpeg, err := os.ReadFile(filepath.Join("..", "..", "third_party", "opencv-data", "orange.jpg"))
	if err != nil {
		t.Fatalf("real photo missing (run `make deps`): %v", err)
	}
	if err := m.PutReference(ctx, "my-orange", jpeg); err != nil {
		t.Fatal(err)
	}
	withRef := &Rule{ID: "orange-ref", Prompts: []string{"something red"}, References: []string{"my-orange"}}
	if err := m.Put(ctx, withRef); err != nil {
		t.Fatal(err)
	}
	photo := d.photo(t, "orange.jpg")
	plain, _ := Embed(d.text, &Rule{ID: "p", Prompts: []string{"something red"}, Templates: DefaultTemplates}, nil)
	set, _ = m.Set(ctx)
	var refVec []float32
	for _, c := range set.Rules {
		if c.Rule.ID == "orange-ref" {
			refVec = c.Positive.Float()
		}
	}
	if a, b := encoder.Cosine(photo, plain.Positive), encoder.Cosine(photo, refVec); !(b > a+0.2) {
		t.Fatalf("reference image did not pull the concept: words %.3f, words+image %.3f", a, b)
	}

	// A new model: every rule is embedded again under its version.
	if err := m.Reembed(ctx, d.model(2)); err != nil {
		t.Fatal(err)
	}
	vecs, err := st.Vectors(ctx, 2)
	if err != nil || len(vecs) != 3 { // orange: positive + negative; orange-ref: positive
		t.Fatalf("model 2 vectors: %d, %v", len(vecs), err)
	}
	if set, err = m.Set(ctx); err != nil || set.ModelVersion != 2 {
		t.Fatalf("set after re-embed: %v %v", set, err)
	}

	// A failing re-embed keeps the active model.
	if err := m.Reembed(ctx, Model{Version: 3, LogitScale: 100, Text: failingText{d.text.Dim()}}); err == nil {
		t.Fatal("failing text encoder accepted")
	}
	if set, err = m.Set(ctx); err != nil || set.ModelVersion != 2 {
		t.Fatalf("set after failed re-embed: %v %v", set, err)
	}

	if err := m.Delete(ctx, "orange"); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(ctx, "orange"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := st.Vector(ctx, 2, "orange", vecPositive); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted rule kept its vectors: %v", err)
	}
}

type failingText struct{ dim int }

func (f failingText) Encode(string, []float32) error { return errors.New("tower broken") }
func (f failingText) Dim() int                       { return f.dim }

// The configured background prompts are what rules are calibrated against:
// a background that says the same as the rule takes its certainty away.
func TestManagerBackgrounds(t *testing.T) {
	ctx := context.Background()
	d := loadDemo(t)
	photo := d.photo(t, "orange.jpg")
	calibrated := func(bgs []string) float64 {
		t.Helper()
		model := d.model(1)
		model.Backgrounds = bgs
		m, err := NewManager(openStore(t), model, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Put(ctx, &Rule{ID: "orange", Prompts: []string{"something orange"}}); err != nil {
			t.Fatal(err)
		}
		set, err := m.Set(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s, err := set.Explain(0, photo, 1)
		if err != nil {
			t.Fatal(err)
		}
		return s[0].Calibrated
	}
	def, same := calibrated(nil), calibrated([]string{"an orange scene"})
	if !(def > 0.99 && same <= 0.5) {
		t.Fatalf("calibrated score with the default backgrounds %.3f, with an orange background %.3f", def, same)
	}
}
