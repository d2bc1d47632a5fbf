package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightd/sightd/camera"
	"github.com/sightd/sightd/daemon/config"
)

// TestRunCameraWorkerOutage: sightd run with two cameras, one of them an
// HTTP camera whose stream FFmpeg cannot take (JPEGs of changing sizes,
// announced as video/x-motion-jpeg, so that FFmpeg and not sightd's MJPEG
// reader decodes it), in capture worker processes as main sets them up. The
// bad camera's worker is stopped or dies; /healthz and /metrics say so;
// the street camera goes on being encoded all along.
func TestRunCameraWorkerOutage(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	camera.UseWorker(&camera.WorkerCommand{Path: exe, Env: []string{"SIGHTD_TEST_CHILD=capture-worker"}})
	t.Cleanup(func() { camera.UseWorker(nil) })

	names, err := filepath.Glob(filepath.Join(filepath.Dir(opencvPhoto(t, "vtest.avi")), "*.jpg"))
	if err != nil || len(names) < 20 {
		t.Fatalf("%d JPEGs: %v", len(names), err)
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
		w.Header().Set("Content-Type", "video/x-motion-jpeg")
		i := 0
		writeMJPEG(w, r, func() []byte { i++; return jpegs[(i-1)%len(jpegs)] }, -1, 50*time.Millisecond)
	}))
	defer srv.Close()

	dir := t.TempDir()
	listen, broker := freePort(t), freePort(t)
	yml := fmt.Sprintf(`
device: {id: test}
model: {bundle: %q, edgetpu: off}
cameras:
  - {name: street, source: %q, fast: true, loop: true}
  - {name: door, source: %q, retry_min: 50ms, retry_max: 200ms, stuck: 1s}
rules:
  - {id: dark-clothes, prompts: ["something dark"], kind: state}
store: {dir: %q}
http: {listen: %q}
mqtt: {broker: "tcp://%s", embedded_broker: {listen: %q}}
`, demoBundle(t), opencvPhoto(t, "vtest.avi"), srv.URL+"/video.mjpg", filepath.Join(dir, "db"), listen, broker, broker)
	cfg, err := config.Parse([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runDaemon(ctx, cfg, zerolog.Nop(), controls{reload: make(chan *config.Config), swap: make(chan swapRequest)})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()

	get := func(path string) string {
		resp, err := http.Get("http://" + listen + path)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	metric := func(m, name, cam string) float64 {
		re := regexp.MustCompile(`(?m)^` + name + `\{camera="` + cam + `"\} (\S+)$`)
		if v := re.FindStringSubmatch(m); v != nil {
			f, _ := strconv.ParseFloat(v[1], 64)
			return f
		}
		return -1
	}
	// Wait (with a generous deadline, not a sleep) for the door camera to
	// have been down at least twice, its worker restarted in between.
	deadline := time.Now().Add(3 * time.Minute)
	var m string
	var handledBefore float64
	for {
		m = get("/metrics")
		if handledBefore <= 0 {
			handledBefore = metric(m, "sightd_frames_handled_total", "street")
		}
		if metric(m, "sightd_camera_outages_total", "door") >= 2 && handledBefore > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the door camera was not reported down twice:\n%s\n%s", get("/healthz"), m)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The street camera is encoded on while the door's workers come and go.
	for metric(get("/metrics"), "sightd_frames_handled_total", "street") <= handledBefore {
		if time.Now().After(deadline) {
			t.Fatal("the street camera stopped while the door camera's worker failed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// /healthz names the door camera's trouble while it is down.
	for {
		h := get("/healthz")
		if strings.Contains(h, `"name":"camera/door","ok":false`) {
			if !regexp.MustCompile(`capture worker|decoder stuck`).MatchString(h) {
				t.Fatalf("healthz does not say why the door camera is down: %s", h)
			}
			t.Logf("healthz: %s", h)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz never showed the door camera down: %s", h)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
