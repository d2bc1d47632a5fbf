package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// Records are versioned by their first byte so that a later format can be
// read next to this one. Integrity is Badger's job (checksums on every table
// block and value-log entry); the decoders only refuse what does not parse.

var errRecord = errors.New("malformed record")

const recordV1 = 1

// vectorRecord: [1][scale float32 LE][dim x int8]. int8 + scale is what the
// matcher uses (quant.Vector), a quarter of float32's size, and needs no
// re-quantisation at start-up.
func encodeVector(data []int8, scale float32) []byte {
	b := make([]byte, 5+len(data))
	b[0] = recordV1
	binary.LittleEndian.PutUint32(b[1:5], math.Float32bits(scale))
	for i, x := range data {
		b[5+i] = byte(x)
	}
	return b
}

func decodeVector(b []byte) (data []int8, scale float32, err error) {
	if len(b) < 6 || b[0] != recordV1 {
		return nil, 0, fmt.Errorf("vector: %w (%d bytes, format %d)", errRecord, len(b), first(b))
	}
	dim := len(b) - 5
	if dim > MaxVectorDim {
		return nil, 0, fmt.Errorf("vector: %w: dimension %d above %d", errRecord, dim, MaxVectorDim)
	}
	scale = math.Float32frombits(binary.LittleEndian.Uint32(b[1:5]))
	if err := validScale(scale); err != nil {
		return nil, 0, fmt.Errorf("vector: %w: %v", errRecord, err)
	}
	data = make([]int8, dim)
	for i := range data {
		data[i] = int8(b[5+i])
	}
	return data, scale, nil
}

func validScale(scale float32) error {
	if !(scale > 0) || math.IsInf(float64(scale), 0) {
		return fmt.Errorf("scale %v is not a positive finite number", scale)
	}
	return nil
}

// outboxEntry: [1][flags][created unix nanos int64 LE][topic length uvarint][topic][payload].
// flags: bits 0-1 QoS, bit 2 retained, bit 3 sheddable (dropped first when
// the disk runs low; see Message.Sheddable).
const (
	flagQoS       = 0b0011
	flagRetained  = 0b0100
	flagSheddable = 0b1000
	// maxOutboxOverhead is the largest encoding size beyond the payload.
	maxOutboxOverhead = 1 + 1 + 8 + 2 + MaxTopicLen
)

func encodeOutbox(m Message) []byte {
	b := make([]byte, 0, 10+binary.MaxVarintLen32+len(m.Topic)+len(m.Payload))
	flags := m.QoS & flagQoS
	if m.Retained {
		flags |= flagRetained
	}
	if m.Sheddable {
		flags |= flagSheddable
	}
	b = append(b, recordV1, flags)
	b = binary.LittleEndian.AppendUint64(b, uint64(m.Created.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(m.Topic)))
	b = append(b, m.Topic...)
	return append(b, m.Payload...)
}

func decodeOutbox(b []byte) (Message, error) {
	if len(b) < 11 || b[0] != recordV1 {
		return Message{}, fmt.Errorf("outbox entry: %w (%d bytes, format %d)", errRecord, len(b), first(b))
	}
	flags := b[1]
	if flags&^(flagQoS|flagRetained|flagSheddable) != 0 || flags&flagQoS > 2 {
		return Message{}, fmt.Errorf("outbox entry: %w: flags %#x", errRecord, flags)
	}
	created := int64(binary.LittleEndian.Uint64(b[2:10]))
	n, w := binary.Uvarint(b[10:])
	if w <= 0 || n > uint64(len(b)-10-w) {
		return Message{}, fmt.Errorf("outbox entry: %w: bad topic length", errRecord)
	}
	rest := b[10+w:]
	m := Message{
		Topic:     string(rest[:n]),
		Payload:   append([]byte(nil), rest[n:]...),
		QoS:       flags & flagQoS,
		Retained:  flags&flagRetained != 0,
		Sheddable: flags&flagSheddable != 0,
		Created:   time.Unix(0, created).UTC(),
	}
	if err := m.validate(math.MaxInt); err != nil {
		return Message{}, fmt.Errorf("outbox entry: %w: %v", errRecord, err)
	}
	// Refuse a non-minimal varint so that one entry has one encoding.
	if binary.PutUvarint(make([]byte, binary.MaxVarintLen64), n) != w {
		return Message{}, fmt.Errorf("outbox entry: %w: non-minimal topic length", errRecord)
	}
	return m, nil
}

// validate checks a message against MQTT's rules for a publish topic.
func (m Message) validate(maxPayload int) error {
	switch {
	case m.Topic == "":
		return fmt.Errorf("%w: empty topic", ErrInvalid)
	case len(m.Topic) > MaxTopicLen:
		return fmt.Errorf("%w: topic of %d bytes, above %d", ErrTooLarge, len(m.Topic), MaxTopicLen)
	case !utf8.ValidString(m.Topic):
		return fmt.Errorf("%w: topic is not UTF-8", ErrInvalid)
	case m.QoS > 2:
		return fmt.Errorf("%w: QoS %d", ErrInvalid, m.QoS)
	case len(m.Payload) > maxPayload:
		return fmt.Errorf("%w: payload of %d bytes, above max_payload_bytes %d", ErrTooLarge, len(m.Payload), maxPayload)
	}
	for _, r := range m.Topic {
		if r == '+' || r == '#' || r == 0 {
			return fmt.Errorf("%w: topic %q holds %q (wildcards and NUL are not allowed when publishing)", ErrInvalid, m.Topic, r)
		}
	}
	return nil
}

func first(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}
