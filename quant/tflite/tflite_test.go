package tflite_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/sightd/sightd/quant/modelgen"
	"github.com/sightd/sightd/quant/tflite"
	"github.com/sightd/sightd/quant/tflite/tflschema"
)

// faceModel is MediaPipe's float32 face detector (input 1x128x128x3, two
// outputs), a model nobody here wrote, unpacked by `make deps`.
func faceModel(t testing.TB) []byte {
	t.Helper()
	p := filepath.Join("..", "..", "third_party", "fixtures", "face_detection_short_range.tflite")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("fixture missing (run `make deps`): %v", err)
	}
	return b
}

func newInterp(t testing.TB, m *tflite.Model, o tflite.Options) *tflite.Interpreter {
	t.Helper()
	ip, err := tflite.NewInterpreter(m, o)
	if err != nil {
		t.Fatalf("NewInterpreter(%+v): %v", o, err)
	}
	t.Cleanup(func() { ip.Close() })
	if err := ip.AllocateTensors(); err != nil {
		t.Fatalf("AllocateTensors: %v", err)
	}
	return ip
}

func TestVersion(t *testing.T) {
	v := tflite.Version()
	if !strings.HasPrefix(v, "LiteRT 2.") || !strings.Contains(v, "TensorFlow Lite 2.9") || !strings.Contains(v, "libLiteRt.so") {
		t.Fatalf("Version() = %q, want LiteRT 2.x with its library and TensorFlow Lite 2.9", v)
	}
	if !strings.HasPrefix(tflite.TFLiteVersion(), "2.9") || tflite.LiteRTVersion() != "2.3.0" {
		t.Fatalf("versions %q, %q", tflite.TFLiteVersion(), tflite.LiteRTVersion())
	}
}

// runFace feeds a deterministic image and returns both outputs.
func runFace(t testing.TB, ip *tflite.Interpreter) [][]float32 {
	t.Helper()
	outs, err := faceRun(ip)
	if err != nil {
		t.Fatal(err)
	}
	return outs
}

func faceRun(ip *tflite.Interpreter) ([][]float32, error) {
	in := ip.Input(0)
	px := make([]float32, in.NumElements())
	r := rand.New(rand.NewPCG(1, 2))
	for i := range px {
		px[i] = r.Float32()*2 - 1
	}
	if err := tflite.CopyIn(in, px); err != nil {
		return nil, err
	}
	if err := ip.Invoke(); err != nil {
		return nil, err
	}
	outs := make([][]float32, ip.OutputCount())
	for i := range outs {
		outs[i] = make([]float32, ip.Output(i).NumElements())
		if err := tflite.CopyOut(ip.Output(i), outs[i]); err != nil {
			return nil, err
		}
	}
	return outs, nil
}

func TestForeignModel(t *testing.T) {
	m, err := tflite.NewModel(faceModel(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cpu := newInterp(t, m, tflite.Options{Runtime: tflite.RuntimeTFLite29, Threads: 1})
	xnn := newInterp(t, m, tflite.Options{Runtime: tflite.RuntimeTFLite29, Threads: 2, XNNPACK: true})
	lrt := newInterp(t, m, tflite.Options{Threads: 2})
	if cpu.Runtime() != tflite.RuntimeTFLite29 || lrt.Runtime() != tflite.RuntimeLiteRT {
		t.Fatalf("runtimes %v, %v", cpu.Runtime(), lrt.Runtime())
	}

	in := cpu.Input(0)
	if got, want := in.Shape(), []int{1, 128, 128, 3}; !slices.Equal(got, want) {
		t.Fatalf("input shape %v, want %v", got, want)
	}
	if in.Type() != tflite.Float32 || in.ByteSize() != 128*128*3*4 {
		t.Fatalf("input type %s size %d", in.Type(), in.ByteSize())
	}
	if in.Name() == "" || cpu.OutputCount() != 2 {
		t.Fatalf("name %q, outputs %d", in.Name(), cpu.OutputCount())
	}
	if s, z := in.Quantization(); s != 0 || z != 0 {
		t.Fatalf("float input has quantization %v %v", s, z)
	}
	for _, ip := range []*tflite.Interpreter{xnn, lrt} {
		if got := ip.Accelerators(); !slices.Equal(got, []string{"xnnpack"}) {
			t.Fatalf("%v: Accelerators() = %v", ip.Runtime(), got)
		}
	}
	if got := cpu.Accelerators(); !slices.Equal(got, []string{"cpu"}) {
		t.Fatalf("2.9 built-in: Accelerators() = %v", got)
	}
	if !lrt.FullyAccelerated() {
		t.Errorf("LiteRT: XNNPACK did not take every op of a float model")
	}

	a := runFace(t, cpu)
	for name, ip := range map[string]*tflite.Interpreter{"2.9 XNNPACK": xnn, "LiteRT": lrt} {
		b := runFace(t, ip)
		for o := range a {
			var maxAbs, maxDiff float64
			for i := range a[o] {
				maxAbs = math.Max(maxAbs, math.Abs(float64(a[o][i])))
				maxDiff = math.Max(maxDiff, math.Abs(float64(a[o][i]-b[o][i])))
			}
			// Different kernels sum in a different order: agree to float rounding.
			if maxAbs == 0 || maxDiff > 1e-3*maxAbs {
				t.Errorf("output %d: 2.9 built-in vs %s differ by %g (max |x| %g)", o, name, maxDiff, maxAbs)
			}
		}
	}
}

func TestModelFromFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.tflite")
	if err := os.WriteFile(p, faceModel(t), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := tflite.NewModelFromFile(p)
	if err != nil {
		t.Fatal(err)
	}
	ip := newInterp(t, m, tflite.Options{})
	if n := len(runFace(t, ip)); n != 2 {
		t.Fatalf("%d outputs", n)
	}
	ip.Close()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	if _, err := tflite.NewModelFromFile(filepath.Join(dir, "missing.tflite")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	junk := filepath.Join(dir, "junk.tflite")
	os.WriteFile(junk, []byte("not a model at all"), 0o644)
	if _, err := tflite.NewModelFromFile(junk); !errors.Is(err, tflite.ErrModelInvalid) {
		t.Fatalf("junk file: %v", err)
	}
	// Damaged files are refused before LiteRT reads them (LiteRT 2.3 itself
	// reads a truncated file out of bounds).
	face := faceModel(t)
	for name, b := range map[string][]byte{"half": face[:len(face)/2], "third": face[:len(face)/3], "header": face[:64]} {
		p := filepath.Join(dir, name+".tflite")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := tflite.NewModelFromFile(p); !errors.Is(err, tflite.ErrModelInvalid) {
			t.Errorf("truncated file (%s): %v", name, err)
		}
	}
}

func TestBadModelBytes(t *testing.T) {
	good := faceModel(t)
	r := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	withID := append([]byte(nil), random...)
	copy(withID[4:], "TFL3")
	cases := map[string][]byte{
		"empty":               nil,
		"tiny":                []byte("TFL"),
		"random":              random,
		"random with TFL3 id": withID,
		"truncated to half":   good[:len(good)/2],
		"truncated header":    good[:64],
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			m, err := tflite.NewModel(b)
			if err == nil {
				m.Close()
				t.Fatal("no error")
			}
			if !errors.Is(err, tflite.ErrModelInvalid) {
				t.Fatalf("error %v is not ErrModelInvalid", err)
			}
		})
	}
}

func TestTensorMisuse(t *testing.T) {
	m, err := tflite.NewModel(faceModel(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ip, err := tflite.NewInterpreter(m, tflite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ip.Close()

	if err := ip.Invoke(); !errors.Is(err, tflite.ErrNotAllocated) {
		t.Fatalf("invoke before allocate: %v", err)
	}
	if err := tflite.CopyIn(ip.Input(0), make([]float32, 128*128*3)); !errors.Is(err, tflite.ErrNotAllocated) {
		t.Fatalf("copy before allocate: %v", err)
	}
	if err := ip.AllocateTensors(); err != nil {
		t.Fatal(err)
	}
	in := ip.Input(0)
	if err := tflite.CopyIn(in, make([]float32, 10)); !errors.Is(err, tflite.ErrTensorMismatch) {
		t.Fatalf("short input: %v", err)
	}
	if err := tflite.CopyIn(in, make([]uint8, 128*128*3*4)); !errors.Is(err, tflite.ErrTensorMismatch) {
		t.Fatalf("wrong dtype: %v", err)
	} else if !strings.Contains(err.Error(), "FLOAT32") {
		t.Fatalf("dtype error does not name the tensor type: %v", err)
	}
	if err := tflite.CopyOut(ip.Output(0), make([]float32, 1)); !errors.Is(err, tflite.ErrTensorMismatch) {
		t.Fatalf("short output: %v", err)
	}
	if _, err := tflite.View[int8](in); !errors.Is(err, tflite.ErrTensorMismatch) {
		t.Fatalf("view with wrong dtype: %v", err)
	}
	if ip.Input(5) != nil || ip.Output(-1) != nil {
		t.Fatal("out-of-range tensor is not nil")
	}
	if err := ip.ResizeInput(3, []int{1}); !errors.Is(err, tflite.ErrIndex) {
		t.Fatalf("resize of a missing input: %v", err)
	}

	// A shape the model cannot take: the runtime's own message comes back.
	if err := ip.ResizeInput(0, []int{1, 128, 128, 4}); err != nil {
		t.Fatalf("resize: %v", err)
	}
	if err := ip.Invoke(); !errors.Is(err, tflite.ErrNotAllocated) {
		t.Fatalf("invoke after resize, before allocate: %v", err)
	}
	err = ip.AllocateTensors()
	if !errors.Is(err, tflite.ErrRuntime) || len(err.Error()) < len("tflite: runtime error: allocate tensors: x") {
		t.Fatalf("allocate with a bad shape: %v", err)
	}
	t.Logf("runtime reported: %v", err)
	if err := ip.Invoke(); !errors.Is(err, tflite.ErrNotAllocated) {
		t.Fatalf("invoke after failed allocate: %v", err)
	}
	// Back to the right shape, the interpreter works again.
	if err := ip.ResizeInput(0, []int{1, 128, 128, 3}); err != nil {
		t.Fatal(err)
	}
	if err := ip.AllocateTensors(); err != nil {
		t.Fatal(err)
	}
	runFace(t, ip)
}

func TestZeroCopyView(t *testing.T) {
	m, err := tflite.NewModel(faceModel(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	a := newInterp(t, m, tflite.Options{})
	b := newInterp(t, m, tflite.Options{})

	want := runFace(t, a)
	// Fill b's input in place with the same pixels through a view.
	px := make([]float32, a.Input(0).NumElements())
	if err := tflite.CopyOut(a.Input(0), px); err != nil {
		t.Fatal(err)
	}
	view, err := tflite.View[float32](b.Input(0))
	if err != nil {
		t.Fatal(err)
	}
	copy(view, px)
	if err := b.Invoke(); err != nil {
		t.Fatal(err)
	}
	out, err := tflite.View[float32](b.Output(0))
	if err != nil {
		t.Fatal(err)
	}
	for i := range out {
		if out[i] != want[0][i] {
			t.Fatalf("view output[%d] = %v, copy output %v", i, out[i], want[0][i])
		}
	}
}

func TestCloseTwiceAndUseAfterClose(t *testing.T) {
	m, err := tflite.NewModel(faceModel(t))
	if err != nil {
		t.Fatal(err)
	}
	ip := newInterp(t, m, tflite.Options{XNNPACK: true})
	in := ip.Input(0)
	if err := m.Close(); err == nil {
		t.Fatal("model closed while an interpreter uses it")
	}
	if err := ip.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ip.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := ip.Invoke(); !errors.Is(err, tflite.ErrClosed) {
		t.Fatalf("invoke after close: %v", err)
	}
	if err := tflite.CopyIn(in, []float32{1}); !errors.Is(err, tflite.ErrClosed) {
		t.Fatalf("copy into a closed interpreter's tensor: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second model Close: %v", err)
	}
	if _, err := tflite.NewInterpreter(m, tflite.Options{}); !errors.Is(err, tflite.ErrClosed) {
		t.Fatalf("interpreter on a closed model: %v", err)
	}
}

// No Edge TPU is attached to these machines and libedgetpu is not installed:
// require must fail clearly; auto runs a plain model on LiteRT without trying
// the Edge TPU, and on TensorFlow Lite 2.9 falls back to the CPU and says why.
func TestEdgeTPUAbsent(t *testing.T) {
	m, err := tflite.NewModel(faceModel(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	_, err = tflite.NewInterpreter(m, tflite.Options{EdgeTPU: tflite.EdgeTPURequire, EdgeTPULibrary: "libedgetpu-absent.so.1"})
	if !errors.Is(err, tflite.ErrNoEdgeTPU) || !strings.Contains(err.Error(), "libedgetpu-absent.so.1") {
		t.Fatalf("required Edge TPU: %v", err)
	}
	_, err = tflite.NewInterpreter(m, tflite.Options{Runtime: tflite.RuntimeLiteRT, EdgeTPU: tflite.EdgeTPURequire})
	if !errors.Is(err, tflite.ErrNoEdgeTPU) || !strings.Contains(err.Error(), "LiteRT") {
		t.Fatalf("Edge TPU required of LiteRT: %v", err)
	}

	var logs bytes.Buffer
	log := zerolog.New(&logs)
	plain := newInterp(t, m, tflite.Options{EdgeTPU: tflite.EdgeTPUAuto, XNNPACK: true, Log: &log})
	if plain.Runtime() != tflite.RuntimeLiteRT || logs.Len() != 0 {
		t.Fatalf("a CPU model with edgetpu auto: runtime %v, log %q", plain.Runtime(), logs.String())
	}
	runFace(t, plain)

	ip := newInterp(t, m, tflite.Options{Runtime: tflite.RuntimeTFLite29, EdgeTPU: tflite.EdgeTPUAuto, XNNPACK: true, Log: &log})
	if got := ip.Accelerators(); !slices.Equal(got, []string{"xnnpack"}) {
		t.Fatalf("Accelerators() after fallback = %v", got)
	}
	if !strings.Contains(logs.String(), "Edge TPU not used") || !strings.Contains(logs.String(), "libedgetpu.so.1") {
		t.Fatalf("fallback reason not logged: %q", logs.String())
	}
	runFace(t, ip)

	// The external delegate loader itself missing is a reason too.
	_, err = tflite.NewInterpreter(m, tflite.Options{EdgeTPU: tflite.EdgeTPURequire, EdgeTPULibrary: "libc.so.6", ExternalDelegateLibrary: "libnothing-here.so"})
	if !errors.Is(err, tflite.ErrNoEdgeTPU) || !strings.Contains(err.Error(), "libnothing-here.so") {
		t.Fatalf("missing external delegate: %v", err)
	}
}

// A model compiled for the Edge TPU carries the Edge TPU's custom op: auto
// sends it to TensorFlow Lite 2.9 (the only runtime that can load the
// delegate), found in bytes and in files alike, also across read boundaries.
func TestEdgeTPUModelDetected(t *testing.T) {
	face := faceModel(t)
	m, err := tflite.NewModel(face)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if tpu, err := m.ForEdgeTPU(); err != nil || tpu {
		t.Fatalf("face model: ForEdgeTPU = %v, %v", tpu, err)
	}
	// Flatbuffers ignore bytes after their tables, so a real model with the
	// op's name appended loads and reads as an Edge TPU model.
	tagged := append(append(slices.Clone(face), make([]byte, 1<<20-len(face)%(1<<20)-5)...), "edgetpu-custom-op"...)
	p := filepath.Join(t.TempDir(), "tpu.tflite")
	if err := os.WriteFile(p, tagged, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, load := range map[string]func() (*tflite.Model, error){
		"bytes": func() (*tflite.Model, error) { return tflite.NewModel(tagged) },
		"file":  func() (*tflite.Model, error) { return tflite.NewModelFromFile(p) },
	} {
		tm, err := load()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if tpu, err := tm.ForEdgeTPU(); err != nil || !tpu {
			t.Fatalf("%s: ForEdgeTPU = %v, %v", name, tpu, err)
		}
		var logs bytes.Buffer
		log := zerolog.New(&logs)
		ip := newInterp(t, tm, tflite.Options{EdgeTPU: tflite.EdgeTPUAuto, Log: &log})
		if ip.Runtime() != tflite.RuntimeTFLite29 || !strings.Contains(logs.String(), "Edge TPU not used") {
			t.Fatalf("%s: runtime %v, log %q", name, ip.Runtime(), logs.String())
		}
		ip.Close()
		tm.Close()
	}
}

func TestParallelInterpreters(t *testing.T) {
	m, err := tflite.NewModel(faceModel(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := runFace(t, newInterp(t, m, tflite.Options{}))

	const workers = 4
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		ip := newInterp(t, m, tflite.Options{Threads: 1})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rep := 0; rep < 5; rep++ {
				got, err := faceRun(ip)
				if err != nil {
					errs <- err
					return
				}
				for o := range want {
					if !slices.Equal(got[o], want[o]) {
						errs <- fmt.Errorf("worker result differs on output %d", o)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A model LiteRT refuses to compile (an operator no runtime knows): the error
// says so, with a reason, since LiteRT itself returns a status alone.
func TestRefusedModelExplained(t *testing.T) {
	g, err := modelgen.TinyModels()[0].Graph(modelgen.Float, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.Build()
	if err != nil {
		t.Fatal(err)
	}
	var oc tflschema.OperatorCode
	tflschema.GetRootAsModel(b, 0).OperatorCodes(&oc, 0)
	if !oc.MutateBuiltinCode(180) || !oc.MutateDeprecatedBuiltinCode(127) {
		t.Fatal("could not rewrite the operator code")
	}
	m, err := tflite.NewModel(b)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, err = tflite.NewInterpreter(m, tflite.Options{})
	if !errors.Is(err, tflite.ErrModelInvalid) || !strings.Contains(err.Error(), "LiteRT cannot compile") ||
		!strings.Contains(err.Error(), "builtin_code out of range: 180") {
		t.Fatalf("refused model: %v", err)
	}
	t.Log(err)
}
