package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Errors callers can test with errors.Is.
var (
	// ErrLocked: another process (or another Store in this one) has the directory open.
	ErrLocked = errors.New("store: database is locked by another process")
	// ErrCorrupt: the directory holds files Badger cannot read as a database.
	ErrCorrupt = errors.New("store: database is corrupt or not a Badger database")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrNotFound: no such rule, meta key or vector.
	ErrNotFound = errors.New("store: not found")
	// ErrInvalid: a bad id, name, key, JSON value or message.
	ErrInvalid = errors.New("store: invalid input")
	// ErrTooLarge: a value above its size limit.
	ErrTooLarge = errors.New("store: value too large")
	// ErrRollback: a model version not above the highest one ever accepted.
	ErrRollback = errors.New("store: model version rollback refused")
	// ErrIncomplete: a model version's vector set was never completed.
	ErrIncomplete = errors.New("store: vector set incomplete")
)

// Store is sightd's durable state. Its methods are safe for concurrent use.
type Store struct {
	cfg Config
	db  *badger.DB
	log zerolog.Logger

	// life is held for reading by every operation and for writing by Close,
	// so that Close waits for operations in flight and none starts after it.
	life   sync.RWMutex
	closed bool

	outboxSeq *badger.Sequence
	detectSeq *badger.Sequence

	ob outboxState // guarded by its own mutex
	ev eventState  // guarded by its own mutex

	modelMu sync.Mutex // serialises read-modify-write of the model versions

	stopOnce  sync.Once
	stopGC    context.CancelFunc
	gcDone    chan struct{}
	spaceDone chan struct{}

	space   spaceState
	lsm     atomic.Int64     // bytes of tables, as of the last space check
	onSpace func(SpaceLevel) // see OnSpace; guarded by space.mu
	// dropMu is held for writing while shedding drops keys (Badger refuses
	// writes during DropPrefix) and for reading by every write.
	dropMu sync.RWMutex
}

// Open opens (or creates) the store in cfg.Dir. ctx bounds the background
// value-log garbage collection, which Close also stops. A directory that
// another process holds gives ErrLocked, unreadable files ErrCorrupt.
func Open(ctx context.Context, cfg Config, log zerolog.Logger) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	log = log.With().Str("component", "store").Logger()
	opts := cfg.badgerOptions(badgerLogger{log})
	if locked(cfg.Dir) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, cfg.Dir)
	}
	if err := precheck(opts); err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, log: log}
	if err := s.roomToOpen(); err != nil {
		return nil, err
	}
	db, err := openBadger(opts)
	if err != nil {
		return nil, classifyOpenError(cfg.Dir, err)
	}
	s.db = db
	if err := s.init(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if sp := s.Space(); sp.Level != SpaceOK {
		log.Warn().Str("space", sp.Level.String()).Msg("store: opened degraded: " + sp.Reason())
	} else if sp.Free >= s.reserve()+s.reserveSize() {
		s.makeReserve()
	}
	gcCtx, cancel := context.WithCancel(ctx)
	s.stopGC, s.gcDone, s.spaceDone = cancel, make(chan struct{}), make(chan struct{})
	go s.gcLoop(gcCtx)
	go s.spaceLoop(gcCtx)
	return s, nil
}

// roomToOpen makes sure Badger can open without touching a page the disk
// cannot back: it releases the reserve file if space is short, and refuses
// with ErrDiskFull (naming what is needed) rather than let Badger crash.
func (s *Store) roomToOpen() error {
	free, err := freeBytes(s.cfg.Dir)
	if err != nil {
		return nil
	}
	s.lsm.Store(lsmBytes(s.cfg.Dir))
	need := s.cfg.openSpace()
	if free < max(need, s.floor()) {
		free = s.releaseReserve(free)
	}
	if free < need {
		return fmt.Errorf("%w: %s free on %s, and Badger needs %s to open (to replay and flush its memtables, and compact): free some space there: %w",
			ErrDiskFull, mib(free), s.cfg.Dir, mib(need), syscall.ENOSPC)
	}
	return nil
}

// openBadger turns a panic inside badger.Open (it panics on some malformed
// files) into an error.
func openBadger(opts badger.Options) (db *badger.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("badger panicked while opening: %v", r)
		}
	}()
	return badger.Open(opts)
}

// classifyOpenError maps badger.Open's error to a sentinel. Badger formats
// the errors of its dependencies with %v, so the lock is probed directly
// instead of matching the message.
func classifyOpenError(dir string, err error) error {
	if locked(dir) {
		return fmt.Errorf("%w: %s", ErrLocked, dir)
	}
	var errno syscall.Errno
	switch {
	case errors.Is(err, fs.ErrPermission),
		errors.As(err, &errno) && (errno == syscall.ENOSPC || errno == syscall.EROFS || errno == syscall.ENOMEM):
		return fmt.Errorf("store: open %s: %w", dir, err)
	}
	return fmt.Errorf("%w: %s: %v", ErrCorrupt, dir, err)
}

// locked reports whether another open file description holds Badger's flock
// on dir (Badger locks the directory itself).
func locked(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return false
	}
	return errors.Is(err, unix.EWOULDBLOCK)
}

// sequenceLease is how many numbers a Badger sequence reserves per synced
// write. A crash skips the unused rest: numbers stay unique and increasing,
// with gaps.
const sequenceLease = 128

func (s *Store) init() error {
	var err error
	if s.outboxSeq, err = s.db.GetSequence(seqKey("outbox"), sequenceLease); err != nil {
		return fmt.Errorf("store: outbox sequence: %w", err)
	}
	if s.detectSeq, err = s.db.GetSequence(seqKey("detections"), sequenceLease); err != nil {
		return fmt.Errorf("store: detection sequence: %w", err)
	}
	if err := s.loadOutbox(); err != nil {
		return err
	}
	return s.loadEvents()
}

// Close stops garbage collection, waits for operations in flight and closes
// the database. It is safe to call more than once.
func (s *Store) Close() error {
	// The background loops stop first: the space watcher enters like an
	// operation (life.RLock), so waiting for it under life.Lock would
	// deadlock with a check in progress.
	s.stopOnce.Do(func() {
		s.stopGC()
		<-s.gcDone
		<-s.spaceDone
	})
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	// Releasing a sequence returns its unused lease, so a clean restart has no gap.
	err := errors.Join(s.outboxSeq.Release(), s.detectSeq.Release())
	if cerr := s.db.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// enter starts an operation; the caller must call s.life.RUnlock when done.
func (s *Store) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return ErrClosed
	}
	return nil
}

func (s *Store) gcLoop(ctx context.Context) {
	defer close(s.gcDone)
	t := time.NewTicker(s.cfg.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.collectGarbage(ctx); err != nil {
				s.log.Warn().Err(err).Msg("value-log GC")
			}
		}
	}
}

// gcDiscardRatio: rewrite a value-log file once half of it is garbage. Lower
// rewrites more often (more SD-card writes) to get space back sooner.
const gcDiscardRatio = 0.5

// collectGarbage rewrites value-log files until none is worth it. Badger
// rewrites at most one file per call.
func (s *Store) collectGarbage(ctx context.Context) error {
	for ctx.Err() == nil {
		err := s.db.RunValueLogGC(gcDiscardRatio)
		switch {
		case err == nil:
			continue
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
			return nil
		default:
			return err
		}
	}
	return nil
}

// badgerLogger sends Badger's log lines to zerolog. Badger's Info lines are
// housekeeping (tables opened, flushes), so they go to Debug and its Debug
// lines to Trace; zerolog skips the formatting of a disabled level.
type badgerLogger struct{ l zerolog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error().Msgf(trimNL(f), a...) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn().Msgf(trimNL(f), a...) }
func (b badgerLogger) Infof(f string, a ...any)    { b.l.Debug().Msgf(trimNL(f), a...) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.l.Trace().Msgf(trimNL(f), a...) }

func trimNL(f string) string { return strings.TrimRight(f, "\n") }
