package litert

/*
#include <stdlib.h>
#include "litert_c.h"
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"strings"
	"unsafe"
)

// CPU options are an opaque entry of TOML text. LiteRT 2.3.0 reads the entry
// named "xnnpack"; later releases renamed it "cpu_options" and silently ignore
// the old name, which TestThreadsReachTheRuntime catches by counting threads.
const (
	cpuOptionsID     = "xnnpack"
	runtimeOptionsID = "runtime_options_string"
)

// Options configure a Runner.
type Options struct {
	// Threads for the XNNPACK thread pool; 0 or less leaves the runtime's
	// default (one thread).
	Threads int
}

// Runner is a model compiled for the CPU accelerator (XNNPACK kernels) with
// its own input and output buffers in host memory. It is not safe for
// concurrent use: give each goroutine its own runner (they may share a Model).
type Runner struct {
	model   *Model
	cm      C.LiteRtCompiledModel
	sig     C.LiteRtSignature
	inputs  []*Tensor
	outputs []*Tensor
	// C arrays of the buffer handles, passed to every run.
	inBufs, outBufs *C.LiteRtTensorBuffer
}

// NewRunner compiles m for the CPU.
func NewRunner(m *Model, o Options) (_ *Runner, err error) {
	e, err := environment()
	if err != nil {
		return nil, err
	}
	cmodel, err := m.acquire()
	if err != nil {
		return nil, err
	}
	r := &Runner{model: m}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	var nsig C.size_t
	if st := C.lrt_GetNumModelSignatures(cmodel, &nsig); st != C.SIGHTD_LITERT_OK || nsig == 0 {
		return nil, fmt.Errorf("%w: the model has no signature (%s)", ErrModelInvalid, statusText(st))
	}
	if st := C.lrt_GetModelSignature(cmodel, 0, &r.sig); st != C.SIGHTD_LITERT_OK {
		return nil, statusErr("signature 0", st)
	}

	var opts C.LiteRtOptions
	if st := C.lrt_CreateOptions(&opts); st != C.SIGHTD_LITERT_OK {
		return nil, statusErr("create options", st)
	}
	defer C.lrt_DestroyOptions(opts)
	if st := C.lrt_SetOptionsHardwareAccelerators(opts, C.SIGHTD_LITERT_HW_CPU); st != C.SIGHTD_LITERT_OK {
		return nil, statusErr("select the CPU accelerator", st)
	}
	if o.Threads > 0 {
		if err := addTextOptions(opts, cpuOptionsID, fmt.Sprintf("num_threads = %d\n", o.Threads)); err != nil {
			return nil, err
		}
	}
	// The buffer error reporter keeps the runtime's messages for our errors
	// instead of printing them.
	if err := addTextOptions(opts, runtimeOptionsID, "error_reporter_mode = 2\n"); err != nil {
		return nil, err
	}
	if st := C.lrt_CreateCompiledModel(e, cmodel, opts, &r.cm); st != C.SIGHTD_LITERT_OK {
		r.cm = nil
		return nil, fmt.Errorf("%w: LiteRT cannot compile the model for the CPU: %s", ErrModelInvalid, statusText(st))
	}

	var nin, nout C.size_t
	C.lrt_GetNumSignatureInputs(r.sig, &nin)
	C.lrt_GetNumSignatureOutputs(r.sig, &nout)
	ptr := C.size_t(unsafe.Sizeof(C.LiteRtTensorBuffer(nil)))
	r.inBufs = (*C.LiteRtTensorBuffer)(C.calloc(nin+1, ptr))
	r.outBufs = (*C.LiteRtTensorBuffer)(C.calloc(nout+1, ptr))
	r.inputs = make([]*Tensor, int(nin))
	r.outputs = make([]*Tensor, int(nout))
	for i := range r.inputs {
		var t C.LiteRtTensor
		if st := C.lrt_GetSignatureInputTensorByIndex(r.sig, C.size_t(i), &t); st != C.SIGHTD_LITERT_OK {
			return nil, statusErr(fmt.Sprintf("input %d", i), st)
		}
		if r.inputs[i], err = newTensor(t); err != nil {
			return nil, fmt.Errorf("input %d: %w", i, err)
		}
	}
	for i := range r.outputs {
		var t C.LiteRtTensor
		if st := C.lrt_GetSignatureOutputTensorByIndex(r.sig, C.size_t(i), &t); st != C.SIGHTD_LITERT_OK {
			return nil, statusErr(fmt.Sprintf("output %d", i), st)
		}
		if r.outputs[i], err = newTensor(t); err != nil {
			return nil, fmt.Errorf("output %d: %w", i, err)
		}
	}
	if err := r.allocate(); err != nil {
		return nil, err
	}
	return r, nil
}

func addTextOptions(opts C.LiteRtOptions, id, text string) error {
	cid, ctext := C.CString(id), C.CString(text)
	defer C.free(unsafe.Pointer(cid))
	defer C.free(unsafe.Pointer(ctext))
	return statusErr("options "+id, C.sightd_add_text_options(opts, cid, ctext))
}

// allocate (re)creates every buffer at the tensors' current shapes.
func (r *Runner) allocate() error {
	ins := unsafe.Slice(r.inBufs, len(r.inputs))
	outs := unsafe.Slice(r.outBufs, len(r.outputs))
	for i, t := range r.inputs {
		var req C.LiteRtTensorBufferRequirements
		if st := C.lrt_GetCompiledModelInputBufferRequirements(r.cm, 0, C.size_t(i), &req); st != C.SIGHTD_LITERT_OK {
			return r.err(fmt.Sprintf("input %d buffer requirements", i), st)
		}
		if err := t.allocate(req, &ins[i]); err != nil {
			return fmt.Errorf("input %d: %w", i, err)
		}
	}
	if len(r.outputs) > 0 {
		// Output shapes follow the inputs' (after a resize).
		layouts := make([]C.LiteRtLayout, len(r.outputs))
		if st := C.lrt_GetCompiledModelOutputTensorLayouts(r.cm, 0, C.size_t(len(layouts)), &layouts[0], true); st != C.SIGHTD_LITERT_OK {
			return r.err("output layouts", st)
		}
		for i, t := range r.outputs {
			t.typ.layout = layouts[i]
			var req C.LiteRtTensorBufferRequirements
			if st := C.lrt_GetCompiledModelOutputBufferRequirements(r.cm, 0, C.size_t(i), &req); st != C.SIGHTD_LITERT_OK {
				return r.err(fmt.Sprintf("output %d buffer requirements", i), st)
			}
			if err := t.allocate(req, &outs[i]); err != nil {
				return fmt.Errorf("output %d: %w", i, err)
			}
		}
	}
	return nil
}

// err wraps a failed status with the messages the runtime reported.
func (r *Runner) err(what string, st C.LiteRtStatus) error {
	msg := r.messages()
	if msg == "" {
		return statusErr(what, st)
	}
	return fmt.Errorf("%w: %s: %s: %s", ErrRuntime, what, statusText(st), msg)
}

// messages takes the runtime's buffered error messages, keeping the errors
// (lines without an INFO or WARNING prefix).
func (r *Runner) messages() string {
	if r.cm == nil {
		return ""
	}
	var cmsg *C.char
	if C.lrt_CompiledModelGetErrorMessages(r.cm, &cmsg) != C.SIGHTD_LITERT_OK || cmsg == nil {
		return ""
	}
	text := C.GoString(cmsg)
	C.free(unsafe.Pointer(cmsg))
	C.lrt_CompiledModelClearErrors(r.cm)
	var keep []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "INFO:") || strings.HasPrefix(l, "WARNING:") {
			continue
		}
		keep = append(keep, strings.TrimPrefix(l, "ERROR: "))
	}
	return strings.Join(keep, "; ")
}

// Inputs are the model's inputs in signature order.
func (r *Runner) Inputs() []*Tensor { return r.inputs }

// Outputs are the model's outputs in signature order. Their data is
// overwritten by the next Invoke.
func (r *Runner) Outputs() []*Tensor { return r.outputs }

// FullyAccelerated reports whether the CPU accelerator (XNNPACK) took every op.
func (r *Runner) FullyAccelerated() bool {
	var full C.bool
	if r.cm == nil || C.lrt_CompiledModelIsFullyAccelerated(r.cm, &full) != C.SIGHTD_LITERT_OK {
		return false
	}
	return bool(full)
}

// ResizeInput changes input i's shape (a batch size, for example) and
// reallocates every buffer; data views taken before are invalid afterwards.
func (r *Runner) ResizeInput(i int, shape []int) error {
	if r.cm == nil {
		return fmt.Errorf("runner: %w", ErrClosed)
	}
	if i < 0 || i >= len(r.inputs) {
		return fmt.Errorf("%w: input %d of %d", ErrIndex, i, len(r.inputs))
	}
	if len(shape) == 0 || len(shape) > C.SIGHTD_LITERT_MAX_RANK {
		return fmt.Errorf("%w: resize input %d to rank %d", ErrTensorMismatch, i, len(shape))
	}
	dims := make([]C.int, len(shape))
	for k, d := range shape {
		if d <= 0 {
			return fmt.Errorf("%w: resize input %d: dimension %d is %d", ErrTensorMismatch, i, k, d)
		}
		dims[k] = C.int(d)
	}
	if st := C.lrt_CompiledModelResizeInputTensorNonStrict(r.cm, 0, C.size_t(i), &dims[0], C.size_t(len(dims))); st != C.SIGHTD_LITERT_OK {
		return r.err(fmt.Sprintf("resize input %d to %v", i, shape), st)
	}
	t := r.inputs[i]
	for k, d := range dims {
		t.typ.layout.dimensions[k] = C.int32_t(d)
	}
	C.sightd_layout_set_rank(&t.typ.layout, C.int(len(dims)))
	return r.allocate()
}

// Invoke runs the model once on the input buffers.
func (r *Runner) Invoke() error {
	if r.cm == nil {
		return fmt.Errorf("runner: %w", ErrClosed)
	}
	st := C.lrt_RunCompiledModel(r.cm, 0, C.size_t(len(r.inputs)), r.inBufs, C.size_t(len(r.outputs)), r.outBufs)
	if st != C.SIGHTD_LITERT_OK {
		return r.err("invoke", st)
	}
	return nil
}

// Close frees the buffers, then the compiled model, and releases the model.
// Closing twice is a no-op.
func (r *Runner) Close() error {
	if r.model == nil {
		return nil
	}
	for _, t := range r.inputs {
		if t != nil {
			t.free()
		}
	}
	for _, t := range r.outputs {
		if t != nil {
			t.free()
		}
	}
	if r.inBufs != nil {
		C.free(unsafe.Pointer(r.inBufs))
		r.inBufs = nil
	}
	if r.outBufs != nil {
		C.free(unsafe.Pointer(r.outBufs))
		r.outBufs = nil
	}
	if r.cm != nil {
		C.lrt_DestroyCompiledModel(r.cm)
		r.cm = nil
	}
	r.model.release()
	r.model = nil
	return nil
}
