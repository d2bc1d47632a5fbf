package mqtt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/quant/modelgen/demo/demotest"
	"github.com/sightd/sightd/store"
)

var testCameras = map[string]bool{"porch": true, "garage": true}

func TestParseCommand(t *testing.T) {
	tp := NewTopics("test")
	for _, tc := range []struct {
		name, topic, payload string
		want                 command // kind and fields; rule checked by id
		err                  string  // substring; "" for success
	}{
		{"rule set", tp.RuleSet(), `{"request_id":"r1","rule":{"id":"pkg","prompts":["a package"]}}`, command{kind: cmdRuleSet, requestID: "r1"}, ""},
		{"rule delete", tp.RuleDelete(), `{"id":"pkg"}`, command{kind: cmdRuleDelete, ruleID: "pkg"}, ""},
		{"install from Home Assistant", tp.ModelInstall(), `install`, command{kind: cmdModelInstall}, ""},
		{"install a version", tp.ModelInstall(), `{"version":7,"request_id":"x"}`, command{kind: cmdModelInstall, version: 7, requestID: "x"}, ""},
		{"install from a url", tp.ModelInstall(), `{"version":8,"url":"https://updates.example/m/v8.tar"}`, command{kind: cmdModelInstall, version: 8, url: "https://updates.example/m/v8.tar"}, ""},
		{"snapshot, bare", tp.SnapshotRequest("porch"), ``, command{kind: cmdSnapshot, camera: "porch"}, ""},
		{"snapshot, with id", tp.SnapshotRequest("porch"), `{"request_id":"s"}`, command{kind: cmdSnapshot, camera: "porch", requestID: "s"}, ""},

		{"not JSON", tp.RuleSet(), `rule please`, command{kind: cmdRuleSet}, "want a JSON object"},
		{"JSON array", tp.RuleDelete(), `["pkg"]`, command{kind: cmdRuleDelete}, "want a JSON object"},
		{"trailing data", tp.RuleDelete(), `{"id":"a"} {"id":"b"}`, command{kind: cmdRuleDelete}, "data after"},
		{"unknown field", tp.RuleDelete(), `{"id":"pkg","force":true}`, command{kind: cmdRuleDelete}, `unknown field "force"`},
		{"unknown field keeps the request id", tp.RuleDelete(), `{"request_id":"u1","id":"pkg","force":true}`, command{kind: cmdRuleDelete, requestID: "u1"}, `unknown field "force"`},
		{"unknown field after the request id", tp.ModelInstall(), `{"version":7,"cancle":true,"request_id":"u2"}`, command{kind: cmdModelInstall, requestID: "u2"}, `unknown field "cancle"`},
		{"invalid rule keeps the request id", tp.RuleSet(), `{"request_id":"u3","rule":{"id":"a","prompts":["x"],"colour":"red"}}`, command{kind: cmdRuleSet, requestID: "u3"}, `unknown field "colour"`},
		{"wrong type", tp.RuleDelete(), `{"id":5}`, command{kind: cmdRuleDelete}, "cannot unmarshal number"},
		{"request id wrong type", tp.RuleDelete(), `{"id":"a","request_id":7}`, command{kind: cmdRuleDelete}, "cannot unmarshal"},
		{"missing id", tp.RuleDelete(), `{"request_id":"r"}`, command{kind: cmdRuleDelete, requestID: "r"}, `missing "id"`},
		{"id with a wildcard", tp.RuleDelete(), `{"id":"a/#"}`, command{kind: cmdRuleDelete}, "not a rule id"},
		{"field of another command", tp.RuleDelete(), `{"id":"a","rule":{}}`, command{kind: cmdRuleDelete}, `"rule" does not belong`},
		{"missing rule", tp.RuleSet(), `{"request_id":"r"}`, command{kind: cmdRuleSet, requestID: "r"}, `missing "rule"`},
		{"invalid rule", tp.RuleSet(), `{"rule":{"id":"a","prompts":[""]}}`, command{kind: cmdRuleSet}, "prompts[0]: empty"},
		{"rule with an escape sequence", tp.RuleSet(), `{"request_id":"c1","rule":{"id":"a","prompts":["x\u001b[2J"]}}`, command{kind: cmdRuleSet, requestID: "c1"}, "prompts[0]: control character U+001B"},
		{"rule with an RTL override", tp.RuleSet(), `{"rule":{"id":"a","name":"\u202eNEPO","prompts":["x"]}}`, command{kind: cmdRuleSet}, "name: control character U+202E"},
		{"rule with unknown field", tp.RuleSet(), `{"rule":{"id":"a","prompts":["x"],"colour":"red"}}`, command{kind: cmdRuleSet}, `unknown field "colour"`},
		{"rule on an unknown camera", tp.RuleSet(), `{"rule":{"id":"a","prompts":["x"],"cameras":["attic"]}}`, command{kind: cmdRuleSet}, "attic"},
		{"rule threshold wrong type", tp.RuleSet(), `{"rule":{"id":"a","prompts":["x"],"threshold":"high"}}`, command{kind: cmdRuleSet}, "cannot unmarshal"},
		{"oversized", tp.RuleSet(), `{"rule":` + strings.Repeat(" ", 1<<20) + `{}}`, command{kind: cmdRuleSet}, "above the limit"},
		{"cancel", tp.ModelInstall(), `{"cancel":true,"request_id":"c"}`, command{kind: cmdModelInstall, requestID: "c"}, ""},
		{"cancel with a version", tp.ModelInstall(), `{"cancel":true,"version":7}`, command{kind: cmdModelInstall}, "cancel takes no version"},
		{"cancel on a rule", tp.RuleDelete(), `{"id":"a","cancel":true}`, command{kind: cmdRuleDelete}, `field "cancel" does not belong`},
		{"negative version", tp.ModelInstall(), `{"version":-1}`, command{kind: cmdModelInstall}, "version -1"},
		{"file url", tp.ModelInstall(), `{"url":"file:///etc/passwd"}`, command{kind: cmdModelInstall}, "want an http(s) URL"},
		{"url on a rule", tp.RuleDelete(), `{"id":"a","url":"http://x/"}`, command{kind: cmdRuleDelete}, `field "url" does not belong`},
		{"unknown camera", tp.SnapshotRequest("attic"), ``, command{kind: cmdSnapshot, camera: "attic"}, `unknown camera "attic"`},
		{"rule switch off", tp.RuleEnabledSet("pkg"), `OFF`, command{kind: cmdRuleEnabled, ruleID: "pkg"}, ""},
		{"rule switch on, newline", tp.RuleEnabledSet("pkg"), "ON\n", command{kind: cmdRuleEnabled, ruleID: "pkg"}, ""},
		{"camera switch", tp.CameraDetectionSet("porch"), `OFF`, command{kind: cmdCameraDetection, camera: "porch"}, ""},
		{"switch, lower case", tp.RuleEnabledSet("pkg"), `off`, command{kind: cmdRuleEnabled}, "want ON or OFF"},
		{"switch, JSON", tp.CameraDetectionSet("porch"), `{"state":"ON"}`, command{kind: cmdCameraDetection}, "want ON or OFF"},
		{"switch, empty", tp.CameraDetectionSet("porch"), ``, command{kind: cmdCameraDetection}, "want ON or OFF"},
		{"switch, long", tp.CameraDetectionSet("porch"), strings.Repeat("ON", 1000), command{kind: cmdCameraDetection}, `"ONONONONONONONON..."`},
		{"switch of an unknown camera", tp.CameraDetectionSet("attic"), `ON`, command{kind: cmdCameraDetection, camera: "attic"}, `unknown camera "attic"`},
		{"switch of a bad rule id", tp.RuleEnabledSet("A+B"), `ON`, command{kind: cmdRuleEnabled}, "is not an id"},
		{"long request id", tp.ModelInstall(), `{"request_id":"` + strings.Repeat("x", 200) + `"}`, command{kind: cmdModelInstall}, "request_id longer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, ok, err := parseCommand(tp, tc.topic, []byte(tc.payload), 64<<10, testCameras)
			if !ok {
				t.Fatal("not recognised as a command")
			}
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
			if cmd.kind != tc.want.kind || cmd.requestID != tc.want.requestID || cmd.ruleID != tc.want.ruleID ||
				cmd.version != tc.want.version || cmd.url != tc.want.url || cmd.camera != tc.want.camera || cmd.topic != tc.topic {
				t.Errorf("got %+v", cmd)
			}
			if cmd.kind == cmdRuleSet && err == nil && (cmd.rule == nil || cmd.rule.ID != "pkg" || cmd.rule.Threshold == 0) {
				t.Errorf("rule %+v (defaults not filled?)", cmd.rule)
			}
		})
	}
	for _, topic := range []string{"sightd/test/rule/set/reply", Reply(tp.RuleEnabledSet("pkg")), Reply(tp.CameraDetectionSet("porch")),
		tp.RuleEnabled("pkg"), "sightd/test/rule/a/b/enabled/set", "sightd/test/rule//enabled/set"} {
		if cmd, ok, err := parseCommand(tp, topic, []byte("ON"), 64<<10, testCameras); ok && err == nil {
			t.Errorf("%s read as command %+v", topic, cmd)
		}
	}
	if cmd, _, _ := parseCommand(tp, tp.RuleEnabledSet("pkg"), []byte("ON"), 64<<10, testCameras); !cmd.on {
		t.Error("ON read as off")
	}
}

// FuzzParseCommand: no payload on any command topic panics, and whatever
// parses is valid (a rule that passes validation, ids fit for topics).
func FuzzParseCommand(f *testing.F) {
	tp := NewTopics("test")
	f.Add(tp.RuleSet(), []byte(`{"request_id":"r1","rule":{"id":"pkg","prompts":["a package on the porch"],"kind":"state"}}`))
	f.Add(tp.RuleDelete(), []byte(`{"id":"pkg"}`))
	f.Add(tp.ModelInstall(), []byte(`install`))
	f.Add(tp.SnapshotRequest("porch"), []byte(``))
	f.Add(tp.RuleEnabledSet("pkg"), []byte(`OFF`))
	f.Add(tp.CameraDetectionSet("porch"), []byte(`ON`))
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		cmd, ok, err := parseCommand(tp, topic, payload, 64<<10, testCameras)
		if len(cmd.requestID) > maxRequestID || !utf8.ValidString(cmd.requestID) && err == nil {
			t.Fatalf("request id %q", cmd.requestID)
		}
		if !ok || err != nil {
			return
		}
		switch cmd.kind {
		case cmdRuleSet:
			if err := cmd.rule.Validate(testCameras); err != nil || !idRE.MatchString(cmd.rule.ID) {
				t.Fatalf("accepted an invalid rule: %v", err)
			}
		case cmdRuleDelete:
			if !idRE.MatchString(cmd.ruleID) {
				t.Fatalf("accepted rule id %q", cmd.ruleID)
			}
		case cmdSnapshot:
			if !testCameras[cmd.camera] {
				t.Fatalf("accepted camera %q", cmd.camera)
			}
		case cmdModelInstall:
			if cmd.version < 0 {
				t.Fatalf("accepted version %d", cmd.version)
			}
		case cmdRuleEnabled, cmdCameraDetection:
			if p := string(bytes.TrimSpace(payload)); p != On && p != Off || cmd.on != (p == On) {
				t.Fatalf("switch accepted %q as %v", payload, cmd.on)
			}
			if cmd.kind == cmdRuleEnabled && !idRE.MatchString(cmd.ruleID) || cmd.kind == cmdCameraDetection && !testCameras[cmd.camera] {
				t.Fatalf("switch of %q %q", cmd.ruleID, cmd.camera)
			}
		default:
			t.Fatalf("kind %d", cmd.kind)
		}
		if len(cmd.requestID) > maxRequestID {
			t.Fatalf("request id of %d bytes", len(cmd.requestID))
		}
	})
}

// demoManager is a real rules.Manager over a real store with the demo
// bundle's text tower.
func demoManager(t *testing.T, st *store.Store) *rules.Manager {
	t.Helper()
	towers := demotest.Towers(t)
	text := demotest.Text(t, towers)
	m, err := rules.NewManager(st, rules.Model{Version: 1, LogitScale: towers.Manifest().LogitScale, Text: text}, testCameras)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type fakeSnapshots struct{ jpeg []byte }

func (f fakeSnapshots) Snapshot(_ context.Context, camera string) ([]byte, error) {
	if camera == "garage" {
		return nil, errors.New("camera unavailable")
	}
	return f.jpeg, nil
}

// commander sends commands and reads their replies.
type commander struct {
	t      *testing.T
	broker string
	s      *sub
	n      int
}

func (c *commander) send(topic, payload string) reply {
	c.t.Helper()
	c.n++
	before := countTopic(c.s, Reply(topic))
	publish(c.t, c.broker, topic, []byte(payload), false)
	c.s.waitFor(c.t, "reply on "+Reply(topic), func() bool { return countTopic(c.s, Reply(topic)) > before })
	r, _ := c.s.get(Reply(topic))
	var rep reply
	if err := decodeStrict(r.payload, &rep); err != nil {
		c.t.Fatalf("reply %q: %v", r.payload, err)
	}
	return rep
}

func countTopic(s *sub, topic string) int {
	n := 0
	for _, r := range s.all() {
		if r.topic == topic {
			n++
		}
	}
	return n
}

func TestCommands(t *testing.T) {
	ctx := context.Background()
	m := startMosquitto(t, mosqOptions{})
	st := openStore(t, nil)
	mgr := demoManager(t, st)
	if err := mgr.Put(ctx, &rules.Rule{ID: "door", Prompts: []string{"an open garage door"}, Kind: rules.State}); err != nil {
		t.Fatal(err)
	}
	s := subscribe(t, m.url(), subOptions{}, "sightd/test/#", "homeassistant/#")
	jpg := testJPEG(t)
	c := runClient(t, testConfig(m.url()), Options{Outbox: st, Rules: mgr, Cameras: []string{"porch", "garage"}, Snapshots: fakeSnapshots{jpg}})
	s.waitFor(t, "discovery", func() bool { _, ok := s.configs()[cfgDoor]; return ok })
	cmd := &commander{t: t, broker: m.url(), s: s}
	tp := NewTopics("test")

	listRules := func() string {
		rs, err := mgr.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(rs)
		return string(b)
	}
	before := listRules()
	for _, tc := range []struct{ name, topic, payload, err string }{
		{"not JSON", tp.RuleSet(), `{"rule": nope`, "invalid command"},
		{"1 MB", tp.RuleSet(), `{"rule":{"id":"big","prompts":["` + strings.Repeat("a", 1<<20) + `"]}}`, "above the limit"},
		{"unknown field", tp.RuleSet(), `{"rule":{"id":"x","prompts":["x"]},"priority":1}`, `unknown field "priority"`},
		{"unknown field in the rule", tp.RuleSet(), `{"rule":{"id":"x","prompts":["x"],"colour":"red"}}`, `unknown field "colour"`},
		{"wrong type", tp.RuleSet(), `{"rule":{"id":"x","prompts":"x"}}`, "cannot unmarshal"},
		{"invalid rule", tp.RuleSet(), `{"request_id":"bad1","rule":{"id":"x","prompts":["x"],"threshold":3}}`, "threshold"},
		{"replacing with an invalid rule", tp.RuleSet(), `{"rule":{"id":"door","prompts":[]}}`, "prompts"},
		{"unknown rule for delete", tp.RuleDelete(), `{"id":"nope"}`, `no rule "nope"`},
		{"delete, wrong type", tp.RuleDelete(), `{"id":["door"]}`, "cannot unmarshal"},
		{"install without OTA", tp.ModelInstall(), `install`, "not available"},
		{"snapshot of an unknown camera", tp.SnapshotRequest("attic"), ``, `unknown camera "attic"`},
		{"snapshot of a camera that fails", tp.SnapshotRequest("garage"), ``, "camera unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := cmd.send(tc.topic, tc.payload)
			if rep.OK || !strings.Contains(rep.Error, tc.err) {
				t.Errorf("reply %+v, want an error with %q", rep, tc.err)
			}
			if after := listRules(); after != before {
				t.Errorf("rules changed:\n%s\n%s", before, after)
			}
		})
	}
	// The refused install shows where Home Assistant's update entity looks.
	s.waitFor(t, "the refusal on model/event", func() bool {
		r, _ := s.get(tp.ModelEvent())
		return strings.Contains(string(r.payload), `"kind":"refused","reason":"model install: not available`)
	})
	if rep := cmd.send(tp.RuleSet(), `{"request_id":"bad1","rule":{"id":"x","prompts":["x"],"threshold":3}}`); rep.RequestID != "bad1" {
		t.Errorf("request id not echoed on an error: %+v", rep)
	}
	if rep := cmd.send(tp.RuleDelete(), `{"request_id":"bad2","id":"door","force":true}`); rep.OK || rep.RequestID != "bad2" || !strings.Contains(rep.Error, `unknown field "force"`) {
		t.Errorf("request id not echoed for an unknown field: %+v", rep)
	}

	// Good commands change the rules and Home Assistant's entities.
	rep := cmd.send(tp.RuleSet(), `{"request_id":"r1","rule":{"id":"gate","name":"Gate open","prompts":["an open gate"],"kind":"state","cameras":["porch"]}}`)
	if !rep.OK || rep.RequestID != "r1" || rep.Rule != "gate" {
		t.Fatalf("rule/set: %+v", rep)
	}
	if r, err := mgr.Get(ctx, "gate"); err != nil || r.Name != "Gate open" || r.Kind != rules.State {
		t.Fatalf("saved rule: %+v %v", r, err)
	}
	gateCfg := "homeassistant/binary_sensor/sightd_test/rule_gate/config"
	s.waitFor(t, "the new rule's entity", func() bool { _, ok := s.configs()[gateCfg]; return ok })
	s.waitFor(t, "its attributes", func() bool { _, ok := s.get(tp.RuleAttributes("gate")); return ok })

	if rep := cmd.send(tp.RuleDelete(), `{"id":"door","request_id":"r2"}`); !rep.OK || rep.RequestID != "r2" {
		t.Fatalf("rule/delete: %+v", rep)
	}
	if _, err := mgr.Get(ctx, "door"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted rule: %v", err)
	}
	s.waitFor(t, "the deleted rule's entity removed", func() bool { r, ok := s.get(cfgDoor); return ok && len(r.payload) == 0 })

	// Switches: Home Assistant's ON and OFF; anything else changes nothing.
	sw := &fakeSwitches{rs: newFakeRules()}
	c.stop()
	c = runClient(t, testConfig(m.url()), Options{Outbox: st, Rules: mgr, Cameras: []string{"porch", "garage"},
		Snapshots: fakeSnapshots{jpg}, Switches: mgrSwitches{mgr, sw}})
	s.waitFor(t, "the camera switch", func() bool { r, _ := s.get(tp.CameraDetection("porch")); return string(r.payload) == On })
	for _, bad := range []string{"off", "1", `{"state":"OFF"}`, ""} {
		if rep := cmd.send(tp.CameraDetectionSet("porch"), bad); rep.OK || !strings.Contains(rep.Error, "want ON or OFF") {
			t.Errorf("%q: %+v", bad, rep)
		}
		if rep := cmd.send(tp.RuleEnabledSet("gate"), bad); rep.OK || !strings.Contains(rep.Error, "want ON or OFF") {
			t.Errorf("%q: %+v", bad, rep)
		}
	}
	if !sw.Detection("porch") || listRules() == "" {
		t.Fatal("a malformed switch command changed something")
	}
	if r, _ := mgr.Get(ctx, "gate"); !r.IsEnabled() {
		t.Fatal("a malformed switch command disabled the rule")
	}
	if rep := cmd.send(tp.CameraDetectionSet("porch"), "OFF"); !rep.OK || rep.State != Off || rep.Camera != "porch" {
		t.Fatalf("camera switch: %+v", rep)
	}
	s.waitFor(t, "the camera switch off", func() bool { r, _ := s.get(tp.CameraDetection("porch")); return string(r.payload) == Off })
	if sw.Detection("porch") {
		t.Error("detection still on")
	}
	if rep := cmd.send(tp.RuleEnabledSet("nope"), "OFF"); rep.OK || !strings.Contains(rep.Error, `no rule "nope"`) {
		t.Errorf("switch of a missing rule: %+v", rep)
	}
	if rep := cmd.send(tp.RuleEnabledSet("gate"), "OFF"); !rep.OK || rep.State != Off || rep.Rule != "gate" {
		t.Fatalf("rule switch: %+v", rep)
	}
	if r, _ := mgr.Get(ctx, "gate"); r.IsEnabled() {
		t.Error("the rule is still enabled")
	}
	s.waitFor(t, "the rule switch off, its state off", func() bool {
		e, _ := s.get(tp.RuleEnabled("gate"))
		st, _ := s.get(tp.RuleState("gate"))
		return string(e.payload) == Off && string(st.payload) == Off
	})
	if rep := cmd.send(tp.RuleEnabledSet("gate"), "ON"); !rep.OK || rep.State != On {
		t.Fatalf("rule switch: %+v", rep)
	}
	s.waitFor(t, "the rule switch on", func() bool { e, _ := s.get(tp.RuleEnabled("gate")); return string(e.payload) == On })

	if rep := cmd.send(tp.SnapshotRequest("porch"), `{"request_id":"s1"}`); !rep.OK || rep.Camera != "porch" || rep.Bytes != len(jpg) {
		t.Fatalf("snapshot: %+v", rep)
	}
	s.waitFor(t, "the snapshot", func() bool { r, ok := s.get(tp.Snapshot("porch")); return ok && reflect.DeepEqual(r.payload, jpg) })

	// A command published retained runs once, as sent; its retained copy,
	// replayed by the broker on every reconnect, is refused.
	rep = cmd.send(tp.RuleDelete(), `{"id":"gate"}`)
	if !rep.OK {
		t.Fatalf("rule/delete: %+v", rep)
	}
	publish(t, m.url(), tp.RuleSet(), []byte(`{"rule":{"id":"gate","prompts":["an open gate"]}}`), true)
	s.waitFor(t, "the retained rule/set to run", func() bool { _, err := mgr.Get(ctx, "gate"); return err == nil })
	if rep := cmd.send(tp.RuleDelete(), `{"id":"gate"}`); !rep.OK {
		t.Fatalf("rule/delete: %+v", rep)
	}
	c.stop()
	mark := len(s.all())
	c = runClient(t, testConfig(m.url()), Options{Outbox: st, Rules: mgr, Cameras: []string{"porch", "garage"}, Snapshots: fakeSnapshots{jpg}})
	s.waitFor(t, "the replay refused", func() bool {
		for _, r := range s.all()[mark:] {
			if r.topic == Reply(tp.RuleSet()) && strings.Contains(string(r.payload), "retained commands are refused") {
				return true
			}
		}
		return false
	})
	if _, err := mgr.Get(ctx, "gate"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the retained command ran again: %v", err)
	}
	publish(t, m.url(), tp.RuleSet(), nil, true) // clear it

	if h := c.Health(); !h.Connected {
		t.Errorf("health %+v", h)
	}
	t.Logf("%d commands", cmd.n)
}

func TestHandlersWithoutParts(t *testing.T) {
	h := handlers{device: "test", push: func(context.Context, store.Message) error { return nil }, changed: func(context.Context) {}}
	for _, cmd := range []command{
		{kind: cmdRuleSet, rule: &rules.Rule{ID: "a"}},
		{kind: cmdRuleDelete, ruleID: "a"},
		{kind: cmdModelInstall},
		{kind: cmdSnapshot, camera: "porch"},
	} {
		if rep := h.run(context.Background(), cmd); rep.OK || !strings.Contains(rep.Error, "not available") {
			t.Errorf("%d: %+v", cmd.kind, rep)
		}
	}
	h.installer = installerFunc(func(_ context.Context, url string, v int64) error {
		return fmt.Errorf("version %d from %q: no such bundle", v, url)
	})
	if rep := h.run(context.Background(), command{kind: cmdModelInstall, version: 9, url: "http://x/b.tar"}); rep.OK || rep.Error != `version 9 from "http://x/b.tar": no such bundle` || rep.Version != 9 {
		t.Errorf("installer error: %+v", rep)
	}
}

// mgrSwitches switches the rules of a real Manager and keeps the cameras' in memory.
type mgrSwitches struct {
	mgr *rules.Manager
	*fakeSwitches
}

func (m mgrSwitches) SetRuleEnabled(ctx context.Context, id string, on bool) error {
	r, err := m.mgr.Get(ctx, id)
	if err != nil {
		return err
	}
	r.Enabled = &on
	return m.mgr.Put(ctx, r)
}

type installerFunc func(context.Context, string, int64) error

func (f installerFunc) Install(ctx context.Context, url string, v int64) error { return f(ctx, url, v) }
func (f installerFunc) Cancel(context.Context) (int64, error) {
	return 0, errors.New("nothing to cancel")
}
