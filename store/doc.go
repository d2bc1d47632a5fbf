// Package store keeps sightd's durable state in Badger: rules, concept vectors
// per model version, detections, the MQTT outbox and meta data.
package store
