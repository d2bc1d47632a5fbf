package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightd/sightd/daemon/config"
	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/store"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The daemon in-process on the real street video with the demo bundle: a
// camera that is missing at start-up does not stop the other; /healthz says
// which is down; the rule that should fire does, the one that should not
// does not; everything is in the store after a clean stop.
func TestRunDaemon(t *testing.T) {
	dir := t.TempDir()
	listen := freePort(t)
	yml := fmt.Sprintf(`
device: {id: test}
model: {bundle: %q, edgetpu: off}
cameras:
  - {name: street, source: %q, fast: true}
  - {name: attic, source: %q, retry_min: 50ms, retry_max: 200ms, stall: 200ms}
rules:
  - {id: dark-clothes, prompts: ["something dark"], kind: state}
  - {id: purple, prompts: ["something purple"]}
store: {dir: %q}
http: {listen: %q}
`, demoBundle(t), opencvPhoto(t, "vtest.avi"), filepath.Join(dir, "missing.avi"), filepath.Join(dir, "db"), listen)
	cfg, err := config.Parse([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	reload := make(chan *config.Config)
	go func() { done <- runDaemon(ctx, cfg, zerolog.Nop(), reload) }()

	var health struct {
		Status string `json:"status"`
		Checks []struct {
			Name string `json:"name"`
			OK   bool   `json:"ok"`
		} `json:"checks"`
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + listen + "/healthz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			json.Unmarshal(body, &health)
			if len(health.Checks) > 0 {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // the missing camera has been tried and reported
	resp, err := http.Get("http://" + listen + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), `"name":"camera/attic","ok":false`) {
		t.Errorf("healthz with a missing camera: %d %s", resp.StatusCode, body)
	}
	// A reloaded configuration (SIGHUP) adds its rules.
	cfg2 := *cfg
	orange := &rules.Rule{ID: "orange", Prompts: []string{"something orange"}}
	orange.Defaults()
	cfg2.Rules = append(append(config.Rules(nil), cfg.Rules...), orange)
	reload <- &cfg2
	var listed string
	for time.Now().Before(deadline) && !strings.Contains(listed, `"id":"orange"`) {
		if resp, err := http.Get("http://" + listen + "/api/rules"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			listed = string(b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(listed, `"id":"orange"`) {
		t.Errorf("reloaded rule not listed: %s", listed)
	}

	// Wait for a detection to show in the metrics, then stop.
	var metrics string
	for time.Now().Before(deadline) && !strings.Contains(metrics, `sightd_detections_total{camera="street",rule="dark-clothes"}`) {
		time.Sleep(200 * time.Millisecond)
		if resp, err := http.Get("http://" + listen + "/metrics"); err == nil {
			m, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			metrics = string(m)
		}
	}
	if !strings.Contains(metrics, `sightd_frames_encoded_total{camera="street"}`) {
		t.Errorf("metrics lack the street camera's counters")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not stop")
	}

	scfg := store.Defaults()
	scfg.Dir = filepath.Join(dir, "db")
	st, err := store.Open(context.Background(), scfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dets, err := st.RecentDetections(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	byRule := map[string]int{}
	for _, d := range dets {
		var det rules.Detection
		if err := json.Unmarshal(d.JSON, &det); err != nil {
			t.Fatal(err)
		}
		byRule[det.Rule]++
	}
	t.Logf("detections by rule: %v", byRule)
	if byRule["dark-clothes"] == 0 || byRule["purple"] != 0 {
		t.Errorf("detections %v: want dark-clothes changes and no purple", byRule)
	}
}
