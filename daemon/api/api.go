// Package api is sightd's local HTTP interface: /healthz, /metrics,
// /snapshot/<camera>.jpg, /api/rules and /api/events/<id> (with
// /snapshot.jpg). It listens on localhost by default: it can change rules.
// Every request passes a guard first (Host, Origin, an optional bearer
// token, JSON for changes; see guard), and the server bounds slow, idle and
// too many connections (see Listen).
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/store"
)

// Check is one component's health.
type Check struct {
	Name   string `json:"name"` // camera/porch, encoder, store, mqtt
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// Snapshotter gives the last frame of a camera as JPEG.
type Snapshotter interface {
	Snapshot() ([]byte, time.Time, error)
}

// RuleStore is where /api/rules reads and writes; *rules.Manager is one.
type RuleStore interface {
	List(ctx context.Context) ([]*rules.Rule, error)
	Put(ctx context.Context, r *rules.Rule) error
	Delete(ctx context.Context, id string) error
}

// EventStore keeps events and their snapshots by id; *store.Store is one.
type EventStore interface {
	Event(ctx context.Context, id string) ([]byte, error)
	EventSnapshot(ctx context.Context, id string) ([]byte, error)
}

// Config is what the server serves.
type Config struct {
	// Health reports every component; /healthz is 200 when all are OK.
	Health func(ctx context.Context) []Check
	// Cameras by name, for snapshots.
	Cameras map[string]Snapshotter
	// Rules, and the camera names rules may name.
	Rules       RuleStore
	CameraNames map[string]bool
	// Events resolves /api/events/<id>; nil answers 404.
	Events EventStore
	// OnRulesChanged is called after a rule was saved or removed.
	OnRulesChanged func(ctx context.Context)
	// Metrics is the registry /metrics serves.
	Metrics *prometheus.Registry
	// AllowedHosts are Settings.AllowedHosts: Host and Origin values
	// accepted besides loopback and the address a request arrived at.
	AllowedHosts []string
	// Token, when set, is required of every request as a bearer token;
	// when empty, only requests from loopback peers are served.
	Token string
	Log   zerolog.Logger
}

// MaxRuleBody bounds a rule sent to /api/rules.
const MaxRuleBody = rules.MaxRuleJSONSize

// Handler returns the HTTP handler, behind the guard.
func Handler(cfg Config) http.Handler {
	s := &server{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Metrics, promhttp.HandlerOpts{ErrorLog: nil}))
	mux.HandleFunc("GET /snapshot/{file}", s.snapshot)
	mux.HandleFunc("GET /api/rules", s.listRules)
	mux.HandleFunc("POST /api/rules", s.putRule)
	mux.HandleFunc("PUT /api/rules/{id}", s.putRule)
	mux.HandleFunc("DELETE /api/rules/{id}", s.deleteRule)
	mux.HandleFunc("GET /api/events/{id}", s.event)
	mux.HandleFunc("GET /api/events/{id}/snapshot.jpg", s.eventSnapshot)
	return newGuard(cfg, mux)
}

type server struct{ cfg Config }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	checks := s.cfg.Health(r.Context())
	status, code := "ok", http.StatusOK
	for _, c := range checks {
		if !c.OK {
			status, code = "degraded", http.StatusServiceUnavailable
		}
	}
	writeJSON(w, code, map[string]any{"status": status, "checks": checks})
}

func (s *server) snapshot(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(r.PathValue("file"), ".jpg")
	cam, known := s.cfg.Cameras[name]
	if !ok || !known {
		writeErr(w, http.StatusNotFound, fmt.Errorf("no camera %q", name))
		return
	}
	jpeg, at, err := cam.Snapshot()
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err)
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Last-Modified", at.UTC().Format(http.TimeFormat))
	w.Header().Set("Cache-Control", "no-store")
	w.Write(jpeg)
}

// event answers an event's last message (what the events topic carried).
func (s *server) event(w http.ResponseWriter, r *http.Request) {
	b, ok := s.lookupEvent(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// eventSnapshot answers an event's best snapshot, the region outlined.
func (s *server) eventSnapshot(w http.ResponseWriter, r *http.Request) {
	b, ok := s.lookupEvent(w, r)
	if !ok {
		return
	}
	var ev struct {
		Snapshot string `json:"snapshot"`
	}
	if json.Unmarshal(b, &ev) != nil || ev.Snapshot == "" {
		writeErr(w, http.StatusNotFound, fmt.Errorf("event %q has no snapshot", r.PathValue("id")))
		return
	}
	jpeg, err := s.cfg.Events.EventSnapshot(r.Context(), ev.Snapshot)
	if err != nil {
		s.eventErr(w, err)
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "max-age=3600") // an event's snapshot changes only with an update
	w.Write(jpeg)
}

func (s *server) lookupEvent(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if s.cfg.Events == nil {
		writeErr(w, http.StatusNotFound, errors.New("events are not kept"))
		return nil, false
	}
	b, err := s.cfg.Events.Event(r.Context(), r.PathValue("id"))
	if err != nil {
		s.eventErr(w, err)
		return nil, false
	}
	return b, true
}

// eventErr: an unknown, expired or malformed id is 404.
func (s *server) eventErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		code = http.StatusNotFound
	}
	writeErr(w, code, err)
}

func (s *server) listRules(w http.ResponseWriter, r *http.Request) {
	list, err := s.cfg.Rules.List(r.Context())
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// putRule creates or replaces a rule with the same validation as MQTT
// commands: rules.Parse with the configured cameras.
func (s *server) putRule(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRuleBody+1))
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if len(body) > MaxRuleBody {
		writeErr(w, http.StatusRequestEntityTooLarge, fmt.Errorf("rule larger than %d bytes", MaxRuleBody))
		return
	}
	rule, err := rules.Parse(body, s.cfg.CameraNames)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if id := r.PathValue("id"); id != "" && id != rule.ID {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("path names rule %q, body rule %q", id, rule.ID))
		return
	}
	if err := s.cfg.Rules.Put(r.Context(), rule); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, rules.ErrInvalid) || errors.Is(err, store.ErrNotFound) {
			code = http.StatusBadRequest
		}
		writeErr(w, code, err)
		return
	}
	s.changed(r.Context(), "saved", rule.ID)
	writeJSON(w, http.StatusOK, rule)
}

func (s *server) deleteRule(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.cfg.Rules.Delete(r.Context(), id); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			code = http.StatusNotFound
		}
		writeErr(w, code, err)
		return
	}
	s.changed(r.Context(), "removed", id)
	writeJSON(w, http.StatusOK, map[string]string{"removed": id})
}

func (s *server) changed(ctx context.Context, what, id string) {
	s.cfg.Log.Info().Str("rule", id).Msg("rule " + what + " through the HTTP API")
	if s.cfg.OnRulesChanged != nil {
		s.cfg.OnRulesChanged(ctx)
	}
}
