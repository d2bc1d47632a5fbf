package mqtt

import (
	"encoding/json"
	"slices"

	"github.com/sightd/sightd/daemon/rules"
)

// Home Assistant MQTT discovery, one retained config per entity under
// <prefix>/<component>/sightd_<device>/<object>/config (the per-entity form
// every Home Assistant release since 2023 reads; device-based discovery
// would save little for a handful of entities). An empty retained config
// removes an entity.

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
	Topic         string `json:"topic"`
	ValueTemplate string `json:"value_template,omitempty"`
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

	StateTopic          string   `json:"state_topic,omitempty"`
	PayloadOn           string   `json:"payload_on,omitempty"`
	PayloadOff          string   `json:"payload_off,omitempty"`
	JSONAttributesTopic string   `json:"json_attributes_topic,omitempty"`
	EventTypes          []string `json:"event_types,omitempty"`
	ImageTopic          string   `json:"image_topic,omitempty"`
	ContentType         string   `json:"content_type,omitempty"`
	CommandTopic        string   `json:"command_topic,omitempty"`
	PayloadInstall      string   `json:"payload_install,omitempty"`
}

// payloadInstall is what Home Assistant's update entity sends to install.
const payloadInstall = "install"

// discovery builds the configs of one device.
type discovery struct {
	prefix  string
	node    string // sightd_<device>: the discovery topics' node id
	uid     string // sightd.<device>: unique ids start with it ('.' is never in an id, so they cannot collide)
	topics  Topics
	device  haDevice
	origin  haOrigin
	cameras []string
}

func newDiscovery(prefix string, dev Device, cameras []string) discovery {
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
	}
}

func (d discovery) topic(component, object string) string {
	return d.prefix + "/" + component + "/" + d.node + "/" + object + "/config"
}

// filter matches every config of this device (to find stale ones).
func (d discovery) filter() string { return d.prefix + "/+/" + d.node + "/+/config" }

// entity starts a config with what every entity has. The device's status
// says "stopped" after a clean shutdown, which Home Assistant must read as
// unavailable too, hence the template.
func (d discovery) entity(name, object string) haEntity {
	return haEntity{
		Name: name, UniqueID: d.uid + "." + object, Device: &d.device, Origin: &d.origin, QoS: 1,
		Availability: []haAvailability{{Topic: d.topics.Status(),
			ValueTemplate: "{{ 'online' if value == 'online' else 'offline' }}"}},
	}
}

// configs returns every config the device should have, by topic.
func (d discovery) configs(rs []*rules.Rule) (map[string][]byte, error) {
	out := map[string][]byte{}
	add := func(topic string, e haEntity) error {
		b, err := json.Marshal(e)
		out[topic] = b
		return err
	}
	var types []string
	for _, r := range rs {
		types = append(types, r.ID)
		if r.Kind != rules.State {
			continue
		}
		e := d.entity(r.Name, "rule."+r.ID)
		e.StateTopic, e.PayloadOn, e.PayloadOff = d.topics.RuleState(r.ID), "ON", "OFF"
		e.JSONAttributesTopic = d.topics.RuleAttributes(r.ID)
		if err := add(d.topic("binary_sensor", "rule_"+r.ID), e); err != nil {
			return nil, err
		}
	}
	// One event entity for the detections of every rule: event_type is the
	// rule's id (state rules' changes are detections too). Home Assistant
	// wants at least one event type, so it exists only while rules do.
	if len(types) > 0 {
		e := d.entity("Detection", "events")
		e.StateTopic, e.EventTypes, e.Icon = d.topics.Events(), types, "mdi:cctv"
		if err := add(d.topic("event", "events"), e); err != nil {
			return nil, err
		}
	}
	for _, cam := range d.cameras {
		e := d.entity(cam+" snapshot", "camera."+cam)
		e.ImageTopic, e.ContentType = d.topics.Snapshot(cam), "image/jpeg"
		// available while sightd is online and the camera delivers frames
		e.Availability = append(e.Availability, haAvailability{Topic: d.topics.CameraStatus(cam)})
		e.AvailabilityMode = "all"
		if err := add(d.topic("image", "camera_"+cam), e); err != nil {
			return nil, err
		}
	}
	e := d.entity("Model", "model")
	e.StateTopic, e.CommandTopic, e.PayloadInstall = d.topics.ModelState(), d.topics.ModelInstall(), payloadInstall
	e.EntityCategory = "config"
	if err := add(d.topic("update", "model"), e); err != nil {
		return nil, err
	}
	return out, nil
}
