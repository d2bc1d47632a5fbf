package tfl29

/*
#include <stdlib.h>
#include "tensorflow/lite/c/c_api.h"
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"strings"
	"unsafe"

	"github.com/rs/zerolog"
)

// EdgeTPUMode says whether to use a Coral Edge TPU.
type EdgeTPUMode int

const (
	// EdgeTPUOff never loads the Edge TPU delegate.
	EdgeTPUOff EdgeTPUMode = iota
	// EdgeTPUAuto uses an Edge TPU when the library and a device are present,
	// and otherwise falls back to the CPU, logging the reason.
	EdgeTPUAuto
	// EdgeTPURequire fails with ErrNoEdgeTPU when no Edge TPU can be used.
	EdgeTPURequire
)

// XNNPACK delegate flags (tensorflow/lite/delegates/xnnpack/xnnpack_delegate.h).
const (
	xnnpackFlagQS8 = 0x1 // signed int8 kernels
	xnnpackFlagQU8 = 0x2 // unsigned int8 kernels
)

// Defaults for Options' library names; the dynamic loader resolves them
// (through the binary's rpath for the bundled runtime).
const (
	DefaultEdgeTPULibrary          = "libedgetpu.so.1"
	DefaultExternalDelegateLibrary = "libexternal_delegate_obj.so"
)

// Options configure an interpreter.
type Options struct {
	// Threads for the kernels and the XNNPACK thread pool; 0 or less lets the
	// runtime decide.
	Threads int
	// XNNPACK applies the XNNPACK delegate with its float, int8 (QS8) and uint8
	// (QU8) kernels. The 2.9 runtime does not apply it by default.
	XNNPACK bool
	// EdgeTPU selects the Coral Edge TPU through the external delegate.
	EdgeTPU EdgeTPUMode
	// EdgeTPULibrary is the delegate plugin; DefaultEdgeTPULibrary when empty.
	EdgeTPULibrary string
	// EdgeTPUDevice picks a device ("usb", "pci", ":0"); any when empty.
	EdgeTPUDevice string
	// ExternalDelegateLibrary is TensorFlow Lite's external delegate loader;
	// DefaultExternalDelegateLibrary when empty.
	ExternalDelegateLibrary string
	// Log receives the reason for a fallback to the CPU; nil discards it.
	Log *zerolog.Logger
}

// Interpreter runs a model. It is not safe for concurrent use: give each
// goroutine its own interpreter (they may share one Model).
type Interpreter struct {
	model   *Model
	opts    *C.TfLiteInterpreterOptions
	it      *C.TfLiteInterpreter
	eb      *C.sightd_errbuf // C memory: the runtime keeps the pointer
	xnn     *C.TfLiteDelegate
	ext     *C.sightd_external
	accels  []string
	inputs  []*Tensor
	outputs []*Tensor
	// allocated is false until AllocateTensors succeeds and again after an
	// input is resized; Invoke refuses to run on unallocated tensors.
	allocated bool
}

// NewInterpreter creates an interpreter for m. Delegates are applied here;
// call AllocateTensors before the first Invoke.
func NewInterpreter(m *Model, o Options) (_ *Interpreter, err error) {
	cm, err := m.acquire()
	if err != nil {
		return nil, err
	}
	ip := &Interpreter{model: m}
	defer func() {
		if err != nil {
			ip.Close()
		}
	}()
	ip.eb = (*C.sightd_errbuf)(C.calloc(1, C.size_t(unsafe.Sizeof(C.sightd_errbuf{}))))
	ip.opts = C.TfLiteInterpreterOptionsCreate()
	if ip.eb == nil || ip.opts == nil {
		return nil, fmt.Errorf("%w: out of memory creating options", ErrRuntime)
	}
	C.sightd_set_reporter(ip.opts, ip.eb)
	threads := o.Threads
	if threads <= 0 {
		threads = -1
	}
	C.TfLiteInterpreterOptionsSetNumThreads(ip.opts, C.int32_t(threads))

	// The Edge TPU first, so that it claims its custom ops; XNNPACK then takes
	// what it can of the rest.
	if o.EdgeTPU != EdgeTPUOff {
		if err := ip.addEdgeTPU(o); err != nil {
			if o.EdgeTPU == EdgeTPURequire {
				return nil, err
			}
			if o.Log != nil {
				o.Log.Warn().Err(err).Msg("Edge TPU not used; running on the CPU")
			}
		}
	}
	if o.XNNPACK {
		if !xnnpackLayoutKnown(Version()) {
			return nil, fmt.Errorf("%w: XNNPACK delegate options are laid out as TensorFlow Lite 2.9's; this runtime is %s (newer ones put runtime_flags where 2.9 has flags): use LiteRT, or run without XNNPACK", ErrRuntime, Version())
		}
		n := o.Threads
		if n <= 0 {
			n = 1
		}
		ip.xnn = C.sightd_xnnpack_create(C.int32_t(n), xnnpackFlagQS8|xnnpackFlagQU8)
		if ip.xnn == nil {
			return nil, fmt.Errorf("%w: XNNPACK delegate could not be created", ErrRuntime)
		}
		C.TfLiteInterpreterOptionsAddDelegate(ip.opts, ip.xnn)
		ip.accels = append(ip.accels, "xnnpack")
	}
	if len(ip.accels) == 0 {
		ip.accels = append(ip.accels, "cpu")
	}

	ip.it = C.TfLiteInterpreterCreate(cm, ip.opts)
	if ip.it == nil {
		msg := errorText(ip.eb)
		if msg == "" {
			msg = "no reason given"
		}
		return nil, fmt.Errorf("%w: create interpreter: %s", ErrRuntime, msg)
	}
	ip.inputs = make([]*Tensor, int(C.TfLiteInterpreterGetInputTensorCount(ip.it)))
	ip.outputs = make([]*Tensor, int(C.TfLiteInterpreterGetOutputTensorCount(ip.it)))
	for i := range ip.inputs {
		ip.inputs[i] = &Tensor{ip: ip}
	}
	for i := range ip.outputs {
		ip.outputs[i] = &Tensor{ip: ip}
	}
	ip.refreshTensors()
	runtime.SetFinalizer(ip, (*Interpreter).Close)
	return ip, nil
}

// xnnpackLayoutKnown reports whether TfLiteXNNPackDelegateOptions is the
// 8-byte {num_threads, flags} of the 2.9 runtime. Later runtimes inserted
// runtime_flags after num_threads: writing 2.9's layout there would set the
// wrong field without an error.
func xnnpackLayoutKnown(version string) bool { return strings.HasPrefix(version, "2.9.") }

func (ip *Interpreter) addEdgeTPU(o Options) error {
	plugin := o.EdgeTPULibrary
	if plugin == "" {
		plugin = DefaultEdgeTPULibrary
	}
	obj := o.ExternalDelegateLibrary
	if obj == "" {
		obj = DefaultExternalDelegateLibrary
	}
	cplugin, cobj := C.CString(plugin), C.CString(obj)
	defer C.free(unsafe.Pointer(cplugin))
	defer C.free(unsafe.Pointer(cobj))

	var keys, vals []*C.char
	if o.EdgeTPUDevice != "" {
		keys = append(keys, C.CString("device"))
		vals = append(vals, C.CString(o.EdgeTPUDevice))
	}
	defer func() {
		for i := range keys {
			C.free(unsafe.Pointer(keys[i]))
			C.free(unsafe.Pointer(vals[i]))
		}
	}()
	// The arrays of C pointers must live in C memory to be passed to C.
	n := len(keys)
	ptrSize := C.size_t(unsafe.Sizeof((*C.char)(nil)))
	ckeys := (**C.char)(C.calloc(C.size_t(n+1), ptrSize))
	cvals := (**C.char)(C.calloc(C.size_t(n+1), ptrSize))
	defer C.free(unsafe.Pointer(ckeys))
	defer C.free(unsafe.Pointer(cvals))
	copy(unsafe.Slice(ckeys, n+1), keys)
	copy(unsafe.Slice(cvals, n+1), vals)

	var reason [512]C.char
	ext := C.sightd_external_create(cobj, cplugin, ckeys, cvals, C.int(n), &reason[0], C.size_t(len(reason)))
	if ext == nil {
		return fmt.Errorf("%w: %s", ErrNoEdgeTPU, C.GoString(&reason[0]))
	}
	ip.ext = ext
	C.TfLiteInterpreterOptionsAddDelegate(ip.opts, C.sightd_external_delegate(ext))
	ip.accels = append(ip.accels, "edgetpu")
	return nil
}

// Accelerators names the delegates applied, in order ("edgetpu", "xnnpack"),
// or "cpu" when only the built-in kernels run.
func (ip *Interpreter) Accelerators() []string { return append([]string(nil), ip.accels...) }

// refreshTensors re-reads the tensor pointers after the graph's buffers moved.
func (ip *Interpreter) refreshTensors() {
	for i, t := range ip.inputs {
		t.t = C.TfLiteInterpreterGetInputTensor(ip.it, C.int32_t(i))
	}
	for i, t := range ip.outputs {
		t.t = C.TfLiteInterpreterGetOutputTensor(ip.it, C.int32_t(i))
	}
}

func (ip *Interpreter) live() error {
	if ip.it == nil {
		return fmt.Errorf("interpreter: %w", ErrClosed)
	}
	C.sightd_errbuf_reset(ip.eb)
	return nil
}

// AllocateTensors plans and allocates the tensors. Required before the first
// Invoke and after ResizeInput. Views from Tensor.Bytes or View are invalid
// afterwards.
func (ip *Interpreter) AllocateTensors() error {
	if err := ip.live(); err != nil {
		return err
	}
	st := C.TfLiteInterpreterAllocateTensors(ip.it)
	ip.refreshTensors()
	if err := statusErr("allocate tensors", st, ip.eb); err != nil {
		ip.allocated = false
		return err
	}
	ip.allocated = true
	return nil
}

// ResizeInput changes the shape of input i (for example its batch size).
// AllocateTensors must follow before Invoke.
func (ip *Interpreter) ResizeInput(i int, shape []int) error {
	if err := ip.live(); err != nil {
		return err
	}
	if i < 0 || i >= len(ip.inputs) {
		return fmt.Errorf("%w: input %d of %d", ErrIndex, i, len(ip.inputs))
	}
	if len(shape) == 0 {
		return fmt.Errorf("%w: resize input %d to an empty shape", ErrTensorMismatch, i)
	}
	dims := make([]C.int, len(shape))
	for k, d := range shape {
		if d <= 0 {
			return fmt.Errorf("%w: resize input %d: dimension %d is %d", ErrTensorMismatch, i, k, d)
		}
		dims[k] = C.int(d)
	}
	st := C.TfLiteInterpreterResizeInputTensor(ip.it, C.int32_t(i), &dims[0], C.int32_t(len(dims)))
	ip.allocated = false
	ip.refreshTensors()
	return statusErr(fmt.Sprintf("resize input %d", i), st, ip.eb)
}

// Invoke runs the model once on the current input tensors.
func (ip *Interpreter) Invoke() error {
	if err := ip.live(); err != nil {
		return err
	}
	if !ip.allocated {
		return fmt.Errorf("invoke: %w (call AllocateTensors first)", ErrNotAllocated)
	}
	return statusErr("invoke", C.TfLiteInterpreterInvoke(ip.it), ip.eb)
}

// InputCount is the number of model inputs.
func (ip *Interpreter) InputCount() int { return len(ip.inputs) }

// OutputCount is the number of model outputs.
func (ip *Interpreter) OutputCount() int { return len(ip.outputs) }

// Input returns input tensor i, or nil when i is out of range.
func (ip *Interpreter) Input(i int) *Tensor {
	if i < 0 || i >= len(ip.inputs) {
		return nil
	}
	return ip.inputs[i]
}

// Output returns output tensor i, or nil when i is out of range. Its data is
// overwritten by the next Invoke: copy out what must be kept.
func (ip *Interpreter) Output(i int) *Tensor {
	if i < 0 || i >= len(ip.outputs) {
		return nil
	}
	return ip.outputs[i]
}

// Close frees the interpreter, then its delegates, options and error buffer
// (the reverse of creation), and releases the model. Closing twice is a no-op.
func (ip *Interpreter) Close() error {
	if ip.model == nil {
		return nil
	}
	if ip.it != nil {
		C.TfLiteInterpreterDelete(ip.it)
		ip.it = nil
	}
	for _, t := range ip.inputs {
		t.t = nil
	}
	for _, t := range ip.outputs {
		t.t = nil
	}
	if ip.xnn != nil {
		C.sightd_xnnpack_delete(ip.xnn)
		ip.xnn = nil
	}
	if ip.ext != nil {
		C.sightd_external_delete(ip.ext)
		ip.ext = nil
	}
	if ip.opts != nil {
		C.TfLiteInterpreterOptionsDelete(ip.opts)
		ip.opts = nil
	}
	if ip.eb != nil {
		C.free(unsafe.Pointer(ip.eb))
		ip.eb = nil
	}
	ip.model.release()
	ip.model = nil
	runtime.SetFinalizer(ip, nil)
	return nil
}
