package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/sightd/sightd/daemon/config"
)

// waitHTTP polls url until its body satisfies ok, within a generous deadline.
func waitHTTP(t *testing.T, url, what string, ok func(code int, body string) bool) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var last string
	for {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(b)
			if ok(resp.StatusCode, last) {
				return last
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s at %s; last answer: %.1000s", what, url, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fillDisk takes all but leave bytes of path's filesystem: another program
// (a log, a recording) taking the store's disk. It leaves a little: a
// program that takes the very last byte while Badger flushes can still
// crash it (Badger writes through mappings it does not allocate), which no
// check before a write can prevent; store TestDiskFullTmpfs starts on a
// disk full to the last byte.
func fillDisk(t *testing.T, path string, leave int64) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(path), &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free <= leave {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, free-leave); err != nil {
		t.Fatalf("fallocate %d bytes: %v", free-leave, err)
	}
}

// mountTmpfs mounts a tmpfs of mb MB (as root) on a temporary directory,
// unmounted when the test ends.
func mountTmpfs(t *testing.T, mb int) string {
	t.Helper()
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", mb), "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount a %d MB tmpfs (as root): %v: %s", mb, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// The daemon with its store on a real 24 MB tmpfs, the street video firing
// its rule with snapshots and the embedded broker: another program fills
// the disk to within 3 MiB (below the 6 MiB floor). sightd gives back its
// reserve file, keeps running, says so in /healthz, /metrics and
// store/state on MQTT, and recovers when the space comes back; stopped and
// started again on such a disk, it starts degraded.
func TestRunDaemonDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: mounting a 24 MB tmpfs for the store needs root; store TestSpaceLevelsRefuseInOrder covers the levels without it")
	}
	mnt := mountTmpfs(t, 24)
	listen, broker := freePort(t), freePort(t)
	// Floor 2 x 2 MiB + 2 MiB = 6 MiB, reserve 8 MiB.
	yml := fmt.Sprintf(`
device: {id: test}
model: {bundle: %q, edgetpu: off}
cameras:
  - {name: street, source: %q, fast: true, loop: true}
rules:
  - {id: dark-clothes, prompts: ["something dark"], kind: state}
store: {dir: %q, memtable_size: 2097152, value_log_file_size: 1048576, max_payload_bytes: 262144, reserve_mb: 8, space_check_interval: 50ms}
http: {listen: %q}
mqtt: {broker: "tcp://%s", embedded_broker: {listen: %q}}
`, demoBundle(t), opencvPhoto(t, "vtest.avi"), filepath.Join(mnt, "db"), listen, broker, broker)
	cfg, err := config.Parse([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	run := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- runDaemon(ctx, cfg, zerolog.Nop(), controls{}) }()
		return func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("runDaemon: %v", err)
				}
			case <-time.After(2 * time.Minute):
				t.Fatal("the daemon did not stop")
			}
		}
	}
	health, metrics := "http://"+listen+"/healthz", "http://"+listen+"/metrics"
	storeOK := func(code int, body string) bool { return strings.Contains(body, `"name":"store","ok":true`) }
	storeLow := func(code int, body string) bool {
		return code == 503 && strings.Contains(body, `"name":"store","ok":false,"detail":"disk space low: `)
	}
	got := subscribe(t, broker, "sightd/test/store/state", "sightd/test/rule/+/state")

	stop := run()
	waitHTTP(t, health, "the store healthy", storeOK)
	waitHTTP(t, metrics, "a detection with its snapshot", func(_ int, b string) bool {
		return strings.Contains(b, `sightd_detections_total{camera="street",rule="dark-clothes"}`)
	})
	filler := filepath.Join(mnt, "filler")
	fillDisk(t, filler, 3<<20)
	body := waitHTTP(t, health, "/healthz to report the full disk", storeLow)
	t.Logf("healthz: %s", body)
	m := waitHTTP(t, metrics, "the space level in /metrics", func(_ int, b string) bool {
		return strings.Contains(b, "sightd_store_space_level 1") || strings.Contains(b, "sightd_store_space_level 2")
	})
	for _, line := range strings.Split(m, "\n") {
		if strings.HasPrefix(line, "sightd_store_") {
			t.Log(line)
		}
	}
	waitMatch(t, got, "store/state low or full", func(s string) bool {
		return strings.HasPrefix(s, "sightd/test/store/state ") && !strings.Contains(s, `"space":"ok"`) &&
			strings.Contains(s, `"reason":"disk space low: `)
	})
	// Still running: frames are handled after the disk filled.
	frames := func(b string) string {
		for _, line := range strings.Split(b, "\n") {
			if strings.HasPrefix(line, "sightd_frames_handled_total") {
				return line
			}
		}
		return ""
	}
	before := frames(m)
	waitHTTP(t, metrics, "frames handled on a full disk", func(_ int, b string) bool { return frames(b) != before })

	// Space returns.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitHTTP(t, health, "the store healthy again", storeOK)
	waitMatch(t, got, "store/state ok", func(s string) bool {
		return strings.HasPrefix(s, "sightd/test/store/state ") && strings.Contains(s, `"space":"ok"`)
	})
	stop()

	// A start on a disk another program filled while sightd was stopped.
	fillDisk(t, filler, 3<<20)
	stop = run()
	body = waitHTTP(t, health, "a degraded start", storeLow)
	t.Logf("healthz after a start on a full disk: %s", body)
	before = frames(waitHTTP(t, metrics, "metrics", func(int, string) bool { return true }))
	waitHTTP(t, metrics, "frames handled after a start on a full disk", func(_ int, b string) bool { return frames(b) != before })
	os.Remove(filler)
	waitHTTP(t, health, "the store healthy once space returned", storeOK)
	stop()
}

// waitMatch waits until a received message satisfies ok.
func waitMatch(t *testing.T, got func() []string, what string, ok func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		for _, s := range got() {
			if ok(s) {
				t.Logf("seen: %s", s)
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriber did not see %s; got %q", what, got())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
