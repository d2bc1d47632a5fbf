package api

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/sightd/sightd/daemon/rules"
)

// serveReal serves the real handler, with the real rules manager, on a real
// listener at addr ("127.0.0.1:0" or a non-loopback address) with the
// default timeouts and limits, and returns its base URL.
func serveReal(t *testing.T, addr string, cfg Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(context.Background(), ln, DefaultSettings(), Handler(cfg), zerolog.Nop())
	go srv.Serve()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return "http://" + ln.Addr().String()
}

func guardedConfig(t *testing.T) (Config, *int) {
	changed := new(int)
	return Config{
		Health:         func(context.Context) []Check { return []Check{{Name: "store", OK: true}} },
		Cameras:        map[string]Snapshotter{"porch": fakeCamera{jpeg: []byte{0xff, 0xd8, 0xff, 0xd9}}},
		Rules:          manager(t),
		CameraNames:    map[string]bool{"porch": true},
		OnRulesChanged: func(context.Context) { *changed++ },
		Metrics:        NewMetrics().Registry,
		Log:            zerolog.Nop(),
	}, changed
}

// browser sends one request the way a browser (or curl) would: the Host
// header and any other headers as given.
type browserReq struct {
	method, path, body string
	host               string            // the Host header; the server's address when empty
	header             map[string]string // Origin, Content-Type, Authorization, ...
}

func send(t *testing.T, base string, r browserReq) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(r.method, base+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.host != "" {
		req.Host = r.host
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func listRules(t *testing.T, base, token string) []rules.Rule {
	t.Helper()
	h := map[string]string{}
	if token != "" {
		h["Authorization"] = "Bearer " + token
	}
	code, body, _ := send(t, base, browserReq{method: "GET", path: "/api/rules", header: h})
	var list []rules.Rule
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil {
		t.Fatalf("listing rules: %d %s", code, body)
	}
	return list
}

const ruleJSON = `{"id":"evil","prompts":["nothing"],"enabled":false}`

// A page open in a browser on the same machine must not change the rules,
// nor read them through a rebound DNS name; the page's own origin, curl and
// a configured LAN name still work.
func TestGuardBrowserRequests(t *testing.T) {
	cfg, changed := guardedConfig(t)
	cfg.AllowedHosts = []string{"sightd.lan", "proxy.lan:443"}
	base := serveReal(t, "127.0.0.1:0", cfg)
	port := strings.TrimPrefix(base, "http://127.0.0.1:")
	for _, tc := range []struct {
		name string
		req  browserReq
		code int
		want string
	}{
		// The attack of issue 21: a form or fetch() with text/plain goes out
		// without a preflight.
		{"cross-site simple POST", browserReq{method: "POST", path: "/api/rules", body: ruleJSON,
			header: map[string]string{"Content-Type": "text/plain;charset=UTF-8", "Origin": "http://evil.example"}}, 403, "cross-origin"},
		{"cross-site form POST", browserReq{method: "POST", path: "/api/rules", body: "id=evil",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"}}, 403, "cross-origin"},
		{"foreign origin with JSON", browserReq{method: "POST", path: "/api/rules", body: ruleJSON,
			header: map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}}, 403, "cross-origin"},
		{"foreign origin on our port", browserReq{method: "PUT", path: "/api/rules/evil", body: ruleJSON,
			header: map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example:" + port}}, 403, "cross-origin"},
		{"opaque origin", browserReq{method: "DELETE", path: "/api/rules/package",
			header: map[string]string{"Origin": "null"}}, 403, "cross-origin"},
		{"loopback origin, other port", browserReq{method: "POST", path: "/api/rules", body: ruleJSON,
			header: map[string]string{"Content-Type": "application/json", "Origin": "http://127.0.0.1:1"}}, 403, "cross-origin"},
		{"text/plain without an origin", browserReq{method: "POST", path: "/api/rules", body: ruleJSON,
			header: map[string]string{"Content-Type": "text/plain"}}, 415, "application/json"},
		{"no content type", browserReq{method: "POST", path: "/api/rules", body: ruleJSON}, 415, "application/json"},
		{"multipart", browserReq{method: "PUT", path: "/api/rules/evil", body: ruleJSON,
			header: map[string]string{"Content-Type": "multipart/form-data; boundary=x"}}, 415, "application/json"},
		// DNS rebinding: evil.example now resolves to 127.0.0.1; the browser
		// sends its own name as Host and would let the page read the answer.
		{"rebinding: rules", browserReq{method: "GET", path: "/api/rules", host: "evil.example:" + port}, 403, "host not allowed"},
		{"rebinding: snapshot", browserReq{method: "GET", path: "/snapshot/porch.jpg", host: "evil.example:" + port}, 403, "host not allowed"},
		{"rebinding: POST", browserReq{method: "POST", path: "/api/rules", body: ruleJSON, host: "evil.example",
			header: map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}}, 403, "host not allowed"},
		{"rebinding: health", browserReq{method: "GET", path: "/healthz", host: "evil.example:" + port}, 403, "host not allowed"},
		{"loopback name, other port", browserReq{method: "GET", path: "/api/rules", host: "localhost:1"}, 403, "host not allowed"},
		{"lan name, other port", browserReq{method: "GET", path: "/api/rules", host: "sightd.lan:1"}, 403, "host not allowed"},
		{"proxy name, wrong port", browserReq{method: "GET", path: "/api/rules", host: "proxy.lan:" + port}, 403, "host not allowed"},
		{"no host", browserReq{method: "GET", path: "/api/rules", host: "a b"}, 403, "host not allowed"}, // Go's client sends it empty

		// What must keep working.
		{"curl", browserReq{method: "GET", path: "/api/rules"}, 200, "["},
		{"localhost", browserReq{method: "GET", path: "/snapshot/porch.jpg", host: "localhost:" + port}, 200, "\xff\xd8"},
		{"ipv6 loopback name", browserReq{method: "GET", path: "/healthz", host: "[::1]:" + port}, 200, "ok"},
		{"lan name", browserReq{method: "GET", path: "/api/rules", host: "sightd.lan:" + port}, 200, "["},
		{"lan name behind a proxy", browserReq{method: "GET", path: "/api/rules", host: "SIGHTD.lan"}, 200, "["},
		{"proxy with its port", browserReq{method: "GET", path: "/api/rules", host: "proxy.lan:443"}, 200, "["},
		{"same-origin page", browserReq{method: "POST", path: "/api/rules", body: `{"id":"page","prompts":["a cat"]}`,
			header: map[string]string{"Content-Type": "application/json; charset=utf-8", "Origin": base}}, 200, `"id":"page"`},
		{"lan page", browserReq{method: "PUT", path: "/api/rules/page", body: `{"id":"page","prompts":["a dog"]}`, host: "sightd.lan:" + port,
			header: map[string]string{"Content-Type": "application/json", "Origin": "http://sightd.lan:" + port}}, 200, `"id":"page"`},
		{"https proxy page", browserReq{method: "PUT", path: "/api/rules/page", body: `{"id":"page","prompts":["a dog"]}`, host: "sightd.lan",
			header: map[string]string{"Content-Type": "application/json", "Origin": "https://sightd.lan"}}, 200, `"id":"page"`},
		{"curl DELETE", browserReq{method: "DELETE", path: "/api/rules/page"}, 200, "removed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := send(t, base, tc.req)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %.200q, want %d with %q", code, body, tc.code, tc.want)
			}
			if code != 200 && strings.Contains(body, "porch") {
				t.Fatalf("a refused request got data: %q", body)
			}
		})
	}
	if list := listRules(t, base, ""); len(list) != 0 || *changed != 4 {
		t.Fatalf("after the attacks: rules %+v, %d changes (want none, and 4 from the allowed requests)", list, *changed)
	}
}

// With a token every request needs it, from anywhere; the Host and Origin
// checks still apply to a request that has it.
func TestGuardBearerToken(t *testing.T) {
	cfg, changed := guardedConfig(t)
	const token = "0123456789abcdef0123456789abcdef"
	cfg.Token = token
	base := serveReal(t, "127.0.0.1:0", cfg)
	post := func(auth string, extra map[string]string) (int, string, http.Header) {
		h := map[string]string{"Content-Type": "application/json"}
		if auth != "" {
			h["Authorization"] = auth
		}
		for k, v := range extra {
			h[k] = v
		}
		return send(t, base, browserReq{method: "POST", path: "/api/rules", body: `{"id":"tok","prompts":["x"]}`, header: h})
	}
	for name, auth := range map[string]string{
		"missing":          "",
		"wrong":            "Bearer " + strings.Repeat("0", len(token)),
		"prefix":           "Bearer " + token[:16],
		"longer":           "Bearer " + token + "0",
		"basic":            "Basic " + token,
		"no scheme":        token,
		"empty bearer":     "Bearer ",
		"token in a realm": `Bearer realm="` + token + `"`,
	} {
		code, body, hdr := post(auth, nil)
		if code != 401 || !strings.Contains(body, "bearer token") || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s token: %d %s %q, want 401 with WWW-Authenticate", name, code, body, hdr.Get("WWW-Authenticate"))
		}
	}
	for _, path := range []string{"/healthz", "/metrics", "/snapshot/porch.jpg", "/api/rules"} {
		if code, _, _ := send(t, base, browserReq{method: "GET", path: path}); code != 401 {
			t.Errorf("GET %s without the token: %d, want 401", path, code)
		}
	}
	if code, body, _ := post("Bearer "+token, map[string]string{"Origin": "http://evil.example"}); code != 403 {
		t.Errorf("the right token from a foreign origin: %d %s, want 403", code, body)
	}
	if *changed != 0 {
		t.Fatalf("%d changes before the right token was sent", *changed)
	}
	if code, body, _ := post("bearer "+token, nil); code != 200 || *changed != 1 {
		t.Fatalf("right token: %d %s (changed %d)", code, body, *changed)
	}
	if list := listRules(t, base, token); len(list) != 1 || list[0].ID != "tok" {
		t.Fatalf("rules: %+v", list)
	}
}

// nonLoopbackIP is an address of this machine that is not loopback.
func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	t.Skip("this machine has no IPv4 address besides loopback")
	return ""
}

// Listening beyond loopback without a token: other machines are refused;
// with one they get in. The address the request arrived at is a valid Host.
func TestGuardRemotePeers(t *testing.T) {
	ip := nonLoopbackIP(t)
	cfg, _ := guardedConfig(t)
	base := serveReal(t, net.JoinHostPort(ip, "0"), cfg)
	// The peer is this machine's LAN address, as another machine's would be.
	code, body, _ := send(t, base, browserReq{method: "GET", path: "/api/rules"})
	if code != 403 || !strings.Contains(body, "http.token_file") {
		t.Fatalf("remote peer without a token configured: %d %s, want 403 naming http.token_file", code, body)
	}
	const token = "a-long-enough-token-for-the-test"
	cfg.Token = token
	base = serveReal(t, net.JoinHostPort(ip, "0"), cfg)
	if code, body, _ := send(t, base, browserReq{method: "GET", path: "/api/rules"}); code != 401 {
		t.Fatalf("remote peer without the token: %d %s", code, body)
	}
	if list := listRules(t, base, token); len(list) != 0 {
		t.Fatalf("rules: %+v", list)
	}
	// The same check on a request that did not come from a socket test can
	// name any peer address.
	h := Handler(Config{Health: cfg.Health, Metrics: cfg.Metrics, Log: zerolog.Nop()})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "http://localhost/healthz", nil)
	req.RemoteAddr = "198.51.100.7:40000"
	h.ServeHTTP(rec, req)
	if rec.Code != 403 {
		t.Fatalf("peer 198.51.100.7 without a token: %d", rec.Code)
	}
}

func TestSettingsToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := dir + "/" + name
		if err := writeFile(p, content); err != nil {
			t.Fatal(err)
		}
		return p
	}
	s := DefaultSettings()
	if tok, err := s.Token(); tok != "" || err != nil {
		t.Fatalf("no token file: %q %v", tok, err)
	}
	s.TokenFile = write("good", "0123456789abcdef0123\n")
	if tok, err := s.Token(); tok != "0123456789abcdef0123" || err != nil {
		t.Fatalf("good token: %q %v", tok, err)
	}
	for name, content := range map[string]string{"short": "abc\n", "empty": "", "space": "0123456789 abcdef0123", "two lines": "0123456789abcdef\n0123456789abcdef\n"} {
		s.TokenFile = write(name, content)
		if _, err := s.Token(); err == nil || !strings.Contains(err.Error(), "http.token_file") {
			t.Errorf("%s token: %v", name, err)
		}
	}
	s.TokenFile = dir + "/missing"
	if _, err := s.Token(); err == nil || !strings.Contains(err.Error(), "http.token_file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestSettingsValidate(t *testing.T) {
	if err := DefaultSettings().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Settings)
		want string
	}{
		{"port 99999", func(s *Settings) { s.Listen = "127.0.0.1:99999" }, `http.listen: "127.0.0.1:99999": port "99999"`},
		{"port -1", func(s *Settings) { s.Listen = ":-1" }, "http.listen"},
		{"no port", func(s *Settings) { s.Listen = "localhost" }, `http.listen: "localhost": want host:port`},
		{"allowed host url", func(s *Settings) { s.AllowedHosts = []string{"sightd.lan", "http://x.lan/"} }, "http.allowed_hosts[1]"},
		{"allowed host port", func(s *Settings) { s.AllowedHosts = []string{"x.lan:70000"} }, "http.allowed_hosts[0]"},
		{"allowed host empty", func(s *Settings) { s.AllowedHosts = []string{""} }, "http.allowed_hosts[0]: \"\": empty"},
		{"read timeout", func(s *Settings) { s.ReadTimeout = 0 }, "http.read_timeout: 0s"},
		{"idle timeout", func(s *Settings) { s.IdleTimeout = 2 * 3600e9 }, "http.idle_timeout"},
		{"connections", func(s *Settings) { s.MaxConnections = 0 }, "http.max_connections: 0"},
		{"too many connections", func(s *Settings) { s.MaxConnections = 100000 }, "http.max_connections: 100000"},
	} {
		s := DefaultSettings()
		tc.edit(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	for listen, loop := range map[string]bool{"127.0.0.1:8080": true, "localhost:1": true, "[::1]:80": true, "127.0.0.2:80": true,
		":8080": false, "0.0.0.0:8080": false, "[::]:8080": false, "192.168.1.5:8080": false, "sightd.lan:8080": false} {
		s := DefaultSettings()
		s.Listen = listen
		if s.Loopback() != loop {
			t.Errorf("%s: loopback %v, want %v", listen, !loop, loop)
		}
		if w := s.Warnings(); (len(w) == 1) == loop {
			t.Errorf("%s without a token: warnings %q", listen, w)
		}
		s.TokenFile = "/run/credentials/sightd.service/api-token"
		if w := s.Warnings(); len(w) != 0 {
			t.Errorf("%s with a token: warnings %q", listen, w)
		}
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

// The Host and Origin parsing never panics and never lets in a name that
// is neither loopback, the local address, nor an allowed host.
func FuzzGuardHostOrigin(f *testing.F) {
	for _, s := range [][2]string{
		{"127.0.0.1:8080", "http://127.0.0.1:8080"}, {"localhost:8080", "null"}, {"[::1]:8080", "http://[::1]:8080"},
		{"evil.example:8080", "http://evil.example"}, {"sightd.lan", "https://sightd.lan"}, {"SIGHTD.LAN:8080", "http://sightd.lan:8080/"},
		{"192.0.2.2:8080", "http://192.0.2.2:8080"}, {"127.0.0.1:99999", "http://user@localhost:8080"}, {"", "file://"},
		{"[fe80::1%25eth0]:8080", "http://[::ffff:127.0.0.1]:8080"}, {"localhost.:8080", "http://localhost:8080?x"},
	} {
		f.Add(s[0], s[1])
	}
	g := newGuard(Config{AllowedHosts: []string{"sightd.lan", "proxy.lan:443"}, Log: zerolog.Nop()}, http.NotFoundHandler())
	local := &net.TCPAddr{IP: net.ParseIP("192.0.2.2"), Port: 8080}
	known := func(host string) bool {
		ip := net.ParseIP(host)
		return host == "localhost" || host == "sightd.lan" || host == "proxy.lan" || ip != nil && (ip.IsLoopback() || ip.Equal(local.IP))
	}
	f.Fuzz(func(t *testing.T, host, origin string) {
		if g.hostAllowed(host, "80", local) {
			h, _, ok := splitHost(host)
			if !ok || !known(h) {
				t.Fatalf("host %q allowed", host)
			}
		}
		if g.originAllowed(origin, local) {
			u, err := url.Parse(origin)
			if err != nil {
				t.Fatalf("origin %q allowed: %v", origin, err)
			}
			if h, _, ok := splitHost(u.Host); !ok || !known(h) {
				t.Fatalf("origin %q allowed", origin)
			}
		}
	})
}
