package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/sightd/sightd/daemon/config"
)

// A clean stop ends the events under way: the state rule's event that was
// open when sightd was asked to stop gets its end (on the events topic and
// in the store, for the HTTP API), and the rule's state goes OFF.
func TestCleanStopEndsEvents(t *testing.T) {
	dir := t.TempDir()
	broker := freePort(t)
	yml := fmt.Sprintf(`
device: {id: stop}
model: {bundle: %q, edgetpu: off}
cameras:
  - {name: street, source: %q, fast: true, loop: true}
rules:
  - {id: dark-clothes, prompts: ["something dark"], kind: state}
store: {dir: %q}
http: {listen: ""}
mqtt: {broker: "tcp://%s", embedded_broker: {listen: %q}}
`, demoBundle(t), opencvPhoto(t, "vtest.avi"), filepath.Join(dir, "db"), broker, broker)
	cfg, err := config.Parse([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runDaemon(ctx, cfg, zerolog.Nop(), controls{}) }()
	got := subscribe(t, broker, "sightd/stop/events", "sightd/stop/rule/+/state", "sightd/stop/status")
	type lifecycle struct{ Type, ID string }
	lifecycles := func() []lifecycle {
		var out []lifecycle
		for _, m := range got() {
			var l lifecycle
			if p, ok := strings.CutPrefix(m, "sightd/stop/events "); ok && json.Unmarshal([]byte(p), &l) == nil {
				out = append(out, l)
			}
		}
		return out
	}
	// Stop while an event is under way: its new seen, its end not yet.
	var open string
	waitUntil(t, "an event under way", func() bool {
		ended := map[string]bool{}
		open = ""
		for _, l := range lifecycles() {
			switch l.Type {
			case "new":
				open = l.ID
			case "end":
				ended[l.ID] = true
			}
		}
		if ended[open] {
			open = ""
		}
		return open != ""
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitMessage(t, got, "sightd/stop/status stopped")
	if !slices.Contains(lifecycles(), lifecycle{Type: "end", ID: open}) {
		t.Errorf("event %s was under way at the stop and got no end: %v", open, lifecycles())
	}
	var state string
	for _, m := range got() {
		if s, ok := strings.CutPrefix(m, "sightd/stop/rule/dark-clothes/state "); ok {
			state = s
		}
	}
	if state != "OFF" {
		t.Errorf("the rule's last state %q after a clean stop, want OFF", state)
	}
	st, _ := storedDetections(t, filepath.Join(dir, "db"))
	rec, err := st.Event(context.Background(), open)
	if err != nil || !strings.Contains(string(rec), `"type":"end"`) {
		t.Errorf("the store's record of event %s: %.200s %v, want its end", open, rec, err)
	}
}
