package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightd/sightd/ota/otatest"
	"github.com/sightd/sightd/store"
)

// startMosquitto runs Debian's Mosquitto on addr for the test.
func startMosquitto(t *testing.T, addr string) {
	t.Helper()
	bin := "/usr/sbin/mosquitto"
	if _, err := os.Stat(bin); err != nil {
		t.Fatal("mosquitto is not installed (make deps installs it)")
	}
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	conf := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n", port)
	if u, err := user.Current(); err == nil {
		conf = "user " + u.Username + "\n" + conf // as root it would switch to "mosquitto"
	}
	path := filepath.Join(dir, "mosquitto.conf")
	os.WriteFile(path, []byte(conf), 0o600)
	cmd := exec.Command(bin, "-c", path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
	}
	t.Fatal("mosquitto did not start listening")
}

// buildSightd builds the sightd binary into dir for a test that runs it.
func buildSightd(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "sightd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// End to end with the real binary and a real Mosquitto: a subscriber sees
// discovery, "online", state changes for the rule that should fire and none
// for the one that should not; SIGTERM gives "stopped", exit status 0 and an
// empty outbox; a restart continues with the same database.
func TestEndToEndBinary(t *testing.T) {
	dir := t.TempDir()
	bin := buildSightd(t, dir)
	broker := freePort(t)
	startMosquitto(t, broker)
	got := subscribe(t, broker, "sightd/#", "homeassistant/#")
	cfgPath := filepath.Join(dir, "sightd.yml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
device: {id: e2e, name: End to end}
model: {bundle: %q, edgetpu: "off"}
cameras:
  - {name: street, source: %q, fast: true}
rules:
  - {id: dark-clothes, prompts: ["something dark"], kind: state}
  - {id: purple, prompts: ["something purple"]}
store: {dir: %q}
http: {listen: ""}
mqtt: {broker: "tcp://%s"}
`, demoBundle(t), opencvPhoto(t, "vtest.avi"), filepath.Join(dir, "db"), broker)), 0o644)

	run := func(wantMsg string) {
		t.Helper()
		cmd := exec.Command(bin, "run", "-c", cfgPath)
		var logs strings.Builder
		cmd.Stderr = &logs
		seen := len(got()) // only what this run publishes counts
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) && !slices.Contains(got()[seen:], wantMsg) {
			time.Sleep(100 * time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("sightd run: %v\n%s", err, logs.String())
		}
		if !slices.Contains(got()[seen:], wantMsg) {
			t.Fatalf("no %q within the deadline; log:\n%s", wantMsg, logs.String())
		}
	}
	run("sightd/e2e/rule/dark-clothes/state ON")
	waitMessage(t, got, "sightd/e2e/status stopped") // the last message, waited for
	msgs := got()
	for _, want := range []string{"sightd/e2e/status online", "sightd/e2e/camera/street/status online", "sightd/e2e/status stopped"} {
		if !slices.Contains(msgs, want) {
			t.Errorf("subscriber did not see %q", want)
		}
	}
	var discovery, purple bool
	for _, m := range msgs {
		discovery = discovery || strings.HasPrefix(m, "homeassistant/binary_sensor/sightd_e2e/rule_dark-clothes/config {")
		purple = purple || strings.Contains(m, `"rule":"purple"`) && strings.HasPrefix(m, "sightd/e2e/events")
	}
	if !discovery || purple {
		t.Errorf("discovery config seen: %v (want true); purple event seen: %v (want false)", discovery, purple)
	}

	countDetections := func() (int, int) {
		cfg := store.Defaults()
		cfg.Dir = filepath.Join(dir, "db")
		st, err := store.Open(context.Background(), cfg, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		n, err := st.CountDetections(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return n, st.Len()
	}
	first, queued := countDetections()
	if first == 0 || queued != 0 {
		t.Fatalf("after the first run: %d detections, %d messages still queued", first, queued)
	}
	// A restart continues where it left off: same database, same device.
	// The first run stopped with the rule ON (retained); the new run's
	// state starts OFF, before its camera turns it ON again.
	seen := len(got())
	run("sightd/e2e/rule/dark-clothes/state ON")
	var states []string
	for _, m := range got()[seen:] {
		if s, ok := strings.CutPrefix(m, "sightd/e2e/rule/dark-clothes/state "); ok {
			states = append(states, s)
		}
	}
	if len(states) < 2 || states[0] != "OFF" || states[1] != "ON" {
		t.Errorf("states after the restart %v: want OFF, then ON", states)
	}
	if n, _ := countDetections(); n <= first {
		t.Fatalf("after a restart: %d detections, want more than %d", n, first)
	}
}

// An update end to end with the real binary and a real Mosquitto: Debian's
// mosquitto_pub sends model/install, the bundle comes from a local HTTP
// server, and the subscriber sees the update installed and committed and
// the retained model/state at version 2; `sightd model status` agrees after
// the daemon stopped.
func TestEndToEndUpdate(t *testing.T) {
	dir := t.TempDir()
	bin := buildSightd(t, dir)
	broker := freePort(t)
	startMosquitto(t, broker)
	got := subscribe(t, broker, "sightd/#")
	key := otatest.Key(t)
	url := otatest.NewServer(t).Put("/v2.tar", otatest.Bundle(t, key, 2))
	cfgPath := filepath.Join(dir, "sightd.yml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
device: {id: e2e}
model: {bundle: %q, edgetpu: "off"}
cameras:
  - {name: street, source: %q, fast: true, loop: true}
rules:
  - {id: dark-clothes, prompts: ["something dark"], kind: state}
store: {dir: %q}
http: {listen: ""}
mqtt: {broker: "tcp://%s"}
ota: {dir: %q, trusted_keys: [%q], trial_frames: 20}
`, demoBundle(t), opencvPhoto(t, "vtest.avi"), filepath.Join(dir, "db"), broker,
		filepath.Join(dir, "models"), strings.TrimSpace(string(key.Public().Marshal())))), 0o644)

	cmd := exec.Command(bin, "run", "-c", cfgPath)
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitFor := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			for _, m := range got() {
				if strings.Contains(m, want) {
					return
				}
			}
		}
		t.Fatalf("no message with %q; log:\n%s", want, logs.String())
	}
	waitFor("sightd/e2e/status online")
	_, port, _ := net.SplitHostPort(broker)
	pub := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-q", "1", "-t", "sightd/e2e/model/install",
		"-m", fmt.Sprintf(`{"url":%q,"version":2,"request_id":"e2e"}`, url))
	if out, err := pub.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	waitFor(`sightd/e2e/model/install/reply {"ok":true,"request_id":"e2e","version":2}`)
	waitFor(`"kind":"installed","version":2`)
	waitFor(`"kind":"committed","version":2`)
	waitFor(`"installed_version":"2"`)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sightd run: %v\n%s", err, logs.String())
	}
	out, err := exec.Command(bin, "model", "status", "-c", cfgPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "installed: version 2") || !strings.Contains(string(out), "floor: version 2") {
		t.Fatalf("sightd model status: %v\n%s", err, out)
	}
}
