package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// MaxHeaderTimeout bounds reading a request's headers (less when
// ReadTimeout is shorter).
const MaxHeaderTimeout = 5 * time.Second

// Server is the local API listening: timeouts close slow and idle
// connections, and at most MaxConnections are open at once.
type Server struct {
	http *http.Server
	ln   *limitListener
	log  zerolog.Logger
}

// Listen binds s.Listen and returns the server, not yet serving: a port in
// use fails here. ctx is every request's base context.
func Listen(ctx context.Context, s Settings, h http.Handler, log zerolog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return nil, fmt.Errorf("http.listen: %w", err)
	}
	return NewServer(ctx, ln, s, h, log), nil
}

// NewServer serves h on ln with the timeouts and connection limit of s.
func NewServer(ctx context.Context, ln net.Listener, s Settings, h http.Handler, log zerolog.Logger) *Server {
	sampled := log.Sample(&zerolog.BurstSampler{Burst: 5, Period: time.Minute})
	ll := &limitListener{Listener: ln, max: int64(max(1, s.MaxConnections)), onRefuse: func(remote net.Addr) {
		sampled.Warn().Str("remote", remote.String()).Int("max_connections", s.MaxConnections).
			Msg("too many connections: closed a new one")
	}}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(MaxHeaderTimeout, s.ReadTimeout),
		ReadTimeout:       s.ReadTimeout,
		WriteTimeout:      s.WriteTimeout,
		IdleTimeout:       s.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          nil,
	}
	return &Server{http: srv, ln: ll, log: log}
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until Shutdown; it returns nil after a shutdown.
func (s *Server) Serve() error {
	if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting, waits for requests in hand until ctx ends and
// closes every connection.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.http.Close()
	}
	return err
}

// Connections is the number of connections open now, and how many were
// closed on arrival because MaxConnections were open.
func (s *Server) Connections() (open int64, refused uint64) {
	return s.ln.open.Load(), s.ln.refused.Load()
}

// limitListener closes a new connection at once while max are open, so
// that slow or idle clients can hold at most max file descriptors (and the
// memory of as many connections); the timeouts free them.
type limitListener struct {
	net.Listener
	max      int64
	open     atomic.Int64
	refused  atomic.Uint64
	onRefuse func(net.Addr)
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &countedConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		l.refused.Add(1)
		l.onRefuse(c.RemoteAddr())
		c.Close()
	}
}

// countedConn gives its slot back once, on the first Close.
type countedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

// CloseWrite keeps the half-close the HTTP server does before closing a
// connection it refused a request on.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}
