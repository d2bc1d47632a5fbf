// Package otatest gives tests signed demo bundles and a server for them.
package otatest

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sightd/sightd/ota"
	"github.com/sightd/sightd/quant/bundle"
	"github.com/sightd/sightd/quant/modelgen"
	"github.com/sightd/sightd/quant/modelgen/demo"
)

// Key makes a new signing key.
func Key(t testing.TB) *ota.PrivateKey {
	t.Helper()
	k, err := ota.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Dir builds the demo bundle as version into a new temporary directory.
func Dir(t testing.TB, version int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "v"+strconv.FormatInt(version, 10))
	if err := demo.Build(dir, demo.Options{Version: version}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Pack packs dir (after any changes a test made to it) and signs it with
// key, valid for a day; key nil leaves it unsigned.
func Pack(t testing.TB, dir string, key *ota.PrivateKey) []byte {
	t.Helper()
	var tarball bytes.Buffer
	if _, err := ota.Pack(dir, &tarball, false); err != nil {
		t.Fatal(err)
	}
	if key == nil {
		return tarball.Bytes()
	}
	var signed bytes.Buffer
	if _, err := ota.SignTar(&tarball, &signed, key, time.Now().Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	return signed.Bytes()
}

// Bundle is the signed demo bundle of version.
func Bundle(t testing.TB, key *ota.PrivateKey, version int64) []byte {
	t.Helper()
	return Pack(t, Dir(t, version), key)
}

// WriteFile writes data to a new file in a temporary directory.
func WriteFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Server serves bundles by path over HTTP on localhost.
type Server struct {
	*httptest.Server
	mu    sync.Mutex
	files map[string][]byte
	hits  map[string]int
}

// NewServer starts a server, closed when the test ends.
func NewServer(t testing.TB) *Server {
	s := &Server{files: map[string][]byte{}, hits: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		data, ok := s.files[r.URL.Path]
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, r.URL.Path, time.Unix(1_700_000_000, 0), bytes.NewReader(data))
	}))
	t.Cleanup(s.Close)
	return s
}

// Put serves data at path and returns its URL.
func (s *Server) Put(path string, data []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[path] = data
	return s.URL + path
}

// Hits is how many requests path got.
func (s *Server) Hits(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// Flip returns a copy of the bundle tar data with one bit flipped inside
// the contents of file name, whose bytes are read from the bundle dir.
func Flip(t testing.TB, data []byte, dir, name string) []byte {
	t.Helper()
	content, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, content)
	if i < 0 || len(content) < 2 {
		t.Fatalf("%s not found in the tar", name)
	}
	out := bytes.Clone(data)
	out[i+len(content)/2] ^= 1
	return out
}

// Rewrite copies a plain bundle tar entry by entry through edit, which may
// change an entry's header and contents (the header's size follows the
// contents) or drop it by returning a nil header: a way to craft the
// malicious tars a signature alone does not catch.
func Rewrite(t testing.TB, data []byte, edit func(h *tar.Header, content []byte) (*tar.Header, []byte)) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		h, content = edit(h, content)
		if h == nil {
			continue
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(content))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(content); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// ReplaceImageTower swaps the bundle in dir's image tower for a float32
// one (input [1,64,64,3], mean colour -> FULLY_CONNECTED -> [1,dim]) whose
// weights are all weight, and describes it in the manifest as a float32
// tower of the bundle's embedding size: dim other than that gives a tower
// whose output dimension differs from what its manifest says, weight NaN a
// model that outputs NaN.
func ReplaceImageTower(t testing.TB, dir string, dim int, weight float32) {
	t.Helper()
	g := modelgen.NewGraph("otatest image tower")
	in := g.NewTensor("image", modelgen.Float32, []int{1, 64, 64, 3}, nil)
	mean := g.NewTensor("mean", modelgen.Float32, []int{1, 3}, nil)
	g.Mean(in, g.NewConst("mean/axes", []int{2}, []int32{1, 2}, nil), mean)
	w := make([]float32, dim*3)
	for i := range w {
		w[i] = weight
	}
	out := g.NewTensor("embedding", modelgen.Float32, []int{1, dim}, nil)
	g.FullyConnected(mean, g.NewConst("w", []int{dim, 3}, w, nil), g.NewConst("b", []int{dim}, make([]float32, dim), nil), out, modelgen.ActNone)
	g.SetInputs(in)
	g.SetOutputs(out)
	model, err := g.Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "image.tflite"), model, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, bundle.ManifestName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	img := m["image"].(map[string]any)
	img["input"].(map[string]any)["dtype"] = "float32"
	img["output"] = map[string]any{"shape": []any{1, m["embedding_dim"]}, "dtype": "float32"}
	if data, err = json.MarshalIndent(m, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
