package rules

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"time"

	"github.com/sightd/sightd/store"
)

// Region is where in the frame a detection was made, in frame pixels.
type Region struct {
	X    int    `json:"x"`
	Y    int    `json:"y"`
	W    int    `json:"w"`
	H    int    `json:"h"`
	Kind string `json:"kind,omitempty"` // full, grid, motion
}

// Detection is what sightd records and publishes when a rule fires or a
// state rule changes: everything a subscriber needs to trust or discard it.
type Detection struct {
	// ID is unique: subscribers drop the duplicates that at-least-once
	// delivery allows by it.
	ID           string    `json:"id"`
	Rule         string    `json:"rule"`
	Name         string    `json:"name"`
	Kind         Kind      `json:"kind"`
	State        string    `json:"state,omitempty"` // "ON" or "OFF" for state rules
	Camera       string    `json:"camera"`
	Time         time.Time `json:"time"`
	Raw          float64   `json:"raw"`
	Calibrated   float64   `json:"calibrated"`
	Margin       float64   `json:"margin"`
	Z            float64   `json:"z"`
	Region       Region    `json:"region"`
	ModelVersion int64     `json:"model_version"`
}

// NewDetection describes res, a firing or a change of a rule on camera, at
// t; rect and kind are the best region's.
func NewDetection(camera string, t time.Time, res Result, rect image.Rectangle, kind string, modelVersion int64) Detection {
	d := Detection{ID: newID(t), Rule: res.Rule.ID, Name: res.Rule.Name, Kind: res.Rule.Kind,
		Camera: camera, Time: t.UTC(), Raw: res.Score.Raw, Calibrated: res.Score.Calibrated,
		Margin: res.Score.Margin, Z: res.Score.Z, ModelVersion: modelVersion,
		Region: Region{X: rect.Min.X, Y: rect.Min.Y, W: rect.Dx(), H: rect.Dy(), Kind: kind}}
	if res.Rule.Kind == State {
		d.State = "OFF"
		if res.Decision.On {
			d.State = "ON"
		}
	}
	return d
}

// newID is 16 bytes in hex: the time in milliseconds, then random bits, so
// ids sort by time and never collide across restarts or devices.
func newID(t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixMilli()))
	rand.Read(b[8:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b[:])
}

// Record appends the detection to the store's history.
func Record(ctx context.Context, st *store.Store, d Detection) error {
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if _, err := st.AppendDetection(ctx, d.Time, data); err != nil {
		return fmt.Errorf("record detection %s: %w", d.ID, err)
	}
	return nil
}
