package mqtt

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/sightd/sightd/daemon/rules"
)

// Home Assistant MQTT discovery, one retained config per entity under
// <prefix>/<component>/sightd_<device>/<object>/config (the per-entity form
// every Home Assistant release since 2023 reads; device-based discovery
// would save little for a handful of entities). An empty retained config
// removes an entity. The keys are those of Home Assistant 2024.3's MQTT
// schemas (switch, binary_sensor, sensor, event, image, update).

type haDevice struct {
	Identifiers  []string `json:"identifiers"`
	Name         string   `json:"name"`
	Manufacturer string   `json:"manufacturer"`
	Model        string   `json:"model"`
	SWVersion    string   `json:"sw_version,omitempty"`
}

type haOrigin struct {
	Name      string `json:"name"`
	SWVersion string `json:"sw_version,omitempty"`
}

type haAvailability struct {
	Topic               string `json:"topic"`
	ValueTemplate       string `json:"value_template,omitempty"`
	PayloadAvailable    string `json:"payload_available,omitempty"`
	PayloadNotAvailable string `json:"payload_not_available,omitempty"`
}

// haEntity holds the keys of every entity sightd announces; each component
// sets the ones it uses.
type haEntity struct {
	Name             string           `json:"name"`
	UniqueID         string           `json:"unique_id"`
	Device           *haDevice        `json:"device"`
	Origin           *haOrigin        `json:"origin"`
	Availability     []haAvailability `json:"availability"`
	AvailabilityMode string           `json:"availability_mode,omitempty"`
	QoS              int              `json:"qos"`
	Icon             string           `json:"icon,omitempty"`
	EntityCategory   string           `json:"entity_category,omitempty"`
	DeviceClass      string           `json:"device_class,omitempty"`

	StateTopic          string   `json:"state_topic,omitempty"`
	ValueTemplate       string   `json:"value_template,omitempty"`
	PayloadOn           string   `json:"payload_on,omitempty"`
	PayloadOff          string   `json:"payload_off,omitempty"`
	JSONAttributesTopic string   `json:"json_attributes_topic,omitempty"`
	EventTypes          []string `json:"event_types,omitempty"`
	ImageTopic          string   `json:"image_topic,omitempty"`
	ContentType         string   `json:"content_type,omitempty"`
	CommandTopic        string   `json:"command_topic,omitempty"`
	PayloadInstall      string   `json:"payload_install,omitempty"`
	Unit                string   `json:"unit_of_measurement,omitempty"`
	StateClass          string   `json:"state_class,omitempty"`
}

// payloadInstall is what Home Assistant's update entity sends to install.
const payloadInstall = "install"

// Switch and binary payloads.
const (
	On  = "ON"
	Off = "OFF"
)

// discovery builds the configs of one device.
type discovery struct {
	prefix  string
	node    string // sightd_<device>: the discovery topics' node id
	uid     string // sightd.<device>: unique ids start with it ('.' is never in an id, so they cannot collide)
	topics  Topics
	device  haDevice
	origin  haOrigin
	cameras []string
	// ota: model updates are configured, so the update entity may install.
	ota bool
}

func newDiscovery(prefix string, dev Device, cameras []string, ota bool) discovery {
	name, model := dev.Name, dev.Model
	if name == "" {
		name = "sightd " + dev.ID
	}
	if model == "" {
		model = "sightd"
	}
	uid := "sightd." + dev.ID
	return discovery{
		prefix: prefix,
		node:   "sightd_" + dev.ID,
		uid:    uid,
		topics: NewTopics(dev.ID),
		device: haDevice{Identifiers: []string{uid}, Name: name, Manufacturer: "sightd", Model: model, SWVersion: dev.Version},
		origin: haOrigin{Name: "sightd", SWVersion: dev.Version},
		// sorted, so configs come out the same on every run
		cameras: slices.Sorted(slices.Values(cameras)),
		ota:     ota,
	}
}

func (d discovery) topic(component, object string) string {
	return d.prefix + "/" + component + "/" + d.node + "/" + object + "/config"
}

// staleRule says which rule a config topic of this device belongs to, if
// any (the rule's binary_sensor, switch or image).
func (d discovery) staleRule(topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, d.prefix+"/")
	if !ok {
		return "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 4 || parts[1] != d.node || parts[3] != "config" {
		return "", false
	}
	id, ok := strings.CutPrefix(parts[2], "rule_")
	return id, ok && idRE.MatchString(id)
}

// filter matches every config of this device (to find stale ones).
func (d discovery) filter() string { return d.prefix + "/+/" + d.node + "/+/config" }

// entity starts a config with what every entity has. The device's status
// says "stopped" after a clean shutdown, which Home Assistant must read as
// unavailable too, hence the template. Every entity depends on it, so the
// last will (offline) makes all of them unavailable after a crash.
func (d discovery) entity(name, object string) haEntity {
	return haEntity{
		Name: name, UniqueID: d.uid + "." + object, Device: &d.device, Origin: &d.origin, QoS: 1,
		Availability: []haAvailability{{Topic: d.topics.Status(),
			ValueTemplate: "{{ 'online' if value == 'online' else 'offline' }}"}},
	}
}

// also makes e depend on one more availability topic as well as the device's.
func (e *haEntity) also(a haAvailability) {
	e.Availability = append(e.Availability, a)
	e.AvailabilityMode = "all"
}

// cameraEntity is available while sightd is online and the camera delivers frames.
func (d discovery) cameraEntity(name, object, cam string) haEntity {
	e := d.entity(name, object)
	e.also(haAvailability{Topic: d.topics.CameraStatus(cam)})
	return e
}

// statsValue reads one value of the stats topic's JSON; a value the stats
// lack renders as None, which Home Assistant's sensors read as unknown.
func statsValue(path string) string {
	return "{{ value_json" + path + " | default(None) }}"
}

// eventTemplate passes on only event rules' messages: the events topic
// also carries state rules' lifecycle (type new, update, end), which has no
// event_type; an empty rendering is ignored by Home Assistant's event entity.
const eventTemplate = "{{ value if value_json.event_type is defined else '' }}"

// configs returns every config the device should have, by topic.
func (d discovery) configs(rs []*rules.Rule) (map[string][]byte, error) {
	out := map[string][]byte{}
	var err error
	add := func(component, object string, e haEntity) {
		b, merr := json.Marshal(e)
		out[d.topic(component, object)] = b
		if err == nil {
			err = merr
		}
	}
	var types []string
	for _, r := range rs {
		// The rule's switch: enabled or not, kept in the store.
		sw := d.entity(r.Name+" enabled", "rule."+r.ID+".enabled")
		sw.StateTopic, sw.CommandTopic = d.topics.RuleEnabled(r.ID), d.topics.RuleEnabledSet(r.ID)
		sw.PayloadOn, sw.PayloadOff, sw.EntityCategory, sw.Icon = On, Off, "config", "mdi:eye-check"
		add("switch", "rule_"+r.ID, sw)
		// Its last detection's snapshot, the region outlined.
		img := d.entity(r.Name+" snapshot", "rule."+r.ID+".snapshot")
		img.ImageTopic, img.ContentType = d.topics.RuleSnapshot(r.ID), "image/jpeg"
		add("image", "rule_"+r.ID, img)
		if r.Kind != rules.State {
			types = append(types, r.ID)
			continue
		}
		e := d.entity(r.Name, "rule."+r.ID)
		e.StateTopic, e.PayloadOn, e.PayloadOff = d.topics.RuleState(r.ID), On, Off
		e.JSONAttributesTopic = d.topics.RuleAttributes(r.ID)
		// A disabled rule has no state: unavailable rather than stale.
		e.also(haAvailability{Topic: d.topics.RuleEnabled(r.ID), PayloadAvailable: On, PayloadNotAvailable: Off})
		add("binary_sensor", "rule_"+r.ID, e)
	}
	// One event entity for the firings of every event rule: event_type is
	// the rule's id. Home Assistant wants at least one event type, so it
	// exists only while event rules do.
	if len(types) > 0 {
		e := d.entity("Detection", "events")
		e.StateTopic, e.EventTypes, e.Icon, e.ValueTemplate = d.topics.Events(), types, "mdi:cctv", eventTemplate
		add("event", "events", e)
	}
	for _, cam := range d.cameras {
		e := d.cameraEntity(cam+" snapshot", "camera."+cam, cam)
		e.ImageTopic, e.ContentType = d.topics.Snapshot(cam), "image/jpeg"
		add("image", "camera_"+cam, e)

		sw := d.entity(cam+" detection", "camera."+cam+".detection")
		sw.StateTopic, sw.CommandTopic = d.topics.CameraDetection(cam), d.topics.CameraDetectionSet(cam)
		sw.PayloadOn, sw.PayloadOff, sw.EntityCategory, sw.Icon = On, Off, "config", "mdi:cctv"
		add("switch", "camera_"+cam+"_detection", sw)

		m := d.cameraEntity(cam+" motion", "camera."+cam+".motion", cam)
		m.StateTopic, m.PayloadOn, m.PayloadOff, m.DeviceClass = d.topics.CameraMotion(cam), On, Off, "motion"
		add("binary_sensor", "camera_"+cam+"_motion", m)

		path := "['cameras']['" + cam + "']"
		for _, s := range []struct{ object, name, key, unit, class, icon string }{
			{"fps", "frames/s", "['fps']", "fps", "", "mdi:speedometer"},
			{"encoder_ms", "encoder time", "['encoder_ms']", "ms", "", "mdi:timer-outline"},
			{"last_detection", "last detection", "['last_detection']", "", "timestamp", "mdi:history"},
		} {
			e := d.cameraEntity(cam+" "+s.name, "camera."+cam+"."+s.object, cam)
			e.StateTopic, e.ValueTemplate = d.topics.Stats(), statsValue(path+s.key)
			e.Unit, e.DeviceClass, e.Icon = s.unit, s.class, s.icon
			if s.unit != "" {
				e.StateClass = "measurement"
			}
			add("sensor", "camera_"+cam+"_"+s.object, e)
		}
	}
	for _, s := range []struct{ object, name, key, unit, icon string }{
		{"model_version", "Model version", "['model_version']", "", "mdi:brain"},
		{"outbox", "Outbox", "['outbox']", "messages", "mdi:tray-full"},
	} {
		e := d.entity(s.name, s.object)
		e.StateTopic, e.ValueTemplate, e.Unit, e.Icon = d.topics.Stats(), statsValue(s.key), s.unit, s.icon
		e.EntityCategory = "diagnostic"
		if s.unit != "" {
			e.StateClass = "measurement"
		}
		add("sensor", s.object, e)
	}
	e := d.entity("Model", "model")
	e.StateTopic, e.EntityCategory = d.topics.ModelState(), "config"
	// Outcomes and refusals of updates show as the entity's attributes.
	e.JSONAttributesTopic = d.topics.ModelEvent()
	if d.ota {
		e.CommandTopic, e.PayloadInstall = d.topics.ModelInstall(), payloadInstall
	}
	add("update", "model", e)
	if err != nil {
		return nil, err
	}
	return out, nil
}
