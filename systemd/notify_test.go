package systemd

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// listen points NOTIFY_SOCKET at a datagram socket of the test's, the way
// systemd does, and returns it.
func listen(t *testing.T) *net.UnixConn {
	t.Helper()
	// A short path: sun_path holds 108 bytes, which t.TempDir() may exceed.
	dir, err := os.MkdirTemp("", "sdnotify")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	addr := &net.UnixAddr{Name: filepath.Join(dir, "notify"), Net: "unixgram"}
	c, err := net.ListenUnixgram("unixgram", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", addr.Name)
	resetStatus(t)
	return c
}

// resetStatus forgets the status that an earlier test left behind.
func resetStatus(t *testing.T) {
	status.Lock()
	status.app, status.stuck = "", ""
	status.Unlock()
}

// next returns the next notification; the wait is generous, to be no timing test.
func next(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

func TestNotify(t *testing.T) {
	c := listen(t)
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"ready", Ready, "^READY=1$"},
		{"status", func() error { return Status("watching %d cameras", 2) }, "^STATUS=watching 2 cameras$"},
		// A newline would start another assignment: READY=1 here.
		{"status on one line", func() error { return Status("a\nREADY=1") }, "^STATUS=a READY=1$"},
		{"reloading", Reloading, `^RELOADING=1\nMONOTONIC_USEC=[0-9]+$`},
		{"stopping", Stopping, "^STOPPING=1$"},
	} {
		if err := tc.call(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := next(t, c); !regexp.MustCompile(tc.want).MatchString(got) {
			t.Errorf("%s: sent %q, want %s", tc.name, got, tc.want)
		}
	}
}

func TestNotifyFailure(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone"))
	if err := Ready(); err == nil || !strings.Contains(err.Error(), "READY") {
		t.Fatalf("Ready to a missing socket: %v", err)
	}
}

// Outside systemd every call succeeds and the watchdog stays idle.
func TestWithoutSystemd(t *testing.T) {
	for _, v := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		t.Setenv(v, "") // restores the variable afterwards
		os.Unsetenv(v)
	}
	resetStatus(t)
	for _, f := range []func() error{Ready, Reloading, Stopping, func() error { return Status("x") }} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	w, err := NewWatchdog(zerolog.Nop())
	if err != nil || w.Interval() != 0 {
		t.Fatalf("NewWatchdog: interval %v, %v", w.Interval(), err)
	}
	w.Register("camera/porch") // never ticks
	done := make(chan struct{})
	go func() { w.Run(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run without a watchdog did not return")
	}
	if s := w.Stuck(); s != nil {
		t.Fatalf("stuck without a watchdog: %q", s)
	}
}

func TestStuck(t *testing.T) {
	w := newWatchdog(zerolog.Nop(), 20*time.Millisecond)
	w.Register("pipeline/porch")
	w.Register("mqtt")
	w.Register("pipeline/garage").Done() // stopped: never stuck
	time.Sleep(50 * time.Millisecond)    // longer than the interval: nobody ticked
	if got, want := w.Stuck(), []string{"mqtt", "pipeline/porch"}; !slices.Equal(got, want) {
		t.Fatalf("stuck %q, want %q", got, want)
	}
	fresh := newWatchdog(zerolog.Nop(), time.Hour)
	fresh.Register("mqtt").Tick()
	if got := fresh.Stuck(); got != nil {
		t.Fatalf("stuck right after a tick: %q", got)
	}
}

// syncBuffer is a log sink that Run may write while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The watchdog against a real notify socket: WATCHDOG=1 while every component
// ticks; none once one stops, whose name shows in STATUS instead; the
// daemon's own status back and WATCHDOG=1 again once it recovers.
func TestWatchdog(t *testing.T) {
	c := listen(t)
	// 1 s: a check every 500 ms. Components tick every 10 ms, so only a stall
	// of the test process of a whole second could make one look stuck.
	t.Setenv("WATCHDOG_USEC", "1000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	var logs syncBuffer
	w, err := NewWatchdog(zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	if w.Interval() != time.Second {
		t.Fatalf("interval %v, want 1s", w.Interval())
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	tick := func(ctx context.Context, b *Beat) {
		wg.Go(func() {
			for ctx.Err() == nil {
				b.Tick()
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	tick(ctx, w.Register("camera/porch"))
	mqtt := w.Register("mqtt")
	mqttCtx, stopMQTT := context.WithCancel(ctx)
	tick(mqttCtx, mqtt)
	wg.Go(func() { w.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	if err := Status("watching 1 camera"); err != nil {
		t.Fatal(err)
	}
	if got := next(t, c); got != "STATUS=watching 1 camera" {
		t.Fatalf("got %q", got)
	}
	for range 3 {
		if got := next(t, c); got != "WATCHDOG=1" {
			t.Fatalf("while all tick: got %q, want WATCHDOG=1", got)
		}
	}

	stopMQTT() // mqtt hangs
	var report string
	for report == "" {
		switch got := next(t, c); {
		case got == "WATCHDOG=1": // its last tick is still recent enough
		case strings.HasPrefix(got, "STATUS=stuck: "):
			report = got
		default:
			t.Fatalf("after mqtt stopped: got %q", got)
		}
	}
	if !strings.HasPrefix(report, "STATUS=stuck: mqtt (no progress for ") || strings.Contains(report, "camera") {
		t.Fatalf("report %q should name mqtt alone", report)
	}
	if got := w.Stuck(); !slices.Equal(got, []string{"mqtt"}) {
		t.Fatalf("Stuck() = %q", got)
	}
	// From now on only the report, its age growing: no WATCHDOG=1, and the
	// daemon's new status waits.
	if err := Status("watching 2 cameras"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got := next(t, c); !strings.HasPrefix(got, "STATUS=stuck: mqtt (") {
			t.Fatalf("while mqtt is stuck: got %q", got)
		}
	}

	tick(ctx, mqtt) // mqtt recovers
	for {
		got := next(t, c)
		if got == "STATUS=watching 2 cameras" {
			break
		}
		if !strings.HasPrefix(got, "STATUS=stuck: mqtt (") {
			t.Fatalf("on recovery: got %q", got)
		}
	}
	if got := next(t, c); got != "WATCHDOG=1" {
		t.Fatalf("after recovery: got %q, want WATCHDOG=1", got)
	}

	cancel()
	wg.Wait()
	for _, want := range []string{`"stuck":["mqtt"]`, "every component makes progress again"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
}
