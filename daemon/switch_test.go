package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/sightd/sightd/camera"
	"github.com/sightd/sightd/daemon/config"
	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/quant/modelgen/demo/demotest"
	"github.com/sightd/sightd/store"
)

// Home Assistant's switches survive a restart: a rule of the configuration
// file switched off stays off (though the file, saved again at start, says
// nothing of it), one that the file disables and that was switched on stays
// on, and a camera's detection stays off. Every rule's image has
// a picture from the start: a placeholder while the rule never matched,
// then its snapshots; after the restart the last of them (kept in the
// store) again, never the placeholder over it.
func TestSwitchesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	broker := freePort(t)
	yml := fmt.Sprintf(`
device: {id: sw}
model: {bundle: %q, edgetpu: off}
cameras:
  - {name: street, source: %q, fast: true, loop: true}
rules:
  - {id: dark-clothes, prompts: ["something dark"], kind: state}
  - {id: purple, prompts: ["something purple"]}
  - {id: quiet, prompts: ["something green"], enabled: false}
store: {dir: %q}
http: {listen: ""}
mqtt: {broker: "tcp://%s", embedded_broker: {listen: %q}}
`, demoBundle(t), opencvPhoto(t, "vtest.avi"), filepath.Join(dir, "db"), broker, broker)
	// got: every message but snapshots; pics: every payload by topic, in
	// order, snapshots included (as they were when sightd stopped).
	run := func(during func(got func() []string, pics func() map[string][][]byte)) ([]string, map[string][][]byte) {
		t.Helper()
		cfg, err := config.Parse([]byte(yml))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- runDaemon(ctx, cfg, zerolog.Nop(), controls{}) }()
		got := subscribe(t, broker)
		pics := payloads(t, broker, "sightd/sw/#")
		waitMessage(t, got, "sightd/sw/status online")
		during(got, pics)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		waitMessage(t, got, "sightd/sw/status stopped")
		waitUntil(t, "stopped, seen by the second subscriber", func() bool {
			s := pics()["sightd/sw/status"]
			return len(s) > 0 && string(s[len(s)-1]) == "stopped"
		})
		return got(), pics()
	}
	send := func(topic, payload string) {
		pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("test-switch"))
		if tok := pub.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		pub.Publish(topic, 1, false, payload).Wait()
		pub.Disconnect(100)
	}
	placeholder := func(name string) []byte {
		b, err := camera.Placeholder(placeholderSize.X, placeholderSize.Y, name, "no detection yet")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	dark, purple := placeholder("something dark"), placeholder("something purple")
	const darkPic, purplePic = "sightd/sw/rule/dark-clothes/snapshot", "sightd/sw/rule/purple/snapshot"
	_, first := run(func(got func() []string, pics func() map[string][][]byte) {
		waitMessage(t, got, "sightd/sw/rule/purple/enabled ON")
		waitUntil(t, "the placeholders and a snapshot of dark-clothes", func() bool {
			p := pics()
			return len(p[purplePic]) > 0 && len(p[darkPic]) > 1
		})
		waitMessage(t, got, "sightd/sw/rule/quiet/enabled OFF")
		send("sightd/sw/rule/purple/enabled/set", "OFF")
		send("sightd/sw/camera/street/detection/set", "OFF")
		send("sightd/sw/rule/quiet/enabled/set", "ON")
		waitMessage(t, got, "sightd/sw/rule/purple/enabled OFF")
		waitMessage(t, got, "sightd/sw/camera/street/detection OFF")
		waitMessage(t, got, "sightd/sw/rule/quiet/enabled ON")
	})
	if p := first[darkPic]; len(p) == 0 || bytes.Equal(p[len(p)-1], dark) {
		t.Errorf("dark-clothes' pictures in the first run: %d, want its snapshots after its placeholder", len(p))
	}
	if p := first[purplePic]; len(p) != 1 || !bytes.Equal(p[0], purple) {
		t.Errorf("purple's pictures in the first run: %d, want its placeholder only", len(p))
	}
	// The newest snapshot of dark-clothes that the store keeps (read here,
	// not taken from the subscriber: a frame under way when the detection
	// was switched off may still have fired as sightd stopped).
	kept := newestSnapshot(t, filepath.Join(dir, "db"), "dark-clothes")
	msgs, second := run(func(got func() []string, pics func() map[string][][]byte) {
		// The first sync of the new run publishes every switch.
		waitMessage(t, got, "sightd/sw/rule/dark-clothes/enabled ON")
		waitMessage(t, got, "sightd/sw/rule/purple/enabled OFF")
		waitMessage(t, got, "sightd/sw/camera/street/detection OFF")
		// the file disables quiet; its switch, turned on since, holds
		waitMessage(t, got, "sightd/sw/rule/quiet/enabled ON")
		waitUntil(t, "both rules' pictures", func() bool {
			p := pics()
			return len(p[purplePic]) > 0 && len(p[darkPic]) > 0
		})
	})
	if slices.Contains(msgs, "sightd/sw/rule/purple/enabled ON") || slices.Contains(msgs, "sightd/sw/camera/street/detection ON") ||
		slices.Contains(msgs, "sightd/sw/rule/quiet/enabled OFF") {
		t.Errorf("a switch came back on after the restart: %q", msgs)
	}
	for _, m := range msgs {
		if strings.HasPrefix(m, "sightd/sw/rule/dark-clothes/state ON") {
			t.Errorf("a rule fired on a camera whose detection is off: %s", m)
		}
	}
	if p := second[darkPic]; len(p) != 1 || !bytes.Equal(p[0], kept) {
		t.Errorf("dark-clothes' pictures after the restart: %d, want one, its newest snapshot kept in the store", len(p))
	}
	if p := second[purplePic]; len(p) != 1 || !bytes.Equal(p[0], purple) {
		t.Errorf("purple's pictures after the restart: %d, want its placeholder only", len(p))
	}
}

// newestSnapshot is the snapshot that the store in dir keeps of rule's
// newest detection that matched and has one.
func newestSnapshot(t *testing.T, dir, rule string) []byte {
	t.Helper()
	st, dets := storedDetections(t, dir)
	defer st.Close() // now: the next run opens the store
	for _, det := range dets {
		if det.Rule != rule || det.State == "OFF" {
			continue
		}
		if jpeg, err := st.EventSnapshot(context.Background(), det.ID); err == nil {
			return jpeg
		}
	}
	t.Fatalf("no snapshot of %s kept", rule)
	return nil
}

// A rule switch against the configuration file: whichever changed last
// wins. The switch holds across restarts while the file says what it said
// when the switch was set (both ways: a file rule switched on, one switched
// off); once the file's enabled changed, the file's holds and the key goes.
// A bare "off" (written by an older sightd) keeps the rule off; a key that
// cannot be read leaves the file's value.
func TestRuleSwitchAgainstTheFile(t *testing.T) {
	ctx := context.Background()
	st, _ := storedDetections(t, t.TempDir())
	d := &daemon{st: st, log: zerolog.Nop()}
	rule := func(id string, enabled *bool) *rules.Rule {
		r := &rules.Rule{ID: id, Prompts: []string{"x"}, Enabled: enabled}
		r.Defaults()
		return r
	}
	on, off := true, false
	// start: the file as given; returns each rule as it runs.
	start := func(file ...*rules.Rule) map[string]bool {
		d.fileEnabled = map[string]bool{}
		got := map[string]bool{}
		for _, r := range file {
			d.fileEnabled[r.ID] = r.IsEnabled()
			d.applyRuleSwitch(ctx, r)
			got[r.ID] = r.IsEnabled()
		}
		return got
	}
	key := func(id string) string {
		v, err := st.Meta(ctx, ruleSwitchKey(id))
		if err != nil {
			return "(none)"
		}
		return string(v)
	}
	check := func(when string, got map[string]bool, want map[string]bool) {
		t.Helper()
		for id, w := range want {
			if got[id] != w {
				t.Errorf("%s: rule %s enabled=%v, want %v (key %q)", when, id, got[id], w, key(id))
			}
		}
	}
	check("first start", start(rule("quiet", &off), rule("busy", nil)), map[string]bool{"quiet": false, "busy": true})
	for id, v := range map[string]bool{"quiet": true, "busy": false} {
		if err := d.putRuleSwitch(ctx, id, v); err != nil {
			t.Fatal(err)
		}
	}
	if key("quiet") != "on file=off" || key("busy") != "off file=on" {
		t.Fatalf("keys %q %q", key("quiet"), key("busy"))
	}
	for i := range 2 {
		check(fmt.Sprintf("restart %d, the file unchanged", i+1), start(rule("quiet", &off), rule("busy", nil)),
			map[string]bool{"quiet": true, "busy": false})
	}
	// The file now enables quiet explicitly (as the switch did) and
	// disables busy (as the switch did): edited, so the file holds.
	check("the file edited", start(rule("quiet", &on), rule("busy", &off)), map[string]bool{"quiet": true, "busy": false})
	if key("quiet") != "(none)" || key("busy") != "(none)" {
		t.Errorf("keys after the file changed: %q %q, want none", key("quiet"), key("busy"))
	}
	// ... and the next file edit is followed, with no switch in the way.
	check("edited again", start(rule("quiet", &off), rule("busy", &on)), map[string]bool{"quiet": false, "busy": true})
	// A switch set back to what the file says leaves no key.
	if err := d.putRuleSwitch(ctx, "busy", false); err != nil {
		t.Fatal(err)
	}
	if err := d.putRuleSwitch(ctx, "busy", true); err != nil {
		t.Fatal(err)
	}
	if key("busy") != "(none)" {
		t.Errorf("busy switched off and on again: key %q, want none", key("busy"))
	}
	// An older sightd's bare "off", and a key that cannot be read.
	if err := st.PutMeta(ctx, ruleSwitchKey("old"), []byte("off")); err != nil {
		t.Fatal(err)
	}
	if err := st.PutMeta(ctx, ruleSwitchKey("odd"), []byte("maybe")); err != nil {
		t.Fatal(err)
	}
	check("old keys", start(rule("old", nil), rule("odd", &off)), map[string]bool{"old": false, "odd": false})
	// A rule added at run time (not in the file) keeps the bare key.
	d.fileEnabled = map[string]bool{}
	if err := d.putRuleSwitch(ctx, "api-rule", false); err != nil {
		t.Fatal(err)
	}
	if key("api-rule") != "off" {
		t.Errorf("a run-time rule's key %q, want off", key("api-rule"))
	}
}

// FuzzParseRuleSwitch: a rule switch's key from the store either reads as a
// switch (and writes back the same bytes) or is refused with an error;
// never a panic. Seeds in testdata/fuzz/FuzzParseRuleSwitch.
func FuzzParseRuleSwitch(f *testing.F) {
	for _, s := range []string{"on", "off", "on file=off", "off file=on", "off file=off", "maybe", "on file=", "", "ON", "off file=on "} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		on, file, err := parseRuleSwitch(v)
		if err != nil {
			if !strings.Contains(err.Error(), "switch value") {
				t.Fatalf("%q: error %v does not say what it read", v, err)
			}
			return
		}
		back := onOff(on)
		if file != "" {
			back += " file=" + file
		}
		if back != string(v) {
			t.Fatalf("%q read as on=%v file=%q, which writes %q", v, on, file, back)
		}
	})
}

// A deleted rule's switch is forgotten: the rule added again under the same
// id starts as it says, not as the old rule was switched.
func TestDeletedRuleForgetsItsSwitch(t *testing.T) {
	ctx := context.Background()
	st, _ := storedDetections(t, t.TempDir())
	mgr, err := rules.NewManager(st, rules.Model{Version: 1, LogitScale: 100, Text: demotest.Text(t, demotest.Towers(t))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{st: st, log: zerolog.Nop(), mgr: mgr, fileEnabled: map[string]bool{"quiet": false}}
	quiet := func() *rules.Rule {
		off := false
		r := &rules.Rule{ID: "quiet", Prompts: []string{"something green"}, Enabled: &off}
		r.Defaults()
		return r
	}
	if err := mgr.Put(ctx, quiet()); err != nil {
		t.Fatal(err)
	}
	if err := d.putRuleSwitch(ctx, "quiet", true); err != nil {
		t.Fatal(err)
	}
	if v, err := st.Meta(ctx, ruleSwitchKey("quiet")); err != nil || string(v) != "on file=off" {
		t.Fatalf("the switch's key: %q %v", v, err)
	}
	if err := (lockedRules{d}).Delete(ctx, "quiet"); err != nil {
		t.Fatal(err)
	}
	if v, err := st.Meta(ctx, ruleSwitchKey("quiet")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after the rule's deletion its switch's key is %q (%v), want none", v, err)
	}
	again := quiet()
	d.applyRuleSwitch(ctx, again)
	if again.IsEnabled() {
		t.Error("the rule added again is enabled by the deleted rule's switch")
	}
}
