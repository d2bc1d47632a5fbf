package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Events: each detection event's record (the JSON its last message on the
// events topic carried) under 'e' id, and its snapshot (a JPEG) under 'j' id.
// Ids sort by time (sightd's detection ids begin with the time), so the
// oldest snapshots come first. Both expire after EventTTL; snapshots also
// go, oldest first, when together they pass EventMaxBytes, and when the disk
// runs low (before the detection history).

// MaxEventBytes bounds one event record.
const MaxEventBytes = 16 << 10

// eventRef is a stored snapshot as the store counts it.
type eventRef struct {
	key     []byte
	size    int64
	expires time.Time
}

// eventState keeps the snapshots' keys and sizes in time order.
type eventState struct {
	mu    sync.Mutex
	refs  []eventRef
	bytes int64
}

func eventKey(id string) []byte         { return append([]byte{pEvent}, id...) }
func eventSnapshotKey(id string) []byte { return append([]byte{pEventSnapshot}, id...) }

// loadEvents reads the sizes of the stored snapshots.
func (s *Store) loadEvents() error {
	ev := &s.ev
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ev.refs, ev.bytes = nil, 0
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pEventSnapshot}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			r := eventRef{key: item.KeyCopy(nil), size: item.EstimatedSize(), expires: time.Unix(int64(item.ExpiresAt()), 0)}
			ev.refs = append(ev.refs, r)
			ev.bytes += r.size
		}
		return nil
	})
}

// PutEvent saves event id's record (JSON), replacing the one before.
func (s *Store) PutEvent(ctx context.Context, id string, data []byte) error {
	if err := validID(id); err != nil {
		return err
	}
	if err := validJSON("event", data, MaxEventBytes); err != nil {
		return err
	}
	return s.putBulk(ctx, "event", eventKey(id), data)
}

// PutEventSnapshot saves the snapshot of event id (a JPEG of at most
// max_payload_bytes) and drops the oldest snapshots past EventMaxBytes.
func (s *Store) PutEventSnapshot(ctx context.Context, id string, jpeg []byte) error {
	if err := validID(id); err != nil {
		return err
	}
	if len(jpeg) == 0 || len(jpeg) > s.cfg.MaxPayloadBytes {
		return fmt.Errorf("%w: snapshot of event %s: %d bytes, want 1 to %d", ErrInvalid, id, len(jpeg), s.cfg.MaxPayloadBytes)
	}
	key := eventSnapshotKey(id)
	if err := s.putBulk(ctx, "event snapshot", key, jpeg); err != nil {
		return err
	}
	ev := &s.ev
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ev.refs = append(ev.refs, eventRef{key: key, size: int64(len(jpeg)) + int64(len(key)), expires: time.Now().Add(s.cfg.EventTTL)})
	ev.bytes += int64(len(jpeg)) + int64(len(key))
	// Expired ones are gone already (Badger's TTL); forget them.
	now := time.Now()
	n := 0
	for n < len(ev.refs)-1 && ev.refs[n].expires.Before(now) {
		ev.bytes -= ev.refs[n].size
		n++
	}
	var old [][]byte
	for n < len(ev.refs)-1 && ev.bytes > s.cfg.EventMaxBytes {
		old = append(old, ev.refs[n].key)
		ev.bytes -= ev.refs[n].size
		n++
	}
	ev.refs = ev.refs[n:]
	if len(old) == 0 {
		return nil
	}
	err := s.update(func(tx *Tx) error {
		for _, k := range old {
			if err := tx.txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: drop old event snapshots: %w", err)
	}
	return nil
}

// putBulk writes a value that expires after EventTTL and that a low disk refuses.
func (s *Store) putBulk(ctx context.Context, what string, key, value []byte) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.life.RUnlock()
	if err := s.admit(bulk); err != nil {
		s.logRefused(err, what)
		return err
	}
	s.dropMu.RLock()
	defer s.dropMu.RUnlock()
	err := s.update(func(tx *Tx) error {
		return tx.txn.SetEntry(badger.NewEntry(key, value).WithTTL(s.cfg.EventTTL))
	})
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	return nil
}

// Event returns event id's record, or ErrNotFound.
func (s *Store) Event(ctx context.Context, id string) ([]byte, error) {
	return s.getEvent(ctx, id, eventKey(id), "event")
}

// EventSnapshot returns the snapshot saved under id, or ErrNotFound.
func (s *Store) EventSnapshot(ctx context.Context, id string) ([]byte, error) {
	return s.getEvent(ctx, id, eventSnapshotKey(id), "event snapshot")
}

func (s *Store) getEvent(ctx context.Context, id string, key []byte, what string) ([]byte, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	return s.value(ctx, key, what, id)
}

// EventSnapshots reports how many event snapshots the store holds and
// their bytes (keys included).
func (s *Store) EventSnapshots() (int, int64) {
	s.ev.mu.Lock()
	defer s.ev.mu.Unlock()
	return len(s.ev.refs), s.ev.bytes
}

// shedEventSnapshots drops the oldest half of the event snapshots (at
// least shedEventBatch) when the disk runs low.
func (s *Store) shedEventSnapshots() (int, error) {
	ev := &s.ev
	ev.mu.Lock()
	defer ev.mu.Unlock()
	n := min(len(ev.refs), max(shedEventBatch, len(ev.refs)/2))
	if n == 0 {
		return 0, nil
	}
	keys := make([][]byte, n)
	var bytes int64
	for i, r := range ev.refs[:n] {
		keys[i], bytes = r.key, bytes+r.size
	}
	if err := s.drop(keys); err != nil {
		return 0, fmt.Errorf("store: shed event snapshots: %w", err)
	}
	ev.refs, ev.bytes = ev.refs[n:], ev.bytes-bytes
	s.space.shedSnaps.Add(uint64(n))
	s.log.Warn().Int("event_snapshots", n).Int64("bytes", bytes).Uint64("shed_total", s.space.shedSnaps.Load()).
		Msg("store: disk space low: oldest event snapshots shed")
	return n, nil
}

const shedEventBatch = 16
