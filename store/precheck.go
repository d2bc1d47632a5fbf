package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
)

// precheck verifies the tables that badger.Open would otherwise read in
// goroutines of its own, where a damaged table is a panic (an out-of-range
// read of a garbage footer, or a nil dereference on the error path of its
// table checksum check) that takes the whole daemon down. Here the same
// Badger code runs on a copy of each table in this goroutine, under recover,
// and every block checksum is verified. Tables that the MANIFEST does not
// list (a compaction cut short) are left alone: Badger deletes them.
func precheck(opts badger.Options) error {
	f, err := os.Open(filepath.Join(opts.Dir, badger.ManifestFilename))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a new database
	}
	if err != nil {
		return err
	}
	defer f.Close()
	m, _, err := badger.ReplayManifestFile(f, opts.ExternalMagicVersion, opts)
	if err != nil {
		return fmt.Errorf("%w: %s: MANIFEST: %v", ErrCorrupt, opts.Dir, err)
	}
	for id := range m.Tables {
		name := table.NewFilename(id, opts.Dir)
		if err := checkTable(name, id); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, name, err)
		}
	}
	return nil
}

func checkTable(name string, id uint64) (err error) {
	data, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // Badger reports a missing table itself
	}
	if err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			msg, _, _ := strings.Cut(strings.TrimSpace(fmt.Sprint(r)), "\n")
			err = fmt.Errorf("unreadable table (badger panicked: %s)", msg)
		}
	}()
	// An in-memory table: Badger's file-backed one would munmap and close on
	// its own. NoVerification here because VerifyChecksum checks each block.
	t, err := table.OpenInMemoryTable(data, id, &table.Options{ChkMode: options.NoVerification, Compression: options.None})
	if err != nil {
		return err
	}
	return t.VerifyChecksum()
}
