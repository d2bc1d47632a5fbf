package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Rule is a rule's id and its JSON, which the rules package owns.
type Rule struct {
	ID   string
	JSON []byte
}

// Tx is a read-write transaction: everything it writes is committed
// together, or nothing is.
type Tx struct {
	txn *badger.Txn
}

// maxConflictRetries: Update re-runs fn when Badger reports a conflict with a
// concurrent transaction (only possible when fn reads what another writes).
const maxConflictRetries = 3

// Update runs fn in one transaction and commits it with a synced write. fn
// may run more than once (after a conflict) and must not keep tx.
func (s *Store) Update(ctx context.Context, fn func(tx *Tx) error) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.life.RUnlock()
	if err := s.admit(essential); err != nil {
		s.logRefused(err, "update")
		return err
	}
	return s.update(fn)
}

func (s *Store) update(fn func(tx *Tx) error) error {
	s.dropMu.RLock()
	defer s.dropMu.RUnlock()
	var err error
	for range maxConflictRetries {
		err = s.db.Update(func(txn *badger.Txn) error { return fn(&Tx{txn: txn}) })
		if !errors.Is(err, badger.ErrConflict) {
			break
		}
	}
	if errors.Is(err, badger.ErrTxnTooBig) {
		return fmt.Errorf("%w: transaction above Badger's batch limit (15%% of memtable_size)", ErrTooLarge)
	}
	return err
}

// PutRule creates or replaces a rule.
func (tx *Tx) PutRule(id string, data []byte) error {
	if err := validID(id); err != nil {
		return err
	}
	if err := validJSON("rule "+id, data, MaxRuleBytes); err != nil {
		return err
	}
	return tx.txn.Set(ruleKey(id), data)
}

// DeleteRule deletes a rule and its vectors in every model version. Deleting
// a rule that does not exist is not an error.
func (tx *Tx) DeleteRule(id string) error {
	if err := validID(id); err != nil {
		return err
	}
	if err := tx.txn.Delete(ruleKey(id)); err != nil {
		return err
	}
	versions, err := tx.vectorVersions()
	if err != nil {
		return err
	}
	for _, v := range versions {
		if err := tx.deletePrefix(vectorRulePrefix(v, id)); err != nil {
			return err
		}
	}
	return nil
}

// deletePrefix deletes every key under prefix in this transaction.
func (tx *Tx) deletePrefix(prefix []byte) error {
	it := tx.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	var keys [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	it.Close()
	for _, k := range keys {
		if err := tx.txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// PutRule creates or replaces a rule.
func (s *Store) PutRule(ctx context.Context, id string, data []byte) error {
	return s.Update(ctx, func(tx *Tx) error { return tx.PutRule(id, data) })
}

// DeleteRule deletes a rule and its vectors; see Tx.DeleteRule.
func (s *Store) DeleteRule(ctx context.Context, id string) error {
	return s.Update(ctx, func(tx *Tx) error { return tx.DeleteRule(id) })
}

// Rule returns one rule's JSON, or ErrNotFound.
func (s *Store) Rule(ctx context.Context, id string) ([]byte, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	var data []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(ruleKey(id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("%w: rule %q", ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		data, err = item.ValueCopy(nil)
		return err
	})
	return data, err
}

// Rules returns every rule in id order.
func (s *Store) Rules(ctx context.Context) ([]Rule, error) {
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	var rules []Rule
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pRule}, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			rules = append(rules, Rule{ID: string(it.Item().Key()[1:]), JSON: v})
		}
		return nil
	})
	return rules, err
}

func validJSON(what string, data []byte, limit int) error {
	if len(data) > limit {
		return fmt.Errorf("%w: %s: %d bytes of JSON, above %d", ErrTooLarge, what, len(data), limit)
	}
	if !json.Valid(data) {
		return fmt.Errorf("%w: %s: not valid JSON", ErrInvalid, what)
	}
	return nil
}
