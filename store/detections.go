package store

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Detection is one entry of the detection history.
type Detection struct {
	// ID is unique and sorts in time order (32 hex digits: time, then sequence).
	ID   string
	At   time.Time
	JSON []byte
	// ExpiresAt is when Badger drops the entry (DetectionTTL after it was written).
	ExpiresAt time.Time
}

// AppendDetection adds a detection that happened at at and returns its id.
// It expires DetectionTTL after now.
func (s *Store) AppendDetection(ctx context.Context, at time.Time, data []byte) (string, error) {
	if at.Before(time.Unix(0, 0)) || at.Year() > 2261 {
		return "", fmt.Errorf("%w: detection time %v outside 1970..2261", ErrInvalid, at)
	}
	if err := validJSON("detection", data, MaxDetectBytes); err != nil {
		return "", err
	}
	if err := s.enter(ctx); err != nil {
		return "", err
	}
	defer s.life.RUnlock()
	if err := s.admit(bulk); err != nil {
		s.logRefused(err, "detection")
		return "", err
	}
	s.dropMu.RLock()
	seq, err := s.detectSeq.Next()
	s.dropMu.RUnlock()
	if err != nil {
		return "", fmt.Errorf("store: detection sequence: %w", err)
	}
	key := detectionKey(at.UnixNano(), seq)
	err = s.update(func(tx *Tx) error {
		return tx.txn.SetEntry(badger.NewEntry(key, data).WithTTL(s.cfg.DetectionTTL))
	})
	if err != nil {
		return "", fmt.Errorf("store: append detection: %w", err)
	}
	return hex.EncodeToString(key[1:]), nil
}

// RecentDetections returns up to n detections, newest first. Expired ones
// are not returned.
func (s *Store) RecentDetections(ctx context.Context, n int) ([]Detection, error) {
	if n <= 0 {
		return nil, nil
	}
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	var out []Detection
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pDetection}, Reverse: true, PrefetchValues: true, PrefetchSize: min(n, 100)})
		defer it.Close()
		// In reverse, Seek lands on the last key <= its argument.
		for it.Seek([]byte{pDetection + 1}); it.Valid() && len(out) < n; it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != 17 {
				return fmt.Errorf("%w: detection key %x", ErrCorrupt, k)
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			out = append(out, Detection{
				ID:        hex.EncodeToString(k[1:]),
				At:        time.Unix(0, int64(binary.BigEndian.Uint64(k[1:9]))),
				JSON:      v,
				ExpiresAt: time.Unix(int64(item.ExpiresAt()), 0),
			})
		}
		return nil
	})
	return out, err
}

// CountDetections counts the detections that have not expired. It reads
// keys only.
func (s *Store) CountDetections(ctx context.Context) (int, error) {
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.life.RUnlock()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pDetection}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if n%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			n++
		}
		return nil
	})
	return n, err
}
