package mqtt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func passwordFile(t *testing.T, password string) string {
	p := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(p, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// pushEvent pushes one detection and waits for s to receive it.
func pushEvent(t *testing.T, c *running, s *sub) {
	t.Helper()
	msg, err := EventMessage("test", detection("package", "porch", time.Now()), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Push(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, "the event", func() bool { r, ok := s.get(msg.Topic); return ok && string(r.payload) == string(msg.Payload) })
}

func TestPasswordTLSAndWebsockets(t *testing.T) {
	certs := makeCerts(t)
	m := startMosquitto(t, mosqOptions{users: map[string]string{"sightd": "s3cret*", "watcher": "w"}, tls: certs, websockets: true})
	s := subscribe(t, m.url(), subOptions{user: "watcher", pass: "w", tls: certs}, "sightd/test/#")

	t.Run("TLS and password", func(t *testing.T) {
		cfg := testConfig(m.url())
		cfg.Username, cfg.PasswordFile, cfg.TLS.CAFile = "sightd", passwordFile(t, "s3cret*"), certs.ca
		c := runClient(t, cfg, Options{Outbox: openStore(t, nil)})
		pushEvent(t, c, s)
		if h := c.Health(); !h.Connected || h.Err != nil {
			t.Errorf("health %+v", h)
		}
	})
	t.Run("websockets", func(t *testing.T) {
		cfg := testConfig(fmt.Sprintf("ws://127.0.0.1:%d", m.wsPort))
		cfg.Username, cfg.PasswordFile = "sightd", passwordFile(t, "s3cret*")
		c := runClient(t, cfg, Options{Outbox: openStore(t, nil)})
		pushEvent(t, c, s)
	})
	t.Run("wrong password", func(t *testing.T) {
		cfg := testConfig(m.url())
		cfg.Username, cfg.PasswordFile, cfg.TLS.CAFile = "sightd", passwordFile(t, "s3cret"), certs.ca
		cfg.RetryMin, cfg.RetryMax = 100*time.Millisecond, time.Second
		c := runClient(t, cfg, Options{Outbox: openStore(t, nil)})
		// Back-off from 100ms doubling to 1s: about 6 attempts in 3
		// seconds; a busy loop would make thousands. The refusals are
		// waited for; the 3 s are the window the upper bound applies to.
		start := time.Now()
		waitFor(t, 30*time.Second, "two refused attempts", func() bool {
			h := c.Health()
			return h.Attempts >= 2 && errors.Is(h.Err, ErrNotAuthorized)
		})
		time.Sleep(3*time.Second - time.Since(start))
		h := c.Health()
		if h.Connected || !errors.Is(h.Err, ErrNotAuthorized) || !strings.Contains(h.Err.Error(), "not authorized") ||
			!strings.Contains(h.Err.Error(), "password_file") {
			t.Fatalf("health %+v", h)
		}
		if elapsed := time.Since(start); h.Attempts < 2 || float64(h.Attempts) > 12*elapsed.Seconds()/3 {
			t.Errorf("%d connection attempts in %v", h.Attempts, elapsed)
		}
		t.Logf("%d attempts: %v", h.Attempts, h.Err)
	})
	t.Run("untrusted server", func(t *testing.T) {
		cfg := testConfig(m.url()) // no ca_file: the system's roots do not know the test CA
		cfg.Username, cfg.PasswordFile = "sightd", passwordFile(t, "s3cret*")
		c := runClient(t, cfg, Options{Outbox: openStore(t, nil)})
		waitFor(t, 30*time.Second, "a failed attempt", func() bool { return c.Health().Err != nil })
		if h := c.Health(); h.Connected || !strings.Contains(h.Err.Error(), "certificate") {
			t.Errorf("health %+v", h)
		}
	})
}

func TestClientCertificate(t *testing.T) {
	certs := makeCerts(t)
	m := startMosquitto(t, mosqOptions{tls: certs, clientCert: true})
	s := subscribe(t, m.url(), subOptions{tls: certs}, "sightd/test/#")
	cfg := testConfig(m.url())
	cfg.TLS = TLS{CAFile: certs.ca, CertFile: certs.clientCert, KeyFile: certs.clientKey}
	pushEvent(t, runClient(t, cfg, Options{Outbox: openStore(t, nil)}), s)

	cfg.TLS.CertFile, cfg.TLS.KeyFile = "", ""
	c := runClient(t, cfg, Options{Outbox: openStore(t, nil)})
	waitFor(t, 30*time.Second, "a failed attempt", func() bool { return c.Health().Err != nil })
	if h := c.Health(); h.Connected {
		t.Errorf("connected without a client certificate: %+v", h)
	}
}

func TestNewRefusesBadFiles(t *testing.T) {
	for name, tweak := range map[string]func(*Config){
		"missing password file": func(c *Config) { c.Username, c.PasswordFile = "u", "/nonexistent/password" },
		"empty password file":   func(c *Config) { c.Username, c.PasswordFile = "u", passwordFile(t, "") },
		"missing CA":            func(c *Config) { c.Broker, c.TLS.CAFile = "ssl://127.0.0.1:8883", "/nonexistent/ca.pem" },
		"CA not PEM":            func(c *Config) { c.Broker, c.TLS.CAFile = "ssl://127.0.0.1:8883", passwordFile(t, "x") },
		"bad client key": func(c *Config) {
			c.Broker, c.TLS.CertFile, c.TLS.KeyFile = "ssl://127.0.0.1:8883", passwordFile(t, "x"), passwordFile(t, "y")
		},
	} {
		cfg := testConfig("tcp://127.0.0.1:1883")
		tweak(&cfg)
		if _, err := New(cfg, Options{Device: Device{ID: "test"}, Outbox: openStore(t, nil)}, testLogger(t)); err == nil || !strings.Contains(err.Error(), "mqtt.") {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, id := range []string{"", "Porch Pi", "a/b", "#"} {
		if _, err := New(testConfig("tcp://127.0.0.1:1883"), Options{Device: Device{ID: id}, Outbox: openStore(t, nil)}, testLogger(t)); err == nil || !strings.Contains(err.Error(), "device id") {
			t.Errorf("device id %q: %v", id, err)
		}
	}
}
