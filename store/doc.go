// Package store keeps sightd's durable state in one Badger v4 directory: rules,
// concept vectors per model version, the detection history, the MQTT outbox and
// meta data (installed and highest accepted model version, small key/values).
//
// Key layout (one leading byte names the table; integers are big-endian so that
// Badger's byte order is numeric order):
//
//	'r' id                          rule JSON
//	'v' version(8) id 0x00 name     concept vector record (see encodeVector)
//	'V' version(8)                  "this version's vector set is complete"
//	'd' unixnano(8) seq(8)          detection JSON, with a Badger TTL
//	'o' seq(8)                      outbox entry (see encodeOutbox)
//	'm' key                         caller's meta values
//	'f' id                          reference image (JPEG) for rules
//	'i' key                         the store's own values (model versions, drop counter)
//	's' name                        Badger sequences (outbox, detections)
//	'e' id                          event record JSON, with a Badger TTL
//	'j' id                          event snapshot (JPEG), with a Badger TTL
//
// Every write that must survive a power cut is committed with SyncWrites: when a
// method returns nil, the data is on disk.
package store
