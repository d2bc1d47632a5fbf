package main

import (
	"bytes"
	"context"
	"errors"
	"image/jpeg"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sightd/sightd/camera"
)

// cameraVtest is Debian's opencv-doc street recording, unpacked by `make deps`.
func cameraVtest(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SIGHTD_OPENCV_DATA")
	if dir == "" {
		dir = filepath.Join("..", "third_party", "opencv-data")
	}
	p := filepath.Join(dir, "vtest.avi")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("real test video missing: run `make deps` (or set SIGHTD_OPENCV_DATA): %v", err)
	}
	return p
}

// runSightd runs the CLI in-process, as main does, with a deadline against hangs.
func runSightd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	err = root.ExecuteContext(ctx)
	return out.String(), errb.String(), err
}

func TestCameraCheckOnVtest(t *testing.T) {
	snap := filepath.Join(t.TempDir(), "snap.jpg")
	out, _, err := runSightd(t, "camera", "check", "--source", cameraVtest(t), "--frames", "30", "--snapshot", snap)
	if err != nil {
		t.Fatalf("camera check: %v\n%s", err, out)
	}
	t.Logf("\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	summary := regexp.MustCompile(`^frames=30 decoded=(\d+) gated=(\d+) fps=(\d+\.\d\d)$`).FindStringSubmatch(lines[len(lines)-1])
	if summary == nil {
		t.Fatalf("last line %q is not the summary frames=30 decoded=N gated=N fps=F", lines[len(lines)-1])
	}
	decoded, _ := strconv.Atoi(summary[1])
	gated, _ := strconv.Atoi(summary[2])
	if decoded < 30 || gated == 0 || summary[3] == "0.00" {
		t.Errorf("summary %q: want at least 30 decoded, some gated, a rate", lines[len(lines)-1])
	}
	for _, want := range []string{"opened      768x576", "frames      30 read", "gate ", "regions ", "snapshot    " + snap} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	b, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := jpeg.DecodeConfig(bytes.NewReader(b)); err != nil || cfg.Width != 768 {
		t.Fatalf("snapshot: %+v, %v; want a 768-pixel-wide JPEG", cfg, err)
	}
}

func TestCameraCheckFailsClearly(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.avi")
	for _, tc := range []struct {
		args []string
		want string
		is   error
	}{
		{[]string{"--source", missing}, "camera check: unavailable: stat " + missing + ": no such file or directory", camera.ErrUnavailable},
		{[]string{"--source", "/dev/video63", "--timeout", "1s"}, "camera check: unavailable: /dev/video63: no such device (unplugged?)", camera.ErrUnavailable},
		{[]string{"--source", "rtmp://cam/live"}, `cameras[check].source: unsupported scheme "rtmp"`, camera.ErrBadSource},
		{[]string{"--source", "/dev/null"}, "cameras[check].source: /dev/null is not a video device", camera.ErrBadSource},
		{[]string{"--source", "0", "--width", "0"}, "cameras[check].width: 0: want 1..8192", nil},
		{[]string{"--frames", "3"}, "--source is required", nil},
	} {
		out, _, err := runSightd(t, append([]string{"camera", "check"}, tc.args...)...)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("camera check %v = %v\n(output %q)\nwant an error starting %q", tc.args, err, out, tc.want)
		}
		if strings.Contains(out, "frames=") {
			t.Errorf("camera check %v printed a summary after failing: %q", tc.args, out)
		}
	}
}

// TestCameraCheckSurvivesMixedSizes is issue 21's report: `sightd camera
// check --source http://127.0.0.1:PORT/video.mjpg` on an MJPEG camera
// serving opencv-doc's photos, whose sizes change from frame to frame,
// segfaulted in FFmpeg's scaler. It reads them all now, without an outage.
func TestCameraCheckSurvivesMixedSizes(t *testing.T) {
	dir := filepath.Dir(cameraVtest(t))
	names, err := filepath.Glob(filepath.Join(dir, "*.jpg"))
	if err != nil || len(names) < 20 {
		t.Fatalf("%d JPEGs in %s: %v", len(names), dir, err)
	}
	var jpegs [][]byte
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		jpegs = append(jpegs, b)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=frame")
		i := 0
		writeMJPEG(w, r, func() []byte { i++; return jpegs[(i-1)%len(jpegs)] }, -1, 50*time.Millisecond)
	}))
	defer srv.Close()
	out, _, err := runSightd(t, "camera", "check", "--source", srv.URL+"/video.mjpg", "--frames", "40")
	if err != nil {
		t.Fatalf("camera check: %v\n%s", err, out)
	}
	t.Logf("\n%s", out)
	for _, want := range []string{"opened      640x480 MJPG", "frames      40 read", " 0 outages", "frames=40 "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
