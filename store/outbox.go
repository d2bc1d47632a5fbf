package store

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Message is an MQTT publish waiting in the outbox.
type Message struct {
	Topic    string
	Payload  []byte
	QoS      byte
	Retained bool
	// Sheddable marks a message the store may drop, and refuses, first when
	// the disk runs low (a snapshot: the next one replaces it anyway).
	Sheddable bool
	// Created is set by Push.
	Created time.Time
}

// OutboxEntry is a message with its place in the outbox.
type OutboxEntry struct {
	Seq uint64
	Message
}

// outboxState mirrors the outbox's keys and sizes in memory (16 bytes an
// entry, bounded by OutboxMaxEntries), so that Push finds the oldest entries
// to drop and Len/Bytes answer without reading the database.
type outboxState struct {
	mu      sync.Mutex
	refs    []outboxRef // in seq order
	bytes   int64
	dropped uint64 // persisted under internal key outboxDroppedKey

	lastDropLog time.Time
}

type outboxRef struct {
	seq  uint64
	size int64
	shed bool // Message.Sheddable
}

const outboxDroppedKey = "outbox/dropped"

func (s *Store) loadOutbox() error {
	ob := &s.ob
	return s.db.View(func(txn *badger.Txn) error {
		if item, err := txn.Get(internalKey(outboxDroppedKey)); err == nil {
			if err := item.Value(func(b []byte) error {
				if len(b) != 8 {
					return fmt.Errorf("%w: outbox drop counter of %d bytes", ErrCorrupt, len(b))
				}
				ob.dropped = binary.BigEndian.Uint64(b)
				return nil
			}); err != nil {
				return err
			}
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pOutbox}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 9 {
				return fmt.Errorf("%w: outbox key %x", ErrCorrupt, k)
			}
			var size int64
			var shed bool
			if err := it.Item().Value(func(b []byte) error {
				size, shed = int64(len(b)), len(b) > 1 && b[1]&flagSheddable != 0
				return nil
			}); err != nil {
				return fmt.Errorf("store: outbox: %w", err)
			}
			ob.refs = append(ob.refs, outboxRef{seq: binary.BigEndian.Uint64(k[1:]), size: size, shed: shed})
			ob.bytes += size
		}
		return nil
	})
}

// Push appends a message and returns its sequence number, which is higher
// than that of every message pushed before, across restarts. When the outbox
// would exceed OutboxMaxEntries or OutboxMaxBytes, the oldest messages are
// dropped and counted (Dropped) in the same transaction, or in chunks just
// before it when more than maxDropsPerTxn must go; Push never waits for room.
func (s *Store) Push(ctx context.Context, m Message) (uint64, error) {
	if err := m.validate(s.cfg.MaxPayloadBytes); err != nil {
		return 0, err
	}
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.life.RUnlock()
	class := essential
	if m.Sheddable {
		class = bulk
	}
	if err := s.admit(class); err != nil {
		s.logRefused(err, "outbox "+m.Topic)
		return 0, err
	}
	m.Created = time.Now()
	val := encodeOutbox(m)
	size := int64(len(val))

	ob := &s.ob
	ob.mu.Lock()
	defer ob.mu.Unlock()
	s.dropMu.RLock()
	seq, err := s.outboxSeq.Next()
	s.dropMu.RUnlock()
	if err != nil {
		return 0, fmt.Errorf("store: outbox sequence: %w", err)
	}
	// Oldest first, drop until the new entry fits both bounds.
	drop, bytes := 0, ob.bytes
	for len(ob.refs)-drop+1 > s.cfg.OutboxMaxEntries || bytes+size > s.cfg.OutboxMaxBytes {
		bytes -= ob.refs[drop].size
		drop++
	}
	if drop > 0 && time.Since(ob.lastDropLog) > time.Minute {
		ob.lastDropLog = time.Now()
		s.log.Warn().Int("dropping", drop).Uint64("dropped_before", ob.dropped).
			Msg("outbox full: dropping the oldest messages (logged at most once a minute)")
	}
	// Badger caps a transaction's entry count (about 1,600 with a 1 MiB
	// memtable), so a very large drop is committed in chunks first.
	for drop > maxDropsPerTxn {
		if err := s.dropOldest(maxDropsPerTxn, nil); err != nil {
			return 0, err
		}
		drop -= maxDropsPerTxn
	}
	if err := s.dropOldest(drop, func(tx *Tx) error { return tx.txn.Set(outboxKey(seq), val) }); err != nil {
		return 0, err
	}
	ob.refs = append(ob.refs, outboxRef{seq: seq, size: size, shed: m.Sheddable})
	ob.bytes += size
	return seq, nil
}

const maxDropsPerTxn = 512

// dropOldest deletes the n oldest entries and counts them, with also (if not
// nil) in the same transaction. ob.mu must be held.
func (s *Store) dropOldest(n int, also func(tx *Tx) error) error {
	ob := &s.ob
	err := s.update(func(tx *Tx) error {
		for _, r := range ob.refs[:n] {
			if err := tx.txn.Delete(outboxKey(r.seq)); err != nil {
				return err
			}
		}
		if n > 0 {
			counter := binary.BigEndian.AppendUint64(nil, ob.dropped+uint64(n))
			if err := tx.txn.Set(internalKey(outboxDroppedKey), counter); err != nil {
				return err
			}
		}
		if also != nil {
			return also(tx)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: outbox push: %w", err)
	}
	for _, r := range ob.refs[:n] {
		ob.bytes -= r.size
	}
	ob.refs = ob.refs[n:]
	ob.dropped += uint64(n)
	return nil
}

// Peek returns up to n of the oldest messages, in order, without removing them.
func (s *Store) Peek(ctx context.Context, n int) ([]OutboxEntry, error) {
	if n <= 0 {
		return nil, nil
	}
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	var out []OutboxEntry
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pOutbox}, PrefetchValues: true, PrefetchSize: min(n, 100)})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(out) < n; it.Next() {
			k := it.Item().Key()
			if len(k) != 9 {
				return fmt.Errorf("%w: outbox key %x", ErrCorrupt, k)
			}
			seq := binary.BigEndian.Uint64(k[1:])
			err := it.Item().Value(func(b []byte) error {
				m, err := decodeOutbox(b)
				if err != nil {
					return fmt.Errorf("%w: seq %d: %v", ErrCorrupt, seq, err)
				}
				out = append(out, OutboxEntry{Seq: seq, Message: m})
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// Delete removes an acknowledged message. A seq that is not there (already
// deleted, or dropped while in flight) is not an error.
func (s *Store) Delete(ctx context.Context, seq uint64) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.life.RUnlock()
	ob := &s.ob
	ob.mu.Lock()
	defer ob.mu.Unlock()
	i, found := slices.BinarySearchFunc(ob.refs, seq, func(r outboxRef, seq uint64) int {
		return cmp.Compare(r.seq, seq)
	})
	if !found {
		return nil
	}
	if err := s.update(func(tx *Tx) error { return tx.txn.Delete(outboxKey(seq)) }); err != nil {
		return fmt.Errorf("store: outbox delete %d: %w", seq, err)
	}
	ob.bytes -= ob.refs[i].size
	ob.refs = slices.Delete(ob.refs, i, i+1)
	return nil
}

// Len is the number of messages in the outbox.
func (s *Store) Len() int {
	s.ob.mu.Lock()
	defer s.ob.mu.Unlock()
	return len(s.ob.refs)
}

// Bytes is the outbox's stored size (encoded messages).
func (s *Store) Bytes() int64 {
	s.ob.mu.Lock()
	defer s.ob.mu.Unlock()
	return s.ob.bytes
}

// Dropped is how many messages were ever dropped because the outbox was
// full; it survives restarts.
func (s *Store) Dropped() uint64 {
	s.ob.mu.Lock()
	defer s.ob.mu.Unlock()
	return s.ob.dropped
}
