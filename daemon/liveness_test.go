package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightd/sightd/store"
	"github.com/sightd/sightd/systemd"
)

// The store's liveness against a real notify socket: WATCHDOG=1 while the
// store answers; once it stops answering (closed here), the watchdog stops
// and STATUS names it.
func TestStoreLiveness(t *testing.T) {
	dir, err := os.MkdirTemp("", "sdnotify") // sun_path is short
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "n"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	t.Setenv("NOTIFY_SOCKET", filepath.Join(dir, "n"))
	t.Setenv("WATCHDOG_USEC", "1000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))

	cfg := store.Defaults()
	cfg.Dir = t.TempDir()
	st, err := store.Open(context.Background(), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{st: st, log: zerolog.Nop()}
	wd, err := systemd.NewWatchdog(zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.watchParts(ctx, wd)
	go wd.Run(ctx)

	wait := func(want string) {
		t.Helper()
		buf := make([]byte, 4096)
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			sock.SetReadDeadline(deadline)
			n, err := sock.Read(buf)
			if err != nil {
				break
			}
			if strings.Contains(string(buf[:n]), want) {
				return
			}
		}
		t.Fatalf("no %q from the watchdog", want)
	}
	wait("WATCHDOG=1")
	st.Close() // the store no longer answers
	wait("stuck: store")
}
