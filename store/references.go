package store

import (
	"context"
	"fmt"
)

// pReference holds reference images: snapshots a user picked for a rule (my
// car), kept as JPEG so that they can be embedded again by the next model.
const pReference = 'f'

// MaxReferenceBytes bounds one reference image; snapshots are already
// bounded in size, so this only refuses something that is not one.
const MaxReferenceBytes = 512 << 10

func referenceKey(id string) []byte { return append([]byte{pReference}, id...) }

// PutReference stores a reference image under id (a slug).
func (tx *Tx) PutReference(id string, jpeg []byte) error {
	if err := validID(id); err != nil {
		return err
	}
	if len(jpeg) == 0 || len(jpeg) > MaxReferenceBytes {
		return fmt.Errorf("%w: reference %q: %d bytes, want 1..%d", ErrTooLarge, id, len(jpeg), MaxReferenceBytes)
	}
	return tx.txn.Set(referenceKey(id), jpeg)
}

// DeleteReference deletes a reference image; a missing one is not an error.
func (tx *Tx) DeleteReference(id string) error {
	if err := validID(id); err != nil {
		return err
	}
	return tx.txn.Delete(referenceKey(id))
}

// PutReference stores a reference image; see Tx.PutReference.
func (s *Store) PutReference(ctx context.Context, id string, jpeg []byte) error {
	return s.Update(ctx, func(tx *Tx) error { return tx.PutReference(id, jpeg) })
}

// Reference returns a reference image, or ErrNotFound.
func (s *Store) Reference(ctx context.Context, id string) ([]byte, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	return s.value(ctx, referenceKey(id), "reference", id)
}
