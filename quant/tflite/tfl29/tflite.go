// Package tfl29 is sightd's thin cgo binding to the classic TensorFlow Lite C
// API (the 2.9 runtime from tfjs-tflite-node). sightd runs models on LiteRT
// (quant/tflite/litert); this runtime stays for the Coral Edge TPU, which only
// the classic API's external delegate can load, and for side-by-side
// benchmarks. It is the only package that imports "C" for TensorFlow Lite;
// the rest of sightd uses it through quant/tflite.
//
// Shape: a Model (the flatbuffer, shared read-only by any number of
// interpreters), Options, an Interpreter (owns its tensors and delegates) and
// Tensor views. C status codes and nil returns become wrapped Go errors that
// carry the runtime's own error messages. Close methods are idempotent and free
// in reverse order of creation.
package tfl29

/*
#include <stdlib.h>
#include "tensorflow/lite/c/c_api.h"
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/sightd/sightd/quant/tflite/tferr"
)

// Sentinel errors, shared with the LiteRT binding; match them with errors.Is.
var (
	ErrModelInvalid   = tferr.ErrModelInvalid
	ErrClosed         = tferr.ErrClosed
	ErrNotAllocated   = tferr.ErrNotAllocated
	ErrTensorMismatch = tferr.ErrTensorMismatch
	ErrRuntime        = tferr.ErrRuntime
	ErrNoEdgeTPU      = tferr.ErrNoEdgeTPU
	ErrIndex          = tferr.ErrIndex
)

// Version is the TensorFlow Lite runtime's version, e.g. "2.9.0".
func Version() string { return C.GoString(C.TfLiteVersion()) }

// Model is a loaded .tflite flatbuffer. It is immutable once loaded and may be
// shared by several interpreters, also across goroutines. It must stay open
// while any interpreter made from it is in use.
type Model struct {
	mu   sync.Mutex
	m    *C.TfLiteModel
	data unsafe.Pointer // C copy of the bytes; the runtime does not copy them
	refs int            // interpreters still open
}

// NewModel loads a model from its bytes (copied; the caller may reuse data).
// The runtime verifies the flatbuffer; truncated or random bytes give
// ErrModelInvalid.
func NewModel(data []byte) (*Model, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("%w: %d bytes is too short for a flatbuffer", ErrModelInvalid, len(data))
	}
	if string(data[4:8]) != "TFL3" {
		return nil, fmt.Errorf("%w: file identifier %q, want \"TFL3\"", ErrModelInvalid, data[4:8])
	}
	buf := C.CBytes(data)
	m := C.TfLiteModelCreate(buf, C.size_t(len(data)))
	if m == nil {
		C.free(buf)
		return nil, fmt.Errorf("%w: the runtime rejected the flatbuffer (%d bytes)", ErrModelInvalid, len(data))
	}
	return newModel(m, buf), nil
}

// NewModelFromFile loads (memory-maps) a .tflite file.
func NewModelFromFile(path string) (*Model, error) {
	// Read the header ourselves first: the runtime only logs why it refused.
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tflite: open model: %w", err)
	}
	var hdr [8]byte
	n, _ := f.Read(hdr[:])
	f.Close()
	if n < 8 || string(hdr[4:8]) != "TFL3" {
		return nil, fmt.Errorf("%w: %s is not a TensorFlow Lite flatbuffer", ErrModelInvalid, path)
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	m := C.TfLiteModelCreateFromFile(cpath)
	if m == nil {
		return nil, fmt.Errorf("%w: the runtime rejected %s", ErrModelInvalid, path)
	}
	return newModel(m, nil), nil
}

// VerifyFile checks a .tflite file with TensorFlow Lite's flatbuffer verifier
// and frees it again. LiteRT 2.3 reads a truncated or damaged file out of
// bounds instead of refusing it, so quant/tflite verifies every file here
// before LiteRT sees it.
func VerifyFile(path string) error {
	m, err := NewModelFromFile(path)
	if err != nil {
		return err
	}
	return m.Close()
}

// Verify is VerifyFile for a model in memory.
func Verify(data []byte) error {
	m, err := NewModel(data)
	if err != nil {
		return err
	}
	return m.Close()
}

func newModel(m *C.TfLiteModel, data unsafe.Pointer) *Model {
	mod := &Model{m: m, data: data}
	runtime.SetFinalizer(mod, (*Model).Close)
	return mod
}

// Close frees the model. It fails while interpreters made from it are open,
// because they still read its weights. Closing twice is a no-op.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		return nil
	}
	if m.refs > 0 {
		return fmt.Errorf("tflite: model still used by %d interpreter(s)", m.refs)
	}
	C.TfLiteModelDelete(m.m)
	m.m = nil
	if m.data != nil {
		C.free(m.data)
		m.data = nil
	}
	runtime.SetFinalizer(m, nil)
	return nil
}

func (m *Model) acquire() (*C.TfLiteModel, error) {
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

// errorText returns what the runtime reported since the last reset.
func errorText(eb *C.sightd_errbuf) string {
	if eb == nil || eb.len == 0 {
		return ""
	}
	return strings.TrimSpace(C.GoStringN(&eb.buf[0], C.int(eb.len)))
}

func statusErr(what string, st C.TfLiteStatus, eb *C.sightd_errbuf) error {
	if st == C.kTfLiteOk {
		return nil
	}
	msg := errorText(eb)
	if msg == "" {
		msg = fmt.Sprintf("status %d", int(st))
	}
	return fmt.Errorf("%w: %s: %s", ErrRuntime, what, msg)
}
