package mqtt

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestDefaultsAreValid(t *testing.T) {
	cfg := Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Broker != "tcp://127.0.0.1:1883" || !cfg.Discovery || cfg.DiscoveryPrefix != "homeassistant" || cfg.DrainRate != 100 ||
		cfg.MaxCommandBytes != 64<<10 || cfg.EmbeddedBroker.Listen != "" {
		t.Errorf("defaults %+v", cfg)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		tweak func(*Config)
		want  string
	}{
		{func(c *Config) { c.Broker = "http://broker:1883" }, `mqtt.broker: unsupported scheme "http"`},
		{func(c *Config) { c.Broker = "" }, `mqtt.broker: "" is not a URL`},
		{func(c *Config) { c.Broker = "tcp://broker" }, `mqtt.broker: "tcp://broker": want host:port`},
		{func(c *Config) { c.Broker = "tcp://:1883" }, "mqtt.broker"},
		{func(c *Config) { c.TLS.CAFile = "ca.pem" }, "mqtt.tls: set, but broker"},
		{func(c *Config) { c.Broker, c.TLS.CertFile = "ssl://b:8883", "c.pem" }, "mqtt.tls: cert_file and key_file go together"},
		{func(c *Config) { c.PasswordFile = "/run/credentials/pw" }, "mqtt.password_file: set without a username"},
		{func(c *Config) { c.KeepAlive = 0 }, "mqtt.keep_alive: 0s"},
		{func(c *Config) { c.ConnectTimeout = time.Millisecond }, "mqtt.connect_timeout"},
		{func(c *Config) { c.RetryMin = 0 }, "mqtt.retry_min"},
		{func(c *Config) { c.RetryMax = 100 * time.Millisecond }, "mqtt.retry_max: 100ms: want at least retry_min (1s)"},
		{func(c *Config) { c.DrainRate = 0 }, "mqtt.drain_rate: 0"},
		{func(c *Config) { c.DiscoveryPrefix = "home/assistant" }, "mqtt.discovery_prefix"},
		{func(c *Config) { c.MaxCommandBytes = 10 }, "mqtt.max_command_bytes"},
		{func(c *Config) { c.EmbeddedBroker.Listen = "1883" }, "mqtt.embedded_broker.listen"},
	} {
		cfg := Defaults()
		tc.tweak(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
	// Every problem at once.
	cfg := Defaults()
	cfg.Broker, cfg.DrainRate = "http://x:1", -1
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "mqtt.broker") || !strings.Contains(err.Error(), "mqtt.drain_rate") {
		t.Errorf("joined: %v", err)
	}
	for _, ok := range []string{"ssl://b:8883", "ws://b:9001/mqtt", "wss://b:443/mqtt", "mqtt://b:1883", "mqtts://b:8883", "tls://b:8883"} {
		cfg := Defaults()
		cfg.Broker = ok
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

// The daemon's YAML config embeds Config: every field has a snake_case tag.
func TestYAMLTags(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	var check func(reflect.Type)
	check = func(typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if tag := f.Tag.Get("yaml"); !snake.MatchString(tag) {
				t.Errorf("%s.%s: yaml tag %q", typ.Name(), f.Name, tag)
			}
			if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == typ.PkgPath() {
				check(f.Type)
			}
		}
	}
	check(reflect.TypeOf(Config{}))
}

func TestRedact(t *testing.T) {
	if got := redact("tcp://user:secret@b:1883"); strings.Contains(got, "secret") {
		t.Errorf("redact: %s", got)
	}
}
