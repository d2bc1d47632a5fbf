package main

import (
	"testing"
	"time"

	"github.com/sightd/sightd/daemon/mqtt"
	"github.com/sightd/sightd/daemon/rules"
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
