package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// guard is what every request passes before the endpoints:
//
//   - Host must name loopback ("localhost", 127.0.0.1, [::1]) or the
//     address the request arrived at, with the port it arrived on, or an
//     entry of AllowedHosts: a page on a rebound DNS name is refused, reads
//     included.
//   - Origin, when a browser sends one, must pass the same test: a page of
//     another site cannot use the API, even with a request browsers send
//     without asking (a "simple" POST).
//   - A bearer token, when configured, on every request, compared in
//     constant time; without one, only peers on this machine are served.
//   - POST and PUT must say Content-Type: application/json, which a page
//     cannot send to another origin without a CORS preflight that sightd
//     never grants.
type guard struct {
	next    http.Handler
	allowed []allowedHost
	token   [sha256.Size]byte // of the token; zero when there is none
	hasTok  bool
	refused func(r *http.Request, code int, why string)
}

type allowedHost struct{ host, port string }

func newGuard(cfg Config, next http.Handler) *guard {
	g := &guard{next: next}
	for _, e := range cfg.AllowedHosts {
		if h, p, err := parseAllowedHost(e); err == nil {
			g.allowed = append(g.allowed, allowedHost{h, p})
		}
	}
	if cfg.Token != "" {
		g.token, g.hasTok = sha256.Sum256([]byte(cfg.Token)), true
	}
	// At most 10 refusals a minute in the log, however many arrive.
	log := cfg.Log.Sample(&zerolog.BurstSampler{Burst: 10, Period: time.Minute})
	g.refused = func(r *http.Request, code int, why string) {
		log.Warn().Str("remote", r.RemoteAddr).Str("method", r.Method).Str("path", r.URL.Path).
			Int("status", code).Str("reason", why).Msg("request refused")
	}
	return g
}

// Errors the guard answers with, in the JSON error body.
var (
	ErrHostNotAllowed   = errors.New("host not allowed")
	ErrOriginNotAllowed = errors.New("cross-origin request refused")
	ErrUnauthorized     = errors.New("missing or wrong bearer token")
	ErrRemoteNoToken    = errors.New("requests from other machines need a token: set http.token_file")
	ErrNotJSON          = errors.New("want Content-Type: application/json")
)

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	local := localAddr(r)
	if !g.hostAllowed(r.Host, "80", local) {
		g.refuse(w, r, http.StatusForbidden, fmt.Errorf("%w: %q (add it to http.allowed_hosts)", ErrHostNotAllowed, r.Host))
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" && !g.originAllowed(origin, local) {
		g.refuse(w, r, http.StatusForbidden, fmt.Errorf("%w: origin %q", ErrOriginNotAllowed, origin))
		return
	}
	if g.hasTok {
		got, ok := bearer(r.Header.Get("Authorization"))
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], g.token[:]) != 1 || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sightd"`)
			g.refuse(w, r, http.StatusUnauthorized, ErrUnauthorized)
			return
		}
	} else if !loopbackPeer(r.RemoteAddr) {
		g.refuse(w, r, http.StatusForbidden, ErrRemoteNoToken)
		return
	}
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			g.refuse(w, r, http.StatusUnsupportedMediaType, fmt.Errorf("%w, not %q", ErrNotJSON, r.Header.Get("Content-Type")))
			return
		}
	}
	g.next.ServeHTTP(w, r)
}

func (g *guard) refuse(w http.ResponseWriter, r *http.Request, code int, err error) {
	g.refused(r, code, err.Error())
	writeErr(w, code, err)
}

// localAddr is the address the request arrived at (nil if unknown).
func localAddr(r *http.Request) *net.TCPAddr {
	a, _ := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr)
	return a
}

// splitHost splits a Host header or an Origin's host into a lower-case host
// without brackets and its port ("" when it has none); ok is false for
// something that is neither a name nor an address.
func splitHost(hostport string) (host, port string, ok bool) {
	host = strings.ToLower(hostport)
	if h, p, err := net.SplitHostPort(host); err == nil {
		if _, err := parsePort(p); err != nil {
			return "", "", false
		}
		host, port = h, p
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if net.ParseIP(host) == nil && !hostnameRE.MatchString(host) {
		return "", "", false
	}
	return host, port, true
}

// hostAllowed checks a Host header or an Origin's host. defaultPort is the
// port that a missing one stands for (80, or 443 for an https origin).
// Loopback names and addresses, and the address the request arrived at,
// must come with the port it arrived on; an allowed_hosts entry with a
// port must match it, one without matches the arrival port or no port
// (a proxy in front on the standard port).
func (g *guard) hostAllowed(hostport, defaultPort string, local *net.TCPAddr) bool {
	host, port, ok := splitHost(hostport)
	if !ok {
		return false
	}
	p := port
	if p == "" {
		p = defaultPort
	}
	samePort := local == nil || p == strconv.Itoa(local.Port)
	if samePort && (loopbackHost(host) || local != nil && local.IP.Equal(net.ParseIP(host))) {
		return true
	}
	for _, a := range g.allowed {
		if a.host == host && (a.port == p || a.port == "" && (samePort || port == "")) {
			return true
		}
	}
	return false
}

// originAllowed checks an Origin header: http(s)://host[:port].
func (g *guard) originAllowed(origin string, local *net.TCPAddr) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return false // including "null"
	}
	switch u.Scheme {
	case "http":
		return g.hostAllowed(u.Host, "80", local)
	case "https":
		return g.hostAllowed(u.Host, "443", local)
	}
	return false
}

// bearer takes the token out of an Authorization header.
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// loopbackPeer reports whether the request came from this machine.
func loopbackPeer(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
