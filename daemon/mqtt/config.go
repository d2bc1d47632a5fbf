package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
)

// Config is the MQTT connection and what sightd publishes over it. The
// daemon's config file embeds it under `mqtt:`; start from Defaults.
type Config struct {
	// Broker is the broker's URL: tcp://host:1883, ssl://host:8883,
	// ws://host:9001/mqtt or wss://...
	Broker string `yaml:"broker"`
	// Username and PasswordFile authenticate to the broker. The password is
	// read from a file so that systemd credentials (LoadCredential=) and
	// secrets never sit in the config file; one trailing newline is ignored.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	TLS          TLS    `yaml:"tls"`
	// KeepAlive is the MQTT keep-alive: a dead connection is noticed within
	// this plus at most 10 seconds.
	KeepAlive time.Duration `yaml:"keep_alive"`
	// ConnectTimeout bounds one connection attempt (TCP, TLS and CONNACK).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// RetryMin and RetryMax bound the exponential back-off (with jitter)
	// between connection attempts.
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`
	// DrainRate is the most messages per second sent from the outbox, so
	// that the backlog of a long broker outage does not flood the broker
	// and Home Assistant when it comes back.
	DrainRate float64 `yaml:"drain_rate"`
	// Discovery publishes Home Assistant discovery configs under
	// DiscoveryPrefix.
	Discovery       bool   `yaml:"discovery"`
	DiscoveryPrefix string `yaml:"discovery_prefix"`
	// MaxCommandBytes is the largest command payload parsed; larger ones
	// get an error reply without being parsed.
	MaxCommandBytes int `yaml:"max_command_bytes"`
	// StatsInterval is how often the stats topic is published.
	StatsInterval time.Duration `yaml:"stats_interval"`
	// EmbeddedBroker, when Listen is set, runs an MQTT broker inside sightd
	// (standalone installs); Broker then usually points at it.
	EmbeddedBroker EmbeddedBroker `yaml:"embedded_broker"`
}

// TLS configures ssl:// and wss:// connections. Without CAFile the system's
// roots are trusted.
type TLS struct {
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are an optional client certificate.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name the server's certificate is checked
	// against (the broker URL's host by default).
	ServerName string `yaml:"server_name"`
}

// EmbeddedBroker is the broker sightd can run itself.
type EmbeddedBroker struct {
	// Listen is a host:port such as "127.0.0.1:1883"; empty means no
	// embedded broker.
	Listen string `yaml:"listen"`
}

// Defaults connects to a broker on this machine.
func Defaults() Config {
	return Config{
		Broker:          "tcp://127.0.0.1:1883",
		KeepAlive:       30 * time.Second,
		ConnectTimeout:  10 * time.Second,
		RetryMin:        time.Second,
		RetryMax:        time.Minute,
		DrainRate:       100,
		Discovery:       true,
		DiscoveryPrefix: "homeassistant",
		MaxCommandBytes: 64 << 10,
		StatsInterval:   30 * time.Second,
	}
}

// idRE is what device, rule and camera ids look like: safe in topics (no
// '/', '+', '#') and in Home Assistant's discovery topics.
var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// schemes are the broker URL schemes paho dials, and whether they use TLS.
var schemes = map[string]bool{"tcp": false, "mqtt": false, "ws": false, "ssl": true, "tls": true, "mqtts": true, "wss": true}

// Validate reports every bad field, each named like
// `mqtt.broker: unsupported scheme "http"`.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("mqtt.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if u, err := url.Parse(c.Broker); err != nil || c.Broker == "" {
		bad("broker", "%q is not a URL such as tcp://127.0.0.1:1883", c.Broker)
	} else if secure, ok := schemes[u.Scheme]; !ok {
		bad("broker", "unsupported scheme %q (want tcp, ssl or ws, or mqtt, mqtts, tls, wss)", u.Scheme)
	} else {
		if u.Hostname() == "" || u.Port() == "" {
			bad("broker", "%q: want host:port, such as %s://127.0.0.1:%s", c.Broker, u.Scheme, map[bool]string{false: "1883", true: "8883"}[secure])
		}
		if !secure && c.TLS != (TLS{}) {
			bad("tls", "set, but broker %q does not use TLS (use ssl:// or wss://)", c.Broker)
		}
	}
	if c.PasswordFile != "" && c.Username == "" {
		bad("password_file", "set without a username")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls", "cert_file and key_file go together")
	}
	if c.KeepAlive < time.Second || c.KeepAlive > 18*time.Hour {
		bad("keep_alive", "%v: want 1s to 18h", c.KeepAlive)
	}
	if c.ConnectTimeout < 100*time.Millisecond {
		bad("connect_timeout", "%v: want at least 100ms", c.ConnectTimeout)
	}
	if c.RetryMin < 10*time.Millisecond {
		bad("retry_min", "%v: want at least 10ms", c.RetryMin)
	}
	if c.RetryMax < c.RetryMin {
		bad("retry_max", "%v: want at least retry_min (%v)", c.RetryMax, c.RetryMin)
	}
	if !(c.DrainRate > 0 && c.DrainRate <= 1e6) {
		bad("drain_rate", "%v: want more than 0 and at most 1000000 messages/s", c.DrainRate)
	}
	if c.Discovery && !idRE.MatchString(c.DiscoveryPrefix) {
		bad("discovery_prefix", "%q: want one topic level of a-z, 0-9, _ and -", c.DiscoveryPrefix)
	}
	if c.MaxCommandBytes < 1<<10 || c.MaxCommandBytes > 16<<20 {
		bad("max_command_bytes", "%d: want 1 KiB to 16 MiB", c.MaxCommandBytes)
	}
	if c.StatsInterval < time.Second || c.StatsInterval > 24*time.Hour {
		bad("stats_interval", "%v: want 1s to 24h", c.StatsInterval)
	}
	if l := c.EmbeddedBroker.Listen; l != "" {
		if _, port, err := net.SplitHostPort(l); err != nil || port == "" {
			bad("embedded_broker.listen", "%q: want host:port, such as 127.0.0.1:1883", l)
		}
	}
	return errors.Join(errs...)
}

// CheckFiles reads the files New reads (the password file, the TLS CA,
// certificate and key) without connecting: what `sightd config check` runs.
func (c Config) CheckFiles() error {
	_, perr := c.password()
	_, terr := c.tlsConfig()
	return errors.Join(perr, terr)
}

// password reads PasswordFile.
func (c Config) password() (string, error) {
	if c.PasswordFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(c.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("mqtt.password_file: %w", err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("mqtt.password_file: %s is empty", c.PasswordFile)
	}
	return s, nil
}

// tlsConfig loads the CA and client certificate; nil for plain brokers.
func (c Config) tlsConfig() (*tls.Config, error) {
	u, err := url.Parse(c.Broker)
	if err != nil || !schemes[u.Scheme] {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLS.ServerName}
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	if c.TLS.CAFile != "" {
		pem, err := os.ReadFile(c.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.tls.ca_file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt.tls.ca_file: %s holds no PEM certificate", c.TLS.CAFile)
		}
	}
	if c.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.tls.cert_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// redact hides a password given in the broker URL.
func redact(broker string) string {
	u, err := url.Parse(broker)
	if err != nil {
		return broker
	}
	return u.Redacted()
}
