package record

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sample is testdata/record.json: two frames of a recording as
// `sightd camera record` writes it.
func sample(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "record.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseSample(t *testing.T) {
	m, err := Parse(sample(t))
	if err != nil {
		t.Fatal(err)
	}
	if m.FramesKept != 2 || m.FrameSize != [2]int{768, 576} || m.Camera != nil || !m.Complete {
		t.Fatalf("parsed %+v", m)
	}
	f := m.Frames[1]
	if f.Index != 3 || f.TimeS != 0.3 || !f.Motion || len(f.Regions) != 2 || f.Regions[1].Kind != "motion" ||
		f.Regions[1].Rect != [4]int{288, 76, 480, 480} {
		t.Fatalf("frame 1: %+v", f)
	}
	again, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Parse(again)
	if err != nil || m2.Frames[1].Regions[1] != f.Regions[1] || !m2.Created.Equal(m.Created) {
		t.Fatalf("marshal round trip: %v\n%s", err, again)
	}
}

// Each broken manifest names its problem.
func TestParseRefuses(t *testing.T) {
	good := string(sample(t))
	for _, c := range []struct{ name, from, to, want string }{
		{"format", `"sightd-record/1"`, `"sightd-record/2"`, "format"},
		{"count", `"frames_kept": 2`, `"frames_kept": 3`, "frames_kept 3 but 2"},
		{"seen", `"frames_seen": 4`, `"frames_seen": 1`, "frames_seen 1"},
		{"order", `"index": 3`, `"index": 0`, "source order"},
		{"time", `"time_s": 0.3`, `"time_s": -1`, "time_s"},
		{"escape", `"regions/000003-01.png"`, `"regions/../../etc/x.png"`, "want regions/NAME.png"},
		{"absolute", `"frames/000000.jpg"`, `"/frames/000000.jpg"`, "want frames/NAME.jpg"},
		{"kind", `"kind": "motion"`, `"kind": "person"`, "kind"},
		{"rect", `[288, 76, 480, 480]`, `[288, 97, 480, 480]`, "outside the 768x576 frame"},
		{"size", `"frame_size": [768, 576]`, `"frame_size": [0, 576]`, "frame_size"},
		{"trailing", "\n}\n", "\n}\n{}", "after the manifest"},
		{"json", `"complete": true`, `"complete": yes`, "invalid character"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := strings.Replace(good, c.from, c.to, 1)
			if bad == good {
				t.Fatalf("%q not in the sample", c.from)
			}
			_, err := Parse([]byte(bad))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse: %v; want ErrInvalid naming %q", err, c.want)
			}
		})
	}
}

// The seed corpus is the sample and testdata/fuzz/FuzzParse/; run with
//
//	go test -run '^$' -fuzz FuzzParse ./daemon/record
func FuzzParse(f *testing.F) {
	f.Add(sample(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse: %v does not wrap ErrInvalid", err)
			}
			return
		}
		// What Parse accepts stays inside the data set and survives a
		// round trip.
		for _, fr := range m.Frames {
			for _, p := range append([]string{fr.File}, regionFiles(fr)...) {
				if d := filepath.Dir(p); !filepath.IsLocal(p) || d != FramesDir && d != RegionsDir {
					t.Fatalf("accepted file %q", p)
				}
			}
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("Marshal of an accepted manifest: %v", err)
		}
		m2, err := Parse(out)
		if err != nil {
			t.Fatalf("re-Parse: %v\n%s", err, out)
		}
		out2, _ := m2.Marshal()
		if !bytes.Equal(out, out2) {
			t.Fatalf("round trip differs:\n%s\n%s", out, out2)
		}
	})
}

func regionFiles(f Frame) []string {
	var ps []string
	for _, r := range f.Regions {
		ps = append(ps, r.File)
	}
	return ps
}
