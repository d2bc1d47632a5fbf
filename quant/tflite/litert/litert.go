// Package litert is sightd's cgo binding to the LiteRT C API (libLiteRt.so from
// the ai-edge-litert 2.3 wheels): a Model, a Runner (a compiled model on the
// CPU accelerator, XNNPACK kernels, with its own input and output buffers) and
// Tensor views. It is the only package that imports "C" for LiteRT; the rest of
// sightd uses it through quant/tflite.
//
// C status codes and nil returns become wrapped Go errors that carry the
// runtime's own messages where it gives any. Close methods are idempotent and
// free in reverse order of creation.
package litert

/*
#include <stdlib.h>
#include "litert_c.h"
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unsafe"

	"github.com/sightd/sightd/quant/tflite/tferr"
)

// PinnedVersion is the LiteRT release that `make deps` fetches and that this
// binding's declarations were written for. The library reports no version of
// its own; a test keeps this equal to the Makefile's LITERT_VERSION.
const PinnedVersion = "2.3.0"

// Sentinel errors, shared with the TensorFlow Lite 2.9 binding; match them
// with errors.Is.
var (
	ErrModelInvalid   = tferr.ErrModelInvalid
	ErrClosed         = tferr.ErrClosed
	ErrTensorMismatch = tferr.ErrTensorMismatch
	ErrRuntime        = tferr.ErrRuntime
	ErrIndex          = tferr.ErrIndex
	ErrNoRuntime      = tferr.ErrNoRuntime
)

// statusNames are LiteRtStatus values (litert/c/litert_common.h); the library
// does not export its own status-to-string function.
var statusNames = map[C.LiteRtStatus]string{
	1: "invalid argument", 2: "memory allocation failure", 3: "runtime failure",
	4: "missing input tensor", 5: "unsupported", 6: "not found", 7: "timeout expired",
	8: "wrong version", 9: "unknown error", 10: "already exists", 100: "cancelled",
	500: "file I/O error", 501: "invalid flatbuffer", 502: "dynamic loading error",
	503: "serialization error", 504: "compilation error", 1000: "index out of bounds",
	4000: "unsupported runtime version",
}

func statusText(st C.LiteRtStatus) string {
	if s, ok := statusNames[st]; ok {
		return s
	}
	return fmt.Sprintf("status %d", int(st))
}

func statusErr(what string, st C.LiteRtStatus) error {
	if st == C.SIGHTD_LITERT_OK {
		return nil
	}
	return fmt.Errorf("%w: %s: %s", ErrRuntime, what, statusText(st))
}

// The environment is process-wide. It registers the CPU accelerator alone: by
// default LiteRT also probes for GPU and NPU plugins (absent on sightd's boards)
// and logs each attempt; its log is kept to errors.
var (
	envOnce sync.Once
	env     C.LiteRtEnvironment
	envErr  error
)

func environment() (C.LiteRtEnvironment, error) {
	envOnce.Do(func() {
		var reason [512]C.char
		if C.sightd_litert_load(&reason[0], C.size_t(len(reason))) != 0 {
			envErr = fmt.Errorf("%w: %s: %s (run `make deps`, or install sightd's package, which carries it in /usr/lib/sightd)",
				ErrNoRuntime, "cannot load LiteRT", C.GoString(&reason[0]))
			return
		}
		if st := C.sightd_create_environment(C.SIGHTD_LITERT_LOG_ERROR, &env); st != C.SIGHTD_LITERT_OK {
			envErr = statusErr("create environment", st)
			return
		}
		if _, err := cpuAccelerator(); err != nil {
			envErr = err
		}
	})
	return env, envErr
}

// cpuAccelerator finds the CPU accelerator's version among the registered ones.
func cpuAccelerator() (string, error) {
	var n C.size_t
	if st := C.lrt_GetNumAccelerators(env, &n); st != C.SIGHTD_LITERT_OK {
		return "", statusErr("list accelerators", st)
	}
	var names []string
	for i := C.size_t(0); i < n; i++ {
		var acc C.LiteRtAccelerator
		var name *C.char
		if C.lrt_GetAccelerator(env, i, &acc) != C.SIGHTD_LITERT_OK ||
			C.lrt_GetAcceleratorName(acc, &name) != C.SIGHTD_LITERT_OK {
			continue
		}
		s := C.GoString(name)
		names = append(names, s)
		if strings.Contains(strings.ToLower(s), "cpu") {
			var v C.LiteRtApiVersion
			C.lrt_GetAcceleratorVersion(acc, &v)
			return fmt.Sprintf("%s %d.%d.%d", s, int(v.major), int(v.minor), int(v.patch)), nil
		}
	}
	return "", fmt.Errorf("%w: the runtime has no CPU accelerator (registered: %v)", ErrRuntime, names)
}

// Version describes the loaded runtime: the pinned release, the library's path
// and its CPU accelerator, e.g. "2.3.0 (CpuAccelerator 1.0.0, /usr/local/lib/sightd/libLiteRt.so)".
func Version() string {
	if _, err := environment(); err != nil {
		return PinnedVersion + " (" + err.Error() + ")"
	}
	cpu, _ := cpuAccelerator()
	return fmt.Sprintf("%s (%s, %s)", PinnedVersion, cpu, LibraryPath())
}

// LibraryPath is the file the dynamic loader took libLiteRt.so from.
func LibraryPath() string {
	p := C.GoString(C.sightd_litert_path())
	if p == "" {
		return ""
	}
	return filepath.Clean(p)
}

// Model is a loaded .tflite flatbuffer, immutable and shareable by any number
// of runners across goroutines. It must stay open while runners use it.
type Model struct {
	mu   sync.Mutex
	m    C.LiteRtModel
	data unsafe.Pointer // C copy of the bytes: the runtime reads them in place
	refs int
}

// NewModel loads a model from its bytes (copied; the caller may reuse data).
func NewModel(data []byte) (*Model, error) {
	if err := checkHeader(data); err != nil {
		return nil, err
	}
	e, err := environment()
	if err != nil {
		return nil, err
	}
	buf := C.sightd_aligned_alloc(C.size_t(len(data)))
	if buf == nil {
		return nil, fmt.Errorf("%w: out of memory for a %d-byte model", ErrRuntime, len(data))
	}
	copy(unsafe.Slice((*byte)(buf), len(data)), data)
	var m C.LiteRtModel
	if st := C.lrt_CreateModelFromBuffer(e, buf, C.size_t(len(data)), &m); st != C.SIGHTD_LITERT_OK {
		C.sightd_aligned_free(buf)
		return nil, fmt.Errorf("%w: LiteRT refused the flatbuffer (%d bytes): %s", ErrModelInvalid, len(data), statusText(st))
	}
	return &Model{m: m, data: buf}, nil
}

// NewModelFromFile loads (memory-maps) a .tflite file. LiteRT 2.3 does not
// verify the flatbuffer of a file (a truncated one makes it read out of
// bounds): callers verify it first, as quant/tflite does.
func NewModelFromFile(path string) (*Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("litert: open model: %w", err)
	}
	var hdr [8]byte
	n, _ := f.Read(hdr[:])
	f.Close()
	if err := checkHeader(hdr[:n]); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	e, err := environment()
	if err != nil {
		return nil, err
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var m C.LiteRtModel
	if st := C.lrt_CreateModelFromFile(e, cpath, &m); st != C.SIGHTD_LITERT_OK {
		return nil, fmt.Errorf("%w: LiteRT refused %s: %s", ErrModelInvalid, path, statusText(st))
	}
	return &Model{m: m}, nil
}

func checkHeader(b []byte) error {
	if len(b) < 8 {
		return fmt.Errorf("%w: %d bytes is too short for a flatbuffer", ErrModelInvalid, len(b))
	}
	if string(b[4:8]) != "TFL3" {
		return fmt.Errorf("%w: file identifier %q, want \"TFL3\"", ErrModelInvalid, b[4:8])
	}
	return nil
}

// Close frees the model; it fails while runners made from it are open.
// Closing twice is a no-op.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		return nil
	}
	if m.refs > 0 {
		return fmt.Errorf("litert: model still used by %d runner(s)", m.refs)
	}
	C.lrt_DestroyModel(m.m)
	m.m = nil
	if m.data != nil {
		C.sightd_aligned_free(m.data)
		m.data = nil
	}
	return nil
}

func (m *Model) acquire() (C.LiteRtModel, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		return nil, fmt.Errorf("model: %w", ErrClosed)
	}
	m.refs++
	return m.m, nil
}

func (m *Model) release() {
	m.mu.Lock()
	m.refs--
	m.mu.Unlock()
}
