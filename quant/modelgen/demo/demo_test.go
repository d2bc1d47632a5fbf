package demo

import (
	"bytes"
	"compress/gzip"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sightd/sightd/quant/bundle"
)

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	if err := Build(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.CheckModels(); err != nil {
		t.Fatal(err)
	}

	// The manifest round-trips: parsed and written again, the same bytes.
	data, err := os.ReadFile(filepath.Join(dir, bundle.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	m, err := bundle.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	again, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, data) {
		t.Errorf("manifest does not round-trip:\n%s\nwritten again:\n%s", data, again)
	}
	if !reflect.DeepEqual(m, b.Manifest) {
		t.Errorf("Parse and Open disagree on the manifest")
	}

	if m.Name != Name || m.Version != 1 || m.EmbeddingDim != Dim || m.LogitScale != LogitScale {
		t.Errorf("manifest name %q version %d dim %d logit scale %g", m.Name, m.Version, m.EmbeddingDim, m.LogitScale)
	}
	in := m.Image.Input
	if !slices.Equal(in.Shape, []int{1, InputSize, InputSize, 3}) || in.DType != bundle.Int8 ||
		in.Color != bundle.ColorRGB || in.Resize != bundle.ResizeSquash ||
		!slices.Equal(in.Mean, []float32{0, 0, 0}) || !slices.Equal(in.Std, []float32{1, 1, 1}) {
		t.Errorf("image input %+v", in)
	}
	if out := m.Image.Output; !slices.Equal(out.Shape, []int{1, Dim}) || out.DType != bundle.Int8 {
		t.Errorf("image output %+v", out)
	}
	if !slices.Equal(m.Text.Input.Shape, []int{1, ContextLength}) || m.Text.Input.DType != bundle.Int32 ||
		!slices.Equal(m.Text.Output.Shape, []int{1, Dim}) || m.Text.Output.DType != bundle.Float32 {
		t.Errorf("text tower %+v", m.Text)
	}
	tk := m.Tokenizer
	if tk.Kind != bundle.TokenizerCLIPBPE || tk.File != VocabFile || tk.ContextLength != ContextLength {
		t.Errorf("tokenizer %+v", tk)
	}
	if lines := mergeLines(t, filepath.Join(dir, VocabFile)); tk.Merges != len(lines)-1 || lines[0] != mergeHeader {
		t.Errorf("tokenizer merges %d; the file has %d lines after %q", tk.Merges, len(lines)-1, lines[0])
	}
	var text, img int
	for _, p := range m.Probes {
		if p.MinCosine != ProbeMinCosine {
			t.Errorf("probe %+v: min_cosine %g", p, p.MinCosine)
		}
		switch p.Tower {
		case bundle.TowerText:
			text++
		case bundle.TowerImage:
			img++
		}
	}
	if text == 0 || img == 0 {
		t.Errorf("%d text and %d image probes, want at least one of each", text, img)
	}

	// The tar form (gzip'ed) opens and checks too.
	var tb bytes.Buffer
	zw := gzip.NewWriter(&tb)
	if err := b.WriteTar(zw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "demo.tar.gz")
	if err := os.WriteFile(tarPath, tb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	tb2, err := bundle.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer tb2.Close()
	if err := tb2.CheckModels(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tb2.Manifest, m) {
		t.Errorf("the tar's manifest differs from the directory's")
	}
}

// mergeLines returns the lines of a gzip'ed merge list.
func mergeLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
}

func TestBuildVersion(t *testing.T) {
	dir := t.TempDir()
	if err := Build(dir, Options{Version: 7}); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Manifest.Version != 7 {
		t.Errorf("version %d, want 7", b.Manifest.Version)
	}
	if err := Build(filepath.Join(t.TempDir(), "x"), Options{Version: -1}); err == nil {
		t.Error("version -1 accepted")
	}
}

// TestBuildDeterministic: two builds give byte-identical files.
func TestBuildDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, dir := range []string{a, b} {
		if err := Build(dir, Options{}); err != nil {
			t.Fatal(err)
		}
	}
	fa, fb := readTree(t, a), readTree(t, b)
	if len(fa) != len(fb) {
		t.Fatalf("builds have %d and %d files", len(fa), len(fb))
	}
	for name, data := range fa {
		if !bytes.Equal(data, fb[name]) {
			t.Errorf("%s differs between two builds", name)
		}
	}
	for _, want := range []string{bundle.ManifestName, ImageFile, TextFile, VocabFile, "probes/red.png", "probes/scene.png"} {
		if _, ok := fa[want]; !ok {
			t.Errorf("the bundle has no %s; it has %v", want, keys(fa))
		}
	}
}

func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		rel, _ := filepath.Rel(dir, path)
		files[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func keys(m map[string][]byte) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	slices.Sort(k)
	return k
}
