package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/sightd/sightd/daemon/api"
	"github.com/sightd/sightd/daemon/config"
	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/ota"
	"github.com/sightd/sightd/ota/otatest"
	"github.com/sightd/sightd/quant/modelgen/demo"
)

// benchRules are n rules with the demo vocabulary's words.
func benchRules(n int) config.Rules {
	words := []string{"red", "orange", "yellow", "green", "blue", "purple", "brown", "white", "dark", "grey"}
	var rs config.Rules
	for i := range n {
		r := &rules.Rule{ID: fmt.Sprintf("rule-%03d", i), Prompts: []string{"something " + words[i%len(words)]},
			Negatives: []string{"a " + words[(i+3)%len(words)] + " wall"}}
		r.Defaults()
		rs = append(rs, r)
	}
	return rs
}

// BenchmarkInstall times one update from localhost end to end: download,
// verify, unpack and fsync, smoke test, re-embedding 100 rules (two
// vectors each), switch and swap, for the demo bundle and a 25 MB one.
func BenchmarkInstall(b *testing.B) {
	key := otatest.Key(b)
	for _, bc := range []struct {
		name    string
		factory demo.Options
		update  demo.Options
	}{
		{"demo", demo.Options{}, demo.Options{Version: 2}},
		{"large-25MB", demo.Options{Bench: true}, demo.Options{Version: 2, Bench: true, Large: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			factory := filepath.Join(b.TempDir(), "factory")
			if err := demo.Build(factory, bc.factory); err != nil {
				b.Fatal(err)
			}
			src := filepath.Join(b.TempDir(), "update")
			if err := demo.Build(src, bc.update); err != nil {
				b.Fatal(err)
			}
			data := otatest.Pack(b, src, key)
			url := otatest.NewServer(b).Put("/u.tar", data)
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				b.StopTimer()
				dir := b.TempDir()
				cfg := config.Defaults()
				cfg.Model.Bundle, cfg.Model.EdgeTPU = factory, "off"
				cfg.Store.Dir = filepath.Join(dir, "db")
				cfg.OTA.Dir = filepath.Join(dir, "models")
				cfg.OTA.TrustedKeys = []string{strings.TrimSpace(string(key.Public().Marshal()))}
				cfg.Rules = benchRules(100)
				d := &daemon{cfg: &cfg, log: zerolog.Nop(), metrics: api.NewMetrics()}
				d.rt = runtimeOptions(cfg.Model, nil)
				if err := d.openModel(context.Background()); err != nil {
					b.Fatal(err)
				}
				u, err := d.newUpdater()
				if err != nil {
					b.Fatal(err)
				}
				u.Report, u.Events = nil, nil
				if testing.Verbose() {
					prev, last := time.Now(), ota.Step("start")
					u.Step = func(s ota.Step) { b.Logf("%s took %v", last, time.Since(prev)); prev, last = time.Now(), s }
				}
				b.StartTimer()
				t0 := time.Now()
				if err := u.Install(context.Background(), url, 2); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if testing.Verbose() {
					b.Logf("install took %v", time.Since(t0))
				}
				d.close()
				b.StartTimer()
			}
		})
	}
}

// BenchmarkSwitchFrames counts the frames a live camera loses while an
// update installs: the street video played at its own 10 fps (as a camera
// delivers frames), one update per iteration over MQTT. Dropped frames are
// frames a newer one replaced before the pipeline took them.
func BenchmarkSwitchFrames(b *testing.B) {
	dir := b.TempDir()
	key := otatest.Key(b)
	listen, broker := freePort(b), freePort(b)
	yml := fmt.Sprintf(`
device: {id: bench}
model: {bundle: %q, edgetpu: off}
cameras:
  - {name: street, source: %q, loop: true}
store: {dir: %q}
http: {listen: %q}
mqtt: {broker: "tcp://%s", embedded_broker: {listen: %q}}
ota: {dir: %q, trusted_keys: [%q], trial_frames: 5}
`, otatest.Dir(b, 1), opencvPhoto(b, "vtest.avi"), filepath.Join(dir, "db"), listen, broker, broker,
		filepath.Join(dir, "models"), strings.TrimSpace(string(key.Public().Marshal())))
	cfg, err := config.Parse([]byte(yml))
	if err != nil {
		b.Fatal(err)
	}
	cfg.Rules = benchRules(100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runDaemon(ctx, cfg, zerolog.Nop(), controls{}) }()
	defer func() { cancel(); <-done }()
	metric := func(name string) float64 {
		resp, err := http.Get("http://" + listen + "/metrics")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(l, name+`{camera="street"} `); ok {
				var f float64
				fmt.Sscan(v, &f)
				return f
			}
		}
		return -1
	}
	for deadline := time.Now().Add(time.Minute); metric("sightd_frames_handled_total") < 20; {
		if time.Now().After(deadline) {
			b.Fatal("no frames within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("bench-publisher"))
	if tok := pub.Connect(); tok.Wait() && tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer pub.Disconnect(100)
	srv := otatest.NewServer(b)
	var urls []string
	for i := range b.N {
		urls = append(urls, srv.Put(fmt.Sprintf("/v%d.tar", i+2), otatest.Bundle(b, key, int64(i+2))))
	}
	dropped0, handled0 := metric("sightd_frames_dropped_total"), metric("sightd_frames_handled_total")
	start := time.Now()
	b.ResetTimer()
	for i := range b.N {
		v := i + 2
		pub.Publish("sightd/bench/model/install", 1, false, fmt.Sprintf(`{"url":%q,"version":%d}`, urls[i], v)).Wait()
		for deadline := time.Now().Add(time.Minute); !strings.Contains(encoderHealth(b, listen), fmt.Sprintf(" v%d ", v)); {
			if time.Now().After(deadline) {
				b.Fatalf("version %d not serving within a minute", v)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	b.StopTimer()
	elapsed := time.Since(start)
	dropped := metric("sightd_frames_dropped_total") - dropped0
	handled := metric("sightd_frames_handled_total") - handled0
	b.ReportMetric(dropped/float64(b.N), "dropped/update")
	b.ReportMetric(handled/elapsed.Seconds(), "frames/s")
}
