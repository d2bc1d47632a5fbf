package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sightd/sightd/camera"
	"github.com/sightd/sightd/daemon/hatest"
)

// The device of the Home Assistant test, and its rule that never fires
// (nothing purple passes in either video).
const (
	haDevice    = "hatest"
	haQuietRule = "purple"
)

// haScene is what sightd watches in a Home Assistant test: a video, a
// state rule and an event rule that fire on it (with the quiet rule beside
// them), and where the pictures go.
type haScene struct {
	name         string // the device's name, as HA shows it
	camera       string // the camera's name
	video        string
	state, event string // the rules' ids
	rules        string // the state and event rules, as YAML list items
	// screenshots: the directory for HA's dashboard and device page, or "";
	// snapshot: the file for an event's snapshot from sightd's HTTP API, or "".
	screenshots, snapshot string
}

// sightd against a real Home Assistant (make test-ha; make test runs it
// too): Mosquitto, Home Assistant onboarded and given its MQTT integration
// over REST, sightd on the demo bundle and the street video. Every entity
// sightd announces (read from the discovery configs it publishes, so a new
// kind of entity is covered without touching this test) must exist in HA
// with a state of its kind; HA's log must have no warning or error about
// MQTT or sightd; the event entity must fire; a rule switch turned off in
// HA disables the rule in sightd; everything goes unavailable when sightd
// stops.
func TestHomeAssistant(t *testing.T) {
	// people in dark clothes walk by
	testHomeAssistant(t, haScene{name: "sightd HA test", camera: "street", video: opencvPhoto(t, "vtest.avi"), state: "dark-clothes", event: "dark-passer",
		rules: `
  - {id: dark-clothes, name: Someone in dark clothes, prompts: ["something dark"], kind: state}
  - {id: dark-passer, name: Dark passer-by, prompts: ["something dark"], kind: event}`,
		screenshots: os.Getenv("SIGHTD_HA_SCREENSHOTS")})
}

// The README's pictures (make readme-pictures), of our own data: the test
// above on a synthetic video (an orange ball rolling across a yard), with
// HA's dashboard and device page and an event's snapshot written to
// $SIGHTD_README_PICTURES.
func TestReadmePictures(t *testing.T) {
	dir := os.Getenv("SIGHTD_README_PICTURES")
	if dir == "" {
		t.Skip("SKIPPED, NO PICTURES MADE: $SIGHTD_README_PICTURES is not set; run `make readme-pictures`")
	}
	testHomeAssistant(t, haScene{name: "Garden camera", camera: "yard", video: orangeBallVideo(t, t.TempDir()), state: "orange", event: "orange-passer",
		rules: `
  - {id: orange, name: Something orange, prompts: ["something orange"], kind: state}
  - {id: orange-passer, name: Orange passer-by, prompts: ["something orange"], kind: event}`,
		screenshots: dir, snapshot: filepath.Join(dir, "snapshot.jpg")})
}

func testHomeAssistant(t *testing.T, scene haScene) {
	venv := os.Getenv(hatest.VenvEnv)
	if venv == "" {
		t.Skip("SKIPPED, NOT TESTED against Home Assistant: $" + hatest.VenvEnv + " is not set; run `make test-ha` " +
			"(it installs Home Assistant in its own venv; `make test` runs this test too)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := buildSightd(t, dir)
	broker := freePort(t)
	startMosquitto(t, broker)
	configs := retained(t, broker, "homeassistant/#")

	start := time.Now()
	ha, err := hatest.Start(ctx, venv, filepath.Join(dir, "ha"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ha.Stop)
	defer func() {
		if t.Failed() {
			log, _ := ha.Log()
			t.Logf("home-assistant.log:\n%s\nconsole:\n%s", tail(log, 200), tail(ha.Output(), 50))
		}
	}()
	t.Logf("Home Assistant answered on %s after %s", ha.URL, time.Since(start).Round(time.Second))
	if err := ha.Onboard(ctx); err != nil {
		t.Fatal(err)
	}
	host, portStr, _ := net.SplitHostPort(broker)
	port, _ := strconv.Atoi(portStr)
	entryID, err := ha.AddMQTT(ctx, host, port)
	if err != nil {
		t.Fatal(err)
	}
	waitHA(t, ctx, ha, "the MQTT entry loaded", func() (bool, string) {
		es, err := ha.Entries(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, e := range es {
			if e.EntryID == entryID {
				return e.State == "loaded", fmt.Sprintf("entry state %q %s", e.State, e.Reason)
			}
		}
		return false, "no entry " + entryID
	})

	listen := freePort(t)
	cfgPath := filepath.Join(dir, "sightd.yml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
device: {id: %s, name: %s}
model: {bundle: %q, edgetpu: "off"}
cameras:
  - {name: %s, source: %q, fast: true, loop: true}
rules:%s
  - {id: %s, prompts: ["something purple"], kind: event}
store: {dir: %q}
http: {listen: %q}
mqtt: {broker: "tcp://%s"}
`, haDevice, scene.name, demoBundle(t), scene.camera, scene.video, scene.rules, haQuietRule,
		filepath.Join(dir, "db"), listen, broker)), 0o644)
	var events func() map[string][][]byte
	if scene.snapshot != "" {
		events = payloads(t, broker, "sightd/"+haDevice+"/events")
	}
	cmd := exec.Command(bin, "run", "-c", cfgPath)
	logPath := filepath.Join(dir, "sightd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	defer func() {
		if t.Failed() {
			logs, _ := os.ReadFile(logPath)
			t.Logf("sightd's log:\n%s", tail(string(logs), 100))
		}
	}()

	// Every entity sightd announces, as HA registered it, each with the
	// state its kind should have (the event entity fired by the event
	// rule). sightd sends its configs in a burst right after "online", so
	// the set read at the start of a round may lack the last few: the
	// rounds repeat until one ends with the set it started with.
	var ents []haEntity
	var states map[string]hatest.State
	for round := 1; ; round++ {
		ents = registered(t, ctx, ha, configs)
		waitHA(t, ctx, ha, "every entity in its expected state", func() (bool, string) {
			var err error
			if states, err = ha.States(ctx); err != nil {
				return false, err.Error()
			}
			var bad []string
			for _, e := range ents {
				if why := e.badState(states[e.entityID], scene.event); why != "" {
					bad = append(bad, e.entityID+": "+why)
				}
			}
			return len(bad) == 0, strings.Join(bad, "; ")
		})
		if len(sightdConfigs(configs())) == len(ents) {
			break
		}
		t.Logf("round %d checked %d entities; sightd has announced more since", round, len(ents))
	}
	kinds := map[string]int{}
	for _, e := range ents {
		kinds[e.component]++
	}
	t.Logf("sightd announced %d entities: %v", len(ents), kinds)
	for _, k := range []string{"binary_sensor", "event", "image", "sensor", "switch", "update"} {
		if kinds[k] == 0 {
			t.Errorf("no %s entity announced", k)
		}
	}
	for _, e := range ents {
		s := states[e.entityID]
		t.Logf("%-50s %s %v", e.entityID, s.State, s.Attributes["event_type"])
	}

	// The quiet rule's image shows its placeholder (sightd's own, byte for
	// byte), not a broken picture.
	checkPlaceholder(t, ctx, ha, ents)

	// A rule switch turned off in HA disables the rule in sightd.
	checkRuleSwitch(t, ctx, ha, ents, "http://"+listen, scene.event)

	if scene.screenshots != "" {
		screenshots(t, ctx, ha, ents, states, scene.screenshots)
	}
	if scene.snapshot != "" {
		eventSnapshot(t, events(), "http://"+listen, scene.event, scene.snapshot)
	}

	// sightd stops: every entity goes unavailable.
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sightd run: %v", err)
	}
	stopped = true
	waitHA(t, ctx, ha, "every entity unavailable after sightd stopped", func() (bool, string) {
		states, err := ha.States(ctx)
		if err != nil {
			return false, err.Error()
		}
		var avail []string
		for _, e := range ents {
			if s := states[e.entityID].State; s != "unavailable" {
				avail = append(avail, e.entityID+"="+s)
			}
		}
		return len(avail) == 0, "still available: " + strings.Join(avail, ", ")
	})

	// HA read every config and message, from the start to sightd's stop,
	// without a complaint.
	log, err := ha.Log()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range hatest.Problems(log, "mqtt", "sightd") {
		t.Errorf("home-assistant.log: %s", p)
	}
	for _, p := range hatest.Problems(log) {
		t.Logf("home-assistant.log (not about MQTT or sightd): %s", p)
	}
}

// checkPlaceholder checks that HA serves the quiet rule's image entity the
// placeholder sightd publishes for a rule that never fired.
func checkPlaceholder(t *testing.T, ctx context.Context, ha *hatest.HA, ents []haEntity) {
	t.Helper()
	want, err := camera.Placeholder(placeholderSize.X, placeholderSize.Y, "something purple", "no detection yet")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.component != "image" || !strings.Contains(e.UniqueID, haQuietRule) {
			continue
		}
		got, err := ha.Image(ctx, e.entityID)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: a %d-byte picture %.8q, want the %d-byte placeholder", e.entityID, len(got), got, len(want))
		}
		return
	}
	t.Errorf("no image entity of the quiet rule %s", haQuietRule)
}

// eventSnapshot writes the snapshot of the event rule's last firing, as
// sightd's HTTP API serves it (/api/events/<id>/snapshot.jpg), to file.
func eventSnapshot(t *testing.T, events map[string][][]byte, api, rule, file string) {
	t.Helper()
	id := ""
	for _, msgs := range events {
		for _, m := range msgs {
			var e struct {
				EventType string `json:"event_type"`
				ID        string `json:"id"`
			}
			if json.Unmarshal(m, &e) == nil && e.EventType == rule {
				id = e.ID
			}
		}
	}
	if id == "" {
		t.Fatalf("no event of %s seen", rule)
	}
	resp, err := http.Get(api + "/api/events/" + id + "/snapshot.jpg")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	jpeg, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("snapshot of event %s: %s, %v", id, resp.Status, err)
	}
	if err := os.WriteFile(file, jpeg, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot of event %s: %s (%d bytes)", id, file, len(jpeg))
}

// registered waits until HA has registered an entity for each of sightd's
// discovery configs (matched by unique id in HA's entity registry) and
// returns them, sorted by entity id.
func registered(t *testing.T, ctx context.Context, ha *hatest.HA, configs func() map[string][]byte) []haEntity {
	t.Helper()
	var ents []haEntity
	waitHA(t, ctx, ha, "every announced entity registered in Home Assistant", func() (bool, string) {
		ents = nil
		want := sightdConfigs(configs())
		if len(want) == 0 {
			return false, "no discovery config from sightd yet"
		}
		reg, err := ha.Registry(ctx)
		if err != nil {
			return false, err.Error()
		}
		byUID := map[string]hatest.RegistryEntry{}
		for _, r := range reg {
			if r.Platform == "mqtt" {
				byUID[r.UniqueID] = r
			}
		}
		var missing []string
		for topic, c := range want {
			r, ok := byUID[c.UniqueID]
			if !ok {
				missing = append(missing, topic)
				continue
			}
			if !strings.HasPrefix(r.EntityID, c.component+".") {
				t.Fatalf("%s (%s) became %s, want a %s", topic, c.UniqueID, r.EntityID, c.component)
			}
			c.entityID = r.EntityID
			ents = append(ents, c)
		}
		slices.SortFunc(ents, func(a, b haEntity) int { return strings.Compare(a.entityID, b.entityID) })
		return len(missing) == 0, fmt.Sprintf("%d of %d not registered: %v", len(missing), len(want), missing)
	})
	return ents
}

// haEntity is one discovery config of sightd's and the entity HA made of it.
type haEntity struct {
	UniqueID          string   `json:"unique_id"`
	Name              string   `json:"name"`
	EventTypes        []string `json:"event_types"`
	CommandTopic      string   `json:"command_topic"`
	StateTopic        string   `json:"state_topic"`
	DeviceClass       string   `json:"device_class"`
	UnitOfMeasurement string   `json:"unit_of_measurement"`

	component string // from the topic: homeassistant/<component>/<node>/<object>/config
	entityID  string
}

// sightdConfigs picks this device's discovery configs out of the retained
// messages under homeassistant/ (an empty one removes an entity).
func sightdConfigs(msgs map[string][]byte) map[string]haEntity {
	out := map[string]haEntity{}
	for topic, payload := range msgs {
		parts := strings.Split(topic, "/")
		if len(parts) != 5 || parts[2] != "sightd_"+haDevice || parts[4] != "config" || len(payload) == 0 {
			continue
		}
		var e haEntity
		if err := json.Unmarshal(payload, &e); err != nil {
			e.UniqueID = "unparsable config: " + err.Error()
		}
		e.component = parts[1]
		out[topic] = e
	}
	return out
}

// badState says what is wrong with an entity's state, or "" when it is what
// its kind should show while sightd runs on the street video.
func (e haEntity) badState(s hatest.State, eventRule string) string {
	switch {
	case s.EntityID == "":
		return "no state"
	case s.State == "unavailable":
		return "unavailable"
	case s.State == "unknown":
		return "unknown"
	}
	timestamp := func() string {
		if _, err := time.Parse(time.RFC3339Nano, s.State); err != nil {
			return fmt.Sprintf("state %q, want a timestamp", s.State)
		}
		return ""
	}
	switch e.component {
	case "binary_sensor", "switch":
		if s.State != "on" && s.State != "off" {
			return fmt.Sprintf("state %q, want on or off", s.State)
		}
	case "update":
		if s.State != "on" && s.State != "off" {
			return fmt.Sprintf("state %q, want on or off", s.State)
		}
		if v, _ := s.Attributes["installed_version"].(string); v == "" {
			return "no installed_version"
		}
		// The test configures no OTA: HA must not offer an install
		// (UpdateEntityFeature.INSTALL is 1).
		if f, _ := s.Attributes["supported_features"].(float64); int(f)&1 != 0 {
			return fmt.Sprintf("supported_features %v offers an install without OTA", f)
		}
	case "image":
		return timestamp()
	case "event":
		if why := timestamp(); why != "" {
			return why
		}
		// Only the event rule fires: the quiet one never does, and state
		// rules' changes are no event of this entity's types.
		if typ, _ := s.Attributes["event_type"].(string); typ != eventRule || !slices.Contains(e.EventTypes, typ) {
			return fmt.Sprintf("event_type %q, want %s (event_types %v)", typ, eventRule, e.EventTypes)
		}
	case "sensor":
		if e.DeviceClass == "timestamp" {
			return timestamp()
		}
		if e.UnitOfMeasurement != "" {
			if _, err := strconv.ParseFloat(s.State, 64); err != nil {
				return fmt.Sprintf("state %q, want a number of %s", s.State, e.UnitOfMeasurement)
			}
		}
	}
	return ""
}

// checkRuleSwitch turns the event rule's switch off through HA and waits
// until sightd's HTTP API lists the rule disabled and HA shows the switch
// off (sightd's retained state, not HA's optimistic guess).
func checkRuleSwitch(t *testing.T, ctx context.Context, ha *hatest.HA, ents []haEntity, api, rule string) {
	t.Helper()
	var sw *haEntity
	for i, e := range ents {
		if e.component == "switch" && strings.Contains(e.CommandTopic, "/rule/"+rule+"/") {
			sw = &ents[i]
		}
	}
	if sw == nil {
		t.Errorf("no switch entity for rule %s announced", rule)
		return
	}
	if sw.StateTopic == "" {
		// HA would show an optimistic switch off without sightd's word.
		t.Errorf("%s has no state_topic", sw.entityID)
	}
	for _, on := range []bool{false, true} {
		service, want := "turn_off", "off"
		if on {
			service, want = "turn_on", "on"
		}
		if err := ha.CallService(ctx, "switch", service, map[string]any{"entity_id": sw.entityID}); err != nil {
			t.Fatal(err)
		}
		waitHA(t, ctx, ha, fmt.Sprintf("rule %s enabled=%v in sightd", rule, on), func() (bool, string) {
			enabled, err := ruleEnabled(ctx, api, rule)
			if err != nil {
				return false, err.Error()
			}
			return enabled == on, fmt.Sprintf("enabled=%v", enabled)
		})
		waitHA(t, ctx, ha, sw.entityID+" "+want+" in Home Assistant", func() (bool, string) {
			states, err := ha.States(ctx)
			if err != nil {
				return false, err.Error()
			}
			s := states[sw.entityID].State
			return s == want, "state " + s
		})
	}
}

// ruleEnabled asks sightd's HTTP API whether a rule is enabled.
func ruleEnabled(ctx context.Context, api, id string) (bool, error) {
	var list []map[string]any
	if err := getJSON(ctx, api+"/api/rules", &list); err != nil {
		return false, err
	}
	for _, r := range list {
		if r["id"] == id {
			// A rule without the field is enabled.
			if v, ok := r["enabled"].(bool); ok {
				return v, nil
			}
			if v, ok := r["disabled"].(bool); ok {
				return !v, nil
			}
			return true, nil
		}
	}
	return false, fmt.Errorf("rule %s not in %s/api/rules", id, api)
}

// waitHA polls cond until it holds; at ctx's end the test fails with cond's
// last explanation. A warning or error about MQTT or sightd in HA's log
// fails it at once: an entity HA refused would otherwise only show as a
// wait until the deadline.
func waitHA(t *testing.T, ctx context.Context, ha *hatest.HA, what string, cond func() (bool, string)) {
	t.Helper()
	start := time.Now()
	for {
		log, err := ha.Log()
		if err != nil {
			t.Fatal(err)
		}
		if p := hatest.Problems(log, "mqtt", "sightd"); len(p) > 0 {
			t.Fatalf("waiting for %s, home-assistant.log says:\n%s", what, strings.Join(p, "\n"))
		}
		ok, why := cond()
		if ok {
			t.Logf("%s after %s", what, time.Since(start).Round(100*time.Millisecond))
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("not %s within the deadline: %s", what, why)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// retained keeps the last payload of every topic under filter on the broker
// at addr (retained ones included); an empty payload stays, as a removal.
func retained(t *testing.T, addr, filter string) func() map[string][]byte {
	t.Helper()
	all := payloads(t, addr, filter)
	return func() map[string][]byte {
		last := map[string][]byte{}
		for topic, ps := range all() {
			last[topic] = ps[len(ps)-1]
		}
		return last
	}
}

// payloads keeps every payload of every topic under filter on the broker at
// addr (retained ones included), in the order they came.
func payloads(t *testing.T, addr, filter string) func() map[string][][]byte {
	t.Helper()
	var mu sync.Mutex
	seen := map[string][][]byte{}
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("test-payloads-%d", subscribers.Add(1))).
		SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).
		SetOnConnectHandler(func(c paho.Client) {
			c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
				mu.Lock()
				seen[m.Topic()] = append(seen[m.Topic()], append([]byte(nil), m.Payload()...))
				mu.Unlock()
			})
		})
	c := paho.NewClient(opts)
	c.Connect()
	t.Cleanup(func() { c.Disconnect(100) })
	return func() map[string][][]byte {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[string][][]byte, len(seen))
		for k, v := range seen {
			out[k] = slices.Clone(v)
		}
		return out
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// getJSON decodes a GET of url into out.
func getJSON(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// screenshots takes two pages of HA's frontend with Debian's headless
// Chromium: the overview dashboard (sightd's device card with its sensors,
// and its pictures) once it has rendered every snapshot sightd has sent,
// and the device page, which also lists the switches, the update and the
// event entity (config entities and events stay off the overview). The
// browser opens the address the login page would send it to, so the
// frontend logs itself in.
func screenshots(t *testing.T, ctx context.Context, ha *hatest.HA, ents []haEntity, states map[string]hatest.State, dir string) {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("screenshot: %v (make ha-screenshot installs Debian's chromium)", err)
	}
	images := 0
	for _, e := range ents {
		if e.component == "image" && states[e.entityID].State != "unknown" {
			images++
		}
	}
	reg, err := ha.Registry(ctx)
	if err != nil {
		t.Fatal(err)
	}
	device := ""
	for _, r := range reg {
		if r.EntityID == ents[0].entityID {
			device = r.DeviceID
		}
	}
	shots := []struct {
		file, path string
		ready      hatest.Ready
		height     int
	}{
		{"ha-dashboard.png", "/", hatest.Ready{Tag: "HUI-ENTITIES-CARD", Images: images}, 1950},
		{"ha-device.png", "/config/devices/device/" + device, hatest.Ready{Tag: "HA-DEVICE-ENTITIES-CARD"}, 1750},
	}
	os.MkdirAll(dir, 0o755)
	for _, s := range shots {
		code, err := ha.LoginCode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		png, err := hatest.Screenshot(ctx, chromium, t.TempDir(), ha.AuthCallbackURL(s.path, code), 1280, s.height, s.ready)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, s.file)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(png))
	}
}
