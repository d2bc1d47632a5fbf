package mqtt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/store"
)

// What Home Assistant 2024.3's MQTT discovery schemas (homeassistant/
// components/mqtt: schemas.py, mixins.py, binary_sensor.py, switch.py,
// sensor.py, event.py, image.py, update.py) accept, and which keys they
// require or sightd's entities cannot work without. Home Assistant drops
// unknown keys silently, so a misspelt key would go unseen.
var (
	haTopicRE   = regexp.MustCompile(`^homeassistant/(\w+)/([a-zA-Z0-9_-]+)/([a-zA-Z0-9_-]+)/config$`)
	haCommon    = []string{"name", "unique_id", "device", "origin", "availability", "availability_mode", "qos", "icon", "entity_category", "json_attributes_topic"}
	haComponent = map[string]struct{ allowed, required []string }{
		"binary_sensor": {[]string{"state_topic", "payload_on", "payload_off", "device_class", "value_template"}, []string{"state_topic", "payload_on", "payload_off"}},
		"switch":        {[]string{"state_topic", "command_topic", "payload_on", "payload_off", "device_class", "value_template"}, []string{"state_topic", "command_topic", "payload_on", "payload_off"}},
		"sensor":        {[]string{"state_topic", "value_template", "unit_of_measurement", "device_class", "state_class"}, []string{"state_topic", "value_template"}},
		"event":         {[]string{"state_topic", "event_types", "value_template", "device_class"}, []string{"state_topic", "event_types"}},
		"image":         {[]string{"image_topic", "content_type"}, []string{"image_topic", "content_type"}},
		"update":        {[]string{"state_topic", "command_topic", "payload_install"}, []string{"state_topic"}},
	}
	haDeviceKeys       = []string{"identifiers", "name", "manufacturer", "model", "sw_version"}
	haAvailabilityKeys = []string{"topic", "payload_available", "payload_not_available", "value_template"}
)

// checkHAConfig checks one discovery config and returns its unique id.
func checkHAConfig(t *testing.T, topic string, payload []byte) string {
	t.Helper()
	m := haTopicRE.FindStringSubmatch(topic)
	if m == nil {
		t.Fatalf("%s: not a discovery topic Home Assistant reads", topic)
	}
	spec, ok := haComponent[m[1]]
	if !ok {
		t.Fatalf("%s: unexpected component %s", topic, m[1])
	}
	var cfg map[string]any
	if err := json.Unmarshal(payload, &cfg); err != nil {
		t.Fatalf("%s: %v", topic, err)
	}
	for k := range cfg {
		if !slices.Contains(haCommon, k) && !slices.Contains(spec.allowed, k) {
			t.Errorf("%s: key %q is not one Home Assistant's %s reads", topic, k, m[1])
		}
	}
	for _, k := range append([]string{"unique_id", "device", "availability"}, spec.required...) {
		if v, ok := cfg[k]; !ok || v == "" {
			t.Errorf("%s: missing %q", topic, k)
		}
	}
	dev, _ := cfg["device"].(map[string]any)
	for k := range dev {
		if !slices.Contains(haDeviceKeys, k) {
			t.Errorf("%s: device key %q unknown", topic, k)
		}
	}
	if ids, _ := dev["identifiers"].([]any); len(ids) != 1 || ids[0] != "sightd.test" || dev["manufacturer"] != "sightd" || dev["name"] == "" {
		t.Errorf("%s: device %v", topic, dev)
	}
	avail, _ := cfg["availability"].([]any)
	if len(avail) == 0 || avail[0].(map[string]any)["topic"] != "sightd/test/status" {
		t.Errorf("%s: availability %v", topic, avail)
	}
	for _, a := range avail {
		for k := range a.(map[string]any) {
			if !slices.Contains(haAvailabilityKeys, k) {
				t.Errorf("%s: availability key %q unknown", topic, k)
			}
		}
	}
	if len(avail) > 1 && cfg["availability_mode"] != "all" {
		t.Errorf("%s: %d availability topics, mode %v: want all", topic, len(avail), cfg["availability_mode"])
	}
	if q, ok := cfg["qos"].(float64); !ok || q != 1 {
		t.Errorf("%s: qos %v", topic, cfg["qos"])
	}
	id, _ := cfg["unique_id"].(string)
	return id
}

// configs returns the latest non-empty discovery configs.
func (s *sub) configs() map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]byte{}
	for topic, r := range s.last {
		if strings.HasPrefix(topic, "homeassistant/") && strings.HasSuffix(topic, "/config") && len(r.payload) > 0 {
			out[topic] = r.payload
		}
	}
	return out
}

const (
	cfgDoor       = "homeassistant/binary_sensor/sightd_test/rule_door/config"
	cfgDoorSwitch = "homeassistant/switch/sightd_test/rule_door/config"
	cfgEvents     = "homeassistant/event/sightd_test/events/config"
	cfgPorch      = "homeassistant/image/sightd_test/camera_porch/config"
	cfgGarage     = "homeassistant/image/sightd_test/camera_garage/config"
	cfgModel      = "homeassistant/update/sightd_test/model/config"
	topicState    = "sightd/test/status"
)

// wantConfigs are the discovery configs of testRules on cameras porch and
// garage.
var wantConfigs = []string{
	cfgDoor, cfgDoorSwitch, cfgEvents, cfgPorch, cfgGarage, cfgModel,
	"homeassistant/switch/sightd_test/rule_package/config",
	"homeassistant/image/sightd_test/rule_door/config",
	"homeassistant/image/sightd_test/rule_package/config",
	"homeassistant/switch/sightd_test/camera_porch_detection/config",
	"homeassistant/switch/sightd_test/camera_garage_detection/config",
	"homeassistant/binary_sensor/sightd_test/camera_porch_motion/config",
	"homeassistant/binary_sensor/sightd_test/camera_garage_motion/config",
	"homeassistant/sensor/sightd_test/camera_porch_fps/config",
	"homeassistant/sensor/sightd_test/camera_garage_fps/config",
	"homeassistant/sensor/sightd_test/camera_porch_encoder_ms/config",
	"homeassistant/sensor/sightd_test/camera_garage_encoder_ms/config",
	"homeassistant/sensor/sightd_test/camera_porch_last_detection/config",
	"homeassistant/sensor/sightd_test/camera_garage_last_detection/config",
	"homeassistant/sensor/sightd_test/model_version/config",
	"homeassistant/sensor/sightd_test/outbox/config",
}

// fakeSwitches keeps the camera switches in memory and the rules' in rs.
type fakeSwitches struct {
	mu  sync.Mutex
	rs  *fakeRules
	off map[string]bool
}

func (f *fakeSwitches) SetRuleEnabled(ctx context.Context, id string, on bool) error {
	f.rs.mu.Lock()
	r, ok := f.rs.m[id]
	f.rs.mu.Unlock()
	if !ok {
		return store.ErrNotFound
	}
	c := *r
	c.Enabled = &on
	return f.rs.Put(ctx, &c)
}

func (f *fakeSwitches) SetDetection(_ context.Context, camera string, on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off == nil {
		f.off = map[string]bool{}
	}
	f.off[camera] = !on
	return nil
}

func (f *fakeSwitches) Detection(camera string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.off[camera]
}

func testRules() *fakeRules {
	return newFakeRules(
		&rules.Rule{ID: "door", Name: "Garage door open", Prompts: []string{"an open garage door"}, Kind: rules.State, Cameras: []string{"garage"}},
		&rules.Rule{ID: "package", Prompts: []string{"a package on the porch"}, Kind: rules.Event},
	)
}

func TestDiscoveryStatesAndEvents(t *testing.T) {
	ctx := context.Background()
	m := startMosquitto(t, mosqOptions{})
	st := openStore(t, nil)
	rs := testRules()
	s := subscribe(t, m.url(), subOptions{}, "homeassistant/#", "sightd/#")
	// A camera removed from the configuration left its retained status.
	publish(t, m.url(), "sightd/test/camera/attic/status", []byte(Online), true)
	s.waitFor(t, "the stale camera status", func() bool { return hasRetained(s, "sightd/test/camera/attic/status") })
	opts := Options{Device: Device{ID: "test", Name: "Porch Pi", Model: "test board", Version: "1.2.3"},
		Outbox: st, Rules: rs, Cameras: []string{"porch", "garage"}, Switches: &fakeSwitches{rs: rs}}
	c := runClient(t, testConfig(m.url()), opts)

	s.waitFor(t, "discovery", func() bool { return len(s.configs()) == len(wantConfigs) })
	for _, topic := range wantConfigs {
		if _, ok := s.configs()[topic]; !ok {
			t.Errorf("no config %s", topic)
		}
	}
	s.waitFor(t, "the stale camera status cleared", func() bool { r, ok := s.get("sightd/test/camera/attic/status"); return ok && len(r.payload) == 0 })
	s.waitFor(t, "online", func() bool { r, ok := s.get(topicState); return ok && string(r.payload) == Online })

	// Producers push; the drain publishes.
	det := detection("package", "porch", time.Now())
	door := rs.m["door"]
	jpg := testJPEG(t)
	var msgs []store.Message
	for _, mk := range []func() (store.Message, error){
		func() (store.Message, error) { return EventMessage("test", det, "") },
		func() (store.Message, error) { return StateMessage("test", "door", true) },
		func() (store.Message, error) { return AttributesMessage("test", door, &det) },
		func() (store.Message, error) { return SnapshotMessage("test", "porch", jpg) },
		func() (store.Message, error) { return SnapshotMessage("test", "garage", jpg) },
		func() (store.Message, error) { return CameraStatusMessage("test", "porch", true) },
		func() (store.Message, error) { return CameraStatusMessage("test", "garage", false) },
		func() (store.Message, error) {
			return ModelStateMessage("test", ModelState{Title: "sightd-demo", Installed: 1, Latest: 2})
		},
		func() (store.Message, error) { return RuleSnapshotMessage("test", "door", jpg) },
		func() (store.Message, error) { return RuleSnapshotMessage("test", "package", jpg) },
		func() (store.Message, error) { return MotionMessage("test", "porch", true) },
		func() (store.Message, error) { return MotionMessage("test", "garage", false) },
		func() (store.Message, error) {
			return ModelEventMessage("test", ModelEvent{Kind: "refused", Reason: "test"})
		},
	} {
		msg, err := mk()
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, msg)
		if err := c.Push(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	for _, msg := range msgs {
		s.waitFor(t, msg.Topic, func() bool { _, ok := s.get(msg.Topic); return ok })
	}
	ms := 12.5
	stats, err := StatsMessage("test", Stats{Model: "demo", ModelVersion: 3, Cameras: map[string]CameraStats{
		"porch": {Online: true, FPS: 10, EncoderMS: &ms}, "garage": {}}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "stats published", func() bool { return c.PublishNow(stats) })
	s.waitFor(t, "stats", func() bool { _, ok := s.get(stats.Topic); return ok })
	// The switches' states come from the first sync: both rules enabled,
	// both cameras detecting.
	for _, topic := range []string{"sightd/test/rule/door/enabled", "sightd/test/rule/package/enabled",
		"sightd/test/camera/porch/detection", "sightd/test/camera/garage/detection"} {
		s.waitFor(t, topic, func() bool { r, ok := s.get(topic); return ok && string(r.payload) == On })
	}
	// Counters are waited for, never read once: the drain may still be
	// between a PUBACK and its bookkeeping.
	waitFor(t, 30*time.Second, "outbox drained and every message counted", func() bool {
		h := c.Health()
		return st.Len() == 0 && h.Outbox == 0 && h.Acked >= uint64(len(msgs))
	})
	if h := c.Health(); !h.Connected || h.Err != nil || h.Acked < uint64(len(msgs)) || h.Outbox != 0 {
		t.Errorf("health %+v", h)
	}

	// Every config is one Home Assistant accepts, and points at topics
	// sightd publishes.
	configs := s.configs()
	ids := map[string]string{}
	for topic, payload := range configs {
		ids[topic] = checkHAConfig(t, topic, payload)
		var cfg map[string]any
		json.Unmarshal(payload, &cfg)
		for k, v := range cfg {
			if ref, ok := v.(string); ok && strings.HasSuffix(k, "_topic") && k != "command_topic" {
				if _, seen := s.get(ref); !seen {
					t.Errorf("%s: %s %s: nothing published there", topic, k, ref)
				}
			}
		}
		for _, a := range cfg["availability"].([]any) {
			if at := a.(map[string]any)["topic"].(string); !hasRetained(s, at) {
				t.Errorf("%s: availability topic %s holds no retained status", topic, at)
			}
		}
	}
	var door1, events, porch, model map[string]any
	json.Unmarshal(configs[cfgDoor], &door1)
	json.Unmarshal(configs[cfgEvents], &events)
	json.Unmarshal(configs[cfgPorch], &porch)
	json.Unmarshal(configs[cfgModel], &model)
	if dev := door1["device"].(map[string]any); dev["name"] != "Porch Pi" || dev["model"] != "test board" || dev["sw_version"] != "1.2.3" {
		t.Errorf("device %v", dev)
	}
	if door1["state_topic"] != "sightd/test/rule/door/state" || door1["payload_on"] != "ON" || door1["payload_off"] != "OFF" ||
		door1["json_attributes_topic"] != "sightd/test/rule/door/attributes" || door1["name"] != "Garage door open" {
		t.Errorf("binary_sensor: %v", door1)
	}
	// Event rules only: a state rule never fires an event.
	if types := events["event_types"].([]any); len(types) != 1 || types[0] != "package" || events["state_topic"] != "sightd/test/events" {
		t.Errorf("event: %v", events)
	}
	// A disabled rule's sensor is unavailable, not stale.
	if av := door1["availability"].([]any); len(av) != 2 || av[1].(map[string]any)["topic"] != "sightd/test/rule/door/enabled" ||
		av[1].(map[string]any)["payload_not_available"] != Off || door1["availability_mode"] != "all" {
		t.Errorf("binary_sensor availability: %v", door1["availability"])
	}
	if porch["image_topic"] != "sightd/test/camera/porch/snapshot" || porch["content_type"] != "image/jpeg" || porch["availability_mode"] != "all" {
		t.Errorf("image: %v", porch)
	}
	// Updates are off (no installer): Home Assistant must not offer Install.
	if _, ok := model["command_topic"]; ok || model["state_topic"] != "sightd/test/model/state" || model["json_attributes_topic"] != "sightd/test/model/event" {
		t.Errorf("update: %v", model)
	}

	// States are retained: a subscriber that comes later gets them (and
	// no event: those are not retained).
	late := subscribe(t, m.url(), subOptions{}, "sightd/#")
	for _, msg := range msgs {
		late.waitFor(t, "retained "+msg.Topic, func() bool { r, ok := late.get(msg.Topic); return ok == msg.Retained && r.retained == msg.Retained })
	}
	if r, _ := late.get("sightd/test/rule/door/state"); string(r.payload) != "ON" || !r.retained {
		t.Errorf("state: %q retained=%v", r.payload, r.retained)
	}
	if r, _ := late.get(topicState); string(r.payload) != Online || !r.retained {
		t.Errorf("status: %q retained=%v", r.payload, r.retained)
	}
	if _, ok := late.get("sightd/test/events"); ok {
		t.Error("an event was retained")
	}
	if r, _ := s.get("sightd/test/camera/porch/snapshot"); !bytes.HasPrefix(r.payload, []byte{0xFF, 0xD8}) || !bytes.Equal(r.payload, jpg) {
		t.Errorf("snapshot: %d bytes, starts % x", len(r.payload), r.payload[:min(4, len(r.payload))])
	}
	var ev map[string]any
	r, _ := s.get("sightd/test/events")
	if err := json.Unmarshal(r.payload, &ev); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"event_type", "id", "rule", "camera", "time", "raw", "calibrated", "margin", "z", "region", "model_version"} {
		if _, ok := ev[k]; !ok {
			t.Errorf("event lacks %q: %s", k, r.payload)
		}
	}
	if ev["event_type"] != "package" || ev["id"] != det.ID || ev["camera"] != "porch" || ev["model_version"] != 3.0 ||
		ev["region"].(map[string]any)["w"] != 100.0 || r.retained {
		t.Errorf("event: %s", r.payload)
	}
	var mstate map[string]any
	r, _ = s.get("sightd/test/model/state")
	json.Unmarshal(r.payload, &mstate)
	if mstate["installed_version"] != "1" || mstate["latest_version"] != "2" || mstate["title"] != "sightd-demo" {
		t.Errorf("model state: %s", r.payload)
	}

	// A state rule turned into an event rule loses its retained state; a
	// disabled state rule says OFF and its switch OFF.
	rs.Put(ctx, &rules.Rule{ID: "door", Name: "Garage door open", Prompts: []string{"an open garage door"}, Kind: rules.Event})
	c.Resync()
	s.waitFor(t, "the former state rule's state cleared", func() bool {
		r, ok := s.get("sightd/test/rule/door/state")
		return ok && len(r.payload) == 0
	})
	off := false
	rs.Put(ctx, &rules.Rule{ID: "door", Name: "Garage door open", Prompts: []string{"an open garage door"}, Kind: rules.State, Enabled: &off})
	c.Resync()
	s.waitFor(t, "the disabled rule's switch and state OFF", func() bool {
		sw, _ := s.get("sightd/test/rule/door/enabled")
		st, _ := s.get("sightd/test/rule/door/state")
		return string(sw.payload) == Off && string(st.payload) == Off
	})
	on := true
	rs.Put(ctx, &rules.Rule{ID: "door", Name: "Garage door open", Prompts: []string{"an open garage door"}, Kind: rules.State, Enabled: &on})
	c.Resync()
	s.waitFor(t, "the rule enabled again", func() bool { r, _ := s.get("sightd/test/rule/door/enabled"); return string(r.payload) == On })

	// A clean stop says "stopped".
	c.stop()
	s.waitFor(t, "stopped", func() bool { r, _ := s.get(topicState); return string(r.payload) == Stopped })

	// A rule deleted while sightd was away loses its entity on the next
	// start; the others keep their unique ids.
	rs.Delete(ctx, "door")
	mark := len(s.all())
	c = runClient(t, testConfig(m.url()), opts)
	s.waitFor(t, "stale config removed", func() bool { r, ok := s.get(cfgDoor); return ok && len(r.payload) == 0 })
	// and with it the deleted rule's own retained topics
	for _, topic := range []string{"sightd/test/rule/door/enabled", "sightd/test/rule/door/snapshot", "sightd/test/rule/door/attributes"} {
		s.waitFor(t, topic+" cleared", func() bool { r, ok := s.get(topic); return ok && len(r.payload) == 0 })
	}
	s.waitFor(t, "configs again", func() bool { return countAfter(s, mark, cfgEvents, cfgPorch, cfgGarage, cfgModel) })
	for topic, payload := range s.configs() {
		if id := checkHAConfig(t, topic, payload); id != ids[topic] {
			t.Errorf("%s: unique id %q after a restart, %q before", topic, id, ids[topic])
		}
	}
	var ev2 map[string]any
	json.Unmarshal(s.configsAt(cfgEvents), &ev2)
	if types := ev2["event_types"].([]any); len(types) != 1 || types[0] != "package" {
		t.Errorf("event types after the delete: %v", types)
	}

	// Home Assistant restarting asks for discovery again.
	mark = len(s.all())
	publish(t, m.url(), "homeassistant/status", []byte("online"), false)
	s.waitFor(t, "discovery re-sent", func() bool { return countAfter(s, mark, cfgEvents, cfgPorch, cfgGarage, cfgModel) })

	// A rule added elsewhere (the CLI) appears after Resync.
	rs.Put(ctx, &rules.Rule{ID: "gate", Name: "Gate open", Prompts: []string{"an open gate"}, Kind: rules.State})
	c.Resync()
	s.waitFor(t, "new rule's entity", func() bool {
		_, ok := s.configs()["homeassistant/binary_sensor/sightd_test/rule_gate/config"]
		return ok
	})
}

func (s *sub) configsAt(topic string) []byte {
	r, _ := s.get(topic)
	return r.payload
}

func hasRetained(s *sub, topic string) bool {
	r, ok := s.get(topic)
	return ok && len(r.payload) > 0
}

// countAfter reports whether each topic got a non-empty message after the
// first mark messages.
func countAfter(s *sub, mark int, topics ...string) bool {
	seen := map[string]bool{}
	for _, r := range s.all()[mark:] {
		if len(r.payload) > 0 {
			seen[r.topic] = true
		}
	}
	for _, t := range topics {
		if !seen[t] {
			return false
		}
	}
	return true
}

// proxy forwards TCP connections to a broker and can cut them, as a
// network failure would (the broker then sends the last will).
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target}
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
	t.Cleanup(func() { l.Close(); p.cut() })
	return p
}

func (p *proxy) url() string { return "tcp://" + p.l.Addr().String() }

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func TestLastWillAndReconnect(t *testing.T) {
	m := startMosquitto(t, mosqOptions{})
	p := startProxy(t, strings.TrimPrefix(m.url(), "tcp://"))
	s := subscribe(t, m.url(), subOptions{}, topicState)
	c := runClient(t, testConfig(p.url()), Options{Outbox: openStore(t, nil)})
	s.waitFor(t, "online", func() bool { r, _ := s.get(topicState); return string(r.payload) == Online })

	p.cut() // the connection dies without a DISCONNECT
	s.waitFor(t, "the last will", func() bool {
		return slices.ContainsFunc(s.all(), func(r received) bool { return string(r.payload) == Offline })
	})
	s.waitFor(t, "online again", func() bool { r, _ := s.get(topicState); return string(r.payload) == Online })
	waitFor(t, 30*time.Second, "reconnected", func() bool { h := c.Health(); return h.Connected && h.Attempts >= 2 })
	var seq []string
	for _, r := range s.all() {
		seq = append(seq, string(r.payload))
	}
	if i := slices.Index(seq, Offline); i < 1 || seq[0] != Online || !slices.Contains(seq[i:], Online) {
		t.Errorf("status sequence %v, want online, offline, online", seq)
	}
}

// Two sightd with the same device.id take turns knocking each other off
// the broker. Each says why, naming device.id, in its health (/healthz)
// and its log, instead of a bare EOF; once one of them stops, the other's
// connection holds and the conflict clears.
func TestDuplicateDeviceIDReported(t *testing.T) {
	m := startMosquitto(t, mosqOptions{})
	cfg := testConfig(m.url())
	a := runClient(t, cfg, Options{Outbox: openStore(t, nil)})
	b := runClient(t, cfg, Options{Outbox: openStore(t, nil)})
	for name, c := range map[string]*running{"first": a, "second": b} {
		waitFor(t, time.Minute, name+" to report the conflict", func() bool { return c.Health().Conflict != nil })
		h := c.Health()
		if !errors.Is(h.Conflict, ErrClientIDInUse) || !strings.Contains(h.Conflict.Error(), `device.id "test"`) ||
			!strings.Contains(h.Conflict.Error(), `"sightd-test"`) {
			t.Errorf("%s: conflict %v", name, h.Conflict)
		}
		t.Logf("%s: %v", name, h.Conflict)
	}
	b.stop()
	// The survivor's next connection holds for shortLived (10 s here).
	waitFor(t, time.Minute, "the conflict to clear", func() bool { h := a.Health(); return h.Connected && h.Conflict == nil })
}
