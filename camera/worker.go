package camera

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gocv.io/x/gocv"
	"golang.org/x/sys/unix"
)

// Capture workers: each FFmpeg-decoded network camera (RTSP, HTTP that is
// not MJPEG) runs in a process of its own, as Frigate does, so that a
// decoder crash (FFmpeg's scaler segfaulting on a stream whose frame size
// changes) ends that camera's worker, not the daemon. The worker is the
// sightd binary run again (`sightd camera capture-worker`); it opens the
// stream with the same decoders as the daemon would in process and writes
// raw BGR frames to its stdout. The
// daemon's reader goroutine reads them into its Mats: newest-frame
// semantics, stats, outages and back-off stay as they are, and a worker
// that dies is an outage like a stream that ends.

// WorkerCommand is how to start a capture worker: the program, the
// arguments that make it one, and extra environment.
type WorkerCommand struct {
	Path string
	Args []string
	Env  []string
}

var captureWorker atomic.Pointer[WorkerCommand]

// workersStarted counts the worker processes started (tests read it).
var workersStarted atomic.Uint64

// UseWorker makes network streams opened from now on decode in worker
// processes started by cmd; nil decodes them in this process (the default).
func UseWorker(cmd *WorkerCommand) { captureWorker.Store(cmd) }

// workerRequest is what the worker reads on its stdin: the source may carry
// a password, which a command line would show to every user.
type workerRequest struct {
	Source  string        `json:"source"`
	Decoder string        `json:"decoder"`
	Idle    time.Duration `json:"idle"`
}

type workerInfo struct {
	FPS    float64 `json:"fps"`
	FourCC string  `json:"fourcc"`
}

// The worker's messages: a 20-byte header, then the payload.
//
//	magic "SDW1" | kind (1 byte) | 3 bytes zero | a uint32 | b uint32 | length uint32
//
// kind 'I': the stream opened, payload JSON workerInfo; 'F': a frame,
// a = width, b = height, payload width*height*3 bytes of BGR; 'E': the
// stream failed, payload the reason.
const (
	workerMagic  = "SDW1"
	workerHeader = 20
	msgInfo      = 'I'
	msgFrame     = 'F'
	msgError     = 'E'
	// workerOpenWait bounds the wait for a worker's first message: FFmpeg
	// itself gives up on a dead host after 30 s.
	workerOpenWait = 45 * time.Second
)

func putHeader(h []byte, kind byte, a, b, n uint32) {
	copy(h, workerMagic)
	h[4], h[5], h[6], h[7] = kind, 0, 0, 0
	binary.LittleEndian.PutUint32(h[8:], a)
	binary.LittleEndian.PutUint32(h[12:], b)
	binary.LittleEndian.PutUint32(h[16:], n)
}

// parseHeader checks a message header; the payload length is bounded by
// the message's kind.
func parseHeader(h []byte) (kind byte, a, b, n uint32, err error) {
	if len(h) != workerHeader || string(h[:4]) != workerMagic || h[5]|h[6]|h[7] != 0 {
		return 0, 0, 0, 0, errors.New("capture worker: bad message header")
	}
	kind = h[4]
	a, b, n = binary.LittleEndian.Uint32(h[8:]), binary.LittleEndian.Uint32(h[12:]), binary.LittleEndian.Uint32(h[16:])
	switch kind {
	case msgInfo, msgError:
		if n > 64<<10 {
			return 0, 0, 0, 0, fmt.Errorf("capture worker: a %c message of %d bytes", kind, n)
		}
	case msgFrame:
		if a < 1 || b < 1 || a > maxFrameSide || b > maxFrameSide || uint64(a)*uint64(b) > maxFramePixels || uint64(n) != 3*uint64(a)*uint64(b) {
			return 0, 0, 0, 0, fmt.Errorf("capture worker: a %dx%d frame of %d bytes", a, b, n)
		}
	default:
		return 0, 0, 0, 0, fmt.Errorf("capture worker: unknown message kind %q", kind)
	}
	return kind, a, b, n, nil
}

// RunWorker is the capture worker's main: it reads a request from in, opens
// the stream and writes its frames to out until the stream fails (reported
// as an 'E' message; nil is returned) or out is closed.
func RunWorker(in io.Reader, out io.Writer) error {
	// A decoder that crashes ends this camera's worker; a core file of it
	// per restart would fill the disk.
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{})
	var req workerRequest
	if err := json.NewDecoder(io.LimitReader(in, 64<<10)).Decode(&req); err != nil {
		return fmt.Errorf("capture worker: request: %w", err)
	}
	spec, err := ParseSource(req.Source)
	if err == nil && spec.Kind != Stream {
		err = fmt.Errorf("%s is not a network stream", spec)
	}
	if err != nil {
		return writeMsg(out, msgError, 0, 0, []byte(err.Error()))
	}
	if req.Idle <= 0 {
		req.Idle = Defaults().Stall
	}
	g, err := openNetStream(spec, req.Idle, req.Decoder)
	if err != nil {
		return writeMsg(out, msgError, 0, 0, []byte(err.Error()))
	}
	defer g.close()
	fps, fourcc := g.info()
	info, _ := json.Marshal(workerInfo{FPS: fps, FourCC: fourcc})
	if err := writeMsg(out, msgInfo, 0, 0, info); err != nil {
		return err
	}
	m := gocv.NewMat()
	defer func() { m.Close() }()
	for {
		if err := g.grab(&m); err != nil {
			return writeMsg(out, msgError, 0, 0, []byte(err.Error()))
		}
		if err := writeFrame(out, m); err != nil {
			return err
		}
	}
}

func writeMsg(w io.Writer, kind byte, a, b uint32, payload []byte) error {
	var h [workerHeader]byte
	putHeader(h[:], kind, a, b, uint32(len(payload)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// writeFrame writes m (8-bit BGR) as an 'F' message, straight from the
// Mat's memory.
func writeFrame(w io.Writer, m gocv.Mat) error {
	if m.Type() != gocv.MatTypeCV8UC3 {
		return fmt.Errorf("capture worker: frame type %v, want 8-bit BGR", m.Type())
	}
	if !m.IsContinuous() {
		c := m.Clone()
		defer c.Close()
		m = c
	}
	b, err := m.DataPtrUint8()
	if err != nil {
		return err
	}
	return writeMsg(w, msgFrame, uint32(m.Cols()), uint32(m.Rows()), b)
}

// readFrame reads one message from r; a frame goes into dst (resized to the
// frame's size when it differs), info into info.
func readMsg(r io.Reader, dst *gocv.Mat, info *workerInfo) (kind byte, err error) {
	var h [workerHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, err
	}
	kind, w, ht, n, err := parseHeader(h[:])
	if err != nil {
		return 0, err
	}
	if kind != msgFrame {
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			return 0, err
		}
		if kind == msgError {
			return kind, errors.New(string(payload))
		}
		return kind, json.Unmarshal(payload, info)
	}
	if dst.Cols() != int(w) || dst.Rows() != int(ht) || dst.Type() != gocv.MatTypeCV8UC3 || !dst.IsContinuous() {
		dst.Close()
		*dst = gocv.NewMatWithSize(int(ht), int(w), gocv.MatTypeCV8UC3)
	}
	b, err := dst.DataPtrUint8()
	if err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(r, b[:n]); err != nil {
		return 0, err
	}
	return kind, nil
}

// workerGrabber is the daemon's side of one worker process.
type workerGrabber struct {
	cmd    *exec.Cmd
	out    *os.File // the read end of the worker's stdout
	idle   time.Duration
	meta   workerInfo
	killed atomic.Bool
	once   sync.Once
	err    error // the worker's exit, once reaped
	tail   *tailWriter
	// refused is FFmpeg's complaint that made the daemon stop the worker.
	refused atomic.Pointer[string]
}

// watchScaler: a worker whose FFmpeg scaler refuses a new frame size is
// restarted at once (tests turn it off to let FFmpeg go on and crash).
var watchScaler = true

// isScalerRefusal is FFmpeg's scaler refusing frames of a size other than
// the one it was set up for: OpenCV then returns the old picture, or
// garbage, or the scaler reads out of bounds.
func isScalerRefusal(line string) bool {
	return strings.Contains(line, "[swscaler") &&
		(strings.Contains(line, "Slice parameters") || strings.Contains(line, "bad src image pointers"))
}

// stderrLine watches the worker's stderr.
func (g *workerGrabber) stderrLine(line string) {
	if watchScaler && isScalerRefusal(line) && g.refused.CompareAndSwap(nil, &line) {
		g.cmd.Process.Kill()
	}
}

func openWorker(wc WorkerCommand, spec Spec, cfg Config, decoder string) (grabber, error) {
	req, _ := json.Marshal(workerRequest{Source: spec.URL, Decoder: decoder, Idle: cfg.Stall})
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	setPipeSize(pw)
	cmd := exec.Command(wc.Path, wc.Args...)
	cmd.Env = append(os.Environ(), wc.Env...)
	cmd.Stdin = bytes.NewReader(append(req, '\n'))
	cmd.Stdout = pw
	// FFmpeg's own messages go where they always went; the last lines are
	// kept to say why a worker died.
	tail := &tailWriter{w: os.Stderr}
	cmd.Stderr = tail
	g := &workerGrabber{cmd: cmd, out: pr, idle: cfg.Stall, tail: tail}
	tail.onLine = g.stderrLine
	// The worker dies with the daemon. (Pdeathsig follows the OS thread that
	// started it, which ends only if a goroutine locked to it exits: sightd
	// locks none.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("capture worker: %w", err)
	}
	pw.Close()
	workersStarted.Add(1)
	var none gocv.Mat
	kind, err := g.read(&none, workerOpenWait)
	if err == nil && kind != msgInfo {
		err = errors.New("capture worker: no stream information first")
	}
	if err != nil {
		g.stop(!isEOF(err))
		return nil, g.why(err)
	}
	return g, nil
}

func (g *workerGrabber) read(dst *gocv.Mat, wait time.Duration) (byte, error) {
	if err := g.out.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return 0, err
	}
	return readMsg(g.out, dst, &g.meta)
}

func (g *workerGrabber) grab(dst *gocv.Mat) error {
	kind, err := g.read(dst, g.idle)
	if err == nil && kind != msgFrame {
		err = fmt.Errorf("capture worker: unexpected %q message", kind)
	}
	if err != nil {
		g.stop(!isEOF(err))
		return g.why(err)
	}
	return nil
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) }

// why turns a read error into the reason the camera is down: the worker's
// own report, how it died, or that it went quiet.
func (g *workerGrabber) why(err error) error {
	if line := g.refused.Load(); line != nil {
		return fmt.Errorf("%w: FFmpeg's scaler refused a new frame size (%s); restarting the decoder", ErrStuck, *line)
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("capture worker: no frame for %v; stopped it", g.idle)
	case isEOF(err), errors.Is(err, os.ErrClosed):
		if g.killed.Load() {
			return errors.New("capture worker stopped")
		}
		if crash := g.tail.crash(); crash != "" {
			return fmt.Errorf("capture worker died: %v: %s", g.err, crash)
		}
		return fmt.Errorf("capture worker died: %v", g.err)
	case strings.HasPrefix(err.Error(), "capture worker"):
		return err
	}
	return err // the worker's report: the stream's own error
}

func (g *workerGrabber) info() (float64, string) { return g.meta.FPS, g.meta.FourCC }

func (g *workerGrabber) interrupt() {
	g.killed.Store(true)
	g.cmd.Process.Kill()
}

func (g *workerGrabber) close() { g.stop(true) }

// stop reaps the worker, killing it first when kill is set; otherwise (its
// stdout ended: it is exiting) it gets a few seconds to finish dying, so that
// its exit status says how.
func (g *workerGrabber) stop(kill bool) {
	g.once.Do(func() {
		if kill {
			g.cmd.Process.Kill()
		}
		done := make(chan error, 1)
		go func() { done <- g.cmd.Wait() }()
		select {
		case g.err = <-done:
		case <-time.After(5 * time.Second):
			g.cmd.Process.Kill()
			g.err = <-done
		}
		if g.err == nil {
			g.err = errors.New("exit status 0")
		}
		g.out.Close()
	})
}

// tailWriter passes a worker's stderr on and keeps its last lines.
type tailWriter struct {
	w       io.Writer
	mu      sync.Mutex
	part    []byte
	lines   []string
	crashed []string // the lines that say how it crashed
	onLine  func(string)
}

const tailLines = 16

func (t *tailWriter) Write(p []byte) (int, error) {
	t.w.Write(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.part = append(t.part, p...)
	for {
		i := bytes.IndexByte(t.part, '\n')
		if i < 0 {
			break
		}
		if len(t.lines) == tailLines {
			t.lines = t.lines[1:]
		}
		l := string(bytes.TrimSpace(t.part[:i]))
		t.lines = append(t.lines, l)
		if t.onLine != nil {
			t.onLine(l)
		}
		if isCrashLine(l) && len(t.crashed) < 4 {
			t.crashed = append(t.crashed, l)
		}
		t.part = t.part[i+1:]
	}
	if len(t.part) > 4096 {
		t.part = t.part[:0]
	}
	return len(p), nil
}

// crash is the Go runtime's report of a fatal signal or error on the
// worker's stderr ("SIGSEGV: segmentation violation; signal arrived during
// cgo execution"), or "".
func (t *tailWriter) crash() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.crashed, "; ")
}

func isCrashLine(l string) bool {
	return strings.HasPrefix(l, "SIG") && strings.Contains(l, ": ") ||
		strings.HasPrefix(l, "fatal error: ") || strings.HasPrefix(l, "panic: ") ||
		l == "signal arrived during cgo execution"
}

// setPipeSize makes a pipe 1 MiB (the system's default limit for a user)
// instead of 64 KiB: a frame goes through in fewer wake-ups. Best effort.
// Only the write end is touched: Fd puts a file in blocking mode, and the
// daemon's read end needs deadlines.
func setPipeSize(w *os.File) {
	_, _ = unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 1<<20)
}
