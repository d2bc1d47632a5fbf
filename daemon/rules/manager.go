package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/sightd/sightd/quant"
	"github.com/sightd/sightd/store"
)

// ImageEncoder embeds a whole encoded image (JPEG, PNG): for reference
// snapshots. encoder.Image's EncodeBytes is one.
type ImageEncoder interface {
	EncodeBytes(data []byte, dst []float32) error
}

// Model is the active model as the rules see it.
type Model struct {
	Version    int64
	LogitScale float64
	Text       TextEncoder
	Image      ImageEncoder // for reference images; nil refuses rules that have them
	// Backgrounds are the shared background prompts; DefaultBackgrounds when empty.
	Backgrounds []string
}

// Vector names in the store.
const (
	vecPositive = "positive"
	vecNegative = "negative/"
)

// Manager keeps the rules and their vectors in the store: saving a rule
// computes its vectors with the active model and writes both in one
// transaction, and a model change recomputes every rule's vectors.
// Safe for use by one goroutine at a time.
type Manager struct {
	st          *store.Store
	model       Model
	cameras     map[string]bool
	backgrounds []quant.Vector
}

// NewManager works on st with model. cameras, when not nil, is the set of
// configured camera names rules may name.
func NewManager(st *store.Store, model Model, cameras map[string]bool) (*Manager, error) {
	m := &Manager{st: st, cameras: cameras}
	if err := m.setModel(model); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Manager) setModel(model Model) error {
	prompts := model.Backgrounds
	if len(prompts) == 0 {
		prompts = DefaultBackgrounds
	}
	bgs, err := Backgrounds(model.Text, prompts)
	if err != nil {
		return err
	}
	m.backgrounds = bgs
	m.model = model
	return nil
}

// compile computes a rule's vectors with the active model.
func (m *Manager) compile(ctx context.Context, r *Rule) (*Compiled, error) {
	var refs [][]float32
	for _, id := range r.References {
		if m.model.Image == nil {
			return nil, fmt.Errorf("rule %s: reference images need the image tower", r.ID)
		}
		data, err := m.st.Reference(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("rule %s: %w", r.ID, err)
		}
		v := make([]float32, m.model.Text.Dim())
		if err := m.model.Image.EncodeBytes(data, v); err != nil {
			return nil, fmt.Errorf("rule %s: reference %s: %w", r.ID, id, err)
		}
		refs = append(refs, v)
	}
	return CompileRule(m.model.Text, r, refs)
}

func storeVectors(version int64, c *Compiled) []store.Vector {
	vs := []store.Vector{{Model: version, Rule: c.Rule.ID, Name: vecPositive, Data: c.Positive.Data, Scale: c.Positive.Scale}}
	for i, n := range c.Negatives {
		vs = append(vs, store.Vector{Model: version, Rule: c.Rule.ID, Name: fmt.Sprintf("%s%d", vecNegative, i), Data: n.Data, Scale: n.Scale})
	}
	return vs
}

// Put validates r, computes its vectors and saves both at once; an invalid
// rule or a failed embedding leaves the store as it was.
func (m *Manager) Put(ctx context.Context, r *Rule) error {
	r.Defaults()
	if err := r.Validate(m.cameras); err != nil {
		return err
	}
	c, err := m.compile(ctx, r)
	if err != nil {
		return err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return m.st.Update(ctx, func(tx *store.Tx) error {
		if err := tx.PutRule(r.ID, data); err != nil {
			return err
		}
		if err := tx.DeleteVectors(m.model.Version, r.ID); err != nil {
			return err
		}
		for _, v := range storeVectors(m.model.Version, c) {
			if err := tx.PutVector(v); err != nil {
				return err
			}
		}
		return nil
	})
}

// ErrExists is returned by Add for an id already in use.
var ErrExists = errors.New("rule already exists")

// Add saves a new rule; an id already in use is an error (Put replaces).
func (m *Manager) Add(ctx context.Context, r *Rule) error {
	if _, err := m.st.Rule(ctx, r.ID); err == nil {
		return fmt.Errorf("%w: %q", ErrExists, r.ID)
	} else if !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrInvalid) {
		return err
	}
	return m.Put(ctx, r)
}

// PutReference stores a reference image that rules can name.
func (m *Manager) PutReference(ctx context.Context, id string, image []byte) error {
	return m.st.PutReference(ctx, id, image)
}

// Delete removes a rule and its vectors.
func (m *Manager) Delete(ctx context.Context, id string) error {
	if _, err := m.st.Rule(ctx, id); err != nil {
		return err
	}
	return m.st.DeleteRule(ctx, id)
}

// Get returns one rule.
func (m *Manager) Get(ctx context.Context, id string) (*Rule, error) {
	data, err := m.st.Rule(ctx, id)
	if err != nil {
		return nil, err
	}
	return decodeStored(id, data)
}

func decodeStored(id string, data []byte) (*Rule, error) {
	var r Rule
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("stored rule %s: %w", id, err)
	}
	r.Defaults()
	return &r, nil
}

// List returns every rule in id order.
func (m *Manager) List(ctx context.Context) ([]*Rule, error) {
	stored, err := m.st.Rules(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*Rule, 0, len(stored))
	for _, s := range stored {
		r, err := decodeStored(s.ID, s.JSON)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Set loads every rule with its vectors of the active model, ready to match.
// A rule stored without vectors for this model (saved under another one) is
// embedded now and saved.
func (m *Manager) Set(ctx context.Context) (*Set, error) {
	rules, err := m.List(ctx)
	if err != nil {
		return nil, err
	}
	var compiled []*Compiled
	for _, r := range rules {
		c, err := m.loadCompiled(ctx, r)
		if errors.Is(err, store.ErrNotFound) {
			if err := m.Put(ctx, r); err != nil {
				return nil, err
			}
			c, err = m.loadCompiled(ctx, r)
		}
		if err != nil {
			return nil, err
		}
		compiled = append(compiled, c)
	}
	return NewSet(m.model.Version, m.model.LogitScale, m.model.Text.Dim(), compiled, m.backgrounds)
}

func (m *Manager) loadCompiled(ctx context.Context, r *Rule) (*Compiled, error) {
	pos, err := m.st.Vector(ctx, m.model.Version, r.ID, vecPositive)
	if err != nil {
		return nil, err
	}
	c := &Compiled{Rule: r, Positive: quant.Vector{Data: pos.Data, Scale: pos.Scale}}
	for i := range r.Negatives {
		n, err := m.st.Vector(ctx, m.model.Version, r.ID, fmt.Sprintf("%s%d", vecNegative, i))
		if err != nil {
			return nil, err
		}
		c.Negatives = append(c.Negatives, quant.Vector{Data: n.Data, Scale: n.Scale})
	}
	return c, nil
}

// Reembed computes every rule's vectors with a new model and stores them as
// that model's complete set (vectors of one model mean nothing to another),
// then makes it the active model. On any error the active model and its
// vectors stay as they were.
func (m *Manager) Reembed(ctx context.Context, model Model) error {
	rules, err := m.List(ctx)
	if err != nil {
		return err
	}
	old := m.model
	oldBgs := append([]quant.Vector(nil), m.backgrounds...)
	if err := m.setModel(model); err != nil {
		m.model, m.backgrounds = old, oldBgs
		return err
	}
	var vecs []store.Vector
	var failed []string
	for _, r := range rules {
		c, err := m.compile(ctx, r)
		if err != nil {
			failed = append(failed, err.Error())
			continue
		}
		vecs = append(vecs, storeVectors(model.Version, c)...)
	}
	if len(failed) > 0 {
		m.model, m.backgrounds = old, oldBgs
		return fmt.Errorf("re-embed for model %d: %s", model.Version, strings.Join(failed, "; "))
	}
	if err := m.st.ReplaceVectors(ctx, model.Version, vecs); err != nil {
		m.model, m.backgrounds = old, oldBgs
		return err
	}
	return nil
}
