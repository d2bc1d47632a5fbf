package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

const (
	installedModelKey = "model/installed"
	highestModelKey   = "model/highest"
)

// PutMeta sets a small value (at most MaxMetaBytes) under key.
func (s *Store) PutMeta(ctx context.Context, key string, value []byte) error {
	if err := validMetaKey(key); err != nil {
		return err
	}
	if len(value) > MaxMetaBytes {
		return fmt.Errorf("%w: meta %q: %d bytes, above %d", ErrTooLarge, key, len(value), MaxMetaBytes)
	}
	return s.Update(ctx, func(tx *Tx) error { return tx.txn.Set(metaKey(key), value) })
}

// Meta returns the value under key, or ErrNotFound.
func (s *Store) Meta(ctx context.Context, key string) ([]byte, error) {
	if err := validMetaKey(key); err != nil {
		return nil, err
	}
	return s.value(ctx, metaKey(key), "meta", key)
}

// value reads one key; ErrNotFound names what and id.
func (s *Store) value(ctx context.Context, key []byte, what, id string) ([]byte, error) {
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	var v []byte
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		v, err = get(txn, key)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %s %q", ErrNotFound, what, id)
	}
	return v, err
}

// DeleteMeta deletes key; a missing key is not an error.
func (s *Store) DeleteMeta(ctx context.Context, key string) error {
	if err := validMetaKey(key); err != nil {
		return err
	}
	return s.Update(ctx, func(tx *Tx) error { return tx.txn.Delete(metaKey(key)) })
}

// ModelVersions returns the installed model version and the highest version
// ever accepted; 0 means none.
func (s *Store) ModelVersions(ctx context.Context) (installed, highest int64, err error) {
	if err := s.enter(ctx); err != nil {
		return 0, 0, err
	}
	defer s.life.RUnlock()
	err = s.db.View(func(txn *badger.Txn) error {
		var err error
		if installed, err = getVersion(txn, installedModelKey); err != nil {
			return err
		}
		highest, err = getVersion(txn, highestModelKey)
		return err
	})
	return installed, highest, err
}

// AcceptModel records version as the highest accepted model version, the
// anti-rollback floor for OTA: it fails with ErrRollback unless version is
// above every version accepted before.
func (s *Store) AcceptModel(ctx context.Context, version int64) error {
	if err := validVersion(version); err != nil {
		return err
	}
	s.modelMu.Lock()
	defer s.modelMu.Unlock()
	return s.Update(ctx, func(tx *Tx) error {
		highest, err := getVersion(tx.txn, highestModelKey)
		if err != nil {
			return err
		}
		if version <= highest {
			return fmt.Errorf("%w: version %d is not above %d", ErrRollback, version, highest)
		}
		return tx.txn.Set(internalKey(highestModelKey), binary.BigEndian.AppendUint64(nil, uint64(version)))
	})
}

// SetInstalledModel records the active model version. Going back to an
// older version (rolling back a failed update) is allowed, but only to
// versions up to the highest accepted one.
func (s *Store) SetInstalledModel(ctx context.Context, version int64) error {
	if err := validVersion(version); err != nil {
		return err
	}
	s.modelMu.Lock()
	defer s.modelMu.Unlock()
	return s.Update(ctx, func(tx *Tx) error {
		highest, err := getVersion(tx.txn, highestModelKey)
		if err != nil {
			return err
		}
		if version > highest {
			return fmt.Errorf("%w: model version %d was never accepted (highest %d)", ErrInvalid, version, highest)
		}
		return tx.txn.Set(internalKey(installedModelKey), binary.BigEndian.AppendUint64(nil, uint64(version)))
	})
}

func getVersion(txn *badger.Txn, key string) (int64, error) {
	b, err := get(txn, internalKey(key))
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: %s holds %d bytes", ErrCorrupt, key, len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

func get(txn *badger.Txn, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}
