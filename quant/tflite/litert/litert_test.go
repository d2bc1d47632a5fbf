package litert_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/sightd/sightd/quant/tflite/litert"
)

func faceModel(t testing.TB) string {
	t.Helper()
	p := filepath.Join("..", "..", "..", "third_party", "fixtures", "face_detection_short_range.tflite")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("fixture missing (run `make deps`): %v", err)
	}
	return p
}

// The Makefile fetches the release these declarations were written for.
func TestPinnedVersionMatchesMakefile(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join("..", "..", "..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^LITERT_VERSION\s*:=\s*(\S+)`).FindSubmatch(mk)
	if m == nil || string(m[1]) != litert.PinnedVersion {
		t.Fatalf("Makefile LITERT_VERSION %q, binding's PinnedVersion %q", m, litert.PinnedVersion)
	}
	v := litert.Version()
	if !strings.HasPrefix(v, litert.PinnedVersion+" (CpuAccelerator ") || !strings.HasSuffix(v, "libLiteRt.so)") {
		t.Fatalf("Version() = %q", v)
	}
}

// threads counts this process's OS threads.
func threads(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// runnerThreads is how many OS threads a runner with n threads adds once it
// has run.
func runnerThreads(t *testing.T, m *litert.Model, n int) int {
	t.Helper()
	before := threads(t)
	r, err := litert.NewRunner(m, litert.Options{Threads: n})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Invoke(); err != nil {
		t.Fatal(err)
	}
	return threads(t) - before
}

// The thread count travels through an opaque options entry that the runtime
// reads by name, and a newer runtime that renamed it ignores ours without an
// error. Counting the workers XNNPACK's pool starts catches that: 8 threads
// must add 7 workers over 1 thread. The Go runtime (and QEMU, under test-arm64)
// may start threads of their own meanwhile, so each count is the least of
// three tries and the margin is 3: a runtime that ignores the option adds the
// same few threads either way.
func TestThreadsReachTheRuntime(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	m, err := litert.NewModelFromFile(faceModel(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	least := func(n int) int {
		v := runnerThreads(t, m, n)
		for range 2 {
			v = min(v, runnerThreads(t, m, n))
		}
		return v
	}
	one, eight := least(1), least(8)
	if eight-one < 4 {
		t.Fatalf("8 threads added %d OS threads, 1 thread %d: the runtime ignores the thread option", eight, one)
	}
	t.Logf("OS threads added: %d with 1 thread, %d with 8", one, eight)
}

func TestRunnerTensors(t *testing.T) {
	m, err := litert.NewModelFromFile(faceModel(t))
	if err != nil {
		t.Fatal(err)
	}
	r, err := litert.NewRunner(m, litert.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Inputs()) != 1 || len(r.Outputs()) != 2 {
		t.Fatalf("%d inputs, %d outputs", len(r.Inputs()), len(r.Outputs()))
	}
	in := r.Inputs()[0]
	if in.Type() != litert.TypeFloat32 || in.ByteSize() != 128*128*3*4 || in.Name() == "" {
		t.Fatalf("input %q type %d size %d", in.Name(), in.Type(), in.ByteSize())
	}
	if uintptr(in.Data())%64 != 0 {
		t.Fatalf("input buffer %p is not 64-byte aligned", in.Data())
	}
	px := unsafe.Slice((*float32)(in.Data()), 128*128*3)
	for i := range px {
		px[i] = float32(i%255)/127.5 - 1
	}
	if err := r.Invoke(); err != nil {
		t.Fatal(err)
	}
	out := r.Outputs()[1]
	if got := out.Shape(); len(got) != 3 || got[1] != 896 {
		t.Fatalf("output shape %v", got)
	}
	// A batch of two: the input and the outputs grow with it (this model
	// reshapes its outputs to a fixed batch of 1, so rows double).
	if err := r.ResizeInput(0, []int{2, 128, 128, 3}); err != nil {
		t.Fatal(err)
	}
	if in.ByteSize() != 2*128*128*3*4 || r.Outputs()[1].ByteSize() != 2*896*4 {
		t.Fatalf("after resize: input %d bytes, output %v", in.ByteSize(), r.Outputs()[1].Shape())
	}
	if err := r.Invoke(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err == nil {
		t.Fatal("model closed under a runner")
	}
	r.Close()
	r.Close()
	if err := r.Invoke(); !errors.Is(err, litert.ErrClosed) {
		t.Fatalf("invoke after close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := litert.NewRunner(m, litert.Options{}); !errors.Is(err, litert.ErrClosed) {
		t.Fatalf("runner on a closed model: %v", err)
	}
}

func TestBadModels(t *testing.T) {
	face, err := os.ReadFile(faceModel(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cases := map[string][]byte{
		"empty":      nil,
		"not tflite": []byte("GIF89a..........."),
		"truncated":  face[:len(face)/3],
		"header":     face[:64],
	}
	for name, b := range cases {
		if _, err := litert.NewModel(b); !errors.Is(err, litert.ErrModelInvalid) {
			t.Errorf("%s (bytes): %v", name, err)
		}
	}
	// Files: only what the binding checks itself (LiteRT 2.3 does not verify
	// a file's flatbuffer; quant/tflite's tests cover damaged files).
	for name, b := range map[string][]byte{"empty": nil, "not tflite": []byte("GIF89a...........")} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := litert.NewModelFromFile(p); !errors.Is(err, litert.ErrModelInvalid) {
			t.Errorf("%s (file): %v", name, err)
		}
	}
	if _, err := litert.NewModelFromFile(filepath.Join(dir, "absent.tflite")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
