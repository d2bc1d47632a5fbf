package camera

import (
	"errors"
	"image"
	"strings"
	"testing"
	"time"
)

func TestParseSource(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Spec
		err  string
	}{
		{in: "0", want: Spec{Kind: Device, Index: 0, Path: "/dev/video0"}},
		{in: "12", want: Spec{Kind: Device, Index: 12, Path: "/dev/video12"}},
		{in: "/dev/video2", want: Spec{Kind: Device, Index: 2, Path: "/dev/video2"}},
		{in: "/dev/v4l/by-id/usb-Logitech_C920-video-index0", want: Spec{Kind: Device, Index: -1, Path: "/dev/v4l/by-id/usb-Logitech_C920-video-index0"}},
		{in: "rtsp://user:secret@10.0.0.5:554/stream1", want: Spec{Kind: Stream, Index: -1, URL: "rtsp://user:secret@10.0.0.5:554/stream1"}},
		{in: "RTSPS://cam.local/live", want: Spec{Kind: Stream, Index: -1, URL: "RTSPS://cam.local/live"}},
		{in: "http://10.0.0.6/mjpg/video.mjpg", want: Spec{Kind: Stream, Index: -1, URL: "http://10.0.0.6/mjpg/video.mjpg"}},
		{in: "https://cam.example/stream", want: Spec{Kind: Stream, Index: -1, URL: "https://cam.example/stream"}},
		{in: "demo/street.mp4", want: Spec{Kind: Video, Index: -1, Path: "demo/street.mp4"}},
		{in: "file:///srv/clips/vtest.avi", want: Spec{Kind: Video, Index: -1, Path: "/srv/clips/vtest.avi"}},
		{in: "porch", want: Spec{Kind: Video, Index: -1, Path: "porch"}}, // a folder, if it is one: Open looks
		{in: "fruits.JPG", want: Spec{Kind: Images, Index: -1, Path: "fruits.JPG"}},
		{in: "stills/", want: Spec{Kind: Images, Index: -1, Path: "stills/"}},
		{in: "stills/*.png", want: Spec{Kind: Images, Index: -1, Path: "stills/*.png"}},
		{in: "", err: "empty"},
		{in: "rtmp://x/live", err: `unsupported scheme "rtmp"`},
		{in: "udp://239.0.0.1:1234", err: `unsupported scheme "udp"`},
		{in: "rtsp:///nohost", err: "has no host"},
		{in: "http://a b/", err: "bad http URL"},
		{in: "1024", err: "out of range"},
		{in: "99999999999999999999", err: "out of range"},
		{in: " 0", err: "surrounding spaces"},
		{in: "a\nb", err: "control characters"},
		{in: "file://relative/x.avi", err: "absolute path"},
		{in: "stills/[", err: "glob"},
	} {
		got, err := ParseSource(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrBadSource) {
				t.Errorf("ParseSource(%q) = %+v, %v; want an ErrBadSource mentioning %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSource(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestSpecStringHidesPassword(t *testing.T) {
	sp, err := ParseSource("rtsp://admin:hunter2@10.0.0.5/h264")
	if err != nil {
		t.Fatal(err)
	}
	if s := sp.String(); strings.Contains(s, "hunter2") || !strings.Contains(s, "admin") || !strings.Contains(s, "10.0.0.5/h264") {
		t.Fatalf("String() = %q: want the user and address without the password", s)
	}
	// Nor may a parse error repeat it.
	if _, err := ParseSource("http://admin:hunter2@a b/"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v shows the password", err)
	}
}

func TestParsePolygon(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []image.Point
		err  string
	}{
		{in: "0,0 640,0 640,120", want: []image.Point{{0, 0}, {640, 0}, {640, 120}}},
		{in: "  10,20\t30,40\n10,40  ", want: []image.Point{{10, 20}, {30, 40}, {10, 40}}},
		{in: "", err: "at least 3"},
		{in: "0,0 1,1", err: "at least 3"},
		{in: "0,0 1,1 2,2", err: "no area"},
		{in: "0,0 10,0 10", err: "want x,y"},
		{in: "0,0 10,0 -1,10", err: "not an integer"},
		{in: "0,0 10,0 10,x", err: "not an integer"},
		{in: "0,0 10,0 99999,10", err: "not an integer"},
		{in: strings.Repeat("1,1 ", 65), err: "at most 64"},
	} {
		got, err := ParsePolygon(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrBadPolygon) {
				t.Errorf("ParsePolygon(%q) = %v, %v; want an ErrBadPolygon mentioning %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("ParsePolygon(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("ParsePolygon(%q) = %v, want %v", tc.in, got, tc.want)
			}
		}
	}
}

func TestConfigValidate(t *testing.T) {
	valid := Defaults()
	valid.Name, valid.Source = "porch", "/dev/video0"
	if err := valid.Validate(); err != nil {
		t.Fatalf("defaults with a name and a source: %v", err)
	}
	for _, tc := range []struct {
		change func(*Config)
		want   string // the whole message of the one error
	}{
		{func(c *Config) { c.Source = "rtmp://cam/live" }, `cameras[porch].source: unsupported scheme "rtmp"`},
		{func(c *Config) { c.Source = "" }, `cameras[porch].source: empty`},
		{func(c *Config) { c.Name = "Porch Cam" }, `cameras[Porch Cam].name: "Porch Cam": want 1 to 63 of a-z, 0-9, _ and -, starting with a letter or digit`},
		{func(c *Config) { c.Width = 0 }, `cameras[porch].width: 0: want 1..8192`},
		{func(c *Config) { c.Height = -1 }, `cameras[porch].height: -1: want 1..8192`},
		{func(c *Config) { c.FPS = 0 }, `cameras[porch].fps: 0: want more than 0 and at most 240`},
		{func(c *Config) { c.FourCC = "mjpeg" }, `cameras[porch].fourcc: "mjpeg": want four upper-case letters or digits, such as MJPG or YUYV`},
		{func(c *Config) { c.RetryMin = 0 }, `cameras[porch].retry_min: 0s: want at least 10ms`},
		{func(c *Config) { c.RetryMax = time.Millisecond * 100 }, `cameras[porch].retry_max: 100ms: want at least retry_min (500ms)`},
		{func(c *Config) { c.Stall = 0 }, `cameras[porch].stall: 0s: want at least 100ms`},
		{func(c *Config) { c.Stuck = 500 * time.Millisecond }, `cameras[porch].stuck: 500ms: want 0 (off) or at least 1s`},
		{func(c *Config) { c.Gate.Width = 8 }, `cameras[porch].gate.width: 8: want 32..1920`},
		{func(c *Config) { c.Gate.Threshold = 0 }, `cameras[porch].gate.threshold: 0: want 1..254 grey levels`},
		{func(c *Config) { c.Gate.MinRatio = 1 }, `cameras[porch].gate.min_ratio: 1: want 0 <= min_ratio < 1`},
		{func(c *Config) { c.Gate.MinArea = -0.1 }, `cameras[porch].gate.min_area: -0.1: want 0 <= min_area < 1`},
		{func(c *Config) { c.Gate.Masks = []string{"0,0 1,1 0,2", "0,0 5,5"} }, `cameras[porch].gate.masks[1]: bad polygon: "0,0 5,5": want at least 3 points "x,y x,y x,y"`},
		{func(c *Config) { c.Gate.Keyframe = 0 }, `cameras[porch].gate.keyframe: 0s: want at least 100ms`},
		{func(c *Config) { c.Regions.Grid.Rows = 2 }, `cameras[porch].regions.grid: 2x0: set both rows and cols, or neither`},
		{func(c *Config) { c.Regions.Grid.Overlap = 0.9 }, `cameras[porch].regions.grid.overlap: 0.9: want 0..0.75`},
		{func(c *Config) { c.Regions.Motion.Max = 17 }, `cameras[porch].regions.motion.max: 17: want 0..16`},
		{func(c *Config) { c.Regions.Motion.Pad = 3 }, `cameras[porch].regions.motion.pad: 3: want 0..2`},
		{func(c *Config) { c.Regions.Motion.MinSize = -1 }, `cameras[porch].regions.motion.min_size: -1: want 0..4096`},
		{func(c *Config) { c.Regions.Full, c.Regions.Motion.Max = false, 0 }, `cameras[porch].regions.full: no regions: enable full, a grid or motion crops`},
		{func(c *Config) { c.Snapshot.MaxWidth = 10 }, `cameras[porch].snapshot.max_width: 10: want 64..8192`},
		{func(c *Config) { c.Snapshot.Quality = 101 }, `cameras[porch].snapshot.quality: 101: want 1..100`},
	} {
		cfg := valid
		cfg.Gate.Masks = nil
		tc.change(&cfg)
		err := cfg.Validate()
		if err == nil || err.Error() != tc.want {
			t.Errorf("got  %v\nwant %s", err, tc.want)
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || !strings.HasPrefix(tc.want, fe.Field+": ") {
			t.Errorf("%v: errors.As gives field %+v", err, fe)
		}
	}

	// Every problem at once, each on its own line.
	bad := valid
	bad.Width, bad.Source, bad.Gate.Threshold = 0, "rtmp://x", 300
	lines := strings.Split(bad.Validate().Error(), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 errors, got %q", lines)
	}
}

func TestConstructorsValidate(t *testing.T) {
	g := GateDefaults()
	g.Threshold = 0
	if _, err := NewGate(g); err == nil || !strings.Contains(err.Error(), "threshold") {
		t.Errorf("NewGate: %v", err)
	}
	r := RegionsDefaults()
	r.Motion.Max = -1
	if _, err := NewRegions(r); err == nil || !strings.Contains(err.Error(), "motion.max") {
		t.Errorf("NewRegions: %v", err)
	}
	s := SnapshotDefaults()
	s.Quality = 0
	if _, err := NewSnapshotter(s); err == nil || !strings.Contains(err.Error(), "quality") {
		t.Errorf("NewSnapshotter: %v", err)
	}
}
