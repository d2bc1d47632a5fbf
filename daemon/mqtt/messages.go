package mqtt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/store"
)

// Topics are sightd's topics for one device, all under sightd/<device>.
type Topics struct {
	Base string // sightd/<device>
}

// NewTopics returns the topics of device.
func NewTopics(device string) Topics { return Topics{Base: "sightd/" + device} }

// Status carries online, offline (the last will) or stopped; retained.
func (t Topics) Status() string { return t.Base + "/status" }

// Events carries event rules' firings and state rules' event lifecycle
// (JSON, QoS 1, not retained).
func (t Topics) Events() string { return t.Base + "/events" }

// RuleState carries a state rule's ON or OFF; retained.
func (t Topics) RuleState(rule string) string { return t.Base + "/rule/" + rule + "/state" }

// RuleAttributes carries a rule's settings and last detection (JSON); retained.
func (t Topics) RuleAttributes(rule string) string { return t.Base + "/rule/" + rule + "/attributes" }

// Snapshot carries a camera's latest snapshot (JPEG); retained.
func (t Topics) Snapshot(camera string) string { return t.Base + "/camera/" + camera + "/snapshot" }

// CameraStatus carries online or offline for a camera; retained.
func (t Topics) CameraStatus(camera string) string { return t.Base + "/camera/" + camera + "/status" }

// ModelState carries the model bundle's versions and update progress (JSON); retained.
func (t Topics) ModelState() string { return t.Base + "/model/state" }

// ModelEvent carries model update outcomes (JSON): installed, committed,
// rolled_back, failed with the reason.
func (t Topics) ModelEvent() string { return t.Base + "/model/event" }

// StoreState carries the store's disk space state (JSON); retained.
func (t Topics) StoreState() string { return t.Base + "/store/state" }

// RuleEnabled carries whether a rule is evaluated: ON or OFF; retained.
func (t Topics) RuleEnabled(rule string) string { return t.Base + "/rule/" + rule + "/enabled" }

// RuleSnapshot carries the JPEG of a rule's last detection, the region
// outlined; retained.
func (t Topics) RuleSnapshot(rule string) string { return t.Base + "/rule/" + rule + "/snapshot" }

// CameraDetection carries whether a camera's frames are matched against
// the rules: ON or OFF; retained.
func (t Topics) CameraDetection(camera string) string {
	return t.Base + "/camera/" + camera + "/detection"
}

// CameraMotion carries ON while the camera's motion gate sees motion; retained.
func (t Topics) CameraMotion(camera string) string { return t.Base + "/camera/" + camera + "/motion" }

// Stats carries the device's and cameras' figures (JSON), periodically; retained.
func (t Topics) Stats() string { return t.Base + "/stats" }

// Command topics; each is answered on the same topic + "/reply".
func (t Topics) RuleSet() string      { return t.Base + "/rule/set" }
func (t Topics) RuleDelete() string   { return t.Base + "/rule/delete" }
func (t Topics) ModelInstall() string { return t.Base + "/model/install" }
func (t Topics) SnapshotRequest(camera string) string {
	return t.Base + "/camera/" + camera + "/snapshot/request"
}
func (t Topics) RuleEnabledSet(rule string) string { return t.RuleEnabled(rule) + "/set" }
func (t Topics) CameraDetectionSet(camera string) string {
	return t.CameraDetection(camera) + "/set"
}

// Reply is where the answer to a command sent on topic goes.
func Reply(topic string) string { return topic + "/reply" }

// Status payloads.
const (
	Online  = "online"
	Offline = "offline" // the last will: the connection died
	Stopped = "stopped" // a clean shutdown
)

func checkIDs(ids ...string) error {
	for _, id := range ids {
		if !idRE.MatchString(id) {
			return fmt.Errorf("mqtt: %q cannot be part of a topic: want a-z, 0-9, _ and -", id)
		}
	}
	return nil
}

// event is what the events topic carries for an event rule's firing: the
// detection, with the rule as Home Assistant's event_type.
type event struct {
	Type      string `json:"type"` // "event"
	EventType string `json:"event_type"`
	rules.Detection
	// Snapshot is the id of its snapshot (/api/events/<id>/snapshot.jpg);
	// empty when none was kept.
	Snapshot string `json:"snapshot,omitempty"`
}

// EventMessage publishes an event rule's firing on the events topic (QoS
// 1); snapshot is the id its snapshot is kept under, or "". Its unique id
// lets subscribers drop the duplicates at-least-once delivery allows.
func EventMessage(device string, d rules.Detection, snapshot string) (store.Message, error) {
	if err := checkIDs(device, d.Rule); err != nil {
		return store.Message{}, err
	}
	if d.ID == "" {
		return store.Message{}, fmt.Errorf("mqtt: detection of rule %s has no id", d.Rule)
	}
	b, err := json.Marshal(event{Type: "event", EventType: d.Rule, Detection: d, Snapshot: snapshot})
	if err != nil {
		return store.Message{}, fmt.Errorf("mqtt: detection %s: %w", d.ID, err)
	}
	return store.Message{Topic: NewTopics(device).Events(), Payload: b, QoS: 1}, nil
}

// Lifecycle types: a state rule's event starts (ON), gets a clearly
// better view (update), and ends (OFF).
const (
	LifecycleNew    = "new"
	LifecycleUpdate = "update"
	LifecycleEnd    = "end"
)

// Lifecycle is one message of a state rule's event, Frigate-style: every
// message of one event has the same id (its first detection's).
type Lifecycle struct {
	Type      string     `json:"type"` // new, update, end
	ID        string     `json:"id"`
	Rule      string     `json:"rule"`
	Name      string     `json:"name"`
	Camera    string     `json:"camera"`
	StartTime time.Time  `json:"start_time"`
	EndTime   *time.Time `json:"end_time"` // set by end
	// Duration is in seconds: so far for new and update, in all for end.
	Duration float64 `json:"duration"`
	// Before is the best detection before this message (null for new);
	// After the detection this message reports: for end, the one that
	// turned the rule OFF.
	Before *rules.Detection `json:"before"`
	After  rules.Detection  `json:"after"`
	// Snapshot is the id of the event's best snapshot so far
	// (/api/events/<id>/snapshot.jpg); empty when none was kept.
	Snapshot string `json:"snapshot,omitempty"`
}

// LifecycleMessage publishes a state rule's event message on the events
// topic (QoS 1, not retained).
func LifecycleMessage(device string, l Lifecycle) (store.Message, error) {
	if err := checkIDs(device, l.Rule); err != nil {
		return store.Message{}, err
	}
	switch l.Type {
	case LifecycleNew, LifecycleUpdate, LifecycleEnd:
	default:
		return store.Message{}, fmt.Errorf("mqtt: event type %q is not new, update or end", l.Type)
	}
	if l.ID == "" {
		return store.Message{}, fmt.Errorf("mqtt: event of rule %s has no id", l.Rule)
	}
	b, err := json.Marshal(l)
	if err != nil {
		return store.Message{}, fmt.Errorf("mqtt: event %s: %w", l.ID, err)
	}
	return store.Message{Topic: NewTopics(device).Events(), Payload: b, QoS: 1}, nil
}

// StateMessage publishes a state rule's ON or OFF (retained).
func StateMessage(device, rule string, on bool) (store.Message, error) {
	if err := checkIDs(device, rule); err != nil {
		return store.Message{}, err
	}
	return onOff(NewTopics(device).RuleState(rule), on), nil
}

// RuleEnabledMessage publishes whether a rule is enabled (retained).
func RuleEnabledMessage(device, rule string, on bool) (store.Message, error) {
	if err := checkIDs(device, rule); err != nil {
		return store.Message{}, err
	}
	return onOff(NewTopics(device).RuleEnabled(rule), on), nil
}

// CameraDetectionMessage publishes whether a camera's detection is on (retained).
func CameraDetectionMessage(device, camera string, on bool) (store.Message, error) {
	if err := checkIDs(device, camera); err != nil {
		return store.Message{}, err
	}
	return onOff(NewTopics(device).CameraDetection(camera), on), nil
}

// MotionMessage publishes whether a camera sees motion (retained).
func MotionMessage(device, camera string, on bool) (store.Message, error) {
	if err := checkIDs(device, camera); err != nil {
		return store.Message{}, err
	}
	return onOff(NewTopics(device).CameraMotion(camera), on), nil
}

func onOff(topic string, on bool) store.Message {
	p := Off
	if on {
		p = On
	}
	return store.Message{Topic: topic, Payload: []byte(p), QoS: 1, Retained: true}
}

// Attributes is what a rule's Home Assistant entity shows beside its state.
type Attributes struct {
	Name      string     `json:"name"`
	Kind      rules.Kind `json:"kind"`
	Prompts   []string   `json:"prompts"`
	Negatives []string   `json:"negatives,omitempty"`
	Cameras   []string   `json:"cameras,omitempty"`
	Threshold float64    `json:"threshold"`
	Enabled   bool       `json:"enabled"`
	// Last is the rule's latest detection, if any.
	Last *rules.Detection `json:"last,omitempty"`
}

// AttributesMessage publishes a rule's attributes (retained); last may be nil.
func AttributesMessage(device string, r *rules.Rule, last *rules.Detection) (store.Message, error) {
	if err := checkIDs(device, r.ID); err != nil {
		return store.Message{}, err
	}
	b, err := json.Marshal(Attributes{Name: r.Name, Kind: r.Kind, Prompts: r.Prompts, Negatives: r.Negatives,
		Cameras: r.Cameras, Threshold: r.Threshold, Enabled: r.IsEnabled(), Last: last})
	if err != nil {
		return store.Message{}, fmt.Errorf("mqtt: attributes of rule %s: %w", r.ID, err)
	}
	return store.Message{Topic: NewTopics(device).RuleAttributes(r.ID), Payload: b, QoS: 1, Retained: true}, nil
}

// SnapshotMessage publishes a camera's snapshot (retained). It must be a JPEG:
// Home Assistant's image entity is told so.
func SnapshotMessage(device, camera string, jpeg []byte) (store.Message, error) {
	if err := checkIDs(device, camera); err != nil {
		return store.Message{}, err
	}
	if !isJPEG(jpeg) {
		return store.Message{}, fmt.Errorf("mqtt: snapshot of camera %s is not a JPEG", camera)
	}
	// Sheddable: the first thing the store drops when the disk runs low
	// (the next snapshot replaces it anyway).
	return store.Message{Topic: NewTopics(device).Snapshot(camera), Payload: jpeg, QoS: 1, Retained: true, Sheddable: true}, nil
}

// RuleSnapshotMessage publishes the snapshot of a rule's last detection
// (retained, sheddable like a camera's).
func RuleSnapshotMessage(device, rule string, jpeg []byte) (store.Message, error) {
	if err := checkIDs(device, rule); err != nil {
		return store.Message{}, err
	}
	if !isJPEG(jpeg) {
		return store.Message{}, fmt.Errorf("mqtt: snapshot of rule %s is not a JPEG", rule)
	}
	return store.Message{Topic: NewTopics(device).RuleSnapshot(rule), Payload: jpeg, QoS: 1, Retained: true, Sheddable: true}, nil
}

func isJPEG(b []byte) bool { return bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}) }

// CameraStatusMessage publishes whether a camera delivers frames (retained);
// the camera's image entity is available only while it is online.
func CameraStatusMessage(device, camera string, online bool) (store.Message, error) {
	if err := checkIDs(device, camera); err != nil {
		return store.Message{}, err
	}
	p := Offline
	if online {
		p = Online
	}
	return store.Message{Topic: NewTopics(device).CameraStatus(camera), Payload: []byte(p), QoS: 1, Retained: true}, nil
}

// ModelState is the model bundle as Home Assistant's update entity shows it.
type ModelState struct {
	Title     string // the bundle's name
	Installed int64  // installed version; 0 for none
	Latest    int64  // newest version known; 0 means the installed one
	// InProgress and Progress (0 to 100) describe a running update.
	InProgress bool
	Progress   int
	Summary    string // release notes, short
}

// modelStateJSON is the update entity's JSON state. Versions are strings to
// Home Assistant.
type modelStateJSON struct {
	Installed  string `json:"installed_version"`
	Latest     string `json:"latest_version"`
	Title      string `json:"title,omitempty"`
	Summary    string `json:"release_summary,omitempty"`
	InProgress bool   `json:"in_progress"`
	Percentage *int   `json:"update_percentage"` // null when no update runs
}

// ModelStateMessage publishes the model state (retained).
func ModelStateMessage(device string, s ModelState) (store.Message, error) {
	if err := checkIDs(device); err != nil {
		return store.Message{}, err
	}
	if s.Installed < 0 || s.Latest < 0 || s.Progress < 0 || s.Progress > 100 {
		return store.Message{}, fmt.Errorf("mqtt: model state %+v out of range", s)
	}
	latest := s.Latest
	if latest == 0 {
		latest = s.Installed
	}
	j := modelStateJSON{Installed: strconv.FormatInt(s.Installed, 10), Latest: strconv.FormatInt(latest, 10),
		Title: s.Title, Summary: s.Summary, InProgress: s.InProgress}
	if s.InProgress {
		p := s.Progress
		j.Percentage = &p
	}
	b, err := json.Marshal(j)
	if err != nil {
		return store.Message{}, err
	}
	return store.Message{Topic: NewTopics(device).ModelState(), Payload: b, QoS: 1, Retained: true}, nil
}

// ModelEvent is one model update outcome.
type ModelEvent struct {
	Kind    string    `json:"kind"` // installed, committed, rolled_back, failed, refused
	Version int64     `json:"version,omitempty"`
	Step    string    `json:"step,omitempty"`   // where it failed
	Reason  string    `json:"reason,omitempty"` // why it failed or rolled back
	Time    time.Time `json:"time"`
}

// ModelEventMessage publishes an update outcome (QoS 1, not retained).
func ModelEventMessage(device string, e ModelEvent) (store.Message, error) {
	if err := checkIDs(device); err != nil {
		return store.Message{}, err
	}
	switch e.Kind {
	case "installed", "committed", "rolled_back", "failed", "refused":
	default:
		return store.Message{}, fmt.Errorf("mqtt: model event kind %q", e.Kind)
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return store.Message{}, err
	}
	return store.Message{Topic: NewTopics(device).ModelEvent(), Payload: b, QoS: 1}, nil
}

// clearMessage removes a retained message (an empty retained payload).
func clearMessage(topic string) store.Message {
	return store.Message{Topic: topic, QoS: 1, Retained: true}
}

// StoreState is the store's disk space, as store/state publishes it.
type StoreState struct {
	Space          string `json:"space"` // ok, low (below the reserve), full (below the floor)
	FreeBytes      int64  `json:"free_bytes"`
	ReserveBytes   int64  `json:"reserve_bytes"`
	ShedSnapshots  uint64 `json:"shed_snapshots"`
	ShedDetections uint64 `json:"shed_detections"`
	RefusedWrites  uint64 `json:"refused_writes"`
	Reason         string `json:"reason,omitempty"`
}

// StoreStateMessage publishes the store's disk space state (retained).
func StoreStateMessage(device string, s StoreState) (store.Message, error) {
	if err := checkIDs(device); err != nil {
		return store.Message{}, err
	}
	switch s.Space {
	case "ok", "low", "full":
	default:
		return store.Message{}, fmt.Errorf("mqtt: store space %q is not ok, low or full", s.Space)
	}
	b, err := json.Marshal(s)
	if err != nil {
		return store.Message{}, err
	}
	return store.Message{Topic: NewTopics(device).StoreState(), Payload: b, QoS: 1, Retained: true}, nil
}

// Stats is what the stats topic carries: the device's and each camera's
// figures over the last interval. Every configured camera is present, so
// Home Assistant's templates always find their keys.
type Stats struct {
	Time         time.Time              `json:"time"`
	Model        string                 `json:"model"`
	ModelVersion int64                  `json:"model_version"`
	Outbox       int                    `json:"outbox"`
	Cameras      map[string]CameraStats `json:"cameras"`
}

// CameraStats are one camera's figures.
type CameraStats struct {
	Online    bool    `json:"online"`
	Detection bool    `json:"detection"` // the camera's detection switch
	Motion    bool    `json:"motion"`
	FPS       float64 `json:"fps"` // frames read per second
	// EncoderMS is the mean encoding time of a frame; null when no frame
	// was encoded in the interval.
	EncoderMS *float64 `json:"encoder_ms"`
	// LastDetection is when a rule last fired or changed on the camera;
	// null before the first since sightd started.
	LastDetection *time.Time `json:"last_detection"`
}

// StatsMessage publishes the stats (retained: a subscriber that comes
// later, Home Assistant after a restart, has figures at once; the device's
// availability says whether they are current).
func StatsMessage(device string, s Stats) (store.Message, error) {
	if err := checkIDs(device); err != nil {
		return store.Message{}, err
	}
	for cam := range s.Cameras {
		if err := checkIDs(cam); err != nil {
			return store.Message{}, err
		}
	}
	if s.Cameras == nil {
		s.Cameras = map[string]CameraStats{}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return store.Message{}, fmt.Errorf("mqtt: stats: %w", err)
	}
	return store.Message{Topic: NewTopics(device).Stats(), Payload: b, QoS: 1, Retained: true}, nil
}
