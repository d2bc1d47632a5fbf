// Package hatest runs a real Home Assistant for tests: Home Assistant core
// from its own venv (make ha-deps) on a free localhost port with a fresh
// configuration directory, onboarded and given its MQTT integration over
// its own REST API (no browser), and the reads a test needs: states, the
// entity registry, the log.
package hatest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// VenvEnv names the environment variable that points the tests at the venv
// make ha-deps installs.
const VenvEnv = "SIGHTD_HA_VENV"

// ErrExited says Home Assistant's process ended while it was waited for.
var ErrExited = errors.New("home assistant exited")

// HA is a running Home Assistant.
type HA struct {
	URL      string // http://127.0.0.1:<port>, no trailing slash
	Dir      string // its configuration directory
	ClientID string // the OAuth client id onboarding used (URL + "/")
	Token    string // a bearer token of the owner, after Onboard

	// The owner's login, for a browser (LoginCode).
	User, Password string

	cmd    *exec.Cmd
	exited chan struct{}
	http   *http.Client
}

// The owner account Onboard creates.
const (
	user     = "sightd"
	password = "sightd-test-password"
)

// configuration.yaml: a fixed location and time zone (Home Assistant asks
// nothing and looks nothing up), HTTP on the loopback only. The default
// integrations (frontend, onboarding, ...) load without default_config, which
// would add zeroconf, cloud, and others that reach out.
const configYAML = `homeassistant:
  name: sightd test
  latitude: 52.52
  longitude: 13.40
  elevation: 34
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: DE
http:
  server_host: 127.0.0.1
  server_port: %d
api:
logger:
  default: warning
`

// onboardingStore marks onboarding's core_config step done before the first
// start: finishing it over REST would start the met, google_translate and
// radio_browser integrations, which fetch from the internet (a test must
// not) and whose packages the venv leaves out on purpose. The other steps
// (the owner account, analytics, the integration step) are taken over REST.
const onboardingStore = `{"version": 4, "minor_version": 1, "key": "onboarding", "data": {"done": ["core_config"]}}`

// Start runs Home Assistant from venv in a new configuration directory under
// dir, on a free localhost port, and waits until its HTTP server answers.
// Stop ends it. HA runs with --skip-pip: everything it imports comes from
// the venv, and a missing requirement is an error in its log, never a
// download.
func Start(ctx context.Context, venv, dir string) (*HA, error) {
	python := filepath.Join(venv, "bin", "python")
	if _, err := os.Stat(python); err != nil {
		return nil, fmt.Errorf("home assistant venv: %w (make ha-deps installs it)", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "config")
	if err := os.MkdirAll(filepath.Join(conf, ".storage"), 0o755); err != nil {
		return nil, fmt.Errorf("home assistant config dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(conf, "configuration.yaml"), []byte(fmt.Sprintf(configYAML, port)), 0o644); err != nil {
		return nil, fmt.Errorf("configuration.yaml: %w", err)
	}
	if err := os.WriteFile(filepath.Join(conf, ".storage", "onboarding"), []byte(onboardingStore), 0o600); err != nil {
		return nil, fmt.Errorf("onboarding store: %w", err)
	}
	out, err := os.Create(filepath.Join(dir, "hass.out"))
	if err != nil {
		return nil, fmt.Errorf("home assistant output: %w", err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	ha := &HA{
		URL: base, Dir: conf, ClientID: base + "/", User: user, Password: password,
		exited: make(chan struct{}),
		http:   &http.Client{Timeout: time.Minute},
	}
	ha.cmd = exec.Command(python, "-m", "homeassistant", "--config", conf, "--skip-pip", "--log-no-color")
	ha.cmd.Stdout, ha.cmd.Stderr = out, out
	ha.cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	if err := ha.cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start home assistant: %w", err)
	}
	go func() {
		ha.cmd.Wait()
		out.Close()
		close(ha.exited)
	}()
	// /api/onboarding answers without a login once HTTP and onboarding are up.
	err = ha.waitFor(ctx, func() (bool, error) {
		resp, err := ha.http.Get(base + "/api/onboarding")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		ha.Stop()
		return nil, fmt.Errorf("home assistant did not come up on %s: %w", base, err)
	}
	return ha, nil
}

// Stop ends Home Assistant (SIGTERM, then SIGKILL after a minute) and waits
// for it. It may be called more than once.
func (ha *HA) Stop() {
	select {
	case <-ha.exited:
		return
	default:
	}
	ha.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-ha.exited:
	case <-time.After(time.Minute):
		ha.cmd.Process.Kill()
		<-ha.exited
	}
}

// Output is what Home Assistant printed (its console log), for a failing
// test to show.
func (ha *HA) Output() string {
	b, _ := os.ReadFile(filepath.Join(filepath.Dir(ha.Dir), "hass.out"))
	return string(b)
}

// Log is home-assistant.log as it is now.
func (ha *HA) Log() (string, error) {
	b, err := os.ReadFile(filepath.Join(ha.Dir, "home-assistant.log"))
	if err != nil {
		return "", fmt.Errorf("home assistant log: %w", err)
	}
	return string(b), nil
}

// waitFor polls cond until it holds, fails, ctx ends or HA exits. Every
// deadline comes from ctx: no fixed sleep decides anything.
func (ha *HA) waitFor(ctx context.Context, cond func() (bool, error)) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ha.exited:
			return fmt.Errorf("%w: %v", ErrExited, ha.cmd.ProcessState)
		case <-tick.C:
		}
	}
}

// Onboard creates the owner account and finishes onboarding over REST, as
// the frontend's onboarding pages would, and keeps a bearer token for the
// calls that follow.
func (ha *HA) Onboard(ctx context.Context) error {
	var created struct {
		AuthCode string `json:"auth_code"`
	}
	err := ha.do(ctx, "POST", "/api/onboarding/users", map[string]string{
		"client_id": ha.ClientID, "name": "sightd test", "username": ha.User, "password": ha.Password, "language": "en",
	}, &created)
	if err != nil {
		return fmt.Errorf("onboarding user: %w", err)
	}
	if ha.Token, err = ha.exchange(ctx, created.AuthCode); err != nil {
		return err
	}
	if err := ha.do(ctx, "POST", "/api/onboarding/analytics", map[string]string{}, nil); err != nil {
		return fmt.Errorf("onboarding analytics: %w", err)
	}
	err = ha.do(ctx, "POST", "/api/onboarding/integration", map[string]string{
		"client_id": ha.ClientID, "redirect_uri": ha.ClientID + "?auth_callback=1",
	}, nil)
	if err != nil {
		return fmt.Errorf("onboarding integration: %w", err)
	}
	return nil
}

// exchange trades an authorization code for an access token.
func (ha *HA) exchange(ctx context.Context, code string) (string, error) {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {ha.ClientID}}
	req, err := http.NewRequestWithContext(ctx, "POST", ha.URL+"/auth/token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("auth token: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := ha.send(req, &tok); err != nil {
		return "", fmt.Errorf("auth token: %w", err)
	}
	if tok.AccessToken == "" {
		return "", errors.New("auth token: no access_token in the answer")
	}
	return tok.AccessToken, nil
}

// LoginCode logs the owner in through the login flow, as the login page
// does, and returns an authorization code for ClientID that the frontend
// redeems itself (a browser opening AuthCallbackURL).
func (ha *HA) LoginCode(ctx context.Context) (string, error) {
	var flow struct {
		FlowID string `json:"flow_id"`
	}
	err := ha.do(ctx, "POST", "/auth/login_flow", map[string]any{
		"client_id": ha.ClientID, "handler": []any{"homeassistant", nil}, "redirect_uri": ha.ClientID + "?auth_callback=1",
	}, &flow)
	if err != nil {
		return "", fmt.Errorf("login flow: %w", err)
	}
	var done struct {
		Type   string `json:"type"`
		Result string `json:"result"`
	}
	err = ha.do(ctx, "POST", "/auth/login_flow/"+flow.FlowID, map[string]string{
		"client_id": ha.ClientID, "username": ha.User, "password": ha.Password,
	}, &done)
	if err != nil {
		return "", fmt.Errorf("login flow: %w", err)
	}
	if done.Type != "create_entry" || done.Result == "" {
		return "", fmt.Errorf("login flow: ended with %q, no code", done.Type)
	}
	return done.Result, nil
}

// AuthCallbackURL is the address of path (e.g. "/", a dashboard) as the
// login page sends a browser there after a login: the frontend redeems code
// and keeps the tokens.
func (ha *HA) AuthCallbackURL(path, code string) string {
	state, _ := json.Marshal(map[string]string{"hassUrl": ha.URL, "clientId": ha.ClientID})
	return ha.URL + path + "?" + url.Values{
		"auth_callback": {"1"}, "code": {code}, "state": {base64.StdEncoding.EncodeToString(state)}, // the frontend decodes it with atob
	}.Encode()
}

// AddMQTT sets up the MQTT integration against the broker at host:port
// through the config-flow REST API and returns the config entry's id.
func (ha *HA) AddMQTT(ctx context.Context, host string, port int) (string, error) {
	var step struct {
		FlowID string          `json:"flow_id"`
		Type   string          `json:"type"`
		StepID string          `json:"step_id"`
		Errors json.RawMessage `json:"errors"`
		Result struct {
			EntryID string `json:"entry_id"`
		} `json:"result"`
	}
	if err := ha.do(ctx, "POST", "/api/config/config_entries/flow", map[string]any{"handler": "mqtt"}, &step); err != nil {
		return "", fmt.Errorf("mqtt config flow: %w", err)
	}
	if step.Type != "form" {
		return "", fmt.Errorf("mqtt config flow: first step is %q, want a form", step.Type)
	}
	err := ha.do(ctx, "POST", "/api/config/config_entries/flow/"+step.FlowID, map[string]any{"broker": host, "port": port}, &step)
	if err != nil {
		return "", fmt.Errorf("mqtt config flow: %w", err)
	}
	if step.Type != "create_entry" {
		return "", fmt.Errorf("mqtt config flow: step %q ended with %q (errors %s), want create_entry", step.StepID, step.Type, step.Errors)
	}
	return step.Result.EntryID, nil
}

// Entry is a config entry as /api/config/config_entries/entry lists it.
type Entry struct {
	EntryID string `json:"entry_id"`
	Domain  string `json:"domain"`
	State   string `json:"state"`
	Reason  string `json:"reason"`
}

// Entries lists the config entries.
func (ha *HA) Entries(ctx context.Context) ([]Entry, error) {
	var es []Entry
	if err := ha.do(ctx, "GET", "/api/config/config_entries/entry", nil, &es); err != nil {
		return nil, fmt.Errorf("config entries: %w", err)
	}
	return es, nil
}

// State is an entity's state as /api/states gives it.
type State struct {
	EntityID    string         `json:"entity_id"`
	State       string         `json:"state"`
	Attributes  map[string]any `json:"attributes"`
	LastChanged string         `json:"last_changed"`
}

// States returns every entity's state by entity id.
func (ha *HA) States(ctx context.Context) (map[string]State, error) {
	var list []State
	if err := ha.do(ctx, "GET", "/api/states", nil, &list); err != nil {
		return nil, fmt.Errorf("states: %w", err)
	}
	out := make(map[string]State, len(list))
	for _, s := range list {
		out[s.EntityID] = s
	}
	return out, nil
}

// CallService calls a service, e.g. ("switch", "turn_off", {"entity_id": ...}).
func (ha *HA) CallService(ctx context.Context, domain, service string, data map[string]any) error {
	if err := ha.do(ctx, "POST", "/api/services/"+domain+"/"+service, data, nil); err != nil {
		return fmt.Errorf("service %s.%s: %w", domain, service, err)
	}
	return nil
}

// RegistryEntry is an entity of the entity registry.
type RegistryEntry struct {
	EntityID string `json:"entity_id"`
	UniqueID string `json:"unique_id"`
	Platform string `json:"platform"`
	DeviceID string `json:"device_id"`
}

// Registry lists the entity registry. Only the websocket API has it; the
// unique ids there tie a discovery config to its entity id.
func (ha *HA) Registry(ctx context.Context) ([]RegistryEntry, error) {
	var out []RegistryEntry
	if err := ha.websocket(ctx, map[string]any{"type": "config/entity_registry/list"}, &out); err != nil {
		return nil, fmt.Errorf("entity registry: %w", err)
	}
	return out, nil
}

// websocket logs in on /api/websocket, sends one command and decodes its
// result into out.
func (ha *HA) websocket(ctx context.Context, cmd map[string]any, out any) error {
	c, _, err := websocket.DefaultDialer.DialContext(ctx, "ws"+strings.TrimPrefix(ha.URL, "http")+"/api/websocket", nil)
	if err != nil {
		return err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetReadDeadline(d)
	}
	var msg struct {
		Type    string          `json:"type"`
		Success bool            `json:"success"`
		Result  json.RawMessage `json:"result"`
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
	}
	if err := c.ReadJSON(&msg); err != nil || msg.Type != "auth_required" {
		return fmt.Errorf("websocket hello: %q, %v", msg.Type, err)
	}
	if err := c.WriteJSON(map[string]string{"type": "auth", "access_token": ha.Token}); err != nil {
		return err
	}
	if err := c.ReadJSON(&msg); err != nil || msg.Type != "auth_ok" {
		return fmt.Errorf("websocket auth: %q %s, %v", msg.Type, msg.Message, err)
	}
	cmd["id"] = 1
	if err := c.WriteJSON(cmd); err != nil {
		return err
	}
	if err := c.ReadJSON(&msg); err != nil {
		return err
	}
	if msg.Type != "result" || !msg.Success {
		return fmt.Errorf("websocket %v: %s %s", cmd["type"], msg.Type, msg.Error)
	}
	return json.Unmarshal(msg.Result, out)
}

// Image returns the picture an image entity shows, as HA's frontend gets
// it (its image proxy).
func (ha *HA) Image(ctx context.Context, entityID string) ([]byte, error) {
	var b []byte
	return b, ha.do(ctx, http.MethodGet, "/api/image_proxy/"+entityID, nil, &b)
}

// do sends a JSON request with the bearer token (once there is one) and
// decodes a JSON answer into out (when out is not nil; a *[]byte gets the
// answer as it is).
func (ha *HA) do(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, ha.URL+path, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if ha.Token != "" {
		req.Header.Set("Authorization", "Bearer "+ha.Token)
	}
	return ha.send(req, out)
}

func (ha *HA) send(req *http.Request, out any) error {
	resp, err := ha.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(b))
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = b
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
