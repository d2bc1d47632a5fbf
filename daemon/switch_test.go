package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/sightd/sightd/daemon/config"
)

// Home Assistant's switches survive a restart: a rule of the configuration
// file switched off stays off (though the file, saved again at start, says
// nothing of it), and so does a camera's detection.
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
	run := func(during func(got func() []string, seen int)) []string {
		t.Helper()
		cfg, err := config.Parse([]byte(yml))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- runDaemon(ctx, cfg, zerolog.Nop(), controls{}) }()
		got := subscribe(t, broker)
		waitMessage(t, got, "sightd/sw/status online")
		during(got, 0)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		waitMessage(t, got, "sightd/sw/status stopped")
		return got()
	}
	send := func(topic, payload string) {
		pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("test-switch"))
		if tok := pub.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		pub.Publish(topic, 1, false, payload).Wait()
		pub.Disconnect(100)
	}
	run(func(got func() []string, _ int) {
		waitMessage(t, got, "sightd/sw/rule/purple/enabled ON")
		send("sightd/sw/rule/purple/enabled/set", "OFF")
		send("sightd/sw/camera/street/detection/set", "OFF")
		waitMessage(t, got, "sightd/sw/rule/purple/enabled OFF")
		waitMessage(t, got, "sightd/sw/camera/street/detection OFF")
	})
	msgs := run(func(got func() []string, _ int) {
		// The first sync of the new run publishes every switch.
		waitMessage(t, got, "sightd/sw/rule/dark-clothes/enabled ON")
		waitMessage(t, got, "sightd/sw/rule/purple/enabled OFF")
		waitMessage(t, got, "sightd/sw/camera/street/detection OFF")
	})
	if slices.Contains(msgs, "sightd/sw/rule/purple/enabled ON") || slices.Contains(msgs, "sightd/sw/camera/street/detection ON") {
		t.Errorf("a switch came back on after the restart: %q", msgs)
	}
	for _, m := range msgs {
		if strings.HasPrefix(m, "sightd/sw/rule/dark-clothes/state ON") {
			t.Errorf("a rule fired on a camera whose detection is off: %s", m)
		}
	}
}
