package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/sightd/sightd/camera"
	"github.com/sightd/sightd/daemon/config"
)

// Home Assistant's switches survive a restart: a rule of the configuration
// file switched off stays off (though the file, saved again at start, says
// nothing of it), and so does a camera's detection. Every rule's image has
// a picture from the start: a placeholder while the rule never matched,
// then its snapshots; after the restart the last of them (kept in the
// store) again, never the placeholder over it.
func TestSwitchesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	broker := freePort(t)
	yml := fmt.Sprintf(`
device: {id: sw}
model: {bundle: %q, edgetpu: off}
cameras:
  - {name: street, source: %q, fast: true, loop: true}
rules:
  - {id: dark-clothes, prompts: ["something dark"], kind: state}
  - {id: purple, prompts: ["something purple"]}
store: {dir: %q}
http: {listen: ""}
mqtt: {broker: "tcp://%s", embedded_broker: {listen: %q}}
`, demoBundle(t), opencvPhoto(t, "vtest.avi"), filepath.Join(dir, "db"), broker, broker)
	// got: every message but snapshots; pics: every payload by topic, in
	// order, snapshots included (as they were when sightd stopped).
	run := func(during func(got func() []string, pics func() map[string][][]byte)) ([]string, map[string][][]byte) {
		t.Helper()
		cfg, err := config.Parse([]byte(yml))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- runDaemon(ctx, cfg, zerolog.Nop(), controls{}) }()
		got := subscribe(t, broker)
		pics := payloads(t, broker, "sightd/sw/#")
		waitMessage(t, got, "sightd/sw/status online")
		during(got, pics)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		waitMessage(t, got, "sightd/sw/status stopped")
		waitUntil(t, "stopped, seen by the second subscriber", func() bool {
			s := pics()["sightd/sw/status"]
			return len(s) > 0 && string(s[len(s)-1]) == "stopped"
		})
		return got(), pics()
	}
	send := func(topic, payload string) {
		pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("test-switch"))
		if tok := pub.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		pub.Publish(topic, 1, false, payload).Wait()
		pub.Disconnect(100)
	}
	placeholder := func(name string) []byte {
		b, err := camera.Placeholder(placeholderSize.X, placeholderSize.Y, name, "no detection yet")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	dark, purple := placeholder("something dark"), placeholder("something purple")
	const darkPic, purplePic = "sightd/sw/rule/dark-clothes/snapshot", "sightd/sw/rule/purple/snapshot"
	_, first := run(func(got func() []string, pics func() map[string][][]byte) {
		waitMessage(t, got, "sightd/sw/rule/purple/enabled ON")
		waitUntil(t, "the placeholders and a snapshot of dark-clothes", func() bool {
			p := pics()
			return len(p[purplePic]) > 0 && len(p[darkPic]) > 1
		})
		send("sightd/sw/rule/purple/enabled/set", "OFF")
		send("sightd/sw/camera/street/detection/set", "OFF")
		waitMessage(t, got, "sightd/sw/rule/purple/enabled OFF")
		waitMessage(t, got, "sightd/sw/camera/street/detection OFF")
	})
	if p := first[darkPic]; len(p) == 0 || bytes.Equal(p[len(p)-1], dark) {
		t.Errorf("dark-clothes' pictures in the first run: %d, want its snapshots after its placeholder", len(p))
	}
	if p := first[purplePic]; len(p) != 1 || !bytes.Equal(p[0], purple) {
		t.Errorf("purple's pictures in the first run: %d, want its placeholder only", len(p))
	}
	// The newest snapshot of dark-clothes that the store keeps (read here,
	// not taken from the subscriber: a frame under way when the detection
	// was switched off may still have fired as sightd stopped).
	kept := newestSnapshot(t, filepath.Join(dir, "db"), "dark-clothes")
	msgs, second := run(func(got func() []string, pics func() map[string][][]byte) {
		// The first sync of the new run publishes every switch.
		waitMessage(t, got, "sightd/sw/rule/dark-clothes/enabled ON")
		waitMessage(t, got, "sightd/sw/rule/purple/enabled OFF")
		waitMessage(t, got, "sightd/sw/camera/street/detection OFF")
		waitUntil(t, "both rules' pictures", func() bool {
			p := pics()
			return len(p[purplePic]) > 0 && len(p[darkPic]) > 0
		})
	})
	if slices.Contains(msgs, "sightd/sw/rule/purple/enabled ON") || slices.Contains(msgs, "sightd/sw/camera/street/detection ON") {
		t.Errorf("a switch came back on after the restart: %q", msgs)
	}
	for _, m := range msgs {
		if strings.HasPrefix(m, "sightd/sw/rule/dark-clothes/state ON") {
			t.Errorf("a rule fired on a camera whose detection is off: %s", m)
		}
	}
	if p := second[darkPic]; len(p) != 1 || !bytes.Equal(p[0], kept) {
		t.Errorf("dark-clothes' pictures after the restart: %d, want one, its newest snapshot kept in the store", len(p))
	}
	if p := second[purplePic]; len(p) != 1 || !bytes.Equal(p[0], purple) {
		t.Errorf("purple's pictures after the restart: %d, want its placeholder only", len(p))
	}
}

// newestSnapshot is the snapshot that the store in dir keeps of rule's
// newest detection that matched and has one.
func newestSnapshot(t *testing.T, dir, rule string) []byte {
	t.Helper()
	st, dets := storedDetections(t, dir)
	defer st.Close() // now: the next run opens the store
	for _, det := range dets {
		if det.Rule != rule || det.State == "OFF" {
			continue
		}
		if jpeg, err := st.EventSnapshot(context.Background(), det.ID); err == nil {
			return jpeg
		}
	}
	t.Fatalf("no snapshot of %s kept", rule)
	return nil
}
