package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/sightd/sightd/daemon/config"
	"github.com/sightd/sightd/ota"
	"github.com/sightd/sightd/ota/otatest"
)

// otaConfig is a daemon on the looping street video with the demo bundle
// (version 1) as its configured model, the embedded broker, and OTA
// trusting key.
func otaConfig(t *testing.T, dir string, key *ota.PrivateKey) (*config.Config, string, string) {
	t.Helper()
	listen, broker := freePort(t), freePort(t)
	yml := fmt.Sprintf(`
device: {id: test}
model: {bundle: %q, edgetpu: off}
cameras:
  - {name: street, source: %q, fast: true, loop: true}
rules:
  - {id: dark-clothes, prompts: ["something dark"], kind: state}
  - {id: purple, prompts: ["something purple"]}
store: {dir: %q}
http: {listen: %q}
mqtt: {broker: "tcp://%s", embedded_broker: {listen: %q}}
ota: {dir: %q, trusted_keys: [%q], trial_frames: 20}
`, demoBundle(t), opencvPhoto(t, "vtest.avi"), filepath.Join(dir, "db"), listen, broker, broker,
		filepath.Join(dir, "models"), strings.TrimSpace(string(key.Public().Marshal())))
	cfg, err := config.Parse([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg, listen, broker
}

// startDaemon runs the daemon in-process; stop ends it and waits.
func startDaemon(t *testing.T, cfg *config.Config) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runDaemon(ctx, cfg, zerolog.Nop(), controls{}) }()
	return func() {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the daemon did not stop")
		}
	}
}

// encoderHealth is what /healthz says of the encoder.
func encoderHealth(t testing.TB, listen string) string {
	t.Helper()
	resp, err := http.Get("http://" + listen + "/healthz")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var h struct {
		Checks []struct {
			Name   string `json:"name"`
			Detail string `json:"detail"`
		} `json:"checks"`
	}
	body, _ := io.ReadAll(resp.Body)
	json.Unmarshal(body, &h)
	for _, c := range h.Checks {
		if c.Name == "encoder" {
			return c.Detail
		}
	}
	return ""
}

// waitSeen waits until the subscriber has seen a message containing want,
// after the first from messages, and returns that message.
func waitSeen(t *testing.T, got func() []string, from int, want string) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		msgs := got()
		for _, m := range msgs[min(from, len(msgs)):] {
			if strings.Contains(m, want) {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message with %q; saw:\n%s", want, strings.Join(msgs, "\n"))
		}
		time.Sleep(10 * time.Millisecond) // not a busy loop: stress runs load both cores
	}
}

// indexOf is the index of the first message at or after from containing
// every one of want, or -1.
func indexOf(msgs []string, from int, want ...string) int {
	for i := from; i < len(msgs); i++ {
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(msgs[i], w)
		}
		if ok {
			return i
		}
	}
	return -1
}

// Updates sent over MQTT against the running daemon: broken bundles are
// refused with a model/event saying why while version 1 keeps serving; a
// good one is downloaded, verified, smoke-tested, re-embedded and swapped in
// without a restart, and its trial commits it; detections then carry the
// new version; after a restart version 2 is still the one running.
func TestOTAOverMQTT(t *testing.T) {
	dir := t.TempDir()
	key, stranger := otatest.Key(t), otatest.Key(t)
	cfg, listen, broker := otaConfig(t, dir, key)
	got := subscribe(t, broker)
	stop := startDaemon(t, cfg)
	waitSeen(t, got, 0, "sightd/test/status online")

	pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("test-publisher"))
	if tok := pub.Connect(); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer pub.Disconnect(100)
	install := func(url string, version int64, id string) {
		t.Helper()
		payload := fmt.Sprintf(`{"url":%q,"version":%d,"request_id":%q}`, url, version, id)
		if tok := pub.Publish("sightd/test/model/install", 1, false, payload); tok.Wait() && tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		waitSeen(t, got, 0, `"request_id":"`+id+`"`)
	}

	srv := otatest.NewServer(t)
	src := otatest.Dir(t, 2)
	good := otatest.Pack(t, src, key)
	nan := otatest.Dir(t, 2)
	otatest.ReplaceImageTower(t, nan, 16, float32(math.NaN()))
	narrow := otatest.Dir(t, 2)
	otatest.ReplaceImageTower(t, narrow, 8, 0.5)
	for _, tc := range []struct {
		name, reason string
		data         []byte
	}{
		{"flipped", "sha256 mismatch", otatest.Flip(t, good, src, "image.tflite")},
		{"stranger", "not trusted", otatest.Pack(t, otatest.Dir(t, 2), stranger)},
		{"nan", "not finite", otatest.Pack(t, nan, key)},
		{"narrow", "does not match the manifest", otatest.Pack(t, narrow, key)},
	} {
		mark := len(got())
		install(srv.Put("/"+tc.name+".tar", tc.data), 2, tc.name)
		failure := waitSeen(t, got, mark, `"kind":"failed"`)
		t.Logf("%s: %s", tc.name, failure)
		if !strings.Contains(failure, tc.reason) {
			t.Errorf("%s: failure %s, want the reason %q", tc.name, failure, tc.reason)
		}
		if h := encoderHealth(t, listen); !strings.Contains(h, "v1") {
			t.Errorf("%s: encoder %q, want version 1 still serving", tc.name, h)
		}
		// The update entity stops offering the refused version: the
		// state published after the failure says latest_version 1.
		fail := indexOf(got(), mark, `"kind":"failed"`)
		state := waitSeen(t, got, fail, `sightd/test/model/state {"installed_version":"1","latest_version"`)
		if !strings.Contains(state, `"latest_version":"1"`) {
			t.Errorf("%s: model state after the refusal %s", tc.name, state)
		}
	}

	// A download that never ends is cancelled over MQTT; the next install
	// is not blocked by it.
	stuck := make(chan struct{})
	stuckSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stuck:
		}
	}))
	defer stuckSrv.Close()
	defer close(stuck)
	mark := len(got())
	const reply = "sightd/test/model/install/reply "
	install(stuckSrv.URL+"/v2.tar", 2, "stuck")
	if rep := waitSeen(t, got, mark, reply+`{"ok":true,"request_id":"stuck"`); !strings.Contains(rep, `"ok":true`) {
		t.Fatalf("install: %s", rep)
	}
	busy := fmt.Sprintf(`{"url":%q,"version":2,"request_id":"second"}`, srv.Put("/v2.tar", good))
	if tok := pub.Publish("sightd/test/model/install", 1, false, busy); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if rep := waitSeen(t, got, mark, reply+`{"ok":false,"request_id":"second"`); !strings.Contains(rep, "already running (version 2, step download)") ||
		!strings.Contains(rep, `{\"cancel\":true}`) {
		t.Errorf("a second install while one runs: %s", rep)
	}
	if tok := pub.Publish("sightd/test/model/install", 1, false, `{"cancel":true,"request_id":"c1"}`); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if rep := waitSeen(t, got, mark, reply+`{"ok":true,"request_id":"c1"`); !strings.Contains(rep, `"ok":true`) || !strings.Contains(rep, `"version":2`) ||
		!strings.Contains(rep, `"cancelled":true`) {
		t.Errorf("cancel: %s", rep)
	}
	if failure := waitSeen(t, got, mark, `"kind":"failed"`); !strings.Contains(failure, "update cancelled") {
		t.Errorf("outcome of the cancelled update: %s", failure)
	}

	mark = len(got())
	install(srv.Put("/v2.tar", good), 2, "good")
	waitSeen(t, got, mark, `"kind":"installed","version":2`)
	if h := encoderHealth(t, listen); !strings.Contains(h, "v2") {
		t.Errorf("encoder %q after the update, want version 2", h)
	}
	waitSeen(t, got, mark, `"kind":"committed","version":2`)
	waitSeen(t, got, mark, `"installed_version":"2"`)
	stop()

	// Restarted, it runs the installed version, not the configured bundle.
	mark = len(got())
	stop = startDaemon(t, cfg)
	waitSeen(t, got, mark, "sightd/test/status online")
	if h := encoderHealth(t, listen); !strings.Contains(h, "v2") {
		t.Errorf("encoder %q after a restart, want version 2", h)
	}
	stop()

	st, dets := storedDetections(t, filepath.Join(dir, "db"))
	byModel := map[int64]int{}
	for _, det := range dets {
		byModel[det.ModelVersion]++
	}
	if byModel[2] == 0 {
		t.Errorf("detections by model %v: none by version 2", byModel)
	}
	if _, highest, _ := st.ModelVersions(context.Background()); highest != 2 {
		t.Errorf("highest accepted version %d, want 2", highest)
	}
	// After the commit only the running model's vectors are kept.
	if versions, err := st.VectorVersions(context.Background()); err != nil || len(versions) != 1 || versions[0] != 2 {
		t.Errorf("vector sets of versions %v (%v), want only 2's", versions, err)
	}
}

// An installed version that fails its self-test at start (here: a model
// file damaged on disk) is rolled back before anything runs, and the
// rollback is reported once MQTT is up.
func TestDamagedInstallRolledBackAtStart(t *testing.T) {
	dir := t.TempDir()
	key := otatest.Key(t)
	cfg, _, _ := otaConfig(t, dir, key)
	url := otatest.NewServer(t).Put("/v2.tar", otatest.Bundle(t, key, 2))
	if v, err := installOffline(context.Background(), cfg, zerolog.Nop(), url, 2, nil, nil); err != nil || v != 2 {
		t.Fatalf("install: %d, %v", v, err)
	}
	img := filepath.Join(cfg.OTA.Dir, "v2", "image.tflite")
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cfg: cfg, log: zerolog.Nop()}
	d.rt = runtimeOptions(cfg.Model, nil)
	defer d.close()
	if err := d.openModel(context.Background()); err != nil {
		t.Fatalf("start with a damaged install: %v", err)
	}
	if v := d.running.Load(); v != 1 {
		t.Errorf("running version %d, want the configured bundle's 1", v)
	}
	if len(d.startEvents) != 1 || d.startEvents[0].Kind != "rolled_back" || d.startEvents[0].Version != 2 ||
		!strings.Contains(d.startEvents[0].Err.Error(), "sha256 mismatch") {
		t.Errorf("events at start: %+v", d.startEvents)
	}
	if _, _, err := d.models.Active(); !errors.Is(err, ota.ErrNoModel) {
		t.Errorf("an installed version is still current: %v", err)
	}
}
