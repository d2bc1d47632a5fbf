package rules

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseDefaults(t *testing.T) {
	r, err := Parse([]byte(`{"id":"package","prompts":["a package on the porch"]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "a package on the porch" || r.Kind != Event || r.Threshold != 0.6 || r.Frames != 2 ||
		r.Window != 3 || time.Duration(r.Cooldown) != time.Minute || !r.IsEnabled() {
		t.Fatalf("defaults: %+v", r)
	}
	r, err = Parse([]byte(`{"id":"garage","prompts":["the garage door is open"],"kind":"state","cooldown":"5s","enabled":false}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != State || time.Duration(r.Cooldown) != 5*time.Second || r.IsEnabled() {
		t.Fatalf("state rule: %+v", r)
	}
	b, _ := json.Marshal(r)
	again, err := Parse(b, nil)
	if err != nil || again.ID != r.ID || again.Cooldown != r.Cooldown || again.IsEnabled() {
		t.Fatalf("round trip: %v %+v", err, again)
	}
}

func TestParseErrors(t *testing.T) {
	cams := map[string]bool{"porch": true, "garage": true}
	long := strings.Repeat("word ", 2000)
	for _, tc := range []struct{ name, json, want string }{
		{"empty prompt", `{"id":"a","prompts":[" "]}`, "prompts[0]: empty"},
		{"no prompts", `{"id":"a","prompts":[]}`, "prompts: at least 1 needed"},
		{"10 kB prompt", `{"id":"a","prompts":["` + long + `"]}`, "prompts[0]: 10000 characters, at most 300"},
		{"unknown camera", `{"id":"a","prompts":["x"],"cameras":["attic"]}`, `cameras[0]: unknown camera "attic"`},
		{"threshold above 1", `{"id":"a","prompts":["x"],"threshold":1.5}`, "threshold: 1.5 is outside (0, 1)"},
		{"negative threshold", `{"id":"a","prompts":["x"],"threshold":-0.2}`, "threshold: -0.2 is outside (0, 1)"},
		{"hysteresis too big", `{"id":"a","prompts":["x"],"threshold":0.5,"hysteresis":0.6}`, "hysteresis: 0.6 must be at least 0"},
		{"frames over window", `{"id":"a","prompts":["x"],"frames":4,"window":3}`, "frames: 4 of 3"},
		{"bad id", `{"id":"Front Door","prompts":["x"]}`, `id: "Front Door" is not a slug`},
		{"bad kind", `{"id":"a","prompts":["x"],"kind":"sometimes"}`, `kind: "sometimes"`},
		{"bad template", `{"id":"a","prompts":["x"],"templates":["a photo"]}`, `templates[0]: "a photo" must contain "{}" exactly once`},
		{"bad cooldown", `{"id":"a","prompts":["x"],"cooldown":"soon"}`, "invalid rule"},
		{"negative cooldown", `{"id":"a","prompts":["x"],"cooldown":"-5s"}`, "cooldown: -5s is outside"},
		{"unknown field", `{"id":"a","prompts":["x"],"treshold":0.5}`, `unknown field "treshold"`},
		{"trailing data", `{"id":"a","prompts":["x"]} {}`, "data after the rule"},
		{"not json", `prompts: x`, "invalid rule"},
		{"duplicate camera", `{"id":"a","prompts":["x"],"cameras":["porch","porch"]}`, `cameras[1]: "porch" listed twice`},
		{"NUL in a prompt", `{"id":"a","prompts":["a dog\u0000"]}`, "prompts[0]: control character U+0000 at byte 5"},
		{"ESC in a name", `{"id":"a","name":"Door \u001b[31mOPEN","prompts":["x"]}`, "name: control character U+001B"},
		{"newline in a negative", `{"id":"a","prompts":["x"],"negatives":["a\nb"]}`, "negatives[0]: control character U+000A"},
		{"RTL override in a prompt", `{"id":"a","prompts":["a cat \u202egod a"]}`, "prompts[0]: control character U+202E"},
		{"isolate in a name", `{"id":"a","name":"\u2067x","prompts":["x"]}`, "name: control character U+2067"},
		{"C1 control in a template", `{"id":"a","prompts":["x"],"templates":["a photo of {}\u0085"]}`, "templates[0]: control character U+0085"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Parse([]byte(tc.json), cams)
			if err == nil {
				t.Fatalf("accepted: %+v", r)
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	// Invalid UTF-8 cannot come through JSON (the decoder replaces it),
	// but it can through YAML and Go.
	for _, r := range []*Rule{
		{ID: "a", Name: "bad \xff name", Prompts: []string{"x"}},
		{ID: "a", Prompts: []string{"bad \xc3 prompt"}},
	} {
		r.Defaults()
		if err := r.Validate(nil); err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
			t.Errorf("%q %q: %v", r.Name, r.Prompts, err)
		}
	}
	// Letters of every script, emoji and their joiners stay welcome.
	ok := &Rule{ID: "a", Name: "Chat noir 🐈‍⬛", Prompts: []string{"un chat noir sur le canapé", "قطة سوداء", "黒い猫"}}
	ok.Defaults()
	if err := ok.Validate(nil); err != nil {
		t.Errorf("valid text refused: %v", err)
	}
	// Every problem at once.
	_, err := Parse([]byte(`{"id":"A B","prompts":[""],"threshold":2,"kind":"x"}`), nil)
	for _, want := range []string{"id:", "prompts[0]:", "threshold:", "kind:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("joined error lacks %q: %v", want, err)
		}
	}
	if _, err := Parse(make([]byte, MaxRuleJSONSize+1), nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("oversize rule: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"id":"package","prompts":["a package on the porch"],"negatives":["an empty porch"]}`))
	f.Add([]byte(`{"id":"garage","prompts":["the garage door is open"],"kind":"state","cooldown":"5s"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data, nil)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		// What parses is valid, and survives a round trip unchanged.
		if err := r.Validate(nil); err != nil {
			t.Fatalf("parsed rule is invalid: %v", err)
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(b, nil)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		b2, _ := json.Marshal(again)
		if string(b) != string(b2) {
			t.Fatalf("round trip changed the rule:\n%s\n%s", b, b2)
		}
	})
}
