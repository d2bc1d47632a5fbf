package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/quant/modelgen/demo/demotest"
	"github.com/sightd/sightd/store"
)

type fakeCamera struct {
	jpeg []byte
	err  error
}

func (f fakeCamera) Snapshot() ([]byte, time.Time, error) {
	return f.jpeg, time.Unix(1700000000, 0), f.err
}

// manager is a real rules.Manager on a real store with the demo bundle.
func manager(t *testing.T) *rules.Manager {
	t.Helper()
	text := demotest.Text(t, demotest.Towers(t))
	cfg := store.Defaults()
	cfg.Dir = t.TempDir()
	st, err := store.Open(context.Background(), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m, err := rules.NewManager(st, rules.Model{Version: 1, LogitScale: 100, Text: text}, map[string]bool{"porch": true})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func do(t *testing.T, srv *httptest.Server, method, path, body string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if method == "POST" || method == "PUT" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestAPI(t *testing.T) {
	healthy := true
	changed := 0
	metrics := NewMetrics()
	srv := httptest.NewServer(Handler(Config{
		Health: func(context.Context) []Check {
			return []Check{{Name: "camera/porch", OK: healthy, Detail: "unplugged?"}, {Name: "store", OK: true}}
		},
		Cameras:        map[string]Snapshotter{"porch": fakeCamera{jpeg: []byte{0xff, 0xd8, 0xff, 0xd9}}, "garage": fakeCamera{err: errors.New("no frame yet")}},
		Rules:          manager(t),
		CameraNames:    map[string]bool{"porch": true},
		OnRulesChanged: func(context.Context) { changed++ },
		Metrics:        metrics.Registry,
		Log:            zerolog.Nop(),
	}))
	defer srv.Close()

	if code, body, _ := do(t, srv, "GET", "/healthz", ""); code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("healthz: %d %s", code, body)
	}
	healthy = false
	if code, body, _ := do(t, srv, "GET", "/healthz", ""); code != 503 || !strings.Contains(body, `"name":"camera/porch","ok":false,"detail":"unplugged?"`) {
		t.Fatalf("degraded healthz: %d %s", code, body)
	}

	metrics.Detections.WithLabelValues("package", "porch").Inc()
	if code, body, _ := do(t, srv, "GET", "/metrics", ""); code != 200 ||
		!strings.Contains(body, `sightd_detections_total{camera="porch",rule="package"} 1`) || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("metrics: %d\n%.500s", code, body)
	}

	code, body, hdr := do(t, srv, "GET", "/snapshot/porch.jpg", "")
	if code != 200 || hdr.Get("Content-Type") != "image/jpeg" || !bytes.HasPrefix([]byte(body), []byte{0xff, 0xd8}) {
		t.Fatalf("snapshot: %d %q", code, hdr.Get("Content-Type"))
	}
	if code, _, _ := do(t, srv, "GET", "/snapshot/attic.jpg", ""); code != 404 {
		t.Fatalf("unknown camera: %d", code)
	}
	if code, _, _ := do(t, srv, "GET", "/snapshot/garage.jpg", ""); code != 503 {
		t.Fatalf("camera without a frame: %d", code)
	}

	// Rules: the same validation as everywhere else; bad input changes nothing.
	if code, body, _ := do(t, srv, "POST", "/api/rules", `{"id":"package","prompts":["a package on the porch"],"cameras":["porch"]}`); code != 200 || changed != 1 {
		t.Fatalf("create: %d %s (changed %d)", code, body, changed)
	}
	for name, c := range map[string]struct {
		method, path, body string
		code               int
	}{
		"bad threshold":  {"POST", "/api/rules", `{"id":"x","prompts":["y"],"threshold":3}`, 400},
		"unknown camera": {"POST", "/api/rules", `{"id":"x","prompts":["y"],"cameras":["attic"]}`, 400},
		"unknown field":  {"POST", "/api/rules", `{"id":"x","prompt":"y"}`, 400},
		"not json":       {"POST", "/api/rules", `id=x`, 400},
		"1 MB":           {"POST", "/api/rules", `{"id":"x","prompts":["` + strings.Repeat("a", 1<<20) + `"]}`, 413},
		"id mismatch":    {"PUT", "/api/rules/other", `{"id":"x","prompts":["y"]}`, 400},
		"missing rule":   {"DELETE", "/api/rules/nope", "", 404},
		"bad id":         {"DELETE", "/api/rules/Bad%20Id", "", 404},
	} {
		if code, body, _ := do(t, srv, c.method, c.path, c.body); code != c.code || !strings.Contains(body, `"error"`) {
			t.Errorf("%s: %d %s, want %d with an error", name, code, body, c.code)
		}
	}
	code, body, _ = do(t, srv, "GET", "/api/rules", "")
	var list []rules.Rule
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil || len(list) != 1 || list[0].ID != "package" || changed != 1 {
		t.Fatalf("list after bad requests: %d %s (changed %d)", code, body, changed)
	}
	if code, _, _ := do(t, srv, "PUT", "/api/rules/package", `{"id":"package","prompts":["a parcel"],"kind":"state"}`); code != 200 {
		t.Fatalf("replace: %d", code)
	}
	if code, _, _ := do(t, srv, "DELETE", "/api/rules/package", ""); code != 200 || changed != 3 {
		t.Fatalf("delete: %d (changed %d)", code, changed)
	}
}

// Events resolve by id from a real store: the record as JSON, its snapshot
// as a JPEG; unknown, malformed and snapshot-less ids are 404.
func TestEvents(t *testing.T) {
	ctx := context.Background()
	cfg := store.Defaults()
	cfg.Dir = t.TempDir()
	st, err := store.Open(ctx, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	jpeg := []byte{0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 0xff, 0xd9}
	rec := `{"type":"end","id":"0000019b2c3d4e5f0011223344556677","snapshot":"0000019b2c3d4e600011223344556688"}`
	if err := st.PutEvent(ctx, "0000019b2c3d4e5f0011223344556677", []byte(rec)); err != nil {
		t.Fatal(err)
	}
	if err := st.PutEventSnapshot(ctx, "0000019b2c3d4e600011223344556688", jpeg); err != nil {
		t.Fatal(err)
	}
	if err := st.PutEvent(ctx, "nosnap", []byte(`{"type":"event","id":"nosnap"}`)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(Config{Events: st, Metrics: NewMetrics().Registry, Log: zerolog.Nop()}))
	defer srv.Close()
	code, body, hdr := do(t, srv, "GET", "/api/events/0000019b2c3d4e5f0011223344556677", "")
	if code != 200 || body != rec || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("event: %d %s %q", code, body, hdr.Get("Content-Type"))
	}
	code, body, hdr = do(t, srv, "GET", "/api/events/0000019b2c3d4e5f0011223344556677/snapshot.jpg", "")
	if code != 200 || body != string(jpeg) || hdr.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("snapshot: %d %q", code, hdr.Get("Content-Type"))
	}
	for _, path := range []string{"/api/events/nope", "/api/events/nope/snapshot.jpg", "/api/events/nosnap/snapshot.jpg",
		"/api/events/Bad%20Id", "/api/events/" + strings.Repeat("a", 100)} {
		if code, body, _ := do(t, srv, "GET", path, ""); code != 404 || !strings.Contains(body, `"error"`) {
			t.Errorf("%s: %d %s, want 404", path, code, body)
		}
	}
}
