package camera

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"gocv.io/x/gocv"
)

// maxBadParts is how many parts in a row may fail to decode before the
// stream counts as broken and is reopened; a single damaged frame is skipped.
const maxBadParts = 25

// errNotMultipart: the HTTP source answered, but not with an MJPEG stream;
// FFmpeg gets to read it instead (a different codec or container, digest
// authentication).
var errNotMultipart = errors.New("not a multipart MJPEG stream")

// mjpegGrabber reads an MJPEG-over-HTTP stream with Go's HTTP client and
// decodes each JPEG on its own.
type mjpegGrabber struct {
	cancel    context.CancelFunc
	body      interface{ Close() error }
	parts     *partReader
	closeOnce sync.Once
}

// deadlineConn gives every Read on a connection a deadline: a stream that
// stops sending fails after idle instead of blocking forever.
type deadlineConn struct {
	net.Conn
	idle time.Duration
}

func (c *deadlineConn) Read(b []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func openMJPEG(spec Spec, idle time.Duration) (*mjpegGrabber, error) {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &deadlineConn{Conn: c, idle: idle}, nil
		},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: max(idle, 10*time.Second),
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		DisableCompression:    true,
		MaxIdleConns:          1,
		ForceAttemptHTTP2:     false,
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, spec.URL, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open %s: %w", spec, err)
	}
	// Go's client sends the URL's user:password as Basic authentication.
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		cancel()
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) { // *url.Error repeats the URL, password included
			err = ue.Unwrap()
		}
		return nil, fmt.Errorf("open %s: %w", spec, err)
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		cancel()
		if res.StatusCode == http.StatusUnauthorized {
			return nil, fmt.Errorf("open %s: %s: %w", spec, res.Status, errNotMultipart)
		}
		return nil, fmt.Errorf("open %s: %s", spec, res.Status)
	}
	boundary, ok := multipartBoundary(res.Header.Get("Content-Type"))
	if !ok {
		res.Body.Close()
		cancel()
		return nil, fmt.Errorf("open %s: Content-Type %q: %w", spec, res.Header.Get("Content-Type"), errNotMultipart)
	}
	return &mjpegGrabber{cancel: cancel, body: res.Body, parts: newPartReader(res.Body, boundary)}, nil
}

// grab decodes the next JPEG into dst. Parts that do not decode are skipped,
// up to maxBadParts in a row.
func (g *mjpegGrabber) grab(dst *gocv.Mat) error {
	var lastErr error
	for range maxBadParts {
		b, err := g.parts.next()
		if err != nil {
			return fmt.Errorf("the stream ended: %w", err)
		}
		if lastErr = decodeJPEG(b, dst); lastErr == nil {
			return nil
		}
	}
	return fmt.Errorf("%d parts in a row do not decode, the last: %w", maxBadParts, lastErr)
}

// decodeJPEG checks b's JPEG header, then decodes it into dst as 8-bit BGR.
func decodeJPEG(b []byte, dst *gocv.Mat) error {
	w, h, err := jpegSize(b)
	if err != nil {
		return err
	}
	m, err := gocv.IMDecode(b, gocv.IMReadColor)
	if err != nil || m.Empty() {
		m.Close()
		return fmt.Errorf("%w: libjpeg cannot decode this %dx%d frame", ErrBadFrame, w, h)
	}
	if m.Cols() != w || m.Rows() != h || m.Type() != gocv.MatTypeCV8UC3 {
		m.Close()
		return fmt.Errorf("%w: decoded %dx%d, header says %dx%d", ErrBadFrame, m.Cols(), m.Rows(), w, h)
	}
	dst.Close()
	*dst = m
	return nil
}

func (g *mjpegGrabber) info() (float64, string) { return 0, "MJPG" }

// interrupt unblocks a grab from another goroutine.
func (g *mjpegGrabber) interrupt() { g.cancel() }

func (g *mjpegGrabber) close() {
	g.closeOnce.Do(func() {
		g.cancel()
		g.body.Close()
	})
}
