package store

import (
	"context"
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
//     messages) and the detection history are refused, and a watcher sheds
//     them, snapshots first, then the oldest detections;
//   - below the floor (2 x memtable_size + 2 MiB, the room Badger needs to
//     flush its memtables and rewrite a table), every write is refused except
//     deletes: the outbox is drained, nothing more is added;
//   - a reserve file of floor + 1 MiB, allocated with fallocate while there is
//     plenty of room, is deleted when free space falls below the floor (or
//     at a start on a full disk), so that what Badger already holds can be
//     flushed and the store opened, degraded, instead of crashing.

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
		what = fmt.Sprintf("below the %s Badger needs to flush: only deletes are written", mib(sp.Floor))
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

// reserveFileSize is the floor and 1 MiB: given back, it lifts a full disk
// above the floor, so that events are queued again while snapshots and
// detections are shed.
func (c Config) reserveFileSize() int64 { return c.floor() + 1<<20 }

// Space reports the store's free space, thresholds and shedding counters,
// checking the filesystem now.
func (s *Store) Space() Space {
	if free, err := freeBytes(s.cfg.Dir); err == nil {
		s.observe(free)
	}
	return Space{
		Level: SpaceLevel(s.space.level.Load()), Free: s.space.free.Load(),
		Reserve: s.cfg.reserve(), Floor: s.cfg.floor(),
		ShedSnapshots: s.space.shedSnaps.Load(), ShedDetections: s.space.shedDets.Load(),
		Refused: s.space.refused.Load(), ReserveFile: s.hasReserve(),
	}
}

// observe records a free-space reading and logs a change of level.
func (s *Store) observe(free int64) SpaceLevel {
	level := SpaceOK
	switch {
	case free < s.cfg.floor():
		level = SpaceFull
	case free < s.cfg.reserve():
		level = SpaceLow
	}
	s.space.free.Store(free)
	if SpaceLevel(s.space.level.Load()) == level {
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
		Int64("reserve_bytes", s.cfg.reserve()).Int64("floor_bytes", s.cfg.floor()).
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
	free, err := freeBytes(s.cfg.Dir)
	if err != nil {
		return nil // cannot tell: Badger's own error (or not) decides
	}
	level := s.observe(free)
	if level == SpaceOK || (level == SpaceLow && c == essential) {
		return nil
	}
	s.space.refused.Add(1)
	limit, what := s.cfg.reserve(), "reserve (store.reserve_mb)"
	if c == essential {
		limit, what = s.cfg.floor(), "floor (2 x memtable_size + 2 MiB)"
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
	free, err := freeBytes(s.cfg.Dir)
	if err != nil {
		s.log.Warn().Err(err).Msg("free space unknown")
		return
	}
	if free < s.cfg.floor() {
		free = s.releaseReserve(free)
	}
	switch {
	case s.observe(free) != SpaceOK:
		err = s.shed(ctx)
	case free >= s.cfg.reserve()+s.cfg.reserveFileSize():
		s.makeReserve()
	case !s.hasReserve():
		// Above the reserve only thanks to the released reserve file:
		// snapshots (not detections) go until it can be made again.
		_, err = s.shedSnapshots()
	}
	if err != nil {
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

// makeReserve allocates the reserve file (fallocate: blocks really taken,
// not a sparse file) if it is missing.
func (s *Store) makeReserve() {
	path := s.cfg.reservePath()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return
	}
	if err != nil {
		s.log.Warn().Err(err).Msg("store: reserve file not made")
		return
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, s.cfg.reserveFileSize())
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
	s.log.Debug().Str("file", path).Int64("bytes", s.cfg.reserveFileSize()).Msg("store: reserve file allocated")
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
	_, err = s.shedDetections(ctx, shedDetectionBatch)
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
	s.dropMu.Lock()
	defer s.dropMu.Unlock()
	for len(keys) > 0 {
		n := min(len(keys), maxDropsPerTxn)
		if err := s.db.DropPrefix(keys[:n]...); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// openSpace is the free space Open needs: Badger replays the write-ahead
// files of its memtables and flushes them into tables of about their size.
func openSpace(dir string) int64 {
	need := int64(1 << 20) // MANIFEST, a value-log header, the discard file
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
