package store

import (
	"bytes"
	"math"
	"testing"
	"time"
)

// The decoders read bytes from disk: they must never panic, and what they
// accept must re-encode to the same bytes (one encoding per value).

func FuzzDecodeOutbox(f *testing.F) {
	f.Add(encodeOutbox(Message{Topic: "sightd/porch/events", Payload: []byte(`{"rule":"car"}`), QoS: 1, Created: time.Unix(1700000000, 5)}))
	f.Add(encodeOutbox(Message{Topic: "t", Retained: true, QoS: 2}))
	f.Add(encodeOutbox(Message{Topic: "sightd/porch/camera/front/snapshot", Payload: []byte{0xff, 0xd8, 0xff}, QoS: 1, Retained: true, Sheddable: true}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeOutbox(b)
		if err != nil {
			return
		}
		if again := encodeOutbox(m); !bytes.Equal(again, b) {
			t.Fatalf("decode/encode changed the record:\n%x\n%x", b, again)
		}
		if err := m.validate(math.MaxInt); err != nil {
			t.Fatalf("decoded an invalid message: %v", err)
		}
	})
}

func FuzzDecodeVector(f *testing.F) {
	f.Add(encodeVector([]int8{-128, 0, 127, 5}, 0.0078))
	f.Add(encodeVector(make([]int8, 512), 1))
	f.Add([]byte{1, 0, 0, 0x80, 0x7f, 1}) // +Inf scale
	f.Fuzz(func(t *testing.T, b []byte) {
		data, scale, err := decodeVector(b)
		if err != nil {
			return
		}
		if validScale(scale) != nil || len(data) == 0 || len(data) > MaxVectorDim {
			t.Fatalf("accepted scale %v, dimension %d", scale, len(data))
		}
		if again := encodeVector(data, scale); !bytes.Equal(again, b) {
			t.Fatalf("decode/encode changed the record:\n%x\n%x", b, again)
		}
	})
}

func FuzzVectorKey(f *testing.F) {
	f.Add(int64(3), "porch-package", "negative/0")
	f.Fuzz(func(t *testing.T, version int64, rule, name string) {
		v := Vector{Model: version, Rule: rule, Name: name, Data: []int8{1}, Scale: 1}
		if v.validate() != nil {
			return
		}
		gv, gr, gn, ok := parseVectorKey(vectorKey(version, rule, name))
		if !ok || gv != version || gr != rule || gn != name {
			t.Fatalf("parseVectorKey(vectorKey(%d, %q, %q)) = %d, %q, %q, %v", version, rule, name, gv, gr, gn, ok)
		}
		// No other rule's prefix matches: the id cannot hold the 0x00 separator.
		if other := rule + "x"; bytes.HasPrefix(vectorKey(version, other, name), vectorRulePrefix(version, rule)) {
			t.Fatalf("rule %q's prefix matches rule %q's keys", rule, other)
		}
	})
}
