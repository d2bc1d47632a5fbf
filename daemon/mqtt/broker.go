package mqtt

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"
)

// Broker is the MQTT broker sightd runs itself for standalone installs, so
// that a first run needs no other software. It keeps messages in memory:
// sightd's outbox is what survives restarts, and sightd announces itself
// again on every connection.
type Broker struct {
	srv   *mochi.Server
	addr  string
	close sync.Once
}

// StartBroker serves MQTT on cfg.EmbeddedBroker.Listen. When cfg has a
// username, the broker admits that user with the password from
// password_file, and nobody else; otherwise anyone who can reach the port
// (keep it on 127.0.0.1).
func StartBroker(cfg Config, log zerolog.Logger) (*Broker, error) {
	if cfg.EmbeddedBroker.Listen == "" {
		return nil, errors.New("mqtt.embedded_broker.listen: empty")
	}
	log = log.With().Str("component", "mqtt-broker").Logger()
	caps := mochi.NewDefaultServerCapabilities()
	// mochi drops retained messages after a day by default; discovery
	// configs and states must stay.
	caps.MaximumMessageExpiryInterval = 0
	// A persistent session of a client that never returns (with the
	// messages queued for it) is dropped after a day.
	caps.MaximumSessionExpiryInterval = 24 * 60 * 60
	// mochi reports every start-up step at info; only its warnings matter.
	quiet := log.Level(max(log.GetLevel(), zerolog.WarnLevel))
	srv := mochi.New(&mochi.Options{Capabilities: caps, Logger: slog.New(zerolog.NewSlogHandler(quiet))})

	var err error
	if cfg.Username != "" {
		password, perr := cfg.password()
		if perr != nil {
			return nil, perr
		}
		if password == "" {
			return nil, errors.New("mqtt.password_file: the embedded broker needs one with mqtt.username")
		}
		err = srv.AddHook(&userHook{user: []byte(cfg.Username), password: []byte(password)}, nil)
	} else {
		if host, _, _ := net.SplitHostPort(cfg.EmbeddedBroker.Listen); !isLoopback(host) {
			log.Warn().Str("listen", cfg.EmbeddedBroker.Listen).Msg("embedded broker open to the network without a password")
		}
		err = srv.AddHook(new(auth.AllowHook), nil)
	}
	if err != nil {
		return nil, fmt.Errorf("mqtt: embedded broker: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{Type: "tcp", ID: "sightd", Address: cfg.EmbeddedBroker.Listen})
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("mqtt.embedded_broker.listen: %w", err)
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("mqtt: embedded broker: %w", err)
	}
	log.Info().Str("listen", tcp.Address()).Msg("embedded MQTT broker serving")
	return &Broker{srv: srv, addr: tcp.Address()}, nil
}

// userHook admits one user. (mochi's auth ledger reads '*' in a password as
// a wildcard, so it is not used.)
type userHook struct {
	mochi.HookBase
	user, password []byte
}

func (h *userHook) ID() string { return "sightd-user" }

func (h *userHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

func (h *userHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	return subtle.ConstantTimeCompare(cl.Properties.Username, h.user) == 1 &&
		subtle.ConstantTimeCompare(pk.Connect.Password, h.password) == 1
}

func (h *userHook) OnACLCheck(*mochi.Client, string, bool) bool { return true }

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Addr is the address the broker listens on (with the port chosen when
// Listen asked for port 0).
func (b *Broker) Addr() string { return b.addr }

// Close disconnects every client and stops listening. Close the Client
// first, so that it can say "stopped". It is safe to call more than once.
func (b *Broker) Close() error {
	var err error
	b.close.Do(func() { err = b.srv.Close() })
	return err
}
