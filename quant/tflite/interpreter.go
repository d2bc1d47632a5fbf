package tflite

import (
	"errors"
	"fmt"
	"runtime"
	"slices"

	"github.com/rs/zerolog"

	"github.com/sightd/sightd/quant/tflite/litert"
	"github.com/sightd/sightd/quant/tflite/tfl29"
)

// EdgeTPUMode says whether to use a Coral Edge TPU.
type EdgeTPUMode int

const (
	// EdgeTPUOff never loads the Edge TPU delegate.
	EdgeTPUOff EdgeTPUMode = iota
	// EdgeTPUAuto uses an Edge TPU for a model compiled for it when the
	// library and a device are present, and otherwise runs on the CPU,
	// logging the reason.
	EdgeTPUAuto
	// EdgeTPURequire fails with ErrNoEdgeTPU when no Edge TPU can be used.
	EdgeTPURequire
)

// Defaults for Options' library names; the dynamic loader resolves them
// (through the binary's rpath for the bundled runtime).
const (
	DefaultEdgeTPULibrary          = tfl29.DefaultEdgeTPULibrary
	DefaultExternalDelegateLibrary = tfl29.DefaultExternalDelegateLibrary
)

// Options configure an interpreter.
type Options struct {
	// Runtime picks the runtime; RuntimeAuto (the zero value) is LiteRT
	// unless an Edge TPU model meets an Edge TPU.
	Runtime Runtime
	// Threads for the CPU kernels; 0 or less lets the runtime decide.
	Threads int
	// XNNPACK applies TensorFlow Lite 2.9's XNNPACK delegate (float, QS8 and
	// QU8 kernels). LiteRT's CPU kernels are XNNPACK's whatever this says.
	XNNPACK bool
	// EdgeTPU selects the Coral Edge TPU (through TensorFlow Lite 2.9).
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

// Interpreter runs a model on one runtime. It is not safe for concurrent use:
// give each goroutine its own interpreter (they may share one Model).
type Interpreter struct {
	model   *Model
	runtime Runtime
	lr      *litert.Runner
	t29     *tfl29.Interpreter
	inputs  []*Tensor
	outputs []*Tensor
	// LiteRT: input shapes asked for by ResizeInput, applied by
	// AllocateTensors (the classic API's order of calls).
	pending   map[int][]int
	allocated bool
}

// NewInterpreter creates an interpreter for m on the runtime o selects. Call
// AllocateTensors before the first Invoke.
func NewInterpreter(m *Model, o Options) (*Interpreter, error) {
	rt, err := m.choose(o)
	if err != nil {
		return nil, err
	}
	ip := &Interpreter{model: m, runtime: rt}
	switch rt {
	case RuntimeTFLite29:
		cm, err := m.classic()
		if err != nil {
			return nil, err
		}
		ip.t29, err = tfl29.NewInterpreter(cm, tfl29.Options{
			Threads: o.Threads, XNNPACK: o.XNNPACK, EdgeTPU: tfl29.EdgeTPUMode(o.EdgeTPU),
			EdgeTPULibrary: o.EdgeTPULibrary, EdgeTPUDevice: o.EdgeTPUDevice,
			ExternalDelegateLibrary: o.ExternalDelegateLibrary, Log: o.Log,
		})
		if err != nil {
			return nil, err
		}
		for i := range ip.t29.InputCount() {
			ip.inputs = append(ip.inputs, &Tensor{ip: ip, t29: ip.t29.Input(i)})
		}
		for i := range ip.t29.OutputCount() {
			ip.outputs = append(ip.outputs, &Tensor{ip: ip, t29: ip.t29.Output(i)})
		}
	default:
		if m.closed {
			return nil, fmt.Errorf("model: %w", ErrClosed)
		}
		ip.lr, err = litert.NewRunner(m.lr, litert.Options{Threads: o.Threads})
		if err != nil {
			return nil, m.explain(err)
		}
		for _, t := range ip.lr.Inputs() {
			ip.inputs = append(ip.inputs, &Tensor{ip: ip, lr: t})
		}
		for _, t := range ip.lr.Outputs() {
			ip.outputs = append(ip.outputs, &Tensor{ip: ip, lr: t})
		}
	}
	runtime.SetFinalizer(ip, (*Interpreter).Close)
	return ip, nil
}

// explain adds a reason to LiteRT's refusal to compile a model, which comes
// with a status alone (the runtime keeps its message): TensorFlow Lite 2.9
// is asked to build the same model and its complaint, if it has one, is
// quoted.
func (m *Model) explain(err error) error {
	if !errors.Is(err, ErrModelInvalid) {
		return err
	}
	cm, cerr := m.classic()
	if cerr != nil {
		return fmt.Errorf("%w (TensorFlow Lite 2.9, asked for a reason: %v)", err, cerr)
	}
	ip, cerr := tfl29.NewInterpreter(cm, tfl29.Options{Threads: 1})
	if cerr != nil {
		return fmt.Errorf("%w (TensorFlow Lite 2.9, asked for a reason: %v)", err, cerr)
	}
	defer ip.Close()
	if cerr := ip.AllocateTensors(); cerr != nil {
		return fmt.Errorf("%w (TensorFlow Lite 2.9, asked for a reason: %v)", err, cerr)
	}
	return err
}

// choose picks the runtime: TensorFlow Lite 2.9 where the Edge TPU is
// required, or wanted for a model compiled for it; LiteRT otherwise.
func (m *Model) choose(o Options) (Runtime, error) {
	if o.Runtime == RuntimeLiteRT && o.EdgeTPU == EdgeTPURequire {
		return 0, fmt.Errorf("%w: LiteRT cannot load the Edge TPU delegate; use runtime auto or tflite2.9", ErrNoEdgeTPU)
	}
	if o.Runtime != RuntimeAuto {
		return o.Runtime, nil
	}
	switch o.EdgeTPU {
	case EdgeTPURequire:
		return RuntimeTFLite29, nil
	case EdgeTPUAuto:
		tpu, err := m.ForEdgeTPU()
		if err != nil {
			return 0, err
		}
		if tpu {
			return RuntimeTFLite29, nil
		}
	}
	return RuntimeLiteRT, nil
}

// Runtime is the runtime that runs this interpreter.
func (ip *Interpreter) Runtime() Runtime { return ip.runtime }

// Accelerators names the kernels and delegates in use, in order: "edgetpu",
// "xnnpack", or "cpu" when only TensorFlow Lite 2.9's built-in kernels run.
// LiteRT's CPU accelerator is XNNPACK.
func (ip *Interpreter) Accelerators() []string {
	if ip.t29 != nil {
		return ip.t29.Accelerators()
	}
	return []string{"xnnpack"}
}

// FullyAccelerated reports whether LiteRT's XNNPACK took every op of the
// model (false on TensorFlow Lite 2.9).
func (ip *Interpreter) FullyAccelerated() bool { return ip.lr != nil && ip.lr.FullyAccelerated() }

func (ip *Interpreter) live() error {
	if ip.model == nil {
		return fmt.Errorf("interpreter: %w", ErrClosed)
	}
	return nil
}

// AllocateTensors plans and allocates the tensors. Required before the first
// Invoke and after ResizeInput. Views from View are invalid afterwards.
func (ip *Interpreter) AllocateTensors() error {
	if err := ip.live(); err != nil {
		return err
	}
	if ip.t29 != nil {
		err := ip.t29.AllocateTensors()
		ip.allocated = err == nil
		return err
	}
	for i, shape := range ip.pending {
		if !slices.Equal(shape, ip.inputs[i].lr.Shape()) {
			if err := ip.lr.ResizeInput(i, shape); err != nil {
				ip.allocated = false
				return fmt.Errorf("allocate tensors: %w", err)
			}
		}
		delete(ip.pending, i)
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
	if ip.t29 != nil {
		ip.allocated = false
		return ip.t29.ResizeInput(i, shape)
	}
	if i < 0 || i >= len(ip.inputs) {
		return fmt.Errorf("%w: input %d of %d", ErrIndex, i, len(ip.inputs))
	}
	if len(shape) == 0 {
		return fmt.Errorf("%w: resize input %d to an empty shape", ErrTensorMismatch, i)
	}
	for k, d := range shape {
		if d <= 0 {
			return fmt.Errorf("%w: resize input %d: dimension %d is %d", ErrTensorMismatch, i, k, d)
		}
	}
	if ip.pending == nil {
		ip.pending = map[int][]int{}
	}
	ip.pending[i] = slices.Clone(shape)
	ip.allocated = false
	return nil
}

// Invoke runs the model once on the current input tensors.
func (ip *Interpreter) Invoke() error {
	if err := ip.live(); err != nil {
		return err
	}
	if !ip.allocated {
		return fmt.Errorf("invoke: %w (call AllocateTensors first)", ErrNotAllocated)
	}
	if ip.t29 != nil {
		return ip.t29.Invoke()
	}
	return ip.lr.Invoke()
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

// Close frees the interpreter and releases the model. Closing twice is a no-op.
func (ip *Interpreter) Close() error {
	if ip.model == nil {
		return nil
	}
	var err error
	if ip.t29 != nil {
		err = ip.t29.Close()
	}
	if ip.lr != nil {
		err = ip.lr.Close()
	}
	ip.model = nil
	runtime.SetFinalizer(ip, nil)
	return err
}
