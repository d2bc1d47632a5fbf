package bundle_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/sightd/sightd/quant/bundle"
)

// FuzzParse: Parse never panics, refuses only with ErrInvalid, and a manifest
// it accepts marshals to bytes that parse to the same manifest and marshal
// to the same bytes. Seeds: testdata/fuzz/FuzzParse and the example.
func FuzzParse(f *testing.F) {
	f.Add(example(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := bundle.Parse(data)
		if err != nil {
			if !errors.Is(err, bundle.ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed manifest: %v", err)
		}
		m2, err := bundle.Parse(out)
		if err != nil {
			t.Fatalf("Parse of Marshal's output: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the manifest:\n%+v\n%+v", m, m2)
		}
		out2, err := m2.Marshal()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("Marshal is not stable (%v):\n%s\n%s", err, out, out2)
		}
	})
}

// The seeds named valid_* must parse, or the fuzzer would start without a
// single manifest that reaches the round trip.
func TestFuzzSeedsValid(t *testing.T) {
	paths, _ := filepath.Glob("testdata/fuzz/FuzzParse/valid_*")
	if len(paths) == 0 {
		t.Fatal("no valid_* seeds in testdata/fuzz/FuzzParse")
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		lit, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "go test fuzz v1\n[]byte(")
		lit, ok2 := strings.CutSuffix(lit, ")")
		data, err := strconv.Unquote(lit)
		if !ok || !ok2 || err != nil {
			t.Fatalf("%s: not a []byte corpus entry (%v)", p, err)
		}
		if _, err := bundle.Parse([]byte(data)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}
