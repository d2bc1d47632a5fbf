package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// generous is how long a condition may take on a heavily loaded machine;
// the tests wait for conditions, never for a time.
const generous = 60 * time.Second

// startServer serves the real handler with settings s on 127.0.0.1.
func startServer(t *testing.T, s Settings) (*Server, string) {
	t.Helper()
	s.Listen = "127.0.0.1:0"
	h := Handler(Config{
		Health:  func(context.Context) []Check { return []Check{{Name: "store", OK: true}} },
		Metrics: NewMetrics().Registry,
		Log:     zerolog.Nop(),
	})
	srv, err := Listen(context.Background(), s, h, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), generous)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return srv, srv.Addr().String()
}

// waitFor polls cond until it holds or the generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(generous)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, generous)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// closedByServer reads from c until the server closes it (EOF or a reset)
// or the generous deadline passes; whatever arrives before is discarded.
func closedByServer(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(generous))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server did not close the connection within %v", generous)
	}
}

func shortTimeouts() Settings {
	s := DefaultSettings()
	s.ReadTimeout, s.WriteTimeout, s.IdleTimeout = 300*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
	return s
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Slow-loris: headers trickling in a byte at a time are cut off by the
// read timeout, however long the client keeps trickling.
func TestSlowHeadersClosed(t *testing.T) {
	srv, addr := startServer(t, shortTimeouts())
	c := dial(t, addr)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: " + addr + "\r\n"))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := c.Write([]byte{"X-Slow: aaaa\r\n"[i%14]}); err != nil {
				return // closed by the server
			}
		}
	}()
	closedByServer(t, c)
	waitFor(t, "the slot given back", func() bool { open, _ := srv.Connections(); return open == 0 })
}

// A body that never arrives in full is cut off by the read timeout too.
func TestSlowBodyClosed(t *testing.T) {
	srv, addr := startServer(t, shortTimeouts())
	c := dial(t, addr)
	fmt.Fprintf(c, "POST /api/rules HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", addr)
	go func() {
		for {
			time.Sleep(50 * time.Millisecond)
			if _, err := c.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	closedByServer(t, c)
	waitFor(t, "the slot given back", func() bool { open, _ := srv.Connections(); return open == 0 })
}

// A kept-alive connection that sends nothing more is closed by the idle
// timeout; so is one that never sends anything.
func TestIdleConnectionsClosed(t *testing.T) {
	srv, addr := startServer(t, shortTimeouts())
	c := dial(t, addr)
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 || resp.Close {
		t.Fatalf("first request: %v %+v", err, resp)
	}
	io.Copy(io.Discard, resp.Body)
	silent := dial(t, addr)
	closedByServer(t, c)
	closedByServer(t, silent)
	waitFor(t, "the slots given back", func() bool { open, _ := srv.Connections(); return open == 0 })
}

// With max_connections open, a new connection is closed at once; once one
// of them goes, requests are served again.
func TestConnectionLimit(t *testing.T) {
	s := DefaultSettings()
	s.MaxConnections = 3
	s.IdleTimeout = time.Hour // the held connections stay until closed here
	srv, addr := startServer(t, s)
	held := make([]net.Conn, s.MaxConnections)
	for i := range held {
		held[i] = dial(t, addr)
		fmt.Fprintf(held[i], "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		resp, err := http.ReadResponse(bufio.NewReader(held[i]), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("held connection %d: %v %+v", i, err, resp)
		}
		resp.Body.Close()
	}
	for i := range 5 {
		extra := dial(t, addr)
		fmt.Fprintf(extra, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		closedByServer(t, extra)
		if open, refused := srv.Connections(); open != 3 || refused != uint64(i+1) {
			t.Fatalf("after extra connection %d: %d open, %d refused", i, open, refused)
		}
	}
	held[0].Close()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	waitFor(t, "a request served once a slot is free", func() bool {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	waitFor(t, "slots given back", func() bool { open, _ := srv.Connections(); return open == 2 })
}

// Shutdown closes idle connections too: the daemon stops in time.
func TestShutdownClosesIdle(t *testing.T) {
	s := DefaultSettings()
	s.IdleTimeout = time.Hour
	srv, addr := startServer(t, s)
	c := dial(t, addr)
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), generous)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	closedByServer(t, c)
}
