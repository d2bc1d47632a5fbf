package camera

import (
	"errors"
	"fmt"
	"image"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gocv.io/x/gocv"
)

// mjpegServer serves an MJPEG stream (multipart/x-mixed-replace, as IP
// cameras do) of JPEG frames whose grey level counts up, over real HTTP.
type mjpegServer struct {
	t      *testing.T
	addr   string
	frames [][]byte
	mu     sync.Mutex
	srv    *http.Server
	// perResponse, when set, ends each response cleanly (with the closing
	// boundary) after that many frames.
	perResponse atomic.Int32
}

func newMJPEGServer(t *testing.T) *mjpegServer {
	s := &mjpegServer{t: t}
	m := gocv.NewMatWithSize(120, 160, gocv.MatTypeCV8UC3)
	defer m.Close()
	for i := range 10 {
		m.SetTo(gocv.NewScalar(float64(20*i), float64(20*i), float64(20*i), 0))
		buf, err := gocv.IMEncode(gocv.JPEGFileExt, m)
		if err != nil {
			t.Fatal(err)
		}
		s.frames = append(s.frames, append([]byte(nil), buf.GetBytes()...))
		buf.Close()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	t.Cleanup(s.stop)
	return s
}

func (s *mjpegServer) serve(ln net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=frame")
		for i := 0; ; i++ {
			if n := int(s.perResponse.Load()); n > 0 && i == n {
				fmt.Fprint(w, "--frame--\r\n")
				return
			}
			jpg := s.frames[i%len(s.frames)]
			if _, err := fmt.Fprintf(w, "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(jpg)); err != nil {
				return
			}
			if _, err := w.Write(append(jpg, "\r\n"...)); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(40 * time.Millisecond):
			}
		}
	})}
	go s.srv.Serve(ln)
}

func (s *mjpegServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srv.Close()
}

func (s *mjpegServer) restart() {
	var ln net.Listener
	var err error
	for range 50 { // the port was just freed
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.serve(ln)
}

// TestHTTPMJPEGStream reads a real MJPEG-over-HTTP stream through OpenCV's
// FFmpeg backend, loses it when the server goes away and gets it back when
// the server returns.
func TestHTTPMJPEGStream(t *testing.T) {
	srv := newMJPEGServer(t)
	c := openTest(t, fileConfig("door", "http://"+srv.addr+"/video.mjpg"))
	ctx := testCtx(t)
	for range 5 {
		f := next(t, ctx, c)
		if got := image.Pt(f.Mat.Cols(), f.Mat.Rows()); got != image.Pt(160, 120) {
			t.Fatalf("frame %d is %v, want 160x120", f.Seq, got)
		}
		if g := int(pixel(f.Mat)); (g+3)%20 > 6 { // the server's grey levels are multiples of 20
			t.Fatalf("frame %d has grey %d, not one the server sent", f.Seq, g)
		}
	}

	srv.stop()
	var err error
	for err == nil {
		_, err = c.Next(ctx)
	}
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "stream ended") {
		t.Fatalf("after the server stopped: %v, want ErrUnavailable: the stream ended", err)
	}

	srv.restart()
	for range 100 { // Next reports outages while the retries run
		if _, err = c.Next(ctx); !errors.Is(err, ErrUnavailable) {
			break
		}
	}
	if err != nil {
		t.Fatalf("no frame after the server came back: %v", err)
	}
	if st := c.Stats(); !st.Available || st.Outages != 1 || st.Size != image.Pt(160, 120) {
		t.Fatalf("stats %+v: want available 160x120 after one outage", st)
	}
}

// TestMJPEGStreamThatEndsIsAnOutage: an IP camera (or a proxy before it)
// that ends its MJPEG response cleanly, closing boundary and all, after a
// few frames. The camera is unavailable ("the stream ended") and reopened,
// again and again; it never reports io.EOF, the end of a file, on which
// the daemon's pipeline would stop reading that camera for good.
func TestMJPEGStreamThatEndsIsAnOutage(t *testing.T) {
	srv := newMJPEGServer(t)
	srv.perResponse.Store(4)
	c := openTest(t, fileConfig("door", "http://"+srv.addr+"/video.mjpg"))
	ctx := testCtx(t)
	outages, after := 0, 0
	for outages < 2 || after == 0 {
		f, err := c.Next(ctx)
		switch {
		case errors.Is(err, io.EOF):
			t.Fatalf("after %d outages: %v: the camera ended like a file", outages, err)
		case errors.Is(err, ErrUnavailable):
			if !strings.Contains(err.Error(), "the stream ended") {
				t.Fatalf("outage %q does not say the stream ended", err)
			}
			outages, after = outages+1, 0
			continue
		case err != nil:
			t.Fatal(err)
		}
		if got := image.Pt(f.Mat.Cols(), f.Mat.Rows()); got != image.Pt(160, 120) {
			t.Fatalf("frame %d is %v, want 160x120", f.Seq, got)
		}
		after++
	}
	if st := c.Stats(); st.Outages < 2 || st.Read < 3 {
		t.Fatalf("stats %+v: want 2 outages, frames read", st)
	}
}
