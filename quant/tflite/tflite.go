// Package tflite is the one Go API through which sightd runs .tflite models:
// load a Model, make an Interpreter with threads and accelerators, read and
// write its tensors, invoke, close. Two runtimes stand behind it, each in its
// own cgo package:
//
//   - LiteRT 2.3 (quant/tflite/litert, libLiteRt.so): every model on the CPU,
//     with XNNPACK's float and int8 kernels. It runs today's converters' int8
//     right and fast.
//   - TensorFlow Lite 2.9 (quant/tflite/tfl29): only for the Coral Edge TPU,
//     which only the classic API's external delegate can load, and for
//     side-by-side benchmarks. It refuses or silently miscomputes some int8
//     ops that current converters emit, so it never runs a CPU model unless
//     asked for by name.
package tflite

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/sightd/sightd/quant/tflite/litert"
	"github.com/sightd/sightd/quant/tflite/tferr"
	"github.com/sightd/sightd/quant/tflite/tfl29"
)

// Sentinel errors; match them with errors.Is. Both runtimes return these.
var (
	ErrModelInvalid   = tferr.ErrModelInvalid
	ErrClosed         = tferr.ErrClosed
	ErrNotAllocated   = tferr.ErrNotAllocated
	ErrTensorMismatch = tferr.ErrTensorMismatch
	ErrRuntime        = tferr.ErrRuntime
	ErrNoEdgeTPU      = tferr.ErrNoEdgeTPU
	ErrIndex          = tferr.ErrIndex
	ErrNoRuntime      = tferr.ErrNoRuntime
)

// Runtime selects the inference runtime.
type Runtime int

const (
	// RuntimeAuto is LiteRT, except for a model compiled for the Edge TPU
	// when the Edge TPU is wanted (Options.EdgeTPU), which needs TensorFlow
	// Lite 2.9's external delegate.
	RuntimeAuto Runtime = iota
	// RuntimeLiteRT is LiteRT 2.3 on the CPU (XNNPACK kernels).
	RuntimeLiteRT
	// RuntimeTFLite29 is TensorFlow Lite 2.9 (built-in kernels, optionally
	// XNNPACK, optionally the Edge TPU).
	RuntimeTFLite29
)

func (r Runtime) String() string {
	switch r {
	case RuntimeLiteRT:
		return "litert"
	case RuntimeTFLite29:
		return "tflite2.9"
	}
	return "auto"
}

// ParseRuntime reads "auto", "litert" or "tflite2.9".
func ParseRuntime(s string) (Runtime, error) {
	for _, r := range []Runtime{RuntimeAuto, RuntimeLiteRT, RuntimeTFLite29} {
		if s == r.String() {
			return r, nil
		}
	}
	return 0, fmt.Errorf("runtime %q: want auto, litert or tflite2.9", s)
}

// Version names the runtimes linked in: LiteRT (which runs every CPU model)
// and TensorFlow Lite (which serves the Edge TPU).
func Version() string {
	return fmt.Sprintf("LiteRT %s; TensorFlow Lite %s (Edge TPU)", litert.Version(), tfl29.Version())
}

// LiteRTVersion is the LiteRT release, e.g. "2.3.0".
func LiteRTVersion() string { return litert.PinnedVersion }

// TFLiteVersion is the classic runtime's own version, e.g. "2.9.0".
func TFLiteVersion() string { return tfl29.Version() }

// edgeTPUOp is the custom op that the Edge TPU compiler puts in a model.
var edgeTPUOp = []byte("edgetpu-custom-op")

// Model is a loaded .tflite flatbuffer. It is immutable once loaded and may be
// shared by several interpreters, also across goroutines. It must stay open
// while any interpreter made from it is in use.
type Model struct {
	mu     sync.Mutex
	lr     *litert.Model
	path   string // set when loaded from a file
	data   []byte // set when loaded from bytes (the caller's copy is not kept)
	t29    *tfl29.Model
	closed bool

	tpuOnce sync.Once // ForEdgeTPU reads a file once
	tpu     bool
	tpuErr  error
}

// NewModel loads a model from its bytes (copied; the caller may reuse data).
// Truncated or random bytes give ErrModelInvalid.
func NewModel(data []byte) (*Model, error) {
	if err := tfl29.Verify(data); err != nil {
		return nil, err
	}
	if err := checkStructure(data); err != nil {
		return nil, err
	}
	lr, err := litert.NewModel(data)
	if err != nil {
		return nil, err
	}
	return &Model{lr: lr, data: bytes.Clone(data)}, nil
}

// NewModelFromFile loads (memory-maps) a .tflite file.
func NewModelFromFile(path string) (*Model, error) {
	// LiteRT 2.3 does not verify a file's flatbuffer (a truncated one crashes
	// it), nor the indices in the graph: TensorFlow Lite's verifier checks the
	// first, checkStructure the second.
	if err := tfl29.VerifyFile(path); err != nil {
		return nil, err
	}
	if err := checkFile(path); err != nil {
		return nil, err
	}
	lr, err := litert.NewModelFromFile(path)
	if err != nil {
		return nil, err
	}
	return &Model{lr: lr, path: path}, nil
}

// ForEdgeTPU reports whether the model was compiled for the Edge TPU (it holds
// the Edge TPU's custom op, which only the Edge TPU delegate runs).
func (m *Model) ForEdgeTPU() (bool, error) {
	m.tpuOnce.Do(func() {
		if m.data != nil {
			m.tpu = bytes.Contains(m.data, edgeTPUOp)
			return
		}
		f, err := os.Open(m.path)
		if err != nil {
			m.tpuErr = fmt.Errorf("tflite: %w", err)
			return
		}
		defer f.Close()
		m.tpu, m.tpuErr = containsStream(f, edgeTPUOp)
	})
	return m.tpu, m.tpuErr
}

// containsStream looks for pat in r without reading it whole.
func containsStream(r io.Reader, pat []byte) (bool, error) {
	buf := make([]byte, 1<<20+len(pat))
	keep := 0
	for {
		n, err := r.Read(buf[keep:])
		if bytes.Contains(buf[:keep+n], pat) {
			return true, nil
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("tflite: %w", err)
		}
		tail := min(len(pat)-1, keep+n)
		copy(buf, buf[keep+n-tail:keep+n])
		keep = tail
	}
}

// classic loads the model into TensorFlow Lite 2.9 on first use.
func (m *Model) classic() (*tfl29.Model, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("model: %w", ErrClosed)
	}
	if m.t29 != nil {
		return m.t29, nil
	}
	var err error
	if m.data != nil {
		m.t29, err = tfl29.NewModel(m.data)
	} else {
		m.t29, err = tfl29.NewModelFromFile(m.path)
	}
	return m.t29, err
}

// Close frees the model. It fails while interpreters made from it are open.
// Closing twice is a no-op.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	if m.t29 != nil {
		if err := m.t29.Close(); err != nil {
			return err
		}
		m.t29 = nil
	}
	if err := m.lr.Close(); err != nil {
		return fmt.Errorf("tflite: %w", err)
	}
	m.closed = true
	m.data = nil
	return nil
}
