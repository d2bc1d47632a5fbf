package config

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/ota"
)

func TestExampleConfig(t *testing.T) {
	c, err := Load("sightd.example.yml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Device.ID != "porch-pi" || len(c.Cameras) != 1 || len(c.Rules) != 2 {
		t.Fatalf("example: %+v", c)
	}
	cam := c.Cameras[0]
	// Keys given in the file override the camera defaults; the others stay.
	if cam.Gate.Keyframe != 10*time.Second || len(cam.Gate.Masks) != 1 || cam.Regions.Grid.Rows != 2 || cam.Stall == 0 || !cam.Regions.Full {
		t.Fatalf("camera: %+v", cam)
	}
	if r := c.Rules[1]; r.Kind != rules.State || r.Threshold != 0.6 || time.Duration(r.Cooldown) != 10*time.Second {
		t.Fatalf("state rule defaults: %+v", r)
	}
	if c.Store.DetectionTTL != 720*time.Hour || c.Store.OutboxMaxEntries == 0 {
		t.Fatalf("store: %+v", c.Store)
	}
	// The example documents every http key with its default.
	if !reflect.DeepEqual(withHosts(c.HTTP), withHosts(Defaults().HTTP)) || len(c.HTTP.AllowedHosts) != 0 {
		t.Fatalf("example http %+v, defaults %+v", c.HTTP, Defaults().HTTP)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Fatalf("example warnings: %q", w)
	}
}

// withHosts makes an empty allowed_hosts list and a missing one compare equal.
func withHosts(h HTTP) HTTP {
	h.AllowedHosts = nil
	return h
}

func TestEnvExpansion(t *testing.T) {
	t.Setenv("SIGHTD_TEST_BUNDLE", "/opt/models/demo")
	c, err := Parse([]byte("model:\n  bundle: ${SIGHTD_TEST_BUNDLE}\n"))
	if err != nil || c.Model.Bundle != "/opt/models/demo" {
		t.Fatalf("expansion: %v %+v", err, c)
	}
	_, err = Parse([]byte("model:\n  bundle: ${SIGHTD_TEST_UNSET_VARIABLE}\n"))
	if err == nil || !strings.Contains(err.Error(), "SIGHTD_TEST_UNSET_VARIABLE") {
		t.Fatalf("unset variable: %v", err)
	}
	// A bare $ (in a password, say) is left alone.
	c, err = Parse([]byte("model:\n  bundle: /a$b\n"))
	if err != nil || c.Model.Bundle != "/a$b" {
		t.Fatalf("bare dollar: %v %+v", err, c)
	}
}

func TestBadConfigs(t *testing.T) {
	const ok = "model: {bundle: /b}\n"
	for _, tc := range []struct{ name, yaml, want string }{
		{"empty file", "", "model.bundle: required"},
		{"unknown key", ok + "cameras_: []\n", "field cameras_ not found"},
		{"unknown camera key", ok + "cameras: [{name: a, source: x.mp4, colour: red}]\n", "field colour not found"},
		{"bad scheme", ok + "cameras: [{name: porch, source: \"rtmp://x/y\"}]\n", `cameras[porch].source: unsupported scheme "rtmp"`},
		{"width 0", ok + "cameras: [{name: porch, source: x.mp4, width: 0}]\n", "cameras[porch].width: 0"},
		{"camera twice", ok + "cameras: [{name: a, source: x.mp4}, {name: a, source: y.mp4}]\n", `cameras[1].name: "a" is used twice`},
		{"rule unknown camera", ok + "rules: [{id: r, prompts: [x], cameras: [attic]}]\n", `unknown camera "attic"`},
		{"rule bad threshold", ok + "rules: [{id: r, prompts: [x], threshold: 3}]\n", "threshold: 3 is outside (0, 1)"},
		{"rule twice", ok + "rules: [{id: r, prompts: [x]}, {id: r, prompts: [y]}]\n", `rules[1].id: "r" is used twice`},
		{"rule unknown key", ok + "rules: [{id: r, prompt: x}]\n", `unknown field "prompt"`},
		{"bad threads", "model: {bundle: /b, threads: -1}\n", "model.threads: -1"},
		{"bad edgetpu", "model: {bundle: /b, edgetpu: maybe}\n", `model.edgetpu: "maybe"`},
		{"bad device id", ok + "device: {id: Porch Pi}\n", `device.id: "Porch Pi"`},
		{"bad listen", ok + "http: {listen: localhost}\n", `http.listen: "localhost"`},
		{"listen port 99999", ok + "http: {listen: \"127.0.0.1:99999\"}\n", `http.listen: "127.0.0.1:99999": port "99999": want a number from 0 to 65535`},
		{"allowed host with scheme", ok + "http: {allowed_hosts: [\"http://sightd.lan\"]}\n", `http.allowed_hosts[0]: "http://sightd.lan"`},
		{"read timeout", ok + "http: {read_timeout: 0s}\n", "http.read_timeout: 0s"},
		{"max connections", ok + "http: {max_connections: 100000}\n", "http.max_connections: 100000"},
		{"unknown http key", ok + "http: {token: abc}\n", "field token not found"},
		{"bad log level", ok + "log: {level: loud}\n", `log.level: "loud"`},
		{"bad component level", ok + "log: {levels: {camera: loud}}\n", `log.levels.camera: "loud"`},
		{"unknown log component", ok + "log: {levels: {gpu: debug}}\n", `log.levels.gpu: unknown component`},
		{"bad mqtt broker", ok + "mqtt: {broker: \"http://x:1\"}\n", `mqtt.broker: unsupported scheme "http"`},
		{"bad duration", ok + "store: {detection_ttl: forever}\n", "forever"},
		{"ota key not a key", ok + "ota: {trusted_keys: [\"sightd-ed25519 zz\"]}\n", "ota.trusted_keys[0]"},
		{"ota key file missing", ok + "ota: {trusted_keys: [/nonexistent/fleet.pub]}\n", "ota.trusted_keys[0]"},
		{"ota index without keys", ok + "ota: {index_url: \"https://u.example/i.json\"}\n", "ota.index_url: set, but trusted_keys is empty"},
		{"ota index scheme", ok + "ota: {index_url: \"ftp://u.example/i.json\"}\n", `ota.index_url: unsupported scheme "ftp"`},
		{"ota trial frames", ok + "ota: {trial_frames: 0}\n", "ota.trial_frames: 0"},
		{"not yaml", "model: [\n", "did not find expected"},
		{"too large", strings.Repeat("#", MaxFileSize+1), "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	// Every problem at once.
	_, err := Parse([]byte("model: {threads: -1, edgetpu: x}\nlog: {level: y}\n"))
	for _, want := range []string{"model.bundle", "model.threads", "model.edgetpu", "log.level"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("joined error lacks %s: %v", want, err)
		}
	}
}

// A bad second key is named by its own index, with no other index in the
// message (it once said "ota.trusted_keys[1]: ota: trusted key 0").
func TestTrustedKeyIndex(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "fleet.pub")
	key, err := ota.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, key.Public().Marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "fleet-2027.pub")
	_, err = Parse([]byte(fmt.Sprintf("model: {bundle: /b}\nota: {trusted_keys: [%q, %q]}\n", good, missing)))
	if err == nil || !strings.Contains(err.Error(), "ota.trusted_keys[1]: ") || !strings.Contains(err.Error(), missing) ||
		strings.Contains(err.Error(), "trusted key 0") || strings.Contains(err.Error(), "trusted_keys[0]") {
		t.Fatalf("second key missing: %v", err)
	}
	if _, err := Parse([]byte(fmt.Sprintf("model: {bundle: /b}\nota: {trusted_keys: [%q, %q]}\n", good, good))); err == nil ||
		!strings.Contains(err.Error(), "trusted keys 0 and 1 are the same key") {
		t.Fatalf("the same key twice: %v", err)
	}
}

// CheckFiles reads what run reads, on real files; every problem is named.
func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle.tar.gz")
	pass := filepath.Join(dir, "mqtt-password")
	token := filepath.Join(dir, "api-token")
	for p, content := range map[string]string{bundle: "not checked here", pass: "secret\n", token: strings.Repeat("t", 32) + "\n"} {
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	good := fmt.Sprintf("model: {bundle: %q}\nmqtt: {username: u, password_file: \"${CREDENTIALS_DIRECTORY}/mqtt-password\"}\n"+
		"http: {token_file: \"${CREDENTIALS_DIRECTORY}/api-token\"}\n", bundle)
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckFiles(); err != nil {
		t.Fatalf("good files: %v", err)
	}
	os.Remove(bundle)
	os.Remove(pass)
	os.WriteFile(token, []byte("short\n"), 0o600)
	err = c.CheckFiles()
	for _, want := range []string{"model.bundle: stat " + bundle, "mqtt.password_file: open " + pass, "http.token_file: " + token + " holds 5 characters"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckFiles: %v\nwant %q", err, want)
		}
	}
	// MQTT and the API off: their files are not needed.
	os.WriteFile(bundle, nil, 0o600)
	c.MQTT.Broker, c.HTTP.Listen = "", ""
	if err := c.CheckFiles(); err != nil {
		t.Fatalf("MQTT and API off: %v", err)
	}
}

func TestListenWarnings(t *testing.T) {
	c, err := Parse([]byte("model: {bundle: /b}\nhttp: {listen: \":8080\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], `http.listen: ":8080" reaches beyond this machine`) {
		t.Fatalf("warnings: %q", w)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.yml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	data, err := os.ReadFile("sightd.example.yml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config is invalid: %v", err)
		}
	})
}
