package encoder

import (
	"fmt"
	"image"
	"slices"
	"time"

	"gocv.io/x/gocv"

	"github.com/sightd/sightd/quant/tflite"
)

// regionWriter preprocesses one region into slot i of the input tensor.
// stage does the same into a buffer of its own, with a second preprocessor,
// so that the next region is prepared on another core while the model runs
// on this one; commit then copies it into slot 0.
type regionWriter interface {
	write(frame gocv.Mat, r image.Rectangle, slot int) error
	stage(frame gocv.Mat, r image.Rectangle) error
	commit() error
}

type typedInput[T int8 | uint8 | float32] struct {
	t   *tflite.Tensor
	w   *Writer[T]
	per int // values per image
	// The staging side: its own preprocessor (scratch images are not
	// shared between goroutines) and buffer.
	ws      *Writer[T]
	staging []T
}

func newTypedInput[T int8 | uint8 | float32](t *tflite.Tensor, per int, pre, stagePre *Preprocessor, q Quantizer[T]) *typedInput[T] {
	return &typedInput[T]{t: t, per: per, w: NewWriter(pre, q), ws: NewWriter(stagePre, q), staging: make([]T, per)}
}

func (in *typedInput[T]) stage(frame gocv.Mat, r image.Rectangle) error {
	return in.ws.Write(in.staging, frame, r)
}

func (in *typedInput[T]) commit() error {
	v, err := tflite.View[T](in.t)
	if err != nil {
		return err
	}
	if len(v) < in.per {
		return fmt.Errorf("encoder: input tensor holds %d values, want %d", len(v), in.per)
	}
	copy(v[:in.per], in.staging)
	return nil
}

func (in *typedInput[T]) write(frame gocv.Mat, r image.Rectangle, slot int) error {
	// The view is taken per call: cheap, and always valid after a re-allocation.
	v, err := tflite.View[T](in.t)
	if err != nil {
		return err
	}
	if (slot+1)*in.per > len(v) {
		return fmt.Errorf("encoder: batch slot %d outside the input tensor", slot)
	}
	return in.w.Write(v[slot*in.per:(slot+1)*in.per], frame, r)
}

// Image is the image tower: regions of a frame in, unit vectors out. It owns
// its interpreter and is not safe for concurrent use; give each camera
// pipeline its own (they may share the Model).
type Image struct {
	ip  *tflite.Interpreter
	pre *Preprocessor
	in  regionWriter
	out *output
	// stagePre and the stager goroutine prepare region i+1 while region i
	// runs (regions one at a time only).
	stagePre *Preprocessor
	stageReq chan stageJob
	stageErr chan error
	// batch is the input's current batch size. With DynamicBatch the input
	// is resized to the number of regions (re-allocating only when that
	// number changes); otherwise regions run one at a time.
	batch        int
	dynamicBatch bool
	// invoked is the total time spent in Invoke, for `sightd bench`.
	invoked time.Duration
}

// ImageConfig configures an image tower.
type ImageConfig struct {
	Spec ImageSpec
	// DynamicBatch: the model accepts any batch size (its manifest says -1),
	// so several regions run in one invoke.
	DynamicBatch bool
	Runtime      tflite.Options
}

// NewImage builds the image tower on m. The input tensor must be NHWC (or NCHW
// when the spec says so) with 3 channels and the spec's size.
func NewImage(m *tflite.Model, cfg ImageConfig) (_ *Image, err error) {
	ip, err := tflite.NewInterpreter(m, cfg.Runtime)
	if err != nil {
		return nil, err
	}
	e := &Image{ip: ip, batch: 1, dynamicBatch: cfg.DynamicBatch}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if err := ip.AllocateTensors(); err != nil {
		return nil, err
	}
	if e.pre, err = NewPreprocessor(cfg.Spec); err != nil {
		return nil, err
	}
	if e.stagePre, err = NewPreprocessor(cfg.Spec); err != nil {
		return nil, err
	}
	t := ip.Input(0)
	if t == nil {
		return nil, fmt.Errorf("encoder: image model has no input")
	}
	want := []int{1, cfg.Spec.Height, cfg.Spec.Width, 3}
	if cfg.Spec.NCHW {
		want = []int{1, 3, cfg.Spec.Height, cfg.Spec.Width}
	}
	if got := t.Shape(); !slices.Equal(got, want) {
		return nil, fmt.Errorf("encoder: image input %q has shape %v, the spec says %v", t.Name(), got, want)
	}
	scale, zp := t.Quantization()
	per := t.NumElements()
	switch t.Type() {
	case tflite.Int8:
		e.in = newTypedInput(t, per, e.pre, e.stagePre, Quantizer[int8]{Scale: scale, ZeroPoint: zp})
	case tflite.UInt8:
		e.in = newTypedInput(t, per, e.pre, e.stagePre, Quantizer[uint8]{Scale: scale, ZeroPoint: zp})
	case tflite.Float32:
		e.in = newTypedInput(t, per, e.pre, e.stagePre, Quantizer[float32]{})
	default:
		return nil, fmt.Errorf("encoder: image input %q is %s; want int8, uint8 or float32", t.Name(), t.Type())
	}
	if (t.Type() == tflite.Int8 || t.Type() == tflite.UInt8) && scale == 0 {
		return nil, fmt.Errorf("encoder: image input %q is %s without quantisation parameters", t.Name(), t.Type())
	}
	if e.out, err = newOutput(ip.Output(0)); err != nil {
		return nil, err
	}
	if !e.dynamicBatch {
		e.stageReq, e.stageErr = make(chan stageJob), make(chan error)
		go e.stager(e.stageReq, e.stageErr)
	}
	return e, nil
}

// stageJob is a region for the stager to prepare.
type stageJob struct {
	frame gocv.Mat
	r     image.Rectangle
}

// stager prepares regions for Encode until Close closes req.
func (e *Image) stager(req <-chan stageJob, done chan<- error) {
	for j := range req {
		done <- e.in.stage(j.frame, j.r)
	}
}

// Dim is the embedding dimension.
func (e *Image) Dim() int { return e.out.dim }

// Preprocessor exposes the crop geometry (for drawing what the model saw).
func (e *Image) Preprocessor() *Preprocessor { return e.pre }

// Encode embeds each region of frame (8-bit BGR, as OpenCV decodes) into dst,
// which holds len(regions)*Dim() values: one unit vector per region, in
// order. Steady-state calls do not allocate.
func (e *Image) Encode(frame gocv.Mat, regions []image.Rectangle, dst []float32) error {
	if len(dst) != len(regions)*e.out.dim {
		return fmt.Errorf("encoder: destination holds %d values, want %d regions x %d", len(dst), len(regions), e.out.dim)
	}
	if !e.dynamicBatch {
		return e.oneByOne(frame, regions, dst)
	}
	if len(regions) != e.batch && len(regions) > 0 {
		if err := e.resizeBatch(len(regions)); err != nil {
			return err
		}
	}
	return e.run(frame, regions, dst)
}

// oneByOne runs the regions one invoke each. While region i runs, the
// stager prepares region i+1 on another core: with the model on one thread,
// preprocessing then costs almost nothing in frame time.
func (e *Image) oneByOne(frame gocv.Mat, regions []image.Rectangle, dst []float32) error {
	if len(regions) == 0 {
		return nil
	}
	if err := e.in.write(frame, regions[0], 0); err != nil {
		return fmt.Errorf("region 0 %v: %w", regions[0], err)
	}
	dim := e.out.dim
	for i, r := range regions {
		next := i+1 < len(regions)
		if next {
			e.stageReq <- stageJob{frame: frame, r: regions[i+1]}
		}
		err := e.invoke()
		if err == nil {
			err = e.out.read(dst[i*dim:(i+1)*dim], 1)
		}
		if err != nil {
			if next {
				<-e.stageErr // the stager must be done with frame before we return
			}
			return fmt.Errorf("region %d %v: %w", i, r, err)
		}
		if next {
			err := <-e.stageErr
			if err == nil {
				err = e.in.commit()
			}
			if err != nil {
				return fmt.Errorf("region %d %v: %w", i+1, regions[i+1], err)
			}
		}
	}
	return nil
}

func (e *Image) resizeBatch(n int) error {
	sp := e.pre.spec
	shape := []int{n, sp.Height, sp.Width, 3}
	if sp.NCHW {
		shape = []int{n, 3, sp.Height, sp.Width}
	}
	if err := e.ip.ResizeInput(0, shape); err != nil {
		return fmt.Errorf("encoder: batch of %d: %w", n, err)
	}
	if err := e.ip.AllocateTensors(); err != nil {
		return fmt.Errorf("encoder: batch of %d: %w", n, err)
	}
	e.batch = n
	return nil
}

func (e *Image) run(frame gocv.Mat, regions []image.Rectangle, dst []float32) error {
	for i, r := range regions {
		if err := e.in.write(frame, r, i); err != nil {
			return err
		}
	}
	if err := e.invoke(); err != nil {
		return err
	}
	return e.out.read(dst, len(regions))
}

func (e *Image) invoke() error {
	start := time.Now()
	err := e.ip.Invoke()
	e.invoked += time.Since(start)
	return err
}

// Invoked is the total time Encode spent running the model (not
// preprocessing or reading outputs): what `sightd bench` subtracts from the
// frame time to get the pipeline's own cost.
func (e *Image) Invoked() time.Duration { return e.invoked }

// Accelerators says what runs the tower ("xnnpack", "edgetpu", "cpu").
func (e *Image) Accelerators() []string { return e.ip.Accelerators() }

// Close frees the interpreter and the scratch images.
func (e *Image) Close() error {
	if e.stageReq != nil {
		close(e.stageReq)
		e.stageReq = nil
	}
	if e.pre != nil {
		e.pre.Close()
		e.pre = nil
	}
	if e.stagePre != nil {
		e.stagePre.Close()
		e.stagePre = nil
	}
	if e.ip != nil {
		err := e.ip.Close()
		e.ip = nil
		return err
	}
	return nil
}

// TimeInvoke runs the model n times on its current input and returns the
// mean time of one invoke: the engine's own limit, for `sightd bench`.
func (e *Image) TimeInvoke(n int) (time.Duration, error) {
	if n < 1 {
		n = 1
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := e.ip.Invoke(); err != nil {
			return 0, err
		}
	}
	return time.Since(start) / time.Duration(n), nil
}

// Batch is the number of regions one invoke takes (1 unless the model has a
// dynamic batch dimension and several regions were encoded at once).
func (e *Image) Batch() int { return e.batch }
