package ota

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

var (
	// ErrTooLarge: the download would exceed its size limit (the Limit's
	// answer, or maxUnknown while the Limit cannot tell yet).
	ErrTooLarge = errors.New("download too large")
	// ErrDiskFull: the state directory ran out of space (ENOSPC, EDQUOT) or
	// the file hit a size limit (EFBIG).
	ErrDiskFull = errors.New("disk full")
	// ErrHTTP: the server answered with a status that is not a success.
	ErrHTTP = errors.New("HTTP error")
	// ErrBadURL: the URL does not parse, or its scheme is not http or https.
	ErrBadURL = errors.New("bad download URL")
)

// Defaults of the Fetcher's zero fields.
const (
	DefaultRetries      = 8
	DefaultMinBackoff   = time.Second
	DefaultMaxBackoff   = 30 * time.Second
	DefaultStallTimeout = time.Minute
	// DefaultRetryFor bounds how long failed attempts in a row are
	// retried: a dead URL gives up within it, not after every retry's
	// back-off (about 90 s).
	DefaultRetryFor = 30 * time.Second
	// DefaultMaxUnknown caps a download while its Limit cannot tell yet:
	// the signed head of a bundle is far smaller.
	DefaultMaxUnknown = 8 << 20
)

const (
	progressBytes = 256 << 10
	progressEvery = 200 * time.Millisecond
	copyBuffer    = 64 << 10
)

// Fetcher downloads a bundle into a local file, resuming after dropped
// connections. The zero value works; it is safe for concurrent use on
// different destinations.
type Fetcher struct {
	// Client makes the requests; nil is a client with connect, TLS and
	// response-header timeouts but no overall timeout (bundles are large;
	// StallTimeout catches a dead transfer instead).
	Client *http.Client
	Log    zerolog.Logger
	// Retries is how many failed attempts in a row are retried before
	// giving up (0: DefaultRetries; negative: none). An attempt that got
	// further into the file than any before it resets the count.
	Retries int
	// Back-off between attempts doubles from MinBackoff up to MaxBackoff,
	// with jitter (0: the defaults). A server's Retry-After is honoured up
	// to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// StallTimeout ends an attempt that received no data for that long
	// (0: DefaultStallTimeout); the next attempt resumes.
	StallTimeout time.Duration
	// RetryFor bounds the time from the first of a run of failed attempts
	// to the start of the next retry (0: DefaultRetryFor): whichever of
	// Retries and RetryFor ends first gives up. An attempt that got further
	// into the file than any before it starts a new run.
	RetryFor time.Duration
}

// Progress of a download, in bytes.
type Progress struct {
	Done  int64
	Total int64 // -1 while not known
}

// Limit is consulted as the partial file grows: it returns the maximum size
// the file may reach, ok=false while it cannot tell yet (the signed head is
// not complete). An error aborts the download (e.g. the head is signed by an
// untrusted key). It may read partial (ReadAt, or Seek and Read) but must not
// write or close it. It is called after each write until it answers ok (and
// once before a resumed download starts, so an oversized Content-Range fails
// at once); never with an empty file, but possibly with a file of a few
// bytes. Its answer then holds for the rest of the download, unless the
// download has to start over from zero.
type Limit func(partial *os.File) (max int64, ok bool, err error)

// Fetch downloads url into dest. The data goes to dest+".part" and the
// validator (ETag or Last-Modified) to dest+".part.meta"; when complete, the
// part is fsynced, renamed to dest, and the directory fsynced. An existing
// part is resumed with a Range request guarded by If-Range, so that a
// changed file at the server restarts from zero rather than mixing two.
//
// While limit (nil: none) has not answered ok, maxUnknown (<= 0:
// DefaultMaxUnknown) caps the file; with a nil limit it caps the whole file.
// progress (may be nil) is called from Fetch's goroutine every 256 KiB or
// 200 ms, and at the end.
//
// It returns the sha256 of the whole file, re-read from disk at the end.
// Errors: ErrTooLarge, a Limit error, ErrDiskFull (these remove the partial
// file: it cannot become a good bundle), ErrHTTP (404 and other 4xx at once;
// 5xx, 408 and 429 after the retries), ErrBadURL, network errors after the
// retries, or ctx's error; network errors and cancellation keep the partial
// file for a later Fetch to resume.
func (f *Fetcher) Fetch(ctx context.Context, rawURL, dest string, limit Limit, maxUnknown int64, progress func(Progress)) (sha256hex string, err error) {
	u, err := parseURL(rawURL)
	if err != nil {
		return "", err
	}
	if maxUnknown <= 0 {
		maxUnknown = DefaultMaxUnknown
	}
	st := &fetch{
		f: f, ctx: ctx, url: u, shown: redactURL(u),
		dest: dest, part: dest + ".part", metaPath: dest + ".part.meta",
		limit: limit, maxUnknown: maxUnknown, total: -1, progress: progress,
		buf: make([]byte, copyBuffer),
	}
	st.log = f.Log.With().Str("url", st.shown).Str("dest", dest).Logger()
	if err := st.open(); err != nil {
		return "", err
	}
	defer st.close()
	if err := st.run(); err != nil {
		return "", err
	}
	return st.finish()
}

// fetch is the state of one Fetch call.
type fetch struct {
	f                    *Fetcher
	ctx                  context.Context
	url                  *url.URL
	shown                string // the URL without userinfo or query, for logs and errors
	dest, part, metaPath string
	log                  zerolog.Logger
	limit                Limit
	maxUnknown           int64
	progress             func(Progress)
	buf                  []byte
	file                 *os.File // the part; nil once closed or discarded
	meta                 partMeta
	size                 int64 // bytes in the part file
	total                int64 // the complete file's size, -1 while unknown
	max                  int64 // the Limit's answer, once known
	known                bool
	lastDone             int64
	lastTime             time.Time
}

// partMeta is what dest+".part.meta" holds: enough to resume safely.
type partMeta struct {
	URL          string `json:"url"` // redacted: a rotating token in the query must not prevent resuming
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
}

// validator is the If-Range value; "" when resuming is not safe.
func (m partMeta) validator() string {
	if m.ETag != "" {
		return m.ETag
	}
	return m.LastModified
}

// retryable marks an attempt's error as worth another attempt.
type retryable struct {
	err   error
	after time.Duration // the server's Retry-After, if any
	now   bool          // no back-off: the next attempt starts over from zero
}

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

// errStalled is the cause when StallTimeout ends an attempt.
var errStalled = errors.New("stalled")

func (st *fetch) open() error {
	if err := os.MkdirAll(filepath.Dir(st.dest), 0o755); err != nil {
		return st.localErr(err)
	}
	file, err := os.OpenFile(st.part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return st.localErr(err)
	}
	// Two downloads into one part file would interleave their bytes.
	if err := syscall.Flock(int(file.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		file.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("ota: fetch %s: another download into %s is in progress", st.shown, st.part)
		}
		return fmt.Errorf("ota: fetch %s: lock %s: %w", st.shown, st.part, err)
	}
	st.file = file
	fi, err := file.Stat()
	if err != nil {
		return st.localErr(err)
	}
	st.size = fi.Size()
	if st.size == 0 {
		return nil // the Limit is not asked about an empty file
	}
	m, err := readMeta(st.metaPath)
	switch {
	case err != nil:
		st.log.Info().Err(err).Int64("have", st.size).Msg("cannot resume the partial download; starting over")
		return st.reset()
	case m.URL != st.shown:
		st.log.Info().Int64("have", st.size).Msg("the partial download is of another URL; starting over")
		return st.reset()
	case m.validator() == "":
		st.log.Info().Int64("have", st.size).Msg("the server gave no validator (ETag, Last-Modified) to resume with; starting over")
		return st.reset()
	}
	st.meta = m
	// An untrusted or outdated head need not be downloaded further.
	if err := st.consult(); err != nil {
		return err
	}
	return st.room(0)
}

func readMeta(path string) (partMeta, error) {
	var m partMeta
	b, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// run makes attempts until the part holds the whole file.
func (st *fetch) run() error {
	retries := st.f.Retries
	if retries == 0 {
		retries = DefaultRetries
	}
	failures, furthest := 0, st.size
	var firstFailure time.Time
	st.log.Info().Int64("have", st.size).Msg("downloading")
	for {
		err := st.attempt()
		if err == nil {
			return nil
		}
		var r *retryable
		retry := errors.As(err, &r)
		// A refusal that raced with cancellation is still a refusal.
		if st.ctx.Err() != nil && (retry || errors.Is(err, st.ctx.Err())) {
			return fmt.Errorf("ota: fetch %s: stopped after %d bytes (kept for resuming): %w", st.shown, st.size, st.ctx.Err())
		}
		if !retry {
			return err
		}
		if st.size > furthest {
			furthest, failures = st.size, 0
		}
		failures++
		if failures == 1 {
			firstFailure = time.Now()
		}
		if retries < 0 || failures > retries {
			return fmt.Errorf("ota: fetch %s: giving up after %d failed attempts in a row, %d bytes kept for resuming: %w",
				st.shown, failures, st.size, err)
		}
		var delay time.Duration
		if !r.now {
			delay = max(st.f.backoff(failures), min(r.after, st.f.maxBackoff()))
		}
		if spent := time.Since(firstFailure); spent+delay > st.f.retryFor() {
			return fmt.Errorf("ota: fetch %s: giving up after %d failed attempts in a row in %v (retries stop after %v), %d bytes kept for resuming: %w",
				st.shown, failures, spent.Round(time.Millisecond), st.f.retryFor(), st.size, err)
		}
		st.log.Warn().Err(err).Int("failures", failures).Int64("have", st.size).Dur("retry_in", delay).Msg("download interrupted")
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-st.ctx.Done():
				t.Stop()
				return fmt.Errorf("ota: fetch %s: stopped after %d bytes (kept for resuming): %w", st.shown, st.size, st.ctx.Err())
			case <-t.C:
			}
		}
	}
}

// attempt makes one request and copies its body into the part file.
func (st *fetch) attempt() error {
	actx, cancel := context.WithCancelCause(st.ctx)
	defer cancel(nil)
	stall := st.f.StallTimeout
	if stall <= 0 {
		stall = DefaultStallTimeout
	}
	timer := time.AfterFunc(stall, func() { cancel(errStalled) })
	defer timer.Stop()

	req, err := http.NewRequestWithContext(actx, http.MethodGet, st.url.String(), nil)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadURL, st.shown, err)
	}
	// Range offsets count the file's bytes, not those of a compressed
	// encoding of it; identity also stops Go adding gzip by itself.
	req.Header.Set("Accept-Encoding", "identity")
	if st.size > 0 && st.meta.validator() == "" {
		// Without a validator a resumed file could mix two versions.
		if err := st.reset(); err != nil {
			return err
		}
	}
	resuming := st.size > 0
	if resuming {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", st.size))
		req.Header.Set("If-Range", st.meta.validator())
	}
	resp, err := st.f.client().Do(req)
	if err != nil {
		return st.netErr(actx, err)
	}
	defer resp.Body.Close()
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return fmt.Errorf("ota: fetch %s: the server sent a %q-encoded body though asked for identity", st.shown, ce)
	}

	switch resp.StatusCode {
	case http.StatusOK:
		if resuming {
			st.log.Info().Int64("had", st.size).Msg("the server sent the whole file (range ignored or file changed); starting over")
		}
		if err := st.startOver(metaOf(resp, st.shown)); err != nil {
			return err
		}
		st.total = resp.ContentLength // -1 when unknown
	case http.StatusPartialContent:
		cr, err := parseContentRange(resp.Header.Get("Content-Range"))
		switch {
		case err != nil:
			return st.restart(fmt.Errorf("ota: fetch %s: 206 response: %w", st.shown, err))
		case cr.First != st.size:
			return st.restart(fmt.Errorf("ota: fetch %s: asked for bytes from %d, the server sent from %d", st.shown, st.size, cr.First))
		case st.changed(resp):
			return st.restart(fmt.Errorf("ota: fetch %s: the file changed at the server (validator %s, was %s)",
				st.shown, metaOf(resp, st.shown).validator(), st.meta.validator()))
		}
		st.total = cr.Complete
		if st.total < 0 && resp.ContentLength >= 0 {
			st.total = st.size + resp.ContentLength
		}
	case http.StatusRequestedRangeNotSatisfiable:
		return st.unsatisfiable(resp)
	default:
		return st.statusErr(resp)
	}
	if err := st.checkTotal(); err != nil {
		return err
	}
	return st.copyBody(actx, resp.Body, timer, stall)
}

// copyBody appends body to the part file, enforcing the limits before
// each write.
func (st *fetch) copyBody(actx context.Context, body io.Reader, timer *time.Timer, stall time.Duration) error {
	for {
		n, rerr := body.Read(st.buf)
		if n > 0 {
			timer.Reset(stall)
			if err := st.room(int64(n)); err != nil {
				return err
			}
			if st.total >= 0 && st.size+int64(n) > st.total {
				return st.restart(fmt.Errorf("ota: fetch %s: the server sent more than the %d bytes it announced", st.shown, st.total))
			}
			if _, err := st.file.WriteAt(st.buf[:n], st.size); err != nil {
				return st.writeErr(err)
			}
			st.size += int64(n)
			st.report(false)
			if err := st.consult(); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return st.netErr(actx, rerr)
		}
	}
	if st.total >= 0 && st.size < st.total {
		// A close-delimited body cut short; a server sending its range in pieces.
		return &retryable{err: fmt.Errorf("ota: fetch %s: the response ended at %d of %d bytes: %w", st.shown, st.size, st.total, io.ErrUnexpectedEOF)}
	}
	return nil
}

// unsatisfiable handles 416: the part may already hold the whole file (a
// crash just before the rename), or be longer than the server's file.
func (st *fetch) unsatisfiable(resp *http.Response) error {
	cr, err := parseContentRange(resp.Header.Get("Content-Range"))
	if err == nil && cr.First < 0 && cr.Complete == st.size && !st.changed(resp) {
		st.log.Info().Int64("have", st.size).Msg("the partial download is already complete")
		st.total = st.size
		return st.checkTotal()
	}
	what := "no usable Content-Range"
	if err == nil {
		what = fmt.Sprintf("the server's file has %d bytes", cr.Complete)
	}
	return st.restart(fmt.Errorf("ota: fetch %s: 416 for a partial download of %d bytes, %s", st.shown, st.size, what))
}

func (st *fetch) statusErr(resp *http.Response) error {
	err := fmt.Errorf("ota: fetch %s: %w: %s", st.shown, ErrHTTP, resp.Status)
	switch c := resp.StatusCode; {
	case c >= 500, c == http.StatusRequestTimeout, c == http.StatusTooManyRequests:
		return &retryable{err: err, after: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
	return err
}

// changed tells whether resp carries a validator other than the saved one.
func (st *fetch) changed(resp *http.Response) bool {
	m := metaOf(resp, st.shown)
	if st.meta.ETag != "" && m.ETag != "" {
		return m.ETag != st.meta.ETag
	}
	if st.meta.ETag == "" && st.meta.LastModified != "" && m.LastModified != "" {
		return m.LastModified != st.meta.LastModified
	}
	return false
}

// metaOf takes the validator to resume with from a response. A weak ETag
// cannot be used in If-Range, and a Last-Modified only when at least a
// second older than the response's Date (RFC 9110 8.8.2.2): otherwise the
// file may have changed again within that second.
func metaOf(resp *http.Response, shown string) partMeta {
	m := partMeta{URL: shown}
	if et := resp.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		m.ETag = et
		return m
	}
	lm, err1 := http.ParseTime(resp.Header.Get("Last-Modified"))
	date, err2 := http.ParseTime(resp.Header.Get("Date"))
	if err1 == nil && err2 == nil && date.Sub(lm) >= time.Second {
		m.LastModified = resp.Header.Get("Last-Modified")
	}
	return m
}

// startOver empties the part for a response that carries the whole file.
func (st *fetch) startOver(m partMeta) error {
	if err := st.file.Truncate(0); err != nil {
		return st.writeErr(err)
	}
	st.size, st.lastDone = 0, 0
	// The old limit came from the old head.
	st.known, st.max, st.total = false, 0, -1
	st.meta = m
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("ota: fetch %s: %w", st.shown, err)
	}
	if err := os.WriteFile(st.metaPath, b, 0o644); err != nil {
		return st.writeErr(err)
	}
	if m.validator() == "" {
		st.log.Info().Msg("the server gives no validator (strong ETag, Last-Modified): a dropped connection restarts from zero")
	}
	return nil
}

// reset empties the part and forgets its validator: the next request asks
// for the whole file.
func (st *fetch) reset() error { return st.startOver(partMeta{URL: st.shown}) }

// restart resets the part and makes err a retryable one without back-off.
func (st *fetch) restart(err error) error {
	if rerr := st.reset(); rerr != nil {
		return rerr
	}
	return &retryable{err: err, now: true}
}

// consult asks the Limit, until it can tell.
func (st *fetch) consult() error {
	if st.known || st.limit == nil {
		return nil
	}
	max, ok, err := st.limit(st.file)
	if err != nil {
		st.discard()
		return fmt.Errorf("ota: fetch %s: refused after %d bytes (partial file removed): %w", st.shown, st.size, err)
	}
	if !ok {
		return nil
	}
	st.known, st.max = true, max
	st.log.Debug().Int64("max", max).Int64("have", st.size).Msg("size limit known")
	if err := st.room(0); err != nil {
		return err
	}
	return st.checkTotal()
}

// room fails with ErrTooLarge if n more bytes would exceed the limit.
func (st *fetch) room(n int64) error {
	end := st.size + n
	switch {
	case st.known && end > st.max:
		return st.tooLarge(fmt.Errorf("%w: more than the limit of %d bytes", ErrTooLarge, st.max))
	case !st.known && end > st.maxUnknown:
		if st.limit == nil {
			return st.tooLarge(fmt.Errorf("%w: more than the limit of %d bytes", ErrTooLarge, st.maxUnknown))
		}
		return st.tooLarge(fmt.Errorf("%w: the first %d bytes did not establish a size limit", ErrTooLarge, st.maxUnknown))
	}
	return nil
}

// checkTotal fails at once when the announced size exceeds a known limit.
func (st *fetch) checkTotal() error {
	if st.total < 0 {
		return nil
	}
	switch {
	case st.known && st.total > st.max:
		return st.tooLarge(fmt.Errorf("%w: the server announces %d bytes, more than the limit of %d", ErrTooLarge, st.total, st.max))
	case !st.known && st.limit == nil && st.total > st.maxUnknown:
		return st.tooLarge(fmt.Errorf("%w: the server announces %d bytes, more than the limit of %d", ErrTooLarge, st.total, st.maxUnknown))
	}
	return nil
}

func (st *fetch) tooLarge(err error) error {
	st.discard()
	return fmt.Errorf("ota: fetch %s: %w (partial file removed)", st.shown, err)
}

func (st *fetch) report(final bool) {
	if st.progress == nil {
		return
	}
	now := time.Now()
	if !final && st.size-st.lastDone < progressBytes && now.Sub(st.lastTime) < progressEvery {
		return
	}
	st.lastDone, st.lastTime = st.size, now
	st.progress(Progress{Done: st.size, Total: st.total})
}

// finish makes the part durable, hashes it and moves it into place.
func (st *fetch) finish() (string, error) {
	st.total = st.size
	st.report(true)
	if err := st.file.Sync(); err != nil {
		return "", st.writeErr(err)
	}
	// Re-read from the file rather than hashing as it arrived: the hash
	// covers what is on disk, across resumes and restarts.
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(st.file, 0, st.size)); err != nil {
		return "", st.localErr(err)
	}
	if err := os.Rename(st.part, st.dest); err != nil {
		return "", st.localErr(err)
	}
	if err := syncParentDir(st.dest); err != nil {
		return "", st.writeErr(err)
	}
	st.close()
	if err := os.Remove(st.metaPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		st.log.Warn().Err(err).Msg("cannot remove the download's meta file")
	}
	sum := hex.EncodeToString(h.Sum(nil))
	st.log.Info().Int64("bytes", st.size).Str("sha256", sum).Msg("downloaded")
	return sum, nil
}

// syncParentDir makes a rename in path's directory durable.
func syncParentDir(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (st *fetch) close() {
	if st.file != nil {
		st.file.Close() // also releases the lock
		st.file = nil
	}
}

// discard removes the part and its meta: for a download that cannot
// become a good file.
func (st *fetch) discard() {
	st.close()
	for _, p := range []string{st.part, st.metaPath} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			st.log.Warn().Err(err).Str("path", p).Msg("cannot remove")
		}
	}
}

func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EFBIG) || errors.Is(err, syscall.EDQUOT)
}

// writeErr turns a failed write into ErrDiskFull (removing the part: a
// later attempt would fail the same way) or a local error (keeping it).
// err, an *os.PathError, names the operation and the file.
func (st *fetch) writeErr(err error) error {
	if isDiskFull(err) {
		st.discard()
		return fmt.Errorf("ota: fetch %s: %w after %d bytes (partial download removed): %w", st.shown, ErrDiskFull, st.size, err)
	}
	return st.localErr(err)
}

func (st *fetch) localErr(err error) error {
	return fmt.Errorf("ota: fetch %s: %w", st.shown, err)
}

// netErr classifies a request or body error. It leaves out url.Error's
// copy of the URL, which may hold a token in its query.
func (st *fetch) netErr(actx context.Context, err error) error {
	if st.ctx.Err() != nil {
		return st.ctx.Err()
	}
	if context.Cause(actx) == errStalled {
		return &retryable{err: fmt.Errorf("ota: fetch %s: no data for %s after %d bytes: %w", st.shown, st.f.stallTimeout(), st.size, errStalled)}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	err = fmt.Errorf("ota: fetch %s: %w", st.shown, err)
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) || errors.Is(err, errBadRedirect) {
		return err // the same next time
	}
	return &retryable{err: err}
}

func (f *Fetcher) stallTimeout() time.Duration {
	if f.StallTimeout > 0 {
		return f.StallTimeout
	}
	return DefaultStallTimeout
}

func (f *Fetcher) retryFor() time.Duration {
	if f.RetryFor > 0 {
		return f.RetryFor
	}
	return DefaultRetryFor
}

func (f *Fetcher) maxBackoff() time.Duration {
	if f.MaxBackoff > 0 {
		return f.MaxBackoff
	}
	return DefaultMaxBackoff
}

// backoff is the wait before the attempt after the nth failure in a row.
func (f *Fetcher) backoff(n int) time.Duration {
	lo, hi := f.MinBackoff, f.maxBackoff()
	if lo <= 0 {
		lo = DefaultMinBackoff
	}
	d := lo << min(n-1, 30)
	if d > hi || d <= 0 {
		d = hi
	}
	// Half fixed, half random: devices that lost the server together do
	// not all come back at the same instant.
	return d/2 + rand.N(d/2+1)
}

func (f *Fetcher) client() *http.Client {
	if f.Client != nil {
		return f.Client
	}
	return defaultClient()
}

var defaultClient = sync.OnceValue(func() *http.Client {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   15 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			ExpectContinueTimeout: time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConns:          4,
		},
		CheckRedirect: checkRedirect,
	}
})

var errBadRedirect = errors.New("refused redirect")

func checkRedirect(req *http.Request, via []*http.Request) error {
	switch {
	case len(via) >= 10:
		return fmt.Errorf("%w: more than 10 redirects", errBadRedirect)
	case req.URL.Scheme != "http" && req.URL.Scheme != "https":
		return fmt.Errorf("%w to %s: only http and https", errBadRedirect, redactURL(req.URL))
	case via[0].URL.Scheme == "https" && req.URL.Scheme == "http":
		return fmt.Errorf("%w from https to %s", errBadRedirect, redactURL(req.URL))
	}
	return nil
}

func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may hold credentials
		}
		return nil, fmt.Errorf("ota: fetch: %w: %v", ErrBadURL, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("ota: fetch %s: %w: scheme %q, want http or https", redactURL(u), ErrBadURL, u.Scheme)
	case u.Host == "":
		return nil, fmt.Errorf("ota: fetch %s: %w: no host", redactURL(u), ErrBadURL)
	}
	return u, nil
}

// redactURL is u without userinfo, query and fragment, which may carry
// credentials.
func redactURL(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath, Opaque: u.Opaque}).String()
}

// contentRange is a parsed Content-Range header of unit bytes.
type contentRange struct {
	First, Last int64 // -1 for an unsatisfied range ("*/complete")
	Complete    int64 // -1 when "*"
}

var errContentRange = errors.New("bad Content-Range")

// parseContentRange parses "bytes first-last/complete", "bytes
// first-last/*" and "bytes */complete" (RFC 9110 14.4).
func parseContentRange(s string) (contentRange, error) {
	bad := func(why string) (contentRange, error) {
		return contentRange{}, fmt.Errorf("%w %q: %s", errContentRange, s, why)
	}
	unit, rest, ok := strings.Cut(s, " ")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return bad("want unit bytes")
	}
	rng, complete, ok := strings.Cut(strings.TrimLeft(rest, " "), "/")
	if !ok {
		return bad("no /")
	}
	cr := contentRange{First: -1, Last: -1, Complete: -1}
	if complete != "*" {
		n, err := parseDigits(complete)
		if err != nil {
			return bad("complete length: " + err.Error())
		}
		cr.Complete = n
	}
	if rng == "*" {
		if cr.Complete < 0 {
			return bad("neither range nor length")
		}
		return cr, nil
	}
	first, last, ok := strings.Cut(rng, "-")
	if !ok {
		return bad("no - in the range")
	}
	var err error
	if cr.First, err = parseDigits(first); err != nil {
		return bad("first byte: " + err.Error())
	}
	if cr.Last, err = parseDigits(last); err != nil {
		return bad("last byte: " + err.Error())
	}
	if cr.Last < cr.First {
		return bad("last before first")
	}
	if cr.Complete >= 0 && cr.Last >= cr.Complete {
		return bad("range beyond the complete length")
	}
	return cr, nil
}

// parseDigits accepts 1*DIGIT only: ParseInt alone would take "+1".
func parseDigits(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a number", s)
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent or bad.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := parseDigits(v); err == nil {
		return time.Duration(min(n, 86400)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
