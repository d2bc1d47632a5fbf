package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/sightd/sightd/daemon/config"
	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/quant/modelgen/demo"
	"github.com/sightd/sightd/store"
)

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The daemon in-process on the real street video with the demo bundle: a
// camera that is missing at start-up does not stop the other; /healthz says
// which is down; the rule that should fire does, the one that should not
// does not; everything is in the store after a clean stop.
func TestRunDaemon(t *testing.T) {
	dir := t.TempDir()
	listen, broker := freePort(t), freePort(t)
	yml := fmt.Sprintf(`
device: {id: test}
model: {bundle: %q, edgetpu: off}
cameras:
  - {name: street, source: %q, fast: true, loop: true}
  - {name: attic, source: %q, retry_min: 50ms, retry_max: 200ms, stall: 200ms}
rules:
  - {id: dark-clothes, prompts: ["something dark"], kind: state}
  - {id: dark-passer, prompts: ["something dark"], cooldown: 1ms}
  - {id: purple, prompts: ["something purple"]}
store: {dir: %q}
http: {listen: %q}
mqtt: {broker: "tcp://%s", embedded_broker: {listen: %q}, stats_interval: 1s}
`, demoBundle(t), opencvPhoto(t, "vtest.avi"), filepath.Join(dir, "missing.avi"), filepath.Join(dir, "db"), listen, broker, broker)
	cfg, err := config.Parse([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	got := subscribe(t, broker)
	reload := make(chan *config.Config)
	swap := make(chan swapRequest)
	go func() { done <- runDaemon(ctx, cfg, zerolog.Nop(), controls{reload: reload, swap: swap}) }()

	var health struct {
		Status string `json:"status"`
		Checks []struct {
			Name string `json:"name"`
			OK   bool   `json:"ok"`
		} `json:"checks"`
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + listen + "/healthz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			json.Unmarshal(body, &health)
			if len(health.Checks) > 0 {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The missing camera has been tried and reported: waited for, not
	// slept on.
	var resp *http.Response
	var body []byte
	for {
		resp, err = http.Get("http://" + listen + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), `"name":"camera/attic","ok":false`) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if resp.StatusCode != 503 || !strings.Contains(string(body), `"name":"camera/attic","ok":false`) {
		t.Errorf("healthz with a missing camera: %d %s", resp.StatusCode, body)
	}
	// A page in a browser on this machine can neither change the rules
	// (a cross-site text/plain POST) nor read them (a rebound DNS name).
	attack, _ := http.NewRequest("POST", "http://"+listen+"/api/rules", strings.NewReader(`{"id":"purple","prompts":["x"],"enabled":false}`))
	attack.Header.Set("Content-Type", "text/plain")
	attack.Header.Set("Origin", "http://evil.example")
	rebound, _ := http.NewRequest("GET", "http://"+listen+"/api/rules", nil)
	rebound.Host = "evil.example:" + strings.Split(listen, ":")[1]
	for _, req := range []*http.Request{attack, rebound} {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 || strings.Contains(string(body), "purple") {
			t.Errorf("%s %s from a foreign page: %d %s", req.Method, req.Host, resp.StatusCode, body)
		}
	}
	// A reloaded configuration (SIGHUP) adds its rules.
	cfg2 := *cfg
	orange := &rules.Rule{ID: "orange", Prompts: []string{"something orange"}}
	orange.Defaults()
	cfg2.Rules = append(append(config.Rules(nil), cfg.Rules...), orange)
	reload <- &cfg2
	var listed string
	for time.Now().Before(deadline) && !strings.Contains(listed, `"id":"orange"`) {
		if resp, err := http.Get("http://" + listen + "/api/rules"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			listed = string(b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(listed, `"id":"orange"`) {
		t.Errorf("reloaded rule not listed: %s", listed)
	}
	// A rule removed from the file is deleted by the next reload; the
	// others stay.
	cfg3 := *cfg
	cfg3.Rules = slices.DeleteFunc(slices.Clone(cfg2.Rules), func(r *rules.Rule) bool { return r.ID == "purple" })
	reload <- &cfg3
	for time.Now().Before(deadline) && strings.Contains(listed, `"id":"purple"`) {
		if resp, err := http.Get("http://" + listen + "/api/rules"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			listed = string(b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Contains(listed, `"id":"purple"`) || !strings.Contains(listed, `"id":"orange"`) || !strings.Contains(listed, `"id":"dark-clothes"`) {
		t.Errorf("after removing purple from the file: %s", listed)
	}

	// Wait for a detection to show in the metrics.
	detections := func() float64 {
		resp, err := http.Get("http://" + listen + "/metrics")
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		m, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(m), "\n") {
			if v, ok := strings.CutPrefix(line, `sightd_detections_total{camera="street",rule="dark-clothes"} `); ok {
				var f float64
				fmt.Sscan(v, &f)
				return f
			}
		}
		return 0
	}
	for time.Now().Before(deadline) && detections() == 0 {
		time.Sleep(200 * time.Millisecond)
	}
	// Memory as a user counts it, beside the model's files (the demo bundle's towers).
	resp, err = http.Get("http://" + listen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	gauges := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		var v float64
		if name, value, ok := strings.Cut(line, " "); ok && strings.HasPrefix(name, "sightd_m") {
			fmt.Sscan(value, &v)
			gauges[name] = v
		}
	}
	if g := gauges; !(g["sightd_memory_private_bytes"] > 0 && g["sightd_memory_private_bytes"] <= g["sightd_memory_pss_bytes"] &&
		g["sightd_memory_pss_bytes"] <= g["sightd_memory_rss_bytes"] && g["sightd_memory_anonymous_bytes"] > 0 &&
		g["sightd_memory_shared_libraries"] > 0 && g["sightd_model_files_bytes"] > 0) {
		t.Errorf("memory metrics: %v", g)
	}

	// A model update whose self-test fails is refused; the old model serves on.
	broken := filepath.Join(dir, "broken")
	if err := demo.Build(broken, demo.Options{Version: 2}); err != nil {
		t.Fatal(err)
	}
	man, _ := os.ReadFile(filepath.Join(broken, "manifest.json"))
	os.WriteFile(filepath.Join(broken, "manifest.json"), []byte(strings.Replace(string(man), `"expected": [`, `"expected": [-`, 1)), 0o644)
	res := make(chan error)
	swap <- swapRequest{path: broken, done: res}
	if err := <-res; err == nil || !strings.Contains(err.Error(), "self-test") {
		t.Fatalf("a bundle failing its self-test: %v", err)
	}
	// A good one is swapped in while the camera keeps running.
	good := filepath.Join(dir, "v2")
	if err := demo.Build(good, demo.Options{Version: 2}); err != nil {
		t.Fatal(err)
	}
	swap <- swapRequest{path: good, done: res}
	if err := <-res; err != nil {
		t.Fatalf("model swap: %v", err)
	}
	before := detections()
	for time.Now().Before(deadline) && detections() < before+2 {
		time.Sleep(200 * time.Millisecond)
	}
	// A state rule's event: new (then perhaps updates) and end, one id,
	// resolvable over HTTP to its record and its snapshot.
	var lifecycle struct {
		Type, ID, Snapshot string
	}
	waitUntil(t, "a state rule's event to end", func() bool {
		for _, m := range got() {
			if p, ok := strings.CutPrefix(m, "sightd/test/events "); ok && strings.Contains(p, `"type":"end"`) {
				return json.Unmarshal([]byte(p), &lifecycle) == nil
			}
		}
		return false
	})
	var types []string
	for _, m := range got() {
		if strings.HasPrefix(m, "sightd/test/events ") && strings.Contains(m, `"id":"`+lifecycle.ID+`"`) {
			var l struct{ Type string }
			json.Unmarshal([]byte(strings.TrimPrefix(m, "sightd/test/events ")), &l)
			types = append(types, l.Type)
		}
	}
	t.Logf("event %s: %v", lifecycle.ID, types)
	if len(types) < 2 || types[0] != "new" || types[len(types)-1] != "end" || lifecycle.Snapshot == "" {
		t.Errorf("event %s: types %v, snapshot %q; want new, updates, end", lifecycle.ID, types, lifecycle.Snapshot)
	}
	// An event rule's firing: one message, its id resolvable the same way.
	var fired struct{ Type, EventType, ID, Snapshot string }
	waitUntil(t, "an event rule to fire", func() bool {
		for _, m := range got() {
			if p, ok := strings.CutPrefix(m, "sightd/test/events "); ok && strings.Contains(p, `"event_type":"dark-passer"`) {
				return json.Unmarshal([]byte(p), &fired) == nil
			}
		}
		return false
	})
	if fired.Type != "event" || fired.Snapshot != fired.ID {
		t.Errorf("event rule message: %+v", fired)
	}
	for path, want := range map[string]string{"/api/events/" + lifecycle.ID: `"type":"end"`, "/api/events/" + lifecycle.ID + "/snapshot.jpg": "\xff\xd8\xff",
		"/api/events/" + fired.ID: `"event_type":"dark-passer"`, "/api/events/" + fired.ID + "/snapshot.jpg": "\xff\xd8\xff"} {
		resp, err := http.Get("http://" + listen + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d %.100q", path, resp.StatusCode, b)
		}
	}
	// Home Assistant's switch turns the rule off; the store keeps it off.
	pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("test-switch"))
	if tok := pub.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	for _, bad := range []string{"off", `{"state":"OFF"}`} {
		pub.Publish("sightd/test/rule/dark-clothes/enabled/set", 1, false, bad).Wait()
	}
	pub.Publish("sightd/test/rule/dark-clothes/enabled/set", 1, false, "OFF").Wait()
	pub.Disconnect(100)
	waitMessage(t, got, `sightd/test/rule/dark-clothes/enabled/set/reply {"ok":true,"rule":"dark-clothes","state":"OFF"}`)
	waitMessage(t, got, "sightd/test/rule/dark-clothes/enabled OFF")
	// Disabled, the rule's event under way (if any) ends; none starts.
	waitUntil(t, "every event of the disabled rule to end", func() bool {
		open := map[string]bool{}
		for _, m := range got() {
			var l struct{ Type, ID, Rule string }
			if p, ok := strings.CutPrefix(m, "sightd/test/events "); ok && json.Unmarshal([]byte(p), &l) == nil && l.Rule == "dark-clothes" {
				open[l.ID] = l.Type != "end"
			}
		}
		for _, o := range open {
			if o {
				return false
			}
		}
		return true
	})
	// The stats follow the model swap (they come every second).
	waitUntil(t, "stats of the new model", func() bool {
		for _, m := range got() {
			if strings.HasPrefix(m, "sightd/test/stats ") && strings.Contains(m, `"model_version":2`) {
				return true
			}
		}
		return false
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not stop")
	}

	st, dets := storedDetections(t, filepath.Join(dir, "db"))
	byRule := map[string]int{}
	byModel := map[int64]int{}
	for _, det := range dets {
		byRule[det.Rule]++
		byModel[det.ModelVersion]++
	}
	t.Logf("detections by rule: %v, by model: %v", byRule, byModel)

	// What an MQTT subscriber saw, through the embedded broker: "stopped"
	// is the last message, waited for.
	waitMessage(t, got, "sightd/test/status stopped")
	msgs := got()
	for _, want := range []string{"sightd/test/status online", "sightd/test/rule/dark-clothes/state ON",
		"sightd/test/camera/street/status online", "sightd/test/status stopped", "sightd/test/camera/street/motion ON",
		"sightd/test/rule/dark-clothes/enabled ON", "sightd/test/camera/street/detection ON",
		// a disabled state rule is OFF
		"sightd/test/rule/dark-clothes/state OFF",
		// a malformed switch command changes nothing and says why
		`sightd/test/rule/dark-clothes/enabled/set/reply {"ok":false,"error":"invalid command: payload \"off\": want ON or OFF"}`} {
		if !slices.Contains(msgs, want) {
			t.Errorf("subscriber did not see %q", want)
		}
	}
	// A clean stop leaves no camera online, and the rules' attributes
	// carry their last detection.
	var street, attrs, stats string
	for _, m := range msgs {
		switch {
		case strings.HasPrefix(m, "sightd/test/camera/street/status "):
			street = m
		case strings.HasPrefix(m, "sightd/test/rule/dark-clothes/attributes "):
			attrs = m
		case strings.HasPrefix(m, "sightd/test/stats "):
			stats = m
		}
	}
	if street != "sightd/test/camera/street/status offline" {
		t.Errorf("last camera status %q, want offline after a clean stop", street)
	}
	if !strings.Contains(attrs, `"last":{"id":"`) || !strings.Contains(attrs, `"camera":"street"`) {
		t.Errorf("attributes without the last detection: %s", attrs)
	}
	if !strings.Contains(stats, `"street":{"online":`) || !strings.Contains(stats, `"model_version":2`) {
		t.Errorf("stats: %s", stats)
	}
	if v, err := st.Meta(context.Background(), "switch/rule/dark-clothes"); err != nil || string(v) != "off file=on" {
		t.Errorf("the rule switch is not in the store: %q %v", v, err)
	}
	if n := st.Len(); n != 0 {
		t.Errorf("%d messages left in the outbox after a clean stop", n)
	}
	if byModel[1] == 0 || byModel[2] == 0 {
		t.Errorf("detections by model %v: want some before and after the swap", byModel)
	}
	if byRule["dark-clothes"] == 0 || byRule["purple"] != 0 {
		t.Errorf("detections %v: want dark-clothes changes and no purple", byRule)
	}
}

// waitMessage waits until got has shown the message want ("topic
// payload"); the deadline only guards against a hang.
func waitMessage(t *testing.T, got func() []string, want string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !slices.Contains(got(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("subscriber did not see %q", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitUntil waits for cond; the deadline only guards against a hang.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// storedDetections opens the store in dir (closed when the test ends) and
// returns it with its recent detections.
func storedDetections(t *testing.T, dir string) (*store.Store, []rules.Detection) {
	t.Helper()
	cfg := store.Defaults()
	cfg.Dir = dir
	st, err := store.Open(context.Background(), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	recs, err := st.RecentDetections(context.Background(), 10000)
	if err != nil {
		t.Fatal(err)
	}
	dets := make([]rules.Detection, len(recs))
	for i, r := range recs {
		if err := json.Unmarshal(r.JSON, &dets[i]); err != nil {
			t.Fatal(err)
		}
	}
	return st, dets
}

var subscribers atomic.Int64

// subscribe connects to the broker at addr (retrying until the daemon's
// embedded broker is up) and records "topic payload" of every message but
// snapshots (JPEG) on topics (sightd/# when none); the returned function
// gives what arrived so far.
func subscribe(t *testing.T, addr string, topics ...string) func() []string {
	if len(topics) == 0 {
		topics = []string{"sightd/#"}
	}
	t.Helper()
	var mu sync.Mutex
	var seen []string
	// A client id of its own: two subscribers of one test (one per run of
	// the daemon) must not take each other's place.
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("test-subscriber-%d", subscribers.Add(1))).
		SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).
		SetOnConnectHandler(func(c paho.Client) {
			for _, topic := range topics {
				c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
					if strings.HasSuffix(m.Topic(), "/snapshot") {
						return
					}
					mu.Lock()
					seen = append(seen, m.Topic()+" "+string(m.Payload()))
					mu.Unlock()
				})
			}
		})
	c := paho.NewClient(opts)
	c.Connect() // retries in the background until the broker listens
	t.Cleanup(func() { c.Disconnect(100) })
	// No pause for messages still in flight: a test waits for the message
	// it needs (waitMessage, waitSeen) instead.
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}
