package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Config sets where the store lives and how much it may keep.
type Config struct {
	// Dir is the Badger directory; it is created if missing.
	Dir string `yaml:"dir"`
	// DetectionTTL is how long the detection history keeps an entry.
	// Badger counts expiry in whole seconds, so it must be at least 1s.
	DetectionTTL time.Duration `yaml:"detection_ttl"`
	// EventTTL is how long an event's record and snapshot are kept (the
	// HTTP API's /api/events/<id>); EventMaxBytes bounds the snapshots'
	// total: past it the oldest go.
	EventTTL      time.Duration `yaml:"event_ttl"`
	EventMaxBytes int64         `yaml:"event_max_bytes"`
	// OutboxMaxEntries and OutboxMaxBytes bound the outbox; past either bound
	// the oldest entries are dropped (and counted).
	OutboxMaxEntries int   `yaml:"outbox_max_entries"`
	OutboxMaxBytes   int64 `yaml:"outbox_max_bytes"`
	// MaxPayloadBytes is the largest outbox payload accepted (a snapshot JPEG).
	MaxPayloadBytes int `yaml:"max_payload_bytes"`
	// MemTableSize is Badger's in-memory write buffer; the store keeps up to
	// two of them, each backed by a write-ahead file of twice this size.
	MemTableSize int64 `yaml:"memtable_size"`
	// ValueLogFileSize is the size at which a value-log file is rotated. The
	// store keeps its values in the LSM tree (see valueThreshold), so the
	// value log holds little; garbage collection reclaims whole files, so
	// small files give space back sooner.
	ValueLogFileSize int64 `yaml:"value_log_file_size"`
	// GCInterval is how often value-log garbage collection runs.
	GCInterval time.Duration `yaml:"gc_interval"`
	// ReserveMB is the free space (MiB) kept on the store's filesystem:
	// below it, snapshots and detection history are refused and shed. It
	// must be at least the floor, 2 x memtable_size + 2 MiB, below which
	// every write but deletes is refused.
	ReserveMB int64 `yaml:"reserve_mb"`
	// SpaceCheckInterval is how often free space is checked for shedding
	// (writes check it themselves).
	SpaceCheckInterval time.Duration `yaml:"space_check_interval"`
}

// reserve and floor are the free-space thresholds in bytes (see ReserveMB).
func (c Config) reserve() int64 { return c.ReserveMB << 20 }
func (c Config) floor() int64   { return 2*c.MemTableSize + 2<<20 }

// Defaults returns the settings for a Raspberry Pi class board.
func Defaults() Config {
	return Config{
		Dir:              "/var/lib/sightd/db",
		DetectionTTL:     30 * 24 * time.Hour,
		EventTTL:         7 * 24 * time.Hour,
		EventMaxBytes:    128 << 20,
		OutboxMaxEntries: 10_000,
		OutboxMaxBytes:   64 << 20,
		MaxPayloadBytes:  512 << 10,
		MemTableSize:     8 << 20,
		ValueLogFileSize: 16 << 20,
		GCInterval:       10 * time.Minute,
		// A quarter of a small SD card's slack; the floor is 18 MiB.
		ReserveMB:          64,
		SpaceCheckInterval: 2 * time.Second,
	}
}

// Validate reports every bad field by its name.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("store config: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Dir == "" {
		bad("dir", "must not be empty")
	}
	if c.DetectionTTL < time.Second {
		bad("detection_ttl", "%v is below 1s (Badger expires entries in whole seconds)", c.DetectionTTL)
	}
	if c.EventTTL < time.Second {
		bad("event_ttl", "%v is below 1s (Badger expires entries in whole seconds)", c.EventTTL)
	}
	if c.EventMaxBytes < int64(c.MaxPayloadBytes) {
		bad("event_max_bytes", "%d cannot hold one snapshot of max_payload_bytes (%d)", c.EventMaxBytes, c.MaxPayloadBytes)
	}
	if c.OutboxMaxEntries < 1 {
		bad("outbox_max_entries", "%d must be at least 1", c.OutboxMaxEntries)
	}
	if c.MaxPayloadBytes < 1 {
		bad("max_payload_bytes", "%d must be at least 1", c.MaxPayloadBytes)
	}
	if c.MemTableSize >= 1<<20 && int64(c.MaxPayloadBytes) > c.maxPayload() {
		bad("max_payload_bytes", "%d is above %d, the most that memtable_size %d lets one transaction hold in the LSM tree",
			c.MaxPayloadBytes, c.maxPayload(), c.MemTableSize)
	}
	if c.OutboxMaxBytes < int64(c.MaxPayloadBytes)+maxOutboxOverhead {
		bad("outbox_max_bytes", "%d cannot hold one payload of max_payload_bytes (%d) plus its %d bytes of header and topic",
			c.OutboxMaxBytes, c.MaxPayloadBytes, maxOutboxOverhead)
	}
	if c.MemTableSize < 1<<20 || c.MemTableSize > 1<<30 {
		bad("memtable_size", "%d is outside [1 MiB, 1 GiB]", c.MemTableSize)
	}
	if c.ValueLogFileSize < 1<<20 || c.ValueLogFileSize >= 1<<30 {
		bad("value_log_file_size", "%d is outside [1 MiB, 1 GiB)", c.ValueLogFileSize)
	}
	if c.GCInterval < time.Second {
		bad("gc_interval", "%v is below 1s", c.GCInterval)
	}
	if c.ReserveMB < 0 || c.ReserveMB > 1<<20 || c.reserve() < c.floor() {
		bad("reserve_mb", "%d is below %d MiB, the room Badger needs to flush its memtables (2 x memtable_size + 2 MiB), or above 1 TiB",
			c.ReserveMB, (c.floor()+1<<20-1)>>20)
	}
	if c.SpaceCheckInterval < 10*time.Millisecond {
		bad("space_check_interval", "%v is below 10ms", c.SpaceCheckInterval)
	}
	return errors.Join(errs...)
}

// valueThreshold keeps every value in the LSM tree: Badger's largest
// threshold (1 MiB), or its transaction limit (15% of the memtable) if lower.
//
// Why not the value log for large outbox payloads (snapshots)? A deleted
// payload in the value log is garbage only once its delete marker has been
// flushed from the memtable and compacted, and GC then reclaims whole files:
// measured here, 33 MB pushed through an outbox bounded at 100 KiB left 16 MiB
// of value log behind, and with 8 MiB memtables the backlog would grow to
// hundreds of MiB (or GiB of snapshots) before the first flush. In the LSM tree, compaction drops
// deleted payloads, and disk use is bounded by the memtables plus a few tables.
func (c Config) valueThreshold() int64 { return min(1<<20, c.MemTableSize*15/100) }

// maxPayload is the largest outbox payload that still fits below the value
// threshold, with its header, a topic and the drop deletes of its transaction.
func (c Config) maxPayload() int64 {
	return c.valueThreshold() - maxOutboxOverhead - maxDropsPerTxn*64
}

// badgerOptions turns the config into Badger settings sized for small boards.
// Badger's defaults assume a server (64 MiB memtables, 256 MiB block cache,
// 1 GiB value-log files, 4 compactors); sightd keeps a few MiB of rules and
// vectors and a bounded outbox (64 MiB at most by default).
func (c Config) badgerOptions(log badger.Logger) badger.Options {
	return badger.DefaultOptions(c.Dir).
		WithLogger(log).
		// Every commit is fsynced before it returns. Rules, vectors, meta and
		// the outbox must survive a power cut; detections are rare (after
		// hysteresis and cooldown), so syncing them too costs little. The
		// alternative, unsynced commits plus an explicit db.Sync(), leaves a gap:
		// a concurrent write can rotate the memtable between our commit and the
		// Sync, and the rotated memtable's WAL is not synced.
		WithSyncWrites(true).
		WithNumVersionsToKeep(1).
		WithMemTableSize(c.MemTableSize).
		// Two memtables: one taking writes while the other is flushed.
		WithNumMemtables(2).
		WithValueLogFileSize(c.ValueLogFileSize).
		WithValueThreshold(c.valueThreshold()).
		// Small tables and levels, sized to the data: compaction works in
		// small steps and the first level is not left half empty.
		WithBaseTableSize(1 << 20).
		WithBaseLevelSize(4 << 20).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		// Two is Badger's minimum (one compactor is refused): one for L0, one
		// for the rest; each is a goroutine doing I/O, and boards have 4 cores.
		WithNumCompactors(2).
		// Stream framework workers (backup, DropPrefix); not on the hot path.
		WithNumGoroutines(2).
		// No compression: JPEGs and int8 vectors do not compress, and without
		// compression (or encryption) Badger reads blocks straight from the
		// mmapped tables, so no block cache is needed: the kernel page cache
		// does that job and gives the memory back under pressure.
		WithCompression(options.None).
		WithBlockCacheSize(0).
		// Zero keeps each table's index and bloom filter on the Go heap; for a
		// database of a few tables that is kilobytes, less than a cache's overhead.
		WithIndexCacheSize(0).
		// SD cards flip bits: Open verifies every table's checksums (precheck),
		// and each block read is verified too, as is each value-log read.
		// Corruption becomes an error instead of wrong rules. (Not
		// OnTableRead: Badger's own open-time check panics on a bad block.)
		WithChecksumVerificationMode(options.OnBlockRead).
		WithVerifyValueChecksum(true).
		// expvar metrics are process-global; sightd exports its own.
		WithMetricsEnabled(false)
}
