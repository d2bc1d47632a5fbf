package mqtt

import (
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

func startBroker(t *testing.T, cfg Config) *Broker {
	t.Helper()
	b, err := StartBroker(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestEmbeddedBroker(t *testing.T) {
	cfg := testConfig("")
	cfg.EmbeddedBroker.Listen = "127.0.0.1:0"
	b := startBroker(t, cfg)
	url := "tcp://" + b.Addr()

	// A real paho client: a round trip, and a retained message for a
	// subscriber that comes later.
	s := subscribe(t, url, subOptions{}, "round/trip")
	publish(t, url, "round/trip", []byte("hello"), false)
	s.waitFor(t, "the round trip", func() bool { r, _ := s.get("round/trip"); return string(r.payload) == "hello" })
	publish(t, url, "kept", []byte("retained"), true)
	late := subscribe(t, url, subOptions{}, "kept")
	late.waitFor(t, "the retained message", func() bool { r, _ := late.get("kept"); return r.retained && string(r.payload) == "retained" })

	// sightd itself on it: discovery and events.
	cfg.Broker = url
	hs := subscribe(t, url, subOptions{}, "homeassistant/#", "sightd/#")
	c := runClient(t, cfg, Options{Outbox: openStore(t, nil), Rules: testRules(), Cameras: []string{"porch", "garage"}})
	hs.waitFor(t, "discovery", func() bool { return len(hs.configs()) == len(wantConfigs) })
	pushEvent(t, c, hs)
	c.stop()
	hs.waitFor(t, "stopped", func() bool { r, _ := hs.get(topicState); return string(r.payload) == Stopped })

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestEmbeddedBrokerPassword(t *testing.T) {
	cfg := testConfig("")
	cfg.EmbeddedBroker.Listen = "127.0.0.1:0"
	// '*' is a wildcard to mochi's own auth ledger; here it is a character.
	cfg.Username, cfg.PasswordFile = "sightd", passwordFile(t, "pa*")
	b := startBroker(t, cfg)
	cfg.Broker = "tcp://" + b.Addr()

	s := subscribe(t, cfg.Broker, subOptions{user: "sightd", pass: "pa*"}, "sightd/test/#")
	pushEvent(t, runClient(t, cfg, Options{Outbox: openStore(t, nil)}), s)

	for _, pass := range []string{"pa", "pax", "", "*"} {
		pc := paho.NewClient(paho.NewClientOptions().AddBroker(cfg.Broker).SetUsername("sightd").SetPassword(pass).SetProtocolVersion(4))
		tok := pc.Connect()
		if !tok.WaitTimeout(10*time.Second) || tok.Error() == nil {
			pc.Disconnect(0)
			t.Errorf("password %q admitted", pass)
		}
	}

	cfg.PasswordFile = ""
	if _, err := StartBroker(cfg, testLogger(t)); err == nil || !strings.Contains(err.Error(), "password_file") {
		t.Errorf("a username without a password: %v", err)
	}
}

func TestEmbeddedBrokerPortInUse(t *testing.T) {
	cfg := testConfig("")
	cfg.EmbeddedBroker.Listen = "127.0.0.1:0"
	b := startBroker(t, cfg)
	cfg.EmbeddedBroker.Listen = b.Addr()
	_, err := StartBroker(cfg, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "mqtt.embedded_broker.listen") {
		t.Fatalf("second broker on %s: %v", b.Addr(), err)
	}
	cfg.EmbeddedBroker.Listen = ""
	if _, err := StartBroker(cfg, testLogger(t)); err == nil {
		t.Fatal("started without an address")
	}
}
