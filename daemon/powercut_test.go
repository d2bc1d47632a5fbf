package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightd/sightd/camera"
	"github.com/sightd/sightd/daemon/config"
	"github.com/sightd/sightd/ota"
	"github.com/sightd/sightd/ota/otatest"
	"github.com/sightd/sightd/quant/bundle"
	"github.com/sightd/sightd/store"
)

// TestMain lets the test binary stand in for `sightd model install` in a
// child process the power-cut test kills.
func TestMain(m *testing.M) {
	switch os.Getenv("SIGHTD_TEST_CHILD") {
	case "install":
		os.Exit(installChild())
	case "command":
		os.Exit(commandChild())
	case "capture-worker": // `sightd camera capture-worker`, as main starts it
		if err := camera.RunWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "capture worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// installChild runs one offline install from the config and URL in the
// environment. At the step named by SIGHTD_TEST_STOP_AT (for the download:
// once some of it is on disk) it prints "AT <step>" and waits to be killed.
func installChild() int {
	cfg, err := config.Load(os.Getenv("SIGHTD_TEST_CONFIG"))
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	stopAt := ota.Step(os.Getenv("SIGHTD_TEST_STOP_AT"))
	hang := func(s ota.Step) {
		fmt.Printf("AT %s\n", s)
		select {} // until SIGKILL
	}
	step := func(s ota.Step) {
		if s == stopAt && s != ota.StepDownload {
			hang(s)
		}
		if limit := os.Getenv("SIGHTD_TEST_FSIZE"); limit != "" && s == ota.StepDownload {
			// A disk that fills up as the download begins: files may not
			// grow past limit bytes (EFBIG instead of SIGXFSZ).
			n, _ := strconv.ParseUint(limit, 10, 64)
			signal.Ignore(syscall.SIGXFSZ)
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
				fmt.Println("ERROR setrlimit", err)
				os.Exit(1)
			}
		}
	}
	report := func(s ota.State) {
		if stopAt == ota.StepDownload && s.Step == ota.StepDownload && s.Percentage > 0 {
			hang(s.Step)
		}
	}
	v, err := installOffline(context.Background(), cfg, zerolog.Nop(), os.Getenv("SIGHTD_TEST_URL"), 0, step, report)
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	if stopAt == ota.StepTrial {
		// The trial runs in the daemon: a start during the trial is what
		// a power cut then interrupts.
		d := &daemon{cfg: cfg, log: zerolog.Nop()}
		if d.st, err = store.Open(context.Background(), cfg.Store, zerolog.Nop()); err != nil {
			fmt.Println("ERROR", err)
			return 1
		}
		if _, err := d.modelPath(context.Background()); err != nil {
			fmt.Println("ERROR", err)
			return 1
		}
		hang(ota.StepTrial)
	}
	fmt.Println("INSTALLED", v)
	return 0
}

// slowServer serves one file slowly enough that a child can be killed in
// the middle of downloading it, and honours Range requests (resume).
func slowServer(t *testing.T, data []byte) (url string, ranges *atomic.Int64) {
	t.Helper()
	ranges = &atomic.Int64{}
	srv := otatest.NewServer(t)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			ranges.Add(1)
		}
		http.ServeContent(&slowWriter{ResponseWriter: w}, r, "b.tar", time.Unix(1_700_000_000, 0), strings.NewReader(string(data)))
	})
	return srv.URL + "/b.tar", ranges
}

// slowWriter writes in 8 KiB pieces, 20 ms apart.
type slowWriter struct{ http.ResponseWriter }

func (s *slowWriter) Write(p []byte) (int, error) {
	var n int
	for len(p) > 0 {
		k := min(len(p), 8<<10)
		m, err := s.ResponseWriter.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		s.ResponseWriter.(http.Flusher).Flush()
		p = p[k:]
		time.Sleep(20 * time.Millisecond)
	}
	return n, nil
}

// runChild runs the install child; with stopAt it kills it with SIGKILL
// once it reports that step, and returns its output.
func runChild(t *testing.T, cfgPath, url string, stopAt ota.Step, env ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SIGHTD_TEST_CHILD=install", "SIGHTD_TEST_CONFIG="+cfgPath,
		"SIGHTD_TEST_URL="+url, "SIGHTD_TEST_STOP_AT="+string(stopAt))
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var seen []string
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				cmd.Wait()
				return strings.Join(seen, "\n")
			}
			seen = append(seen, l)
			if stopAt != "" && l == "AT "+string(stopAt) {
				cmd.Process.Signal(syscall.SIGKILL)
				cmd.Wait()
				return strings.Join(seen, "\n")
			}
		case <-timeout:
			cmd.Process.Kill()
			t.Fatalf("child did not reach %q: %s", stopAt, strings.Join(seen, "\n"))
		}
	}
}

// checkConsistent is what must hold after any power cut: the models
// directory recovers to exactly one complete active model (want), Badger
// opens, and every rule has a complete set of vectors for the active model.
func checkConsistent(t *testing.T, cfg *config.Config, want int64) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, cfg.Store, zerolog.Nop())
	if err != nil {
		t.Fatalf("store after the kill: %v", err)
	}
	defer st.Close()
	m, _, err := ota.OpenModels(cfg.OTA.Dir, cfg.OTA.TrialRestarts, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := ota.Reconcile(ctx, m, st); err != nil {
		t.Fatal(err)
	}
	dir, v, err := m.Active()
	switch {
	case errors.Is(err, ota.ErrNoModel):
		dir, v = cfg.Model.Bundle, 1
	case err != nil:
		t.Fatal(err)
	}
	b, err := bundle.Open(dir)
	if err != nil {
		t.Fatalf("active model %d is not complete: %v", v, err)
	}
	b.Close()
	if v != want || b.Manifest.Version != want {
		t.Fatalf("active model %d (bundle says %d), want %d", v, b.Manifest.Version, want)
	}
	// Each rule's own vector for the active model, as the rules load them.
	for _, id := range []string{"dark-clothes", "purple"} {
		vec, err := st.Vector(ctx, v, id, "positive")
		if err != nil || vec.Model != v || len(vec.Data) != 16 {
			t.Fatalf("rule %s: vector for model %d: %+v, %v", id, v, vec, err)
		}
	}
	entries, _ := os.ReadDir(cfg.OTA.Dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("leftover %s after recovery", e.Name())
		}
	}
}

// A power cut at each step of an update: a child process running the
// install is killed with SIGKILL there. Afterwards exactly one complete
// model is active (the old one before the switch, the new one after),
// Badger opens, every rule has vectors for the active model, and running
// the install again completes it (a cut download resumes).
func TestPowerCutDuringUpdate(t *testing.T) {
	key := otatest.Key(t)
	data := otatest.Bundle(t, key, 2)
	for _, step := range []ota.Step{ota.StepDownload, ota.StepVerify, ota.StepUnpack, ota.StepFsync,
		ota.StepSmoke, ota.StepReembed, ota.StepSwitch, ota.StepTrial} {
		t.Run(string(step), func(t *testing.T) {
			dir := t.TempDir()
			cfg, _, _ := otaConfig(t, dir, key)
			cfgPath := filepath.Join(dir, "sightd.yml")
			if err := os.WriteFile(cfgPath, []byte(configYAML(t, cfg)), 0o644); err != nil {
				t.Fatal(err)
			}
			url, ranges := slowServer(t, data)
			out := runChild(t, cfgPath, url, step)
			if !strings.Contains(out, "AT "+string(step)) {
				t.Fatalf("child output: %s", out)
			}
			want := int64(1)
			if step == ota.StepTrial {
				want = 2
			}
			checkConsistent(t, cfg, want)
			if step == ota.StepTrial {
				return
			}
			out = runChild(t, cfgPath, url, "")
			if !strings.Contains(out, "INSTALLED 2") {
				t.Fatalf("install after the power cut: %s", out)
			}
			checkConsistent(t, cfg, 2)
			if step == ota.StepDownload && ranges.Load() == 0 {
				t.Error("the download started over instead of resuming with a Range request")
			}
		})
	}
}

// A disk that fills up during the download: the install fails with a clear
// error and the old model stays; with space again, the install completes.
func TestDiskFullDuringDownload(t *testing.T) {
	key := otatest.Key(t)
	dir := t.TempDir()
	cfg, _, _ := otaConfig(t, dir, key)
	cfgPath := filepath.Join(dir, "sightd.yml")
	if err := os.WriteFile(cfgPath, []byte(configYAML(t, cfg)), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := otatest.NewServer(t)
	url := srv.Put("/v2.tar", otatest.Bundle(t, key, 2))
	out := runChild(t, cfgPath, url, "", "SIGHTD_TEST_FSIZE=16384")
	t.Logf("child: %s", out)
	if !strings.Contains(out, "ERROR") || !strings.Contains(out, "disk full") {
		t.Fatalf("install on a full disk: %s", out)
	}
	checkConsistent(t, cfg, 1)
	if out := runChild(t, cfgPath, url, ""); !strings.Contains(out, "INSTALLED 2") {
		t.Fatalf("install with space again: %s", out)
	}
	checkConsistent(t, cfg, 2)
}

// configYAML writes cfg back as the YAML the child reads: the test config
// with its temporary paths.
func configYAML(t *testing.T, cfg *config.Config) string {
	t.Helper()
	return fmt.Sprintf(`
device: {id: test}
model: {bundle: %q, edgetpu: off}
cameras:
  - {name: street, source: %q}
rules:
  - {id: dark-clothes, prompts: ["something dark"], kind: state}
  - {id: purple, prompts: ["something purple"]}
store: {dir: %q}
ota: {dir: %q, trusted_keys: [%q], trial_frames: %d, trial_restarts: %d}
log: {level: warn}
`, cfg.Model.Bundle, cfg.Cameras[0].Source, cfg.Store.Dir, cfg.OTA.Dir, cfg.OTA.TrustedKeys[0],
		cfg.OTA.TrialFrames, cfg.OTA.TrialRestarts)
}
