package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Vector is one concept vector of a rule under one model version:
// component i is approximately Data[i]*Scale (see package quant).
type Vector struct {
	Model int64  // model version whose text encoder made it
	Rule  string // rule id
	Name  string // "prompt", "negative/0", "ref/0", ...
	Data  []int8
	Scale float32
}

func (v Vector) validate() error {
	if err := validVersion(v.Model); err != nil {
		return err
	}
	if err := validID(v.Rule); err != nil {
		return err
	}
	if err := validVectorName(v.Name); err != nil {
		return err
	}
	if len(v.Data) == 0 {
		return fmt.Errorf("%w: vector %s/%s: no data", ErrInvalid, v.Rule, v.Name)
	}
	if len(v.Data) > MaxVectorDim {
		return fmt.Errorf("%w: vector %s/%s: dimension %d above %d", ErrTooLarge, v.Rule, v.Name, len(v.Data), MaxVectorDim)
	}
	if err := validScale(v.Scale); err != nil {
		return fmt.Errorf("%w: vector %s/%s: %v", ErrInvalid, v.Rule, v.Name, err)
	}
	return nil
}

// PutVector creates or replaces one vector.
func (tx *Tx) PutVector(v Vector) error {
	if err := v.validate(); err != nil {
		return err
	}
	return tx.txn.Set(vectorKey(v.Model, v.Rule, v.Name), encodeVector(v.Data, v.Scale))
}

// DeleteVectors deletes one rule's vectors of one model version.
func (tx *Tx) DeleteVectors(version int64, rule string) error {
	if err := validVersion(version); err != nil {
		return err
	}
	if err := validID(rule); err != nil {
		return err
	}
	return tx.deletePrefix(vectorRulePrefix(version, rule))
}

// vectorVersions lists the model versions that have vectors or a completed
// set, seeking from one version to the next instead of reading every vector.
func (tx *Tx) vectorVersions() ([]int64, error) {
	seen := map[int64]bool{}
	var versions []int64
	add := func(v int64) {
		if !seen[v] {
			seen[v] = true
			versions = append(versions, v)
		}
	}
	it := tx.txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pVector}})
	for it.Rewind(); it.Valid(); {
		v, _, _, ok := parseVectorKey(it.Item().Key())
		if !ok || v <= 0 {
			err := fmt.Errorf("%w: vector key %x", ErrCorrupt, it.Item().Key())
			it.Close()
			return nil, err
		}
		add(v)
		// v+1 overflows only for MaxInt64, whose successor prefix sorts after
		// every valid version, which ends the loop as well.
		it.Seek(versionPrefix(v + 1))
	}
	it.Close()
	it = tx.txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pVectorSet}})
	for it.Rewind(); it.Valid(); it.Next() {
		if k := it.Item().Key(); len(k) == 9 {
			add(int64(binary.BigEndian.Uint64(k[1:])))
		}
	}
	it.Close()
	return versions, nil
}

// VectorVersions lists the model versions that have any vectors or a
// completed (possibly empty) vector set, so leftovers can be deleted.
func (s *Store) VectorVersions(ctx context.Context) ([]int64, error) {
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	var versions []int64
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		versions, err = (&Tx{txn: txn}).vectorVersions()
		return err
	})
	return versions, err
}

// ReplaceVectors makes vecs the complete vector set of one model version
// (all vecs must carry that version). Large sets take several transactions,
// so the set is marked complete only in the last one: until then, and after
// a crash in between, Vectors reports ErrIncomplete for that version while
// the installed version keeps serving.
func (s *Store) ReplaceVectors(ctx context.Context, version int64, vecs []Vector) error {
	if err := validVersion(version); err != nil {
		return err
	}
	for _, v := range vecs {
		if v.Model != version {
			return fmt.Errorf("%w: vector %s/%s has model version %d, not %d", ErrInvalid, v.Rule, v.Name, v.Model, version)
		}
		if err := v.validate(); err != nil {
			return err
		}
	}
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.life.RUnlock()
	if err := s.deleteVersion(ctx, version); err != nil {
		return err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for i, v := range vecs {
		if i%256 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if err := wb.Set(vectorKey(v.Model, v.Rule, v.Name), encodeVector(v.Data, v.Scale)); err != nil {
			return fmt.Errorf("store: vectors of model %d: %w", version, err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("store: vectors of model %d: %w", version, err)
	}
	return s.update(func(tx *Tx) error { return tx.txn.Set(vectorSetKey(version), []byte{recordV1}) })
}

// DeleteVersion deletes every vector of a model version. The completion mark
// goes first, so an interrupted delete leaves an incomplete set, never a
// complete one with vectors missing.
func (s *Store) DeleteVersion(ctx context.Context, version int64) error {
	if err := validVersion(version); err != nil {
		return err
	}
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.life.RUnlock()
	return s.deleteVersion(ctx, version)
}

func (s *Store) deleteVersion(ctx context.Context, version int64) error {
	if err := s.update(func(tx *Tx) error { return tx.txn.Delete(vectorSetKey(version)) }); err != nil {
		return fmt.Errorf("store: delete model %d: %w", version, err)
	}
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: versionPrefix(version)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: delete model %d: %w", version, err)
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for i, k := range keys {
		if i%256 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if err := wb.Delete(k); err != nil {
			return fmt.Errorf("store: delete model %d: %w", version, err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("store: delete model %d: %w", version, err)
	}
	return nil
}

// Vectors returns every vector of a completed model version in (rule, name)
// order, or ErrIncomplete.
func (s *Store) Vectors(ctx context.Context, version int64) ([]Vector, error) {
	if err := validVersion(version); err != nil {
		return nil, err
	}
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	var vecs []Vector
	err := s.db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get(vectorSetKey(version)); errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("%w: model version %d", ErrIncomplete, version)
		} else if err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: versionPrefix(version), PrefetchValues: true, PrefetchSize: 256})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if len(vecs)%256 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			v, err := readVector(it.Item())
			if err != nil {
				return err
			}
			vecs = append(vecs, v)
		}
		return nil
	})
	return vecs, err
}

// Vector returns one vector, whether or not its version's set is complete.
func (s *Store) Vector(ctx context.Context, version int64, rule, name string) (Vector, error) {
	probe := Vector{Model: version, Rule: rule, Name: name, Data: []int8{1}, Scale: 1}
	if err := probe.validate(); err != nil {
		return Vector{}, err
	}
	if err := s.enter(ctx); err != nil {
		return Vector{}, err
	}
	defer s.life.RUnlock()
	var v Vector
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(vectorKey(version, rule, name))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("%w: vector %d/%s/%s", ErrNotFound, version, rule, name)
		}
		if err != nil {
			return err
		}
		v, err = readVector(item)
		return err
	})
	return v, err
}

func readVector(item *badger.Item) (Vector, error) {
	version, rule, name, ok := parseVectorKey(item.Key())
	if !ok {
		return Vector{}, fmt.Errorf("%w: vector key %x", ErrCorrupt, item.Key())
	}
	var v Vector
	err := item.Value(func(b []byte) error {
		data, scale, err := decodeVector(b)
		if err != nil {
			return fmt.Errorf("%w: %d/%s/%s: %v", ErrCorrupt, version, rule, name, err)
		}
		v = Vector{Model: version, Rule: rule, Name: name, Data: data, Scale: scale}
		return nil
	})
	return v, err
}
