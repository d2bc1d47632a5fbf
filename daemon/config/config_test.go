package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sightd/sightd/daemon/rules"
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
