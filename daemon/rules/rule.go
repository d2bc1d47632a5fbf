// Package rules turns rules written in words into concept vectors, scores
// frame regions against them with calibrated probabilities, and decides when
// a rule fires (events) or holds ON/OFF (states).
package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Kind is what a rule reports.
type Kind string

const (
	// Event rules fire once when their concept appears ("a package on the porch").
	Event Kind = "event"
	// State rules hold ON while their concept is seen and OFF otherwise
	// ("the garage door is open").
	State Kind = "state"
)

// Limits on what a rule may hold; they keep a malformed MQTT command or API
// call from storing something absurd.
const (
	MaxPrompts      = 16
	MaxPromptLen    = 300 // characters
	MaxNameLen      = 100
	MaxReferences   = 8
	MaxWindow       = 64
	MaxCooldown     = 24 * time.Hour
	MaxRuleJSONSize = 64 << 10
)

// ErrInvalid wraps every validation problem of a rule.
var ErrInvalid = errors.New("invalid rule")

var slug = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// Duration is a time.Duration written as "30s" in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "30s", "2m" or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("want a duration such as \"30s\" or a number of seconds")
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// Rule is a rule written in words, as users configure it.
type Rule struct {
	ID   string `json:"id"`             // slug: a-z, 0-9, '-', '_'
	Name string `json:"name,omitempty"` // for people; defaults to the first prompt
	// Prompts are phrasings of the same concept; their embeddings (through
	// every template) are averaged into one concept vector.
	Prompts []string `json:"prompts"`
	// Negatives are what the concept is easily confused with ("an empty
	// porch", "a doormat"); the calibrated score is a probability against them.
	Negatives []string `json:"negatives,omitempty"`
	// Templates wrap each prompt ("a photo of {}"); DefaultTemplates when empty.
	Templates []string `json:"templates,omitempty"`
	// References name stored snapshots (of *my* car) blended with the words.
	References []string `json:"references,omitempty"`
	// Cameras the rule watches; every camera when empty.
	Cameras []string `json:"cameras,omitempty"`
	// Threshold on the calibrated score (0..1) to turn on; Hysteresis below it
	// to turn off again.
	Threshold  float64 `json:"threshold"`
	Hysteresis float64 `json:"hysteresis"`
	// Frames of Window (N of M) must agree before the rule changes.
	Frames int `json:"frames"`
	Window int `json:"window"`
	// Cooldown: the least time between two firings of an event, or between
	// two changes of a state. Zero takes the default (1m for events, 10s for
	// states); "1ms" means practically none.
	Cooldown Duration `json:"cooldown"`
	Kind     Kind     `json:"kind"`
	Enabled  *bool    `json:"enabled,omitempty"` // true when omitted
}

// DefaultTemplates are CLIP-style prompt templates; "{}" stands for the prompt.
var DefaultTemplates = []string{"{}", "a photo of {}.", "a security camera image of {}."}

// Defaults fills the fields left empty with values that work without tuning.
func (r *Rule) Defaults() {
	if r.Name == "" && len(r.Prompts) > 0 {
		r.Name = strings.TrimSpace(r.Prompts[0])
	}
	if r.Threshold == 0 {
		r.Threshold = 0.6
	}
	if r.Hysteresis == 0 {
		r.Hysteresis = 0.1
	}
	if r.Frames == 0 {
		r.Frames = 2
	}
	if r.Window == 0 {
		r.Window = max(3, r.Frames)
	}
	if r.Kind == "" {
		r.Kind = Event
	}
	if r.Cooldown == 0 {
		// Events: one alert a minute at most; states: hold a change for 10 s,
		// so a flickering score does not flap Home Assistant.
		r.Cooldown = Duration(time.Minute)
		if r.Kind == State {
			r.Cooldown = Duration(10 * time.Second)
		}
	}
	if r.Enabled == nil {
		on := true
		r.Enabled = &on
	}
}

// IsEnabled reports whether the rule is evaluated.
func (r *Rule) IsEnabled() bool { return r.Enabled == nil || *r.Enabled }

// TemplatesOrDefault is the templates the rule's prompts go through.
func (r *Rule) TemplatesOrDefault() []string {
	if len(r.Templates) > 0 {
		return r.Templates
	}
	return DefaultTemplates
}

// Validate reports every problem at once, each naming its field. cameras,
// when not nil, is the set of configured camera names.
func (r *Rule) Validate(cameras map[string]bool) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if !slug.MatchString(r.ID) {
		bad("id", "%q is not a slug (a-z, 0-9, '-', '_'; at most 64; starting with a letter or digit)", r.ID)
	}
	if utf8.RuneCountInString(r.Name) > MaxNameLen {
		bad("name", "longer than %d characters", MaxNameLen)
	}
	if err := checkText(r.Name); err != nil {
		bad("name", "%v", err)
	}
	texts := func(field string, list []string, min int) {
		if len(list) < min {
			bad(field, "at least %d needed", min)
		}
		if len(list) > MaxPrompts {
			bad(field, "%d given, at most %d", len(list), MaxPrompts)
		}
		for i, p := range list {
			switch n := utf8.RuneCountInString(p); {
			case strings.TrimSpace(p) == "":
				bad(fmt.Sprintf("%s[%d]", field, i), "empty")
			case n > MaxPromptLen:
				bad(fmt.Sprintf("%s[%d]", field, i), "%d characters, at most %d", n, MaxPromptLen)
			default:
				if err := checkText(p); err != nil {
					bad(fmt.Sprintf("%s[%d]", field, i), "%v", err)
				}
			}
		}
	}
	texts("prompts", r.Prompts, 1)
	texts("negatives", r.Negatives, 0)
	texts("templates", r.Templates, 0)
	for i, t := range r.Templates {
		if strings.Count(t, "{}") != 1 {
			bad(fmt.Sprintf("templates[%d]", i), "%q must contain \"{}\" exactly once", t)
		}
	}
	if len(r.References) > MaxReferences {
		bad("references", "%d given, at most %d", len(r.References), MaxReferences)
	}
	for i, ref := range r.References {
		if !slug.MatchString(ref) {
			bad(fmt.Sprintf("references[%d]", i), "%q is not a snapshot id", ref)
		}
	}
	seen := map[string]bool{}
	for i, c := range r.Cameras {
		switch {
		case seen[c]:
			bad(fmt.Sprintf("cameras[%d]", i), "%q listed twice", c)
		case cameras != nil && !cameras[c]:
			bad(fmt.Sprintf("cameras[%d]", i), "unknown camera %q", c)
		}
		seen[c] = true
	}
	if !(r.Threshold > 0 && r.Threshold < 1) {
		bad("threshold", "%v is outside (0, 1)", r.Threshold)
	}
	if !(r.Hysteresis >= 0 && r.Hysteresis < r.Threshold) {
		bad("hysteresis", "%v must be at least 0 and below the threshold", r.Hysteresis)
	}
	if r.Frames < 1 || r.Window < r.Frames || r.Window > MaxWindow {
		bad("frames", "%d of %d: want 1 <= frames <= window <= %d", r.Frames, r.Window, MaxWindow)
	}
	if r.Cooldown < 0 || time.Duration(r.Cooldown) > MaxCooldown {
		bad("cooldown", "%v is outside [0, %v]", time.Duration(r.Cooldown), MaxCooldown)
	}
	if r.Kind != Event && r.Kind != State {
		bad("kind", "%q: want %q or %q", r.Kind, Event, State)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w %q: %w", ErrInvalid, r.ID, errors.Join(errs...))
}

// Parse reads a rule from JSON (strict: unknown fields are errors), fills
// defaults and validates it.
func Parse(data []byte, cameras map[string]bool) (*Rule, error) {
	if len(data) > MaxRuleJSONSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrInvalid, len(data), MaxRuleJSONSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r Rule
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the rule", ErrInvalid)
	}
	r.Defaults()
	if err := r.Validate(cameras); err != nil {
		return nil, err
	}
	return &r, nil
}

// checkText refuses what has no place in a name or a prompt and would
// mislead whoever reads it in a log, a terminal or Home Assistant: invalid
// UTF-8, control characters (NUL, ESC, DEL, C1; tab and newline too: a
// prompt is one line) and the invisible direction marks and overrides that
// can make text display as something else.
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for i, c := range s {
		if unicode.IsControl(c) || isBidiControl(c) || c == '\u2028' || c == '\u2029' {
			return fmt.Errorf("control character %U at byte %d", c, i)
		}
	}
	return nil
}

// isBidiControl: the marks and embeddings, overrides and isolates of the
// Unicode bidirectional algorithm (UAX #9).
func isBidiControl(c rune) bool {
	return c == '\u061C' || c == '\u200E' || c == '\u200F' || (c >= '\u202A' && c <= '\u202E') || (c >= '\u2066' && c <= '\u2069')
}
