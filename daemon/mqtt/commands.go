package mqtt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/store"
)

// RuleStore is where rule commands go. *rules.Manager satisfies it; the
// daemon passes one that serialises access to the Manager (which is for
// one goroutine at a time) and tells the pipeline the rules changed.
type RuleStore interface {
	Put(ctx context.Context, r *rules.Rule) error
	Delete(ctx context.Context, id string) error
	List(ctx context.Context) ([]*rules.Rule, error)
}

// Snapshotter takes a fresh JPEG snapshot of a camera (the pipeline).
type Snapshotter interface {
	Snapshot(ctx context.Context, camera string) ([]byte, error)
}

// Installer starts installing a model bundle (OTA) from url, which must
// hold exactly version (0: whatever version it holds); an empty url means
// the configured index's newest entry. It returns once the update is under
// way: progress goes to the model/state topic.
type Installer interface {
	Install(ctx context.Context, url string, version int64) error
	// Cancel stops the update under way and returns once it has stopped,
	// with its version (0 if not yet known).
	Cancel(ctx context.Context) (version int64, err error)
}

// Switches are the rule and camera switches Home Assistant turns on and
// off; the daemon keeps them in the store, so they survive restarts.
type Switches interface {
	// SetRuleEnabled enables or disables rule id; store.ErrNotFound when
	// there is no such rule.
	SetRuleEnabled(ctx context.Context, id string, on bool) error
	// SetDetection turns a camera's detection on or off.
	SetDetection(ctx context.Context, camera string, on bool) error
	// Detection reports whether a camera's detection is on.
	Detection(camera string) bool
}

// ErrNotAvailable answers commands whose handler this build or
// configuration lacks.
var ErrNotAvailable = errors.New("not available")

// errCommand marks a command that could not be read.
var errCommand = errors.New("invalid command")

type commandKind int

const (
	cmdRuleSet commandKind = iota + 1
	cmdRuleDelete
	cmdModelInstall
	cmdSnapshot
	cmdRuleEnabled
	cmdCameraDetection
)

// command is a parsed, validated command.
type command struct {
	kind      commandKind
	topic     string // where it came from; the reply goes to topic + "/reply"
	requestID string
	rule      *rules.Rule // rule/set
	ruleID    string      // rule/delete
	version   int64       // model/install
	url       string      // model/install
	cancel    bool        // model/install: stop the update under way
	camera    string      // snapshot request, camera detection switch
	on        bool        // switches
}

const maxRequestID = 128

// parseCommand reads a command sent on topic. It never fails on a topic
// that is not a command (ok is false then). On an error, cmd still carries
// what could be read (the topic, perhaps the request id) for the reply.
func parseCommand(t Topics, topic string, payload []byte, maxBytes int, cameras map[string]bool) (cmd command, ok bool, err error) {
	cmd.topic = topic
	var name string
	cmd.kind, ok, name = parseCommandTopic(t, topic)
	if !ok {
		return cmd, false, nil
	}
	if len(payload) > maxBytes {
		return cmd, true, fmt.Errorf("%w: %d bytes, above the limit of %d", errCommand, len(payload), maxBytes)
	}
	switch cmd.kind {
	case cmdRuleEnabled, cmdCameraDetection:
		return parseSwitch(cmd, name, payload, cameras)
	}
	cmd.camera = name
	var env struct {
		RequestID string          `json:"request_id"`
		Rule      json.RawMessage `json:"rule"`    // rule/set
		ID        *string         `json:"id"`      // rule/delete
		Version   int64           `json:"version"` // model/install
		URL       string          `json:"url"`     // model/install
		Cancel    bool            `json:"cancel"`  // model/install
	}
	switch p := bytes.TrimSpace(payload); {
	case len(p) == 0 && (cmd.kind == cmdSnapshot || cmd.kind == cmdModelInstall):
		// a bare request
	case string(p) == payloadInstall && cmd.kind == cmdModelInstall:
		// what Home Assistant's update entity sends
	default:
		if err := decodeStrict(p, &env); err != nil {
			// The reply still names the request it answers.
			cmd.requestID = requestIDOf(p, maxBytes)
			return cmd, true, fmt.Errorf("%w: %v", errCommand, err)
		}
	}
	if len(env.RequestID) > maxRequestID {
		return cmd, true, fmt.Errorf("%w: request_id longer than %d bytes", errCommand, maxRequestID)
	}
	cmd.requestID = env.RequestID
	// Fields that belong to another command are mistakes, not extras.
	extra := func(name string, set bool) error {
		if set {
			return fmt.Errorf("%w: field %q does not belong to this command", errCommand, name)
		}
		return nil
	}
	switch cmd.kind {
	case cmdRuleSet:
		if err := errors.Join(extra("id", env.ID != nil), extra("version", env.Version != 0), extra("url", env.URL != ""), extra("cancel", env.Cancel)); err != nil {
			return cmd, true, err
		}
		if len(env.Rule) == 0 || string(env.Rule) == "null" {
			return cmd, true, fmt.Errorf("%w: missing \"rule\"", errCommand)
		}
		r, err := rules.Parse(env.Rule, cameras)
		if err != nil {
			return cmd, true, err
		}
		cmd.rule = r
	case cmdRuleDelete:
		if err := errors.Join(extra("rule", env.Rule != nil), extra("version", env.Version != 0), extra("url", env.URL != ""), extra("cancel", env.Cancel)); err != nil {
			return cmd, true, err
		}
		if env.ID == nil {
			return cmd, true, fmt.Errorf("%w: missing \"id\"", errCommand)
		}
		if !idRE.MatchString(*env.ID) {
			return cmd, true, fmt.Errorf("%w: id %q is not a rule id", errCommand, *env.ID)
		}
		cmd.ruleID = *env.ID
	case cmdModelInstall:
		if err := errors.Join(extra("rule", env.Rule != nil), extra("id", env.ID != nil)); err != nil {
			return cmd, true, err
		}
		if env.Cancel {
			if env.Version != 0 || env.URL != "" {
				return cmd, true, fmt.Errorf("%w: cancel takes no version or url: it stops whatever update runs", errCommand)
			}
			cmd.cancel = true
			return cmd, true, nil
		}
		if env.Version < 0 {
			return cmd, true, fmt.Errorf("%w: version %d", errCommand, env.Version)
		}
		if env.URL != "" {
			u, err := url.Parse(env.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return cmd, true, fmt.Errorf("%w: url: want an http(s) URL", errCommand)
			}
		}
		cmd.version, cmd.url = env.Version, env.URL
	case cmdSnapshot:
		if err := errors.Join(extra("rule", env.Rule != nil), extra("id", env.ID != nil), extra("version", env.Version != 0), extra("url", env.URL != ""), extra("cancel", env.Cancel)); err != nil {
			return cmd, true, err
		}
		if !cameras[cmd.camera] {
			return cmd, true, fmt.Errorf("%w: unknown camera %q", errCommand, cmd.camera)
		}
	}
	return cmd, true, nil
}

// parseSwitch reads a switch command: ON or OFF, what Home Assistant's
// switch sends, and nothing else.
func parseSwitch(cmd command, name string, payload []byte, cameras map[string]bool) (command, bool, error) {
	if !idRE.MatchString(name) {
		return cmd, true, fmt.Errorf("%w: %q is not an id", errCommand, name)
	}
	switch p := string(bytes.TrimSpace(payload)); p {
	case On, Off:
		cmd.on = p == On
	default:
		if len(p) > 16 {
			p = p[:16] + "..."
		}
		return cmd, true, fmt.Errorf("%w: payload %q: want ON or OFF", errCommand, p)
	}
	if cmd.kind == cmdRuleEnabled {
		cmd.ruleID = name
		return cmd, true, nil
	}
	cmd.camera = name
	if !cameras[name] {
		return cmd, true, fmt.Errorf("%w: unknown camera %q", errCommand, name)
	}
	return cmd, true, nil
}

// parseCommandTopic says which command topic is, and the rule or camera
// it names, if any.
func parseCommandTopic(t Topics, topic string) (kind commandKind, ok bool, name string) {
	inner := func(prefix, suffix string) (string, bool) {
		if !strings.HasPrefix(topic, prefix) || !strings.HasSuffix(topic, suffix) || len(topic) < len(prefix)+len(suffix) {
			return "", false
		}
		n := topic[len(prefix) : len(topic)-len(suffix)]
		return n, !strings.Contains(n, "/")
	}
	if n, ok := inner(t.Base+"/rule/", "/enabled/set"); ok {
		return cmdRuleEnabled, true, n
	}
	if n, ok := inner(t.Base+"/camera/", "/detection/set"); ok {
		return cmdCameraDetection, true, n
	}
	switch {
	case topic == t.RuleSet():
		return cmdRuleSet, true, ""
	case topic == t.RuleDelete():
		return cmdRuleDelete, true, ""
	case topic == t.ModelInstall():
		return cmdModelInstall, true, ""
	case strings.HasPrefix(topic, t.Base+"/camera/") && strings.HasSuffix(topic, "/snapshot/request"):
		return cmdSnapshot, true, strings.TrimSuffix(strings.TrimPrefix(topic, t.Base+"/camera/"), "/snapshot/request")
	}
	return 0, false, ""
}

// requestIDOf reads the request_id of a payload that may be wrong in
// other ways (an unknown field, a value of the wrong type), so that an
// error or busy reply still names the request; "" when there is none to
// read or it is not a short string.
func requestIDOf(payload []byte, maxBytes int) string {
	p := bytes.TrimSpace(payload)
	if len(p) == 0 || len(p) > maxBytes || p[0] != '{' {
		return ""
	}
	var env struct {
		RequestID json.RawMessage `json:"request_id"`
	}
	if json.Unmarshal(p, &env) != nil {
		return ""
	}
	var id string
	if json.Unmarshal(env.RequestID, &id) != nil || len(id) > maxRequestID {
		return ""
	}
	return id
}

// decodeStrict reads exactly one JSON object with only known fields.
func decodeStrict(data []byte, v any) error {
	if len(data) == 0 || data[0] != '{' {
		return errors.New("want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

// reply is the answer to a command.
type reply struct {
	OK        bool   `json:"ok"`
	RequestID string `json:"request_id,omitempty"`
	Error     string `json:"error,omitempty"`
	// Busy: too many commands were waiting; nothing was done, and the
	// same command may be sent again.
	Busy      bool   `json:"busy,omitempty"`
	Rule      string `json:"rule,omitempty"`      // rule/set, rule/delete
	Camera    string `json:"camera,omitempty"`    // snapshot
	Bytes     int    `json:"bytes,omitempty"`     // snapshot size
	Version   int64  `json:"version,omitempty"`   // model/install
	Cancelled bool   `json:"cancelled,omitempty"` // model/install {"cancel":true}
	State     string `json:"state,omitempty"`     // switches: ON or OFF, as now set
}

// handlers carries out commands. It runs on the client's own goroutine,
// never inside paho's callbacks.
type handlers struct {
	device    string
	push      func(context.Context, store.Message) error // to the outbox, waking the drain
	rules     RuleStore
	snapshots Snapshotter
	installer Installer
	switches  Switches
	last      func(rule string) *rules.Detection // may be nil
	// refused publishes a refused model install where Home Assistant's
	// update entity shows it.
	refused func(ctx context.Context, reason string)
	// changed is called after a rule was saved or deleted (to update
	// Home Assistant discovery).
	changed func(ctx context.Context)
}

// run carries out cmd and says how it went. Nothing changes on an error.
func (h *handlers) run(ctx context.Context, cmd command) reply {
	rep := reply{RequestID: cmd.requestID}
	var err error
	switch cmd.kind {
	case cmdRuleSet:
		rep.Rule = cmd.rule.ID
		err = h.ruleSet(ctx, cmd.rule)
	case cmdRuleDelete:
		rep.Rule = cmd.ruleID
		err = h.ruleDelete(ctx, cmd.ruleID)
	case cmdModelInstall:
		rep.Version = cmd.version
		switch {
		case h.installer == nil:
			err = fmt.Errorf("model install: %w (updates are off: ota.trusted_keys is empty)", ErrNotAvailable)
		case cmd.cancel:
			rep.Version, err = h.installer.Cancel(ctx)
			rep.Cancelled = err == nil
		default:
			err = h.installer.Install(ctx, cmd.url, cmd.version)
		}
		if err != nil && h.refused != nil {
			h.refused(ctx, err.Error())
		}
	case cmdSnapshot:
		rep.Camera = cmd.camera
		rep.Bytes, err = h.snapshot(ctx, cmd.camera)
	case cmdRuleEnabled:
		rep.Rule = cmd.ruleID
		err = h.ruleEnabled(ctx, cmd.ruleID, cmd.on)
	case cmdCameraDetection:
		rep.Camera = cmd.camera
		err = h.detection(ctx, cmd.camera, cmd.on)
	}
	if err == nil && (cmd.kind == cmdRuleEnabled || cmd.kind == cmdCameraDetection) {
		rep.State = Off
		if cmd.on {
			rep.State = On
		}
	}
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	rep.OK = true
	return rep
}

func (h *handlers) ruleSet(ctx context.Context, r *rules.Rule) error {
	if h.rules == nil {
		return fmt.Errorf("rules: %w", ErrNotAvailable)
	}
	if err := h.rules.Put(ctx, r); err != nil {
		return err
	}
	var last *rules.Detection
	if h.last != nil {
		last = h.last(r.ID)
	}
	if m, err := AttributesMessage(h.device, r, last); err == nil {
		if err := h.push(ctx, m); err != nil {
			return fmt.Errorf("rule %s saved, but its attributes were not queued: %w", r.ID, err)
		}
	}
	h.changed(ctx)
	return nil
}

func (h *handlers) ruleDelete(ctx context.Context, id string) error {
	if h.rules == nil {
		return fmt.Errorf("rules: %w", ErrNotAvailable)
	}
	if err := h.rules.Delete(ctx, id); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no rule %q", id)
	} else if err != nil {
		return err
	}
	// changed clears the rule's retained topics.
	h.changed(ctx)
	return nil
}

func (h *handlers) ruleEnabled(ctx context.Context, id string, on bool) error {
	if h.switches == nil {
		return fmt.Errorf("rule switches: %w", ErrNotAvailable)
	}
	if err := h.switches.SetRuleEnabled(ctx, id, on); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no rule %q", id)
	} else if err != nil {
		return err
	}
	// changed publishes the switch's new state.
	h.changed(ctx)
	return nil
}

func (h *handlers) detection(ctx context.Context, camera string, on bool) error {
	if h.switches == nil {
		return fmt.Errorf("camera switches: %w", ErrNotAvailable)
	}
	if err := h.switches.SetDetection(ctx, camera, on); err != nil {
		return err
	}
	m, err := CameraDetectionMessage(h.device, camera, on)
	if err != nil {
		return err
	}
	if err := h.push(ctx, m); err != nil {
		return fmt.Errorf("camera %s: detection set, but its state was not queued: %w", camera, err)
	}
	return nil
}

func (h *handlers) snapshot(ctx context.Context, camera string) (int, error) {
	if h.snapshots == nil {
		return 0, fmt.Errorf("snapshots: %w", ErrNotAvailable)
	}
	jpeg, err := h.snapshots.Snapshot(ctx, camera)
	if err != nil {
		return 0, fmt.Errorf("snapshot of %s: %w", camera, err)
	}
	m, err := SnapshotMessage(h.device, camera, jpeg)
	if err != nil {
		return 0, err
	}
	if err := h.push(ctx, m); err != nil {
		return 0, err
	}
	return len(jpeg), nil
}
