package mqtt

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/store"
)

func TestMessages(t *testing.T) {
	det := detection("package", "porch", time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	door := &rules.Rule{ID: "door", Prompts: []string{"an open garage door"}, Kind: rules.State}
	door.Defaults()
	jpg := testJPEG(t)
	for _, tc := range []struct {
		name     string
		make     func() (store.Message, error)
		topic    string
		retained bool
		payload  string // exact, or "" to skip
	}{
		{"event", func() (store.Message, error) { return EventMessage("dev", det, "") }, "sightd/dev/events", false, ""},
		{"state on", func() (store.Message, error) { return StateMessage("dev", "door", true) }, "sightd/dev/rule/door/state", true, "ON"},
		{"state off", func() (store.Message, error) { return StateMessage("dev", "door", false) }, "sightd/dev/rule/door/state", true, "OFF"},
		{"attributes", func() (store.Message, error) { return AttributesMessage("dev", door, nil) }, "sightd/dev/rule/door/attributes", true,
			`{"name":"an open garage door","kind":"state","prompts":["an open garage door"],"threshold":0.6,"enabled":true}`},
		{"snapshot", func() (store.Message, error) { return SnapshotMessage("dev", "porch", jpg) }, "sightd/dev/camera/porch/snapshot", true, string(jpg)},
		{"camera online", func() (store.Message, error) { return CameraStatusMessage("dev", "porch", true) }, "sightd/dev/camera/porch/status", true, "online"},
		{"camera offline", func() (store.Message, error) { return CameraStatusMessage("dev", "porch", false) }, "sightd/dev/camera/porch/status", true, "offline"},
		{"model idle", func() (store.Message, error) {
			return ModelStateMessage("dev", ModelState{Title: "sightd-demo", Installed: 3})
		},
			"sightd/dev/model/state", true, `{"installed_version":"3","latest_version":"3","title":"sightd-demo","in_progress":false,"update_percentage":null}`},
		{"model updating", func() (store.Message, error) {
			return ModelStateMessage("dev", ModelState{Installed: 3, Latest: 4, InProgress: true, Progress: 40})
		}, "sightd/dev/model/state", true, `{"installed_version":"3","latest_version":"4","in_progress":true,"update_percentage":40}`},
		{"store low", func() (store.Message, error) {
			return StoreStateMessage("dev", StoreState{Space: "low", FreeBytes: 5 << 20, ReserveBytes: 64 << 20, ShedSnapshots: 3, Reason: "disk space low"})
		}, "sightd/dev/store/state", true, `{"space":"low","free_bytes":5242880,"reserve_bytes":67108864,"shed_snapshots":3,"shed_detections":0,"refused_writes":0,"reason":"disk space low"}`},
		{"model update failed", func() (store.Message, error) {
			return ModelEventMessage("dev", ModelEvent{Kind: "failed", Version: 4, Step: "verify", Reason: "bad signature",
				Time: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)})
		}, "sightd/dev/model/event", false, `{"kind":"failed","version":4,"step":"verify","reason":"bad signature","time":"2026-05-01T12:00:00Z"}`},
	} {
		m, err := tc.make()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if m.Sheddable != (tc.name == "snapshot") {
			t.Errorf("%s: sheddable %v: only snapshots are", tc.name, m.Sheddable)
		}
		if m.Topic != tc.topic || m.Retained != tc.retained || m.QoS != 1 || tc.payload != "" && string(m.Payload) != tc.payload {
			t.Errorf("%s: %s retained=%v qos=%d %.200q", tc.name, m.Topic, m.Retained, m.QoS, m.Payload)
		}
	}
}

func TestMessagesRefuse(t *testing.T) {
	det := detection("package", "porch", time.Now())
	for name, f := range map[string]func() error{
		"device with a slash":   func() error { _, err := StateMessage("a/b", "door", true); return err },
		"rule with a wildcard":  func() error { _, err := StateMessage("dev", "#", true); return err },
		"camera with a plus":    func() error { _, err := CameraStatusMessage("dev", "a+", true); return err },
		"snapshot not JPEG":     func() error { _, err := SnapshotMessage("dev", "porch", []byte("\x89PNG")); return err },
		"detection without id":  func() error { d := det; d.ID = ""; _, err := EventMessage("dev", d, ""); return err },
		"detection with NaN":    func() error { d := det; d.Raw = math.NaN(); _, err := EventMessage("dev", d, ""); return err },
		"progress out of range": func() error { _, err := ModelStateMessage("dev", ModelState{Progress: 101}); return err },
		"unknown model event":   func() error { _, err := ModelEventMessage("dev", ModelEvent{Kind: "exploded"}); return err },
		"unknown store space":   func() error { _, err := StoreStateMessage("dev", StoreState{Space: "meh"}); return err },
	} {
		if f() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestEventPayload(t *testing.T) {
	det := detection("package", "porch", time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	m, err := EventMessage("dev", det, det.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m.QoS != 1 || m.Retained {
		t.Errorf("QoS %d retained %v", m.QoS, m.Retained)
	}
	var got map[string]any
	if err := json.Unmarshal(m.Payload, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"type": "event", "event_type": "package", "id": det.ID, "snapshot": det.ID, "rule": "package", "name": "package", "kind": "event",
		"camera": "porch", "time": "2026-05-01T12:00:00Z", "raw": 0.31, "calibrated": 0.93, "margin": 0.07, "z": 2.5,
		"region": map[string]any{"x": 10.0, "y": 20.0, "w": 100.0, "h": 120.0, "kind": "motion"}, "model_version": 3.0}
	if !jsonEqual(got, want) {
		t.Errorf("event\n got %s\nwant %v", m.Payload, want)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// A state rule's event: new, update and end share the id; only end has
// an end time; none has an event_type (Home Assistant's event entity
// ignores them).
func TestLifecyclePayload(t *testing.T) {
	on := detection("door", "garage", time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	on.Kind, on.State = rules.State, "ON"
	off := on
	off.ID, off.State, off.Time = "0000019b0000000000000000000000ff", "OFF", on.Time.Add(90*time.Second)
	end := off.Time
	m, err := LifecycleMessage("dev", Lifecycle{Type: LifecycleEnd, ID: on.ID, Rule: "door", Name: "door", Camera: "garage",
		StartTime: on.Time, EndTime: &end, Duration: 90, Before: &on, After: off, Snapshot: on.ID})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(m.Payload, &got); err != nil {
		t.Fatal(err)
	}
	if got["type"] != "end" || got["id"] != on.ID || got["duration"] != 90.0 || got["end_time"] != "2026-05-01T12:01:30Z" ||
		got["snapshot"] != on.ID || got["before"].(map[string]any)["state"] != "ON" || got["after"].(map[string]any)["state"] != "OFF" {
		t.Errorf("end: %s", m.Payload)
	}
	if _, ok := got["event_type"]; ok || m.Topic != "sightd/dev/events" || m.Retained || m.QoS != 1 {
		t.Errorf("end: %s on %s", m.Payload, m.Topic)
	}
	m, _ = LifecycleMessage("dev", Lifecycle{Type: LifecycleNew, ID: on.ID, Rule: "door", StartTime: on.Time, After: on})
	if !strings.Contains(string(m.Payload), `"before":null`) || !strings.Contains(string(m.Payload), `"end_time":null`) {
		t.Errorf("new: %s", m.Payload)
	}
	for _, bad := range []Lifecycle{{Type: "start", ID: "x", Rule: "door"}, {Type: LifecycleNew, Rule: "door"}, {Type: LifecycleNew, ID: "x", Rule: "Door"}} {
		if _, err := LifecycleMessage("dev", bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}
