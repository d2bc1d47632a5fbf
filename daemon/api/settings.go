package api

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Settings is the local API's part of the configuration file (`http:`).
// Start from DefaultSettings.
type Settings struct {
	// Listen is host:port; empty turns the server off. Loopback by
	// default: the API can change rules.
	Listen string `yaml:"listen"`
	// AllowedHosts are the names (or addresses) besides loopback ones that a
	// request's Host and Origin may carry, such as a LAN name "sightd.lan"
	// (with the listen port, or none) or "sightd.lan:443" behind a proxy.
	// Anything else is refused: that stops DNS rebinding.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// TokenFile holds the bearer token every request must then carry
	// (Authorization: Bearer ...), e.g. ${CREDENTIALS_DIRECTORY}/api-token.
	// Without one, only requests from this machine are served.
	TokenFile string `yaml:"token_file"`
	// ReadTimeout bounds reading a whole request (headers and body),
	// WriteTimeout writing its response, IdleTimeout a kept-alive connection
	// waiting for its next request. Slow or idle clients are then closed.
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
	IdleTimeout  time.Duration `yaml:"idle_timeout"`
	// MaxConnections is the most connections open at once; more are closed
	// as soon as they are accepted.
	MaxConnections int `yaml:"max_connections"`
}

// DefaultSettings listens on loopback only.
func DefaultSettings() Settings {
	return Settings{
		Listen:         "127.0.0.1:8080",
		ReadTimeout:    10 * time.Second,
		WriteTimeout:   30 * time.Second,
		IdleTimeout:    60 * time.Second,
		MaxConnections: 64,
	}
}

// MaxConnectionsLimit bounds max_connections well below the unit's
// LimitNOFILE (4096), which the cameras, the store and MQTT share.
const MaxConnectionsLimit = 1024

// MinTokenLength is the shortest token accepted: `openssl rand -hex 32`
// gives 64 characters.
const MinTokenLength = 16

const maxTokenFile = 4 << 10

var hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?$`)

// Validate reports every bad field, each named like `http.listen: ...`.
// It reads no file: TokenFile is read by Token.
func (s Settings) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("http.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if s.Listen != "" {
		if _, port, err := net.SplitHostPort(s.Listen); err != nil {
			bad("listen", "%q: want host:port (%v)", s.Listen, err)
		} else if _, err := parsePort(port); err != nil {
			bad("listen", "%q: %v", s.Listen, err)
		}
	}
	for i, h := range s.AllowedHosts {
		if _, _, err := parseAllowedHost(h); err != nil {
			bad(fmt.Sprintf("allowed_hosts[%d]", i), "%q: %v", h, err)
		}
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"read_timeout", s.ReadTimeout}, {"write_timeout", s.WriteTimeout}, {"idle_timeout", s.IdleTimeout}} {
		if d.v < 100*time.Millisecond || d.v > time.Hour {
			bad(d.field, "%v: want 100ms to 1h", d.v)
		}
	}
	if s.MaxConnections < 1 || s.MaxConnections > MaxConnectionsLimit {
		bad("max_connections", "%d: want 1..%d", s.MaxConnections, MaxConnectionsLimit)
	}
	return errors.Join(errs...)
}

// parsePort accepts a decimal port 0..65535 (0: any free port).
func parsePort(p string) (int, error) {
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("port %q: want a number from 0 to 65535", p)
	}
	return n, nil
}

// parseAllowedHost splits an allowed_hosts entry into a lower-case host and
// an optional port.
func parseAllowedHost(entry string) (host, port string, err error) {
	e := strings.ToLower(strings.TrimSpace(entry))
	if e == "" {
		return "", "", errors.New("empty")
	}
	if strings.Contains(e, "/") || strings.Contains(e, "@") {
		return "", "", errors.New("want a host name or address, optionally with :port (no scheme or path)")
	}
	host = e
	if h, p, err := net.SplitHostPort(e); err == nil {
		if _, err := parsePort(p); err != nil {
			return "", "", err
		}
		host, port = h, p
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if net.ParseIP(host) == nil && !hostnameRE.MatchString(host) {
		return "", "", errors.New("not a host name or address")
	}
	return host, port, nil
}

// Loopback reports whether Listen binds loopback addresses only:
// "localhost" or a loopback IP. An empty host, 0.0.0.0, :: or any other
// address or name reaches beyond this machine.
func (s Settings) Loopback() bool {
	host, _, err := net.SplitHostPort(s.Listen)
	if err != nil {
		return false
	}
	return loopbackHost(host)
}

func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Warnings are settings that work but that the user should know about.
func (s Settings) Warnings() []string {
	if s.Listen == "" || s.Loopback() || s.TokenFile != "" {
		return nil
	}
	return []string{fmt.Sprintf("http.listen: %q reaches beyond this machine, and no http.token_file is set: "+
		"requests from other machines are refused until one is", s.Listen)}
}

// Token reads TokenFile: "" when none is set. One trailing newline is
// ignored; the token must be at least MinTokenLength printable characters
// without spaces.
func (s Settings) Token() (string, error) {
	if s.TokenFile == "" {
		return "", nil
	}
	f, err := os.Open(s.TokenFile)
	if err != nil {
		return "", fmt.Errorf("http.token_file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("http.token_file: %w", err)
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("http.token_file: %s is larger than %d bytes, not a token", s.TokenFile, maxTokenFile)
	}
	tok := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if len(tok) < MinTokenLength {
		return "", fmt.Errorf("http.token_file: %s holds %d characters, want at least %d (openssl rand -hex 32 makes one)", s.TokenFile, len(tok), MinTokenLength)
	}
	for _, c := range tok {
		if c <= ' ' || c >= 0x7f {
			return "", fmt.Errorf("http.token_file: %s: the token may hold only printable ASCII without spaces", s.TokenFile)
		}
	}
	return tok, nil
}
