package ota

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// fetchServer serves one file over real HTTP on localhost, with
// http.ServeContent's Range and If-Range handling unless told otherwise,
// and can misbehave per request.
type fetchServer struct {
	*httptest.Server
	mu   sync.Mutex
	body []byte
	etag string // "": Last-Modified (fetchModTime) is the only validator

	ignoreRange   bool // always 200 with the whole body
	ignoreIfRange bool // honour Range even when the validator changed
	chunked       bool // no Content-Length
	holdBody      bool // send the headers, then wait for the client to go away
	stall         bool // at a cut, wait for the client to go away instead of closing
	cuts          []int64
	statuses      []int
	before        func(i int, s *fetchServer) // called under mu as request i arrives

	requests []fetchRequest
	served   atomic.Int64 // body bytes written to the network
	gone     atomic.Bool  // a held response saw the client disconnect
}

type fetchRequest struct {
	Range, IfRange string
	Status         int
	Served         int64 // body bytes written for this request
}

var fetchModTime = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func newFetchServer(t testing.TB, body []byte, configure func(s *fetchServer)) *fetchServer {
	s := &fetchServer{body: body, etag: `"v1"`}
	if configure != nil {
		configure(s)
	}
	s.Server = httptest.NewServer(s)
	t.Cleanup(s.Close)
	return s
}

func (s *fetchServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	i := len(s.requests)
	s.requests = append(s.requests, fetchRequest{Range: r.Header.Get("Range"), IfRange: r.Header.Get("If-Range")})
	if s.before != nil {
		s.before(i, s)
	}
	body, etag := s.body, s.etag
	status, cut := 0, int64(-1)
	if i < len(s.statuses) {
		status = s.statuses[i]
	}
	if i < len(s.cuts) {
		cut = s.cuts[i]
	}
	s.mu.Unlock()

	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	cw := &fetchCutWriter{ResponseWriter: w, s: s, r: r, i: i, cut: cut}
	switch {
	case s.holdBody:
		var from int
		if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-", &from); err == nil {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(body)-1, len(body)))
			w.Header().Set("Content-Length", strconv.Itoa(len(body)-from))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusOK)
		}
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			s.gone.Store(true)
		case <-time.After(10 * time.Second):
		}
	case s.chunked:
		for off := 0; off < len(body); off += 32 << 10 {
			if _, err := cw.Write(body[off:min(off+32<<10, len(body))]); err != nil {
				return
			}
		}
	case s.ignoreRange:
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		cw.Write(body)
	default:
		if s.ignoreIfRange {
			r.Header.Del("If-Range")
		}
		http.ServeContent(cw, r, "bundle.tar", fetchModTime, bytes.NewReader(body))
	}
}

func (s *fetchServer) log() []fetchRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]fetchRequest(nil), s.requests...)
}

// fetchCutWriter counts the body bytes served and, after cut of them, drops
// the connection (or stalls) the way a flaky network does.
type fetchCutWriter struct {
	http.ResponseWriter
	s       *fetchServer
	r       *http.Request
	i       int // the request's index
	cut     int64
	written int64
}

func (c *fetchCutWriter) WriteHeader(code int) {
	c.s.mu.Lock()
	c.s.requests[c.i].Status = code
	c.s.mu.Unlock()
	c.ResponseWriter.WriteHeader(code)
}

var errFetchCut = errors.New("connection cut by the test")

func (c *fetchCutWriter) count(n int) {
	c.written += int64(n)
	c.s.served.Add(int64(n))
	c.s.mu.Lock()
	c.s.requests[c.i].Served += int64(n)
	c.s.mu.Unlock()
}

func (c *fetchCutWriter) Write(p []byte) (int, error) {
	if c.cut < 0 || c.written+int64(len(p)) <= c.cut {
		n, err := c.ResponseWriter.Write(p)
		c.count(n)
		return n, err
	}
	n, _ := c.ResponseWriter.Write(p[:c.cut-c.written])
	c.count(n)
	c.ResponseWriter.(http.Flusher).Flush()
	if c.s.stall {
		<-c.r.Context().Done()
		return n, errFetchCut
	}
	conn, _, err := http.NewResponseController(c.ResponseWriter).Hijack()
	if err != nil {
		panic(err)
	}
	conn.Close()
	return n, errFetchCut
}

func fetchBody(n int, seed uint64) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

func fetchSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func newTestFetcher(t testing.TB) *Fetcher {
	return &Fetcher{Log: zerolog.New(zerolog.NewTestWriter(t)), MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}
}

// fetchHeadLimit is a Limit that can tell once the file holds `head` bytes,
// like a caller reading the signed manifest at the start of a bundle.
func fetchHeadLimit(head, max int64) Limit {
	return func(f *os.File) (int64, bool, error) {
		fi, err := f.Stat()
		if err != nil {
			return 0, false, err
		}
		if fi.Size() < head {
			return 0, false, nil
		}
		// Read it, as a real caller would, to check Fetch does not depend
		// on the file offset.
		if _, err := f.Seek(0, 0); err != nil {
			return 0, false, err
		}
		if _, err := f.Read(make([]byte, head)); err != nil {
			return 0, false, err
		}
		return max, true, nil
	}
}

// fetchProgress records progress calls.
type fetchProgress struct {
	mu    sync.Mutex
	calls []Progress
}

func (p *fetchProgress) add(pr Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, pr)
}

func (p *fetchProgress) all() []Progress {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Progress(nil), p.calls...)
}

func (p *fetchProgress) maxDone() int64 {
	var m int64
	for _, c := range p.all() {
		m = max(m, c.Done)
	}
	return m
}

// checkFetched checks dest holds body and no partial files remain.
func checkFetched(t *testing.T, dest string, body []byte, sum string) {
	t.Helper()
	if sum != fetchSHA(body) {
		t.Errorf("sha256 %s, want %s", sum, fetchSHA(body))
	}
	got, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) {
		t.Errorf("dest has %d bytes, differing from the %d served", len(got), len(body))
	}
	checkNoFetchPartial(t, dest)
}

func checkNoFetchPartial(t *testing.T, dest string) {
	t.Helper()
	for _, p := range []string{dest + ".part", dest + ".part.meta"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (%v)", filepath.Base(p), err)
		}
	}
}

func checkFetchRanges(t *testing.T, got []fetchRequest, want []string) {
	t.Helper()
	var ranges []string
	for _, r := range got {
		ranges = append(ranges, r.Range)
	}
	if fmt.Sprint(ranges) != fmt.Sprint(want) {
		t.Errorf("Range headers %q, want %q", ranges, want)
	}
}

func TestFetchComplete(t *testing.T) {
	body := fetchBody(3<<20+123, 1)
	srv := newFetchServer(t, body, nil)
	dest := filepath.Join(t.TempDir(), "sub", "bundle.tar")
	var pl fetchProgress
	head := fetchHeadLimit(4096, int64(len(body)))
	limit := func(f *os.File) (int64, bool, error) {
		if fi, _ := f.Stat(); fi.Size() == 0 {
			t.Error("Limit called with an empty file")
		}
		return head(f)
	}
	sum, err := newTestFetcher(t).Fetch(context.Background(), srv.URL+"/b.tar", dest, limit, 0, pl.add)
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, dest, body, sum)
	checkFetchRanges(t, srv.log(), []string{""})
	calls := pl.all()
	if len(calls) < 2 {
		t.Fatalf("progress called %d times", len(calls))
	}
	for i, c := range calls {
		if c.Total != int64(len(body)) || (i > 0 && c.Done < calls[i-1].Done) {
			t.Fatalf("progress %d: %+v after %+v", i, c, calls[max(i-1, 0)])
		}
	}
	if last := calls[len(calls)-1]; last.Done != int64(len(body)) {
		t.Errorf("last progress %+v", last)
	}
	// Throttled: far fewer calls than 64 KiB reads.
	if len(calls) > len(body)/(64<<10) {
		t.Errorf("%d progress calls for %d bytes", len(calls), len(body))
	}
}

func TestFetchResumesAfterDrops(t *testing.T) {
	for _, tc := range []struct{ name, etag, ifRange string }{
		{"ETag", `"v1"`, `"v1"`},
		{"Last-Modified", "", fetchModTime.Format(http.TimeFormat)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := fetchBody(2<<20, 2)
			srv := newFetchServer(t, body, func(s *fetchServer) {
				s.etag = tc.etag
				s.cuts = []int64{300_000, 500_000, 700_000}
			})
			dest := filepath.Join(t.TempDir(), "bundle.tar")
			var pl fetchProgress
			sum, err := newTestFetcher(t).Fetch(context.Background(), srv.URL, dest, fetchHeadLimit(4096, int64(len(body))), 0, pl.add)
			if err != nil {
				t.Fatal(err)
			}
			checkFetched(t, dest, body, sum)
			reqs := srv.log()
			checkFetchRanges(t, reqs, []string{"", "bytes=300000-", "bytes=800000-", "bytes=1500000-"})
			for _, r := range reqs[1:] {
				if r.IfRange != tc.ifRange {
					t.Errorf("If-Range %q, want %q", r.IfRange, tc.ifRange)
				}
			}
			if got := srv.served.Load(); got != int64(len(body)) {
				t.Errorf("served %d bytes in all, want each byte once: %d", got, len(body))
			}
		})
	}
}

func TestFetchResumeAcrossCalls(t *testing.T) {
	body := fetchBody(8<<20, 3)
	srv := newFetchServer(t, body, nil)
	dest := filepath.Join(t.TempDir(), "bundle.tar")
	f := newTestFetcher(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := f.Fetch(ctx, srv.URL, dest, nil, 16<<20, func(p Progress) {
		if p.Done >= 1<<20 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Fetch: %v", err)
	}
	fi, err := os.Stat(dest + ".part")
	if err != nil {
		t.Fatalf("the partial file was not kept: %v", err)
	}
	have := fi.Size()
	if have < 1<<20 || have >= int64(len(body)) {
		t.Fatalf("partial file of %d bytes", have)
	}
	if _, err := os.Stat(dest + ".part.meta"); err != nil {
		t.Fatal(err)
	}

	sum, err := f.Fetch(context.Background(), srv.URL, dest, nil, 16<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, dest, body, sum)
	reqs := srv.log()
	checkFetchRanges(t, reqs, []string{"", fmt.Sprintf("bytes=%d-", have)})
	if second := reqs[1].Served; second != int64(len(body))-have {
		t.Errorf("second call served %d bytes, want the missing %d", second, int64(len(body))-have)
	}
}

func TestFetchServerIgnoresRange(t *testing.T) {
	body := fetchBody(2<<20, 4)
	srv := newFetchServer(t, body, func(s *fetchServer) {
		s.ignoreRange = true
		s.cuts = []int64{1 << 20}
	})
	dest := filepath.Join(t.TempDir(), "bundle.tar")
	sum, err := newTestFetcher(t).Fetch(context.Background(), srv.URL, dest, nil, 16<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, dest, body, sum)
	// The resume was asked for, answered with the whole file, and the
	// whole file was taken from zero.
	checkFetchRanges(t, srv.log(), []string{"", "bytes=1048576-"})
	if got := srv.served.Load(); got != 1<<20+int64(len(body)) {
		t.Errorf("served %d", got)
	}
}

func TestFetchValidatorChanged(t *testing.T) {
	oldBody, newBody := fetchBody(2<<20, 5), fetchBody(2<<20+7, 6)
	swap := func(i int, s *fetchServer) {
		if i == 1 {
			s.body, s.etag = newBody, `"v2"`
		}
	}
	t.Run("If-Range honoured", func(t *testing.T) {
		srv := newFetchServer(t, oldBody, func(s *fetchServer) { s.cuts, s.before = []int64{1 << 20}, swap })
		dest := filepath.Join(t.TempDir(), "bundle.tar")
		sum, err := newTestFetcher(t).Fetch(context.Background(), srv.URL, dest, nil, 16<<20, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkFetched(t, dest, newBody, sum)
		reqs := srv.log()
		checkFetchRanges(t, reqs, []string{"", "bytes=1048576-"})
		if reqs[1].IfRange != `"v1"` || reqs[1].Status != http.StatusOK {
			t.Errorf("second request %+v, want If-Range \"v1\" answered with 200", reqs[1])
		}
	})
	t.Run("If-Range ignored", func(t *testing.T) {
		// The server sends the range of the new file: Fetch must see the
		// new ETag and start over rather than splice two files.
		srv := newFetchServer(t, oldBody, func(s *fetchServer) {
			s.cuts, s.before, s.ignoreIfRange = []int64{1 << 20}, swap, true
		})
		dest := filepath.Join(t.TempDir(), "bundle.tar")
		sum, err := newTestFetcher(t).Fetch(context.Background(), srv.URL, dest, nil, 16<<20, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkFetched(t, dest, newBody, sum)
		reqs := srv.log()
		checkFetchRanges(t, reqs, []string{"", "bytes=1048576-", ""})
		if reqs[1].Status != http.StatusPartialContent {
			t.Errorf("second request %+v, want a 206 of the new file", reqs[1])
		}
	})
}

func TestFetchLimits(t *testing.T) {
	const bodySize = 32 << 20
	body := fetchBody(bodySize, 7)
	for _, tc := range []struct {
		name       string
		configure  func(s *fetchServer)
		limit      Limit
		maxUnknown int64
		msg        string
	}{
		{"limit exceeded mid-stream", func(s *fetchServer) { s.chunked = true }, fetchHeadLimit(64<<10, 1<<20), 0, "more than the limit of 1048576 bytes"},
		{"no limit within maxUnknown", func(s *fetchServer) { s.chunked = true }, fetchHeadLimit(1<<40, 1<<40), 1 << 20, "the first 1048576 bytes did not establish a size limit"},
		{"nil limit, maxUnknown exceeded", func(s *fetchServer) { s.chunked = true }, nil, 1 << 20, "more than the limit of 1048576 bytes"},
		{"Content-Length over a limit learned mid-stream", nil, fetchHeadLimit(64<<10, 1<<20), 0, "the server announces 33554432 bytes, more than the limit of 1048576"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFetchServer(t, body, tc.configure)
			dest := filepath.Join(t.TempDir(), "bundle.tar")
			var pl fetchProgress
			_, err := newTestFetcher(t).Fetch(context.Background(), srv.URL, dest, tc.limit, tc.maxUnknown, pl.add)
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want ErrTooLarge: %s", err, tc.msg)
			}
			t.Log(err)
			if d := pl.maxDone(); d > 1<<20 {
				t.Errorf("the file reached %d bytes, over the limit", d)
			}
			// Socket buffers take some bytes the client never reads; far
			// from the whole body.
			if got := srv.served.Load(); got > bodySize/2 {
				t.Errorf("the server sent %d of %d bytes", got, bodySize)
			}
			if n := len(srv.log()); n != 1 {
				t.Errorf("%d requests: ErrTooLarge must not be retried", n)
			}
			checkNoFetchPartial(t, dest)
		})
	}
}

// A resumed download whose head already gives the limit: a server that
// announces more fails at once, without a byte of the body.
func TestFetchContentLengthOverLimit(t *testing.T) {
	body := fetchBody(32<<20, 8)
	srv := newFetchServer(t, body, func(s *fetchServer) { s.holdBody = true })
	dest := filepath.Join(t.TempDir(), "bundle.tar")
	if err := os.WriteFile(dest+".part", body[:64<<10], 0o644); err != nil {
		t.Fatal(err)
	}
	writeFetchMeta(t, dest, partMeta{URL: srv.URL, ETag: `"v1"`})
	var pl fetchProgress
	_, err := newTestFetcher(t).Fetch(context.Background(), srv.URL, dest, fetchHeadLimit(64<<10, 1<<20), 0, pl.add)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "announces 33554432 bytes") {
		t.Fatalf("got %v, want ErrTooLarge for the Content-Range", err)
	}
	if d := pl.maxDone(); d != 0 {
		t.Errorf("downloaded up to %d bytes", d)
	}
	checkFetchRanges(t, srv.log(), []string{"bytes=65536-"})
	// The server holds the body back until the client hangs up: Fetch
	// failed on the headers alone.
	deadline := time.Now().Add(60 * time.Second) // generous: only a hang fails
	for !srv.gone.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !srv.gone.Load() {
		t.Error("the client did not close the connection")
	}
	checkNoFetchPartial(t, dest)
}

func TestFetchLimitError(t *testing.T) {
	errUntrusted := errors.New("signed by an untrusted key")
	srv := newFetchServer(t, fetchBody(4<<20, 9), nil)
	dest := filepath.Join(t.TempDir(), "bundle.tar")
	calls := 0
	limit := func(f *os.File) (int64, bool, error) {
		calls++
		fi, _ := f.Stat()
		if fi.Size() >= 64<<10 {
			return 0, false, errUntrusted
		}
		return 0, false, nil
	}
	_, err := newTestFetcher(t).Fetch(context.Background(), srv.URL, dest, limit, 0, nil)
	if !errors.Is(err, errUntrusted) {
		t.Fatalf("got %v", err)
	}
	if n := len(srv.log()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	if calls == 0 {
		t.Error("the limit was not consulted")
	}
	checkNoFetchPartial(t, dest)
}

func TestFetchStatus(t *testing.T) {
	body := fetchBody(100_000, 10)
	t.Run("404 not retried", func(t *testing.T) {
		srv := newFetchServer(t, body, func(s *fetchServer) { s.statuses = []int{404, 404, 404} })
		_, err := newTestFetcher(t).Fetch(context.Background(), srv.URL, filepath.Join(t.TempDir(), "b"), nil, 0, nil)
		if !errors.Is(err, ErrHTTP) || !strings.Contains(err.Error(), "404 Not Found") {
			t.Fatalf("got %v", err)
		}
		if n := len(srv.log()); n != 1 {
			t.Errorf("%d requests", n)
		}
	})
	t.Run("503 retried", func(t *testing.T) {
		srv := newFetchServer(t, body, func(s *fetchServer) { s.statuses = []int{503, 503} })
		dest := filepath.Join(t.TempDir(), "b")
		sum, err := newTestFetcher(t).Fetch(context.Background(), srv.URL, dest, nil, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkFetched(t, dest, body, sum)
		if n := len(srv.log()); n != 3 {
			t.Errorf("%d requests", n)
		}
	})
	t.Run("503 gives up after Retries", func(t *testing.T) {
		srv := newFetchServer(t, body, func(s *fetchServer) { s.statuses = []int{503, 503, 503, 503, 503} })
		f := newTestFetcher(t)
		f.Retries = 2
		_, err := f.Fetch(context.Background(), srv.URL, filepath.Join(t.TempDir(), "b"), nil, 0, nil)
		if !errors.Is(err, ErrHTTP) || !strings.Contains(err.Error(), "503 Service Unavailable") {
			t.Fatalf("got %v", err)
		}
		if n := len(srv.log()); n != 3 {
			t.Errorf("%d requests, want 1 + 2 retries", n)
		}
	})
}

func writeFetchMeta(t *testing.T, dest string, m partMeta) {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dest+".part.meta", b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A part left by an earlier Fetch (or a crash) is resumed only when it is
// safe; 416 tells a complete part from one longer than the server's file.
func TestFetchExistingPartial(t *testing.T) {
	body := fetchBody(500_000, 11)
	for _, tc := range []struct {
		name    string
		part    []byte
		meta    *partMeta // URL "" means the server's
		ranges  []string
		status0 int
	}{
		{"resumed", body[:1000], &partMeta{ETag: `"v1"`}, []string{"bytes=1000-"}, http.StatusPartialContent},
		{"already complete", body, &partMeta{ETag: `"v1"`}, []string{"bytes=500000-"}, http.StatusRequestedRangeNotSatisfiable},
		{"longer than the file", append(bytes.Clone(body), "extra"...), &partMeta{ETag: `"v1"`}, []string{"bytes=500005-", ""}, http.StatusRequestedRangeNotSatisfiable},
		{"stale validator", body[:1000], &partMeta{ETag: `"v0"`}, []string{"bytes=1000-"}, http.StatusOK},
		{"of another URL", body[:1000], &partMeta{URL: "http://elsewhere/b", ETag: `"v1"`}, []string{""}, http.StatusOK},
		{"without meta", body[:1000], nil, []string{""}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFetchServer(t, body, nil)
			dest := filepath.Join(t.TempDir(), "bundle.tar")
			if err := os.WriteFile(dest+".part", tc.part, 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.meta != nil {
				m := *tc.meta
				if m.URL == "" {
					m.URL = srv.URL + "/b"
				}
				writeFetchMeta(t, dest, m)
			}
			sum, err := newTestFetcher(t).Fetch(context.Background(), srv.URL+"/b", dest, nil, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkFetched(t, dest, body, sum)
			reqs := srv.log()
			checkFetchRanges(t, reqs, tc.ranges)
			if reqs[0].Status != tc.status0 {
				t.Errorf("first response %d, want %d", reqs[0].Status, tc.status0)
			}
		})
	}
}

func TestFetchStall(t *testing.T) {
	body := fetchBody(1<<20, 12)
	srv := newFetchServer(t, body, func(s *fetchServer) { s.stall, s.cuts = true, []int64{100_000} })
	dest := filepath.Join(t.TempDir(), "bundle.tar")
	f := newTestFetcher(t)
	f.StallTimeout = 300 * time.Millisecond
	sum, err := f.Fetch(context.Background(), srv.URL, dest, nil, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, dest, body, sum)
	checkFetchRanges(t, srv.log(), []string{"", "bytes=100000-"})
}

func TestFetchBadURL(t *testing.T) {
	dir := t.TempDir()
	for _, u := range []string{"file:///etc/passwd", "ftp://example.com/b.tar", "http:///no-host", "://x", "bundle.tar"} {
		_, err := newTestFetcher(t).Fetch(context.Background(), u, filepath.Join(dir, "b"), nil, 0, nil)
		if !errors.Is(err, ErrBadURL) {
			t.Errorf("%s: got %v, want ErrBadURL", u, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files created: %v", entries)
	}
}

func TestFetchKeepsCredentialsOutOfLogs(t *testing.T) {
	srv := newFetchServer(t, nil, func(s *fetchServer) { s.statuses = []int{503, 404} })
	var logs bytes.Buffer
	f := &Fetcher{Log: zerolog.New(&logs), MinBackoff: time.Millisecond}
	withSecrets := strings.Replace(srv.URL, "http://", "http://user:hunter2pw@", 1) + "/b.tar?token=hunter2tok"
	_, err := f.Fetch(context.Background(), withSecrets, filepath.Join(t.TempDir(), "b"), nil, 0, nil)
	if !errors.Is(err, ErrHTTP) {
		t.Fatalf("got %v", err)
	}

	// A network error: url.Error would print the query.
	ln, err2 := net.Listen("tcp", "127.0.0.1:0")
	if err2 != nil {
		t.Fatal(err2)
	}
	closed := "http://u:hunter2pw@" + ln.Addr().String() + "/b?token=hunter2tok"
	ln.Close()
	f.Retries = 1
	_, err2 = f.Fetch(context.Background(), closed, filepath.Join(t.TempDir(), "b"), nil, 0, nil)
	if err2 == nil || !strings.Contains(err2.Error(), "connection refused") {
		t.Fatalf("got %v", err2)
	}
	for _, text := range []string{err.Error(), err2.Error(), logs.String()} {
		if strings.Contains(text, "hunter2") {
			t.Errorf("credentials leaked: %s", text)
		}
	}
	if !strings.Contains(logs.String(), "/b.tar") {
		t.Errorf("the log does not name the URL: %s", logs.String())
	}
}

func TestFetchSameDestTwice(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "bundle.tar")
	part, err := os.OpenFile(dest+".part", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer part.Close()
	if err := syscall.Flock(int(part.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	srv := newFetchServer(t, fetchBody(1000, 13), nil)
	_, err = newTestFetcher(t).Fetch(context.Background(), srv.URL, dest, nil, 0, nil)
	if err == nil || !strings.Contains(err.Error(), "in progress") {
		t.Fatalf("got %v", err)
	}
	if n := len(srv.log()); n != 0 {
		t.Errorf("%d requests", n)
	}
}

// Disk full without privileges: a child process whose RLIMIT_FSIZE is 1
// MiB, with SIGXFSZ ignored so that the write fails with EFBIG instead of
// killing the process.
func TestFetchDiskFull(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperFetchDiskFull$", "-test.v")
	cmd.Env = append(os.Environ(), "OTA_FETCH_DISKFULL_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	_, result, ok := strings.Cut(string(out), "RESULT ")
	if !ok {
		t.Fatalf("child reported nothing:\n%s", out)
	}
	result, _, _ = strings.Cut(result, "\n")
	if !strings.HasPrefix(result, "disk-full ") || !strings.Contains(result, "disk full") || !strings.Contains(result, "file too large") {
		t.Errorf("child: %s", result)
	}
	t.Log(result)
	checkNoFetchPartial(t, filepath.Join(dir, "bundle.tar"))
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left in the directory: %v", entries)
	}
}

func TestHelperFetchDiskFull(t *testing.T) {
	dir := os.Getenv("OTA_FETCH_DISKFULL_DIR")
	if dir == "" {
		t.Skip("run by TestFetchDiskFull")
	}
	srv := newFetchServer(t, fetchBody(4<<20, 14), nil)
	signal.Ignore(syscall.SIGXFSZ)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: 1 << 20, Max: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	_, err := newTestFetcher(t).Fetch(context.Background(), srv.URL, filepath.Join(dir, "bundle.tar"), nil, 0, nil)
	verdict := "not-disk-full"
	if errors.Is(err, ErrDiskFull) && errors.Is(err, syscall.EFBIG) {
		verdict = "disk-full"
	}
	fmt.Printf("RESULT %s %v\n", verdict, err)
}

// The same with a real full filesystem; mounting needs root.
func TestFetchDiskFullTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: mounting a 1 MiB tmpfs needs root; TestFetchDiskFull covers disk full without privileges")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs (as root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	srv := newFetchServer(t, fetchBody(4<<20, 15), nil)
	dest := filepath.Join(dir, "bundle.tar")
	_, err := newTestFetcher(t).Fetch(context.Background(), srv.URL, dest, nil, 0, nil)
	if !errors.Is(err, ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("got %v, want ErrDiskFull (ENOSPC)", err)
	}
	t.Log(err)
	if n := len(srv.log()); n != 1 {
		t.Errorf("%d requests: disk full must not be retried", n)
	}
	checkNoFetchPartial(t, dest)
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"5":                             5 * time.Second,
		"-5":                            0,
		"+5":                            0,
		"99999999999999999999":          0,
		"Wed, 01 Jan 2025 00:00:30 GMT": 30 * time.Second,
		"Tue, 31 Dec 2024 00:00:30 GMT": 0,
		"soon":                          0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want contentRange
		ok   bool
	}{
		{"bytes 0-99/100", contentRange{0, 99, 100}, true},
		{"bytes 100-199/*", contentRange{100, 199, -1}, true},
		{"bytes */500", contentRange{-1, -1, 500}, true},
		{"BYTES 5-5/6", contentRange{5, 5, 6}, true},
		{"bytes 0-100/100", contentRange{}, false},
		{"bytes 10-9/100", contentRange{}, false},
		{"bytes */*", contentRange{}, false},
		{"bytes +1-2/3", contentRange{}, false},
		{"bytes 1-2", contentRange{}, false},
		{"items 0-1/2", contentRange{}, false},
		{"bytes 0-99999999999999999999/*", contentRange{}, false},
		{"", contentRange{}, false},
	} {
		got, err := parseContentRange(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("parseContentRange(%q) = %+v, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, errContentRange) {
			t.Errorf("%q: %v does not wrap errContentRange", tc.in, err)
		}
	}
}

func TestBackoff(t *testing.T) {
	f := &Fetcher{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 3: 400 * time.Millisecond, 5: time.Second, 100: time.Second} {
		for range 20 {
			if d := f.backoff(n); d < want/2 || d > want {
				t.Errorf("backoff(%d) = %v, want in [%v, %v]", n, d, want/2, want)
			}
		}
	}
}

// The seed corpus is in testdata/fuzz/FuzzParseContentRange; run with
//
//	go test -run '^$' -fuzz FuzzParseContentRange ./ota
func FuzzParseContentRange(f *testing.F) {
	f.Add("bytes 0-99/100")
	f.Add("bytes */100")
	f.Fuzz(func(t *testing.T, s string) {
		cr, err := parseContentRange(s)
		if err != nil {
			if !errors.Is(err, errContentRange) {
				t.Fatalf("%q: %v does not wrap errContentRange", s, err)
			}
			return
		}
		var again string
		switch {
		case cr.First < 0:
			if cr.Last != -1 || cr.Complete < 0 {
				t.Fatalf("%q: unsatisfied range %+v", s, cr)
			}
			again = fmt.Sprintf("bytes */%d", cr.Complete)
		case cr.Last < cr.First, cr.Complete >= 0 && cr.Last >= cr.Complete, cr.Complete < -1:
			t.Fatalf("%q: inconsistent %+v", s, cr)
		case cr.Complete < 0:
			again = fmt.Sprintf("bytes %d-%d/*", cr.First, cr.Last)
		default:
			again = fmt.Sprintf("bytes %d-%d/%d", cr.First, cr.Last, cr.Complete)
		}
		if cr2, err := parseContentRange(again); err != nil || cr2 != cr {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, cr, again, cr2, err)
		}
	})
}

// Download throughput over localhost, including the fsyncs and the re-hash.
func BenchmarkFetch(b *testing.B) {
	body := fetchBody(25<<20, 16)
	srv := newFetchServer(b, body, nil)
	dest := filepath.Join(b.TempDir(), "bundle.tar")
	f := &Fetcher{Log: zerolog.Nop()}
	want := fetchSHA(body)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		sum, err := f.Fetch(context.Background(), srv.URL, dest, nil, 32<<20, nil)
		if err != nil || sum != want {
			b.Fatal(sum, err)
		}
	}
}

// A dead URL (nothing listens) gives up once RetryFor is spent, long
// before the retries' back-off would end, and says so.
func TestFetchDeadURLGivesUpWithinRetryFor(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String() + "/v7.tar"
	l.Close()
	f := &Fetcher{Log: zerolog.New(zerolog.NewTestWriter(t)), Retries: 100, MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 400 * time.Millisecond, RetryFor: time.Second}
	start := time.Now()
	_, err = f.Fetch(context.Background(), dead, filepath.Join(t.TempDir(), "b"), nil, 0, nil)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "retries stop after 1s") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("got %v", err)
	}
	// The bound is on the waiting; the attempts themselves add a little.
	if took > 10*time.Second {
		t.Errorf("gave up after %v", took)
	}
	if DefaultRetryFor > time.Minute {
		t.Errorf("DefaultRetryFor %v", DefaultRetryFor)
	}
	t.Logf("%v: %v", took.Round(time.Millisecond), err)
}
