package main

import (
	"slices"
	"testing"
	"time"

	"github.com/sightd/sightd/daemon/mqtt"
	"github.com/sightd/sightd/daemon/pipeline"
	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/store"
)

// A state rule's event on one camera: new, update, end under one id, the
// best snapshot carried along; another camera's event is its own; a camera
// switched off ends what is under way on it only.
func TestEpisodes(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	det := func(id, cam, state string, at time.Duration) rules.Detection {
		return rules.Detection{ID: id, Rule: "door", Kind: rules.State, State: state, Camera: cam, Time: t0.Add(at)}
	}
	var e episodes
	check := func(l mqtt.Lifecycle, typ, id, snap string, dur float64, before string) {
		t.Helper()
		b := ""
		if l.Before != nil {
			b = l.Before.ID
		}
		if l.Type != typ || l.ID != id || l.Snapshot != snap || l.Duration != dur || b != before || !l.StartTime.Equal(t0) {
			t.Errorf("got %s %s snapshot %q duration %v before %q start %v; want %s %s %q %v %q", l.Type, l.ID, l.Snapshot, l.Duration, b, l.StartTime, typ, id, snap, dur, before)
		}
	}
	check(e.next(det("a1", "porch", "ON", 0), false, "a1"), "new", "a1", "a1", 0, "")
	check(e.next(det("b1", "garage", "ON", 0), false, ""), "new", "b1", "", 0, "")
	check(e.next(det("a2", "porch", "ON", 5*time.Second), true, "a2"), "update", "a1", "a2", 5, "a1")
	check(e.next(det("a3", "porch", "ON", 7*time.Second), true, ""), "update", "a1", "a2", 7, "a2") // no snapshot kept: the best stays
	end := e.next(det("a4", "porch", "OFF", 30*time.Second), false, "a4")
	check(end, "end", "a1", "a2", 30, "a3")
	if end.EndTime == nil || !end.EndTime.Equal(t0.Add(30*time.Second)) || end.After.ID != "a4" {
		t.Errorf("end: %+v", end)
	}
	ends := e.endWhere(func(_, cam string) bool { return cam == "garage" }, t0.Add(time.Minute))
	if len(ends) != 1 {
		t.Fatalf("ended %d events on garage", len(ends))
	}
	check(ends[0], "end", "b1", "", 60, "b1")
	if ends[0].After.State != "OFF" || len(e.endWhere(func(string, string) bool { return true }, t0)) != 0 {
		t.Errorf("events left under way: %+v", e.open)
	}
}

// Which images a detection updates: the camera's and the rule's follow a
// state rule's ON and update and an event rule's firing, never an OFF
// (its frame would show a box around a region that does not match).
func TestDetectionImages(t *testing.T) {
	jpeg := []byte{0xFF, 0xD8, 0xFF, 0xE0}
	event := mqtt.NewTopics("test").Events()
	for _, c := range []struct {
		kind   rules.Kind
		state  string
		update bool
		images bool
	}{
		{rules.State, "ON", false, true},
		{rules.State, "ON", true, true},
		{rules.State, "OFF", false, false},
		{rules.Event, "", false, true},
	} {
		det := rules.Detection{ID: "d1", Rule: "door", Kind: c.kind, State: c.state, Camera: "porch"}
		msgs, err := detectionMessages("test", pipeline.Event{Detection: det, Snapshot: jpeg, Update: c.update}, store.Message{Topic: event})
		if err != nil {
			t.Fatal(err)
		}
		var topics []string
		for _, m := range msgs {
			topics = append(topics, m.Topic)
		}
		cam, rule := slices.Contains(topics, "sightd/test/camera/porch/snapshot"), slices.Contains(topics, "sightd/test/rule/door/snapshot")
		if cam != c.images || rule != c.images || topics[0] != event {
			t.Errorf("%s %s update %v: topics %v; want the images %v", c.kind, c.state, c.update, topics, c.images)
		}
	}
}
