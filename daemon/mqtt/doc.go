// Package mqtt connects sightd to an MQTT broker and to Home Assistant.
//
// Producers never talk to MQTT: they build messages with EventMessage,
// StateMessage, AttributesMessage, SnapshotMessage, CameraStatusMessage and
// ModelStateMessage and push them to the Badger outbox (Client.Push). The
// outbox is the source of truth: a drain goroutine publishes it in order
// with QoS 1, at most drain_rate messages a second, and deletes a message
// only when its PUBACK arrives on the connection it was sent on. Anything
// in flight when a connection dies goes out again on the next one, so a
// subscriber sees every detection, in order, possibly twice (the unique id
// tells). Each connection gets a fresh paho client: paho's own resending
// could put a message blocked on a dead connection ahead of older ones.
//
// Topics live under sightd/<device>: status (online, offline as the last
// will, stopped after a clean shutdown; retained), events (event rules'
// firings and state rules' event lifecycle: new, update, end), stats,
// rule/<id>/state, rule/<id>/attributes, rule/<id>/enabled,
// rule/<id>/snapshot, camera/<cam>/snapshot, camera/<cam>/status,
// camera/<cam>/motion, camera/<cam>/detection, model/state, model/event and
// store/state. Commands (rule/set, rule/delete, model/install,
// camera/<cam>/snapshot/request, and the switches rule/<id>/enabled/set and
// camera/<cam>/detection/set) are answered on <command>/reply and run on
// the client's own goroutine, never in paho's callbacks. Each is
// acknowledged to the broker only once answered, so one received but not
// answered is delivered again on the next connection; when more wait than
// the inbox holds, the excess is answered {"ok":false,"busy":true} at once.
// No command is dropped silently.
//
// Home Assistant discovery publishes one retained config per entity under
// homeassistant/<component>/sightd_<device>/<object>/config: per rule a
// switch (enabled) and an image (its last matching detection's snapshot; a
// placeholder, its name and "no detection yet", until it first matches), per state
// rule a binary_sensor, one event entity for the event rules, per camera
// an image (the frame of its last matching detection, never an OFF's), a detection switch, a motion binary_sensor and sensors (frames/s,
// encoder time, last detection), sensors of the device (model version,
// outbox) and an update entity for the model bundle. Every entity depends
// on the device's status, so all go unavailable when sightd stops or
// dies. Discovery is sent on every connection and when homeassistant/status
// says online; configs of rules and cameras that no longer exist are
// removed (an empty retained config), including those deleted while sightd
// was away, with their retained topics.
//
// StartBroker runs an embedded broker (mochi-mqtt) for standalone installs.
package mqtt
