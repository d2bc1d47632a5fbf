package rules

import (
	"context"
	"encoding/json"
	"image"
	"testing"
	"time"
)

func TestDetectionRecord(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	r := &Rule{ID: "garage", Prompts: []string{"the garage door is open"}, Kind: State}
	r.Defaults()
	at := time.Date(2026, 11, 29, 7, 30, 0, 0, time.FixedZone("CET", 3600))
	res := Result{Rule: r, Score: Score{Raw: 0.31, Calibrated: 0.93, Margin: 0.06, Z: 3.2, Region: 2},
		Decision: Decision{On: true, Changed: true}}
	d := NewDetection("driveway", at, res, image.Rect(100, 50, 324, 274), "motion", 7)
	if err := Record(ctx, st, d); err != nil {
		t.Fatal(err)
	}
	d2 := NewDetection("driveway", at, res, image.Rect(0, 0, 1, 1), "full", 7)
	if d2.ID == d.ID || len(d.ID) != 32 {
		t.Fatalf("ids %q and %q", d.ID, d2.ID)
	}
	got, err := st.RecentDetections(ctx, 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("recent: %v %v", got, err)
	}
	var back Detection
	if err := json.Unmarshal(got[0].JSON, &back); err != nil {
		t.Fatal(err)
	}
	want := Detection{ID: d.ID, Rule: "garage", Name: "the garage door is open", Kind: State, State: "ON",
		Camera: "driveway", Time: at.UTC(), Raw: 0.31, Calibrated: 0.93, Margin: 0.06, Z: 3.2,
		Region: Region{X: 100, Y: 50, W: 224, H: 224, Kind: "motion"}, ModelVersion: 7}
	if back != want {
		t.Fatalf("recorded\n%+v\nwant\n%+v", back, want)
	}
}
