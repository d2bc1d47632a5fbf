package demo

import (
	"sync"
	"testing"

	"github.com/sightd/sightd/quant/bundle"
	"github.com/sightd/sightd/quant/tflite"
)

// runtimes are the TensorFlow Lite configurations the towers are checked
// in: the built-in kernels and XNNPACK (which the daemon uses), whose int8
// kernels may round differently.
var runtimes = []struct {
	name string
	opts tflite.Options
}{
	{"builtin", tflite.Options{Threads: 1}},
	{"xnnpack", tflite.Options{Threads: 2, XNNPACK: true}},
}

type generated struct {
	manifest *bundle.Manifest
	files    map[string][]byte
	voc      *vocabulary
}

var (
	genOnce sync.Once
	gen     generated
	genErr  error
)

// demoFiles generates the bundle's files once per test binary.
func demoFiles(t testing.TB) generated {
	t.Helper()
	genOnce.Do(func() {
		gen.manifest, gen.files, genErr = generate(Options{})
		if genErr == nil {
			gen.voc, genErr = buildVocabulary()
		}
	})
	if genErr != nil {
		t.Fatal(genErr)
	}
	return gen
}

func newTestSession(t testing.TB, model []byte, opts tflite.Options) *session {
	t.Helper()
	s, err := newSession(model, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// textEmbedding embeds text with the text tower, as the daemon embeds a rule.
func textEmbedding(t testing.TB, s *session, v *vocabulary, text string) []float32 {
	t.Helper()
	ids := make([]int32, ContextLength)
	if _, err := v.tok.EncodeTo(ids, text); err != nil {
		t.Fatal(err)
	}
	e, err := s.text(ids)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
