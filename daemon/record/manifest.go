// Package record is the data set `sightd camera record` writes: kept frames
// of one camera, the regions the daemon would embed in each, and
// record.json, the manifest that lists them. The export toolchain
// (sightd-export distill and compare) reads this format; Parse reads it back
// and checks it.
package record

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path"
	"strings"
	"time"
)

// Format names this layout in record.json; a reader refuses another.
const Format = "sightd-record/1"

// ManifestName is the manifest's file name in the data set's directory.
const ManifestName = "record.json"

// Folders of the kept frames and of the region crops.
const (
	FramesDir  = "frames"
	RegionsDir = "regions"
)

// Manifest is record.json.
type Manifest struct {
	Format string `json:"format"`
	// Source is the camera's source as given (a stream's password redacted).
	Source string `json:"source"`
	// Camera is the configured camera's name; nil for --source.
	Camera     *string   `json:"camera"`
	Created    time.Time `json:"created"`
	FramesSeen int       `json:"frames_seen"`
	FramesKept int       `json:"frames_kept"`
	// Complete: the run ended as asked (N frames kept, or a file read to
	// its end). False while recording and after an interruption, a full
	// disk or a lost camera: the frames listed are whole, there are just
	// fewer than asked.
	Complete  bool    `json:"complete"`
	FrameSize [2]int  `json:"frame_size"`
	Frames    []Frame `json:"frames"`
}

// Frame is one kept frame, in source order.
type Frame struct {
	// Index is the frame's number in the source, from 0.
	Index int `json:"index"`
	// TimeS is seconds since the source's first frame: a file's own media
	// time, a live camera's capture time.
	TimeS   float64  `json:"time_s"`
	File    string   `json:"file"`
	Motion  bool     `json:"motion"`
	Regions []Region `json:"regions"`
}

// Region is one crop the daemon would embed, saved at full resolution.
type Region struct {
	File string `json:"file"`
	// Kind is full, grid or motion (camera.RegionKind's names).
	Kind string `json:"kind"`
	// Rect is x, y, width, height in frame pixels.
	Rect [4]int `json:"rect"`
}

// FrameFile is the path, relative to the data set, of frame index's JPEG.
func FrameFile(index int) string { return fmt.Sprintf("%s/%06d.jpg", FramesDir, index) }

// RegionFile is the path of region k of frame index, a PNG.
func RegionFile(index, k int) string { return fmt.Sprintf("%s/%06d-%02d.png", RegionsDir, index, k) }

// ErrInvalid wraps every problem Parse finds.
var ErrInvalid = errors.New("invalid record.json")

// maxSize bounds what Parse reads: a manifest of a million frames with
// their regions is about 300 MB, far more than any recording.
const maxSize = 256 << 20

// Parse reads and checks a manifest: the format, the counts, frames in
// source order with files where this layout puts them, and regions inside
// the frame.
func Parse(data []byte) (*Manifest, error) {
	if len(data) > maxSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrInvalid, len(data), maxSize)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the manifest", ErrInvalid)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return &m, nil
}

// Validate names the first problem of m.
func (m *Manifest) Validate() error {
	if m.Format != Format {
		return fmt.Errorf("format %q: want %q", m.Format, Format)
	}
	if m.FramesKept != len(m.Frames) {
		return fmt.Errorf("frames_kept %d but %d frames listed", m.FramesKept, len(m.Frames))
	}
	if m.FramesSeen < m.FramesKept {
		return fmt.Errorf("frames_seen %d: fewer than the %d kept", m.FramesSeen, m.FramesKept)
	}
	w, h := m.FrameSize[0], m.FrameSize[1]
	if len(m.Frames) > 0 && (w < 1 || h < 1) {
		return fmt.Errorf("frame_size %dx%d: want a positive size", w, h)
	}
	for i := range m.Frames {
		f := &m.Frames[i]
		if err := f.validate(w, h); err != nil {
			return fmt.Errorf("frames[%d]: %w", i, err)
		}
		if i > 0 {
			p := &m.Frames[i-1]
			if f.Index <= p.Index || f.TimeS < p.TimeS {
				return fmt.Errorf("frames[%d]: index %d at %gs after index %d at %gs: want source order", i, f.Index, f.TimeS, p.Index, p.TimeS)
			}
		}
	}
	return nil
}

func (f *Frame) validate(w, h int) error {
	if f.Index < 0 {
		return fmt.Errorf("index %d: want >= 0", f.Index)
	}
	if math.IsNaN(f.TimeS) || math.IsInf(f.TimeS, 0) || f.TimeS < 0 {
		return fmt.Errorf("time_s %v: want a finite time >= 0", f.TimeS)
	}
	if err := checkFile(f.File, FramesDir, ".jpg"); err != nil {
		return err
	}
	if len(f.Regions) == 0 {
		return errors.New("no regions")
	}
	for k, r := range f.Regions {
		if err := checkFile(r.File, RegionsDir, ".png"); err != nil {
			return fmt.Errorf("regions[%d]: %w", k, err)
		}
		switch r.Kind {
		case "full", "grid", "motion":
		default:
			return fmt.Errorf("regions[%d]: kind %q: want full, grid or motion", k, r.Kind)
		}
		x, y, rw, rh := r.Rect[0], r.Rect[1], r.Rect[2], r.Rect[3]
		if x < 0 || y < 0 || rw < 1 || rh < 1 || rw > w-x || rh > h-y {
			return fmt.Errorf("regions[%d]: rect %v outside the %dx%d frame", k, r.Rect, w, h)
		}
	}
	return nil
}

// checkFile accepts dir/NAME.ext, a plain name inside dir: a consumer joins
// it to the data set's directory, so nothing may lead out of it.
func checkFile(p, dir, ext string) error {
	name, ok := strings.CutPrefix(p, dir+"/")
	if !ok || name == "" || strings.ContainsAny(name, "/\\\x00") || path.Clean(p) != p ||
		!strings.HasSuffix(name, ext) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("file %q: want %s/NAME%s", p, dir, ext)
	}
	return nil
}

// Marshal is the manifest as record.json holds it.
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
