package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// Disk space. Badger writes its memtables, value log and tables through
// memory-mapped files it first extends with ftruncate, which allocates
// nothing: when the filesystem is full, the first store to a page it cannot
// back is a SIGBUS that kills the process (seen on a 16 MB tmpfs:
// logFile.writeEntry and buildData.Copy), and on tmpfs even reading such a
// page at the next start's replay does. Badger offers no option to allocate
// those files up front, so the store keeps the disk from filling instead:
//
//   - below the reserve (reserve_mb) free, snapshots (sheddable outbox
//     messages, events' snapshots) and the detection history are refused,
//     and a watcher sheds them: the outbox's snapshots first, then the
//     oldest half of the events' snapshots, then the oldest detections;
//   - below the floor, every write is refused except deletes: the outbox is
//     drained, nothing more is added. The floor is the room Badger needs to
//     flush its memtables (2 x memtable_size + 2 MiB) and to run one
//     compaction, which writes its output before deleting its input: the
//     size of the tables for a small store, at most 2 x memtable_size +
//     24 MiB (measured: a start with 5 MiB free and 6 MiB of tables died in
//     a compaction);
//   - a reserve file of the floor and 1 MiB, allocated with fallocate while
//     there is plenty of room, is deleted when free space falls below the
//     floor (or at a start on a full disk), so that what Badger already
//     holds can be flushed and compacted and the store opened, degraded,
//     instead of crashing.
//
// A program that takes the very last bytes while Badger flushes or compacts
// can still cause a SIGBUS: no check before a write prevents that.

// ErrDiskFull: the store's filesystem has too little free space for a write;
// it also matches syscall.ENOSPC.
var ErrDiskFull = errors.New("store: disk space low")

// SpaceLevel says which writes the store accepts.
type SpaceLevel int32

const (
	// SpaceOK: free space above the reserve.
	SpaceOK SpaceLevel = iota
	// SpaceLow: below the reserve: snapshots and detections are refused and shed.
	SpaceLow
	// SpaceFull: below the floor: every write but deletes is refused.
	SpaceFull
)

func (l SpaceLevel) String() string {
	switch l {
	case SpaceOK:
		return "ok"
	case SpaceLow:
		return "low"
	default:
		return "full"
	}
}

// Space is the store's view of its filesystem.
type Space struct {
	Level SpaceLevel
	// Free is what an unprivileged process may still allocate, in bytes,
	// as of the last check; Reserve and Floor are the two thresholds.
	Free, Reserve, Floor int64
	// Since this process started: items shed and writes refused.
	ShedSnapshots, ShedDetections, Refused uint64
	// ReserveFile: the reserve file is in place (it is given up when the
	// disk fills and allocated again once there is room).
	ReserveFile bool
}

// Reason is one line for a log, /healthz or MQTT; empty when Level is SpaceOK.
func (sp Space) Reason() string {
	var what string
	switch sp.Level {
	case SpaceOK:
		return ""
	case SpaceLow:
		what = fmt.Sprintf("below the reserve of %s: snapshots and detection history are not kept", mib(sp.Reserve))
	default:
		what = fmt.Sprintf("below the %s Badger needs to flush and compact: only deletes are written", mib(sp.Floor))
	}
	return fmt.Sprintf("disk space low: %s free, %s; shed %d snapshots and %d detections, refused %d writes",
		mib(sp.Free), what, sp.ShedSnapshots, sp.ShedDetections, sp.Refused)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

type spaceState struct {
	free      atomic.Int64
	level     atomic.Int32
	shedSnaps atomic.Uint64
	shedDets  atomic.Uint64
	refused   atomic.Uint64

	mu           sync.Mutex // serialises level changes and their log lines
	lastRefusLog time.Time
}

// statfs is unix.Statfs; tests without root replace it.
var statfs = unix.Statfs

// freeBytes is the space an unprivileged writer may still use on dir's
// filesystem (root could dip into ext4's reserved blocks; the store doesn't).
func freeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("store: statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// reservePath is the reserve file, beside the Badger directory.
func (c Config) reservePath() string { return filepath.Clean(c.Dir) + ".reserve" }

// dropSpace is the free space shedding needs: a memtable flushed to a table
// and the tables that hold the dropped keys rewritten.
// (The memtable it flushes first is already on disk as its write-ahead
// file, which is deleted once flushed.) The floor is 2 x memtable_size +
// 1 MiB above it: what a flush after the last admitted write may take.
func (s *Store) dropSpace() int64 {
	return 1<<20 + min(s.lsm.Load(), s.cfg.compactionMax())
}

// Space reports the store's free space, thresholds and shedding counters,
// checking the filesystem now.
func (s *Store) Space() Space {
	if free, err := freeBytes(s.cfg.Dir); err == nil {
		s.observe(free)
	}
	return Space{
		Level: SpaceLevel(s.space.level.Load()), Free: s.space.free.Load(),
		Reserve: s.reserve(), Floor: s.floor(),
		ShedSnapshots: s.space.shedSnaps.Load(), ShedDetections: s.space.shedDets.Load(),
		Refused: s.space.refused.Load(), ReserveFile: s.hasReserve(),
	}
}

// observe records a free-space reading and logs a change of level.
func (s *Store) observe(free int64) SpaceLevel {
	level := SpaceOK
	switch {
	case free < s.floor():
		level = SpaceFull
	case free < s.reserve():
		level = SpaceLow
	}
	// Going back up takes a memtable's worth above the threshold: a flush
	// or compaction near it would otherwise flip the level (and log it,
	// and publish it) back and forth.
	cur, up := SpaceLevel(s.space.level.Load()), s.cfg.MemTableSize
	if level < cur {
		switch {
		case cur == SpaceFull && free < s.floor()+up:
			level = SpaceFull
		case level == SpaceOK && free < s.reserve()+up:
			level = SpaceLow
		}
	}
	s.space.free.Store(free)
	if cur == level {
		return level
	}
	s.space.mu.Lock()
	defer s.space.mu.Unlock()
	old := SpaceLevel(s.space.level.Swap(int32(level)))
	if old == level {
		return level
	}
	ev := s.log.Warn()
	if level < old {
		ev = s.log.Info()
	}
	ev.Str("space", level.String()).Str("was", old.String()).Int64("free_bytes", free).
		Int64("reserve_bytes", s.reserve()).Int64("floor_bytes", s.floor()).
		Uint64("shed_snapshots", s.space.shedSnaps.Load()).Uint64("shed_detections", s.space.shedDets.Load()).
		Msg(levelMessage(level))
	if s.onSpace != nil {
		go s.onSpace(level)
	}
	return level
}

func levelMessage(l SpaceLevel) string {
	switch l {
	case SpaceOK:
		return "store: disk space back above the reserve: snapshots and detections are kept again"
	case SpaceLow:
		return "store: disk space below the reserve: snapshots and detection history refused and shed (snapshots first, then the oldest detections)"
	default:
		return "store: disk space below the floor: every write but deletes refused until space returns"
	}
}

// writeClass says how soon a write is refused as the disk fills.
type writeClass int

const (
	// bulk: snapshots, detection history; refused below the reserve.
	bulk writeClass = iota
	// essential: rules, vectors, meta, the outbox's events; refused below the floor.
	essential
)

// admit checks free space before a write of class c.
func (s *Store) admit(c writeClass) error {
	// The floor grows with the tables: read their size with every write
	// (a directory of a few dozen files; sightd writes a few times a second).
	s.lsm.Store(lsmBytes(s.cfg.Dir))
	free, err := freeBytes(s.cfg.Dir)
	if err != nil {
		return nil // cannot tell: Badger's own error (or not) decides
	}
	level := s.observe(free)
	if level == SpaceOK || (level == SpaceLow && c == essential) {
		return nil
	}
	if level == SpaceFull && s.hasReserve() {
		// Do not wait for the watcher: Badger may be flushing right now.
		if s.releaseReserve(free) >= s.floor() && c == essential {
			return nil
		}
	}
	s.space.refused.Add(1)
	limit, what := s.reserve(), "reserve (store.reserve_mb)"
	if c == essential {
		limit, what = s.floor(), "floor (room for Badger to flush and compact)"
	}
	return fmt.Errorf("%w: %s free on %s, below the %s of %s: %w", ErrDiskFull, mib(free), s.cfg.Dir, what, mib(limit), syscall.ENOSPC)
}

// logRefused logs a refused write at most once a minute.
func (s *Store) logRefused(err error, what string) {
	s.space.mu.Lock()
	defer s.space.mu.Unlock()
	if time.Since(s.space.lastRefusLog) < time.Minute {
		return
	}
	s.space.lastRefusLog = time.Now()
	s.log.Warn().Err(err).Str("refused", what).Uint64("refused_total", s.space.refused.Load()).
		Msg("store: write refused for lack of disk space (logged at most once a minute)")
}

// spaceLoop checks free space every SpaceCheckInterval, sheds while below
// the reserve and keeps the reserve file.
func (s *Store) spaceLoop(ctx context.Context) {
	defer close(s.spaceDone)
	t := time.NewTicker(s.cfg.SpaceCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.checkSpace(ctx)
		}
	}
}

// checkSpace is one round of the watcher.
func (s *Store) checkSpace(ctx context.Context) {
	if err := s.enter(ctx); err != nil {
		return
	}
	defer s.life.RUnlock()
	s.lsm.Store(lsmBytes(s.cfg.Dir))
	free, err := freeBytes(s.cfg.Dir)
	if err != nil {
		s.log.Warn().Err(err).Msg("free space unknown")
		return
	}
	if free < s.floor() {
		free = s.releaseReserve(free)
	}
	switch {
	case s.observe(free) != SpaceOK:
		err = s.shed(ctx)
	case free >= s.reserve()+s.reserveSize()-s.reserveHeld():
		s.makeReserve()
	case !s.hasReserve():
		// Above the reserve only thanks to the released reserve file:
		// snapshots (not detections) go until it can be made again.
		_, err = s.shedSnapshots()
	}
	switch {
	case errors.Is(err, ErrDiskFull):
		// Waiting for the room shedding needs: the change of level was logged.
		s.log.Debug().Err(err).Msg("store: shedding")
	case err != nil:
		s.log.Warn().Err(err).Msg("store: shedding")
	}
}

func (s *Store) hasReserve() bool {
	_, err := os.Stat(s.cfg.reservePath())
	return err == nil
}

// releaseReserve deletes the reserve file, if there is one, and returns the
// free space after.
func (s *Store) releaseReserve(free int64) int64 {
	err := os.Remove(s.cfg.reservePath())
	if errors.Is(err, fs.ErrNotExist) {
		return free
	}
	if err != nil {
		s.log.Error().Err(err).Msg("store: reserve file not released")
		return free
	}
	after, ferr := freeBytes(s.cfg.Dir)
	if ferr != nil {
		after = free
	}
	s.log.Warn().Int64("free_before", free).Int64("free_after", after).Str("file", s.cfg.reservePath()).
		Msg("store: disk nearly full: reserve file released so that Badger can flush")
	return after
}

// reserveSize is the reserve file's size: the floor and 1 MiB, so that
// given back it lifts a full disk above the floor, and a start on a full
// disk has room to flush and compact.
func (s *Store) reserveSize() int64 { return s.floor() + 1<<20 }

// reserveHeld is the reserve file's allocated size, 0 if there is none.
func (s *Store) reserveHeld() int64 {
	var st unix.Stat_t
	if unix.Stat(s.cfg.reservePath(), &st) != nil {
		return 0
	}
	return st.Blocks * 512
}

// makeReserve allocates the reserve file, or grows it to reserveSize as the
// tables grow (fallocate: blocks really taken, not a sparse file).
func (s *Store) makeReserve() {
	path, size := s.cfg.reservePath(), s.reserveSize()
	if s.reserveHeld() >= size {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		s.log.Warn().Err(err).Msg("store: reserve file not made")
		return
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		if !errors.Is(err, unix.EOPNOTSUPP) {
			s.log.Warn().Err(err).Msg("store: reserve file not made")
		}
		return
	}
	s.log.Debug().Str("file", path).Int64("bytes", size).Msg("store: reserve file allocated")
}

// shedDetectionBatch is how many of the oldest detections one round sheds.
const shedDetectionBatch = 256

// shed removes what matters least: every snapshot in the outbox, or when
// there is none, the oldest detections. It drops them with DropPrefix, which
// flushes the memtable and rewrites the tables that hold them, so that the
// space comes back now; a delete would only write a marker and wait for a
// compaction, which a store taking no writes never runs.
func (s *Store) shed(ctx context.Context) error {
	n, err := s.shedSnapshots()
	if err != nil || n > 0 {
		return err
	}
	n, err = s.shedEventSnapshots()
	if err != nil || n > 0 {
		return err
	}
	n, err = s.shedDetections(ctx, shedDetectionBatch)
	if err != nil || n > 0 || SpaceLevel(s.space.level.Load()) != SpaceFull {
		return err
	}
	// Below the floor with no snapshot or detection left: the outbox's
	// oldest events go, counted as drops of a full outbox, so that new
	// events can be queued again.
	return s.shedEvents()
}

// shedEvents drops the oldest quarter of the outbox (at least 64 messages).
func (s *Store) shedEvents() error {
	ob := &s.ob
	ob.mu.Lock()
	defer ob.mu.Unlock()
	n := min(len(ob.refs), max(64, len(ob.refs)/4))
	if n == 0 {
		return nil
	}
	keys := make([][]byte, n)
	var bytes int64
	for i, r := range ob.refs[:n] {
		keys[i], bytes = outboxKey(r.seq), bytes+r.size
	}
	if err := s.drop(keys); err != nil {
		return fmt.Errorf("store: shed outbox events: %w", err)
	}
	ob.refs, ob.bytes = ob.refs[n:], ob.bytes-bytes
	ob.dropped += uint64(n)
	counter := binary.BigEndian.AppendUint64(nil, ob.dropped)
	err := s.update(func(tx *Tx) error { return tx.txn.Set(internalKey(outboxDroppedKey), counter) })
	s.log.Warn().Int("messages", n).Int64("bytes", bytes).Uint64("dropped_total", ob.dropped).
		Msg("store: disk full and nothing else to shed: the oldest outbox messages dropped")
	return err
}

func (s *Store) shedSnapshots() (int, error) {
	ob := &s.ob
	ob.mu.Lock()
	defer ob.mu.Unlock()
	var keys [][]byte
	var keep []outboxRef
	var bytes int64
	for _, r := range ob.refs {
		if r.shed {
			keys = append(keys, outboxKey(r.seq))
			bytes += r.size
		} else {
			keep = append(keep, r)
		}
	}
	if len(keys) == 0 {
		return 0, nil
	}
	if err := s.drop(keys); err != nil {
		return 0, fmt.Errorf("store: shed snapshots: %w", err)
	}
	ob.refs, ob.bytes = keep, ob.bytes-bytes
	s.space.shedSnaps.Add(uint64(len(keys)))
	s.log.Warn().Int("snapshots", len(keys)).Int64("bytes", bytes).Uint64("shed_total", s.space.shedSnaps.Load()).
		Msg("store: disk space low: snapshots shed from the outbox")
	return len(keys), nil
}

func (s *Store) shedDetections(ctx context.Context, n int) (int, error) {
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pDetection}})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(keys) < n; it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return ctx.Err()
	})
	if err != nil || len(keys) == 0 {
		return 0, err
	}
	if err := s.drop(keys); err != nil {
		return 0, fmt.Errorf("store: shed detections: %w", err)
	}
	s.space.shedDets.Add(uint64(len(keys)))
	s.log.Warn().Int("detections", len(keys)).Str("oldest", fmt.Sprintf("%x", keys[0][1:])).
		Uint64("shed_total", s.space.shedDets.Load()).Msg("store: disk space low: oldest detections shed")
	return len(keys), nil
}

// drop removes exactly keys (each is a whole key, so as a prefix it matches
// itself and longer keys, and no store key extends another of its table).
// Writes wait while it runs: Badger refuses them during DropPrefix.
func (s *Store) drop(keys [][]byte) error {
	// DropPrefix flushes the memtable and rewrites tables before it frees
	// anything; without room for that, Badger fails half-way (and its next
	// DropPrefix dereferences the memtable it left behind).
	if free, err := freeBytes(s.cfg.Dir); err == nil && free < s.dropSpace() {
		return fmt.Errorf("%w: %s free, below the %s that shedding needs; waiting for space", ErrDiskFull, mib(free), mib(s.dropSpace()))
	}
	s.dropMu.Lock()
	defer s.dropMu.Unlock()
	defer func() { s.lsm.Store(lsmBytes(s.cfg.Dir)) }()
	for len(keys) > 0 {
		n := min(len(keys), maxDropsPerTxn)
		if err := s.db.DropPrefix(keys[:n]...); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// compactionMax bounds what one Badger compaction writes before it deletes
// its inputs: two level-0 tables and the base level (4 MiB), or a level-1
// table (1 MiB) and the ten 2 MiB tables of level 2 it overlaps.
func (c Config) compactionMax() int64 { return 2*c.MemTableSize + 24<<20 }

// floor is the free space below which only deletes are written: room to
// flush both memtables (Config.floor) and for one compaction, which for a
// small store may rewrite all of its tables.
func (s *Store) floor() int64 { return s.cfg.floor() + min(s.lsm.Load(), s.cfg.compactionMax()) }

// reserve is store.reserve_mb, or if that is more, the floor and room for
// two memtable flushes (a store that grew past what its reserve was set
// for): between the two, snapshots and detections are shed before the
// floor is reached.
func (s *Store) reserve() int64 { return max(s.cfg.reserve(), s.floor()+s.cfg.floor()) }

// lsmBytes is the size of the tables in dir.
func lsmBytes(dir string) int64 {
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".sst") {
			continue
		}
		if info, err := e.Info(); err == nil {
			n += info.Size()
		}
	}
	return n
}

// openSpace is the free space Open needs: Badger replays the write-ahead
// files of its memtables, flushes them into tables of about their size, and
// may start a compaction at once (up to compactionMax).
func (c Config) openSpace() int64 {
	dir := c.Dir
	need := int64(1<<20) + min(lsmBytes(dir), c.compactionMax()) // and the MANIFEST, a value-log header, the discard file
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".mem") {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(filepath.Join(dir, e.Name()), &st) == nil {
			need += st.Blocks * 512 // allocated, not the sparse length
		}
	}
	return need
}

// OnSpace sets a function called (in a goroutine of its own) whenever the
// space level changes. Call it once, right after Open.
func (s *Store) OnSpace(f func(SpaceLevel)) {
	s.space.mu.Lock()
	s.onSpace = f
	s.space.mu.Unlock()
}
