package bundle_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sightd/sightd/quant/bundle"
)

// example is testdata/manifest.json: a complete manifest in the form
// Marshal writes.
func example(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseExample(t testing.TB) *bundle.Manifest {
	t.Helper()
	m, err := bundle.Parse(example(t))
	if err != nil {
		t.Fatalf("Parse(testdata/manifest.json): %v", err)
	}
	return m
}

// problemLines splits a validation error into its problems, dropping the
// ErrInvalid header line.
func problemLines(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	if !errors.Is(err, bundle.ErrInvalid) {
		t.Fatalf("error does not wrap ErrInvalid: %v", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if lines[0] != bundle.ErrInvalid.Error() {
		t.Fatalf("first line %q, want %q", lines[0], bundle.ErrInvalid.Error())
	}
	return lines[1:]
}

func TestParseExample(t *testing.T) {
	m := parseExample(t)
	if m.Name != "sightd-demo" || m.Version != 3 || m.EmbeddingDim != 4 || m.LogitScale != 100 {
		t.Errorf("header fields: %+v", m)
	}
	if got := m.Image.Input.Shape; !slices.Equal(got, []int{1, 224, 224, 3}) {
		t.Errorf("image input shape %v", got)
	}
	if m.Tokenizer.Merges != 48894 || m.Tokenizer.ContextLength != 77 {
		t.Errorf("tokenizer %+v", m.Tokenizer)
	}
	if len(m.Probes) != 2 || m.Probes[1].File != "probes/red.png" || m.Probes[0].Text != "a red car" {
		t.Errorf("probes %+v", m.Probes)
	}
}

// The example is in canonical form: Marshal writes it back byte for byte.
func TestMarshalGolden(t *testing.T) {
	got, err := parseExample(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if want := example(t); !bytes.Equal(got, want) {
		t.Errorf("Marshal differs from testdata/manifest.json:\n%s", got)
	}
}

func TestParseDefaults(t *testing.T) {
	var raw map[string]any
	if err := json.Unmarshal(example(t), &raw); err != nil {
		t.Fatal(err)
	}
	in := raw["image"].(map[string]any)["input"].(map[string]any)
	delete(in, "mean")
	delete(in, "std")
	delete(in, "layout")
	raw["probes"] = []any{}
	data, _ := json.Marshal(raw)

	m, err := bundle.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Image.Input; got.Layout != "NHWC" || !slices.Equal(got.Mean, []float32{0, 0, 0}) || !slices.Equal(got.Std, []float32{1, 1, 1}) {
		t.Errorf("defaults: layout %q mean %v std %v, want NHWC [0 0 0] [1 1 1]", got.Layout, got.Mean, got.Std)
	}
	if m.Probes != nil {
		t.Errorf("probes %v, want nil for an empty list", m.Probes)
	}
}

// A manifest without an interpolation (every bundle written before the
// field) means bicubic, and Marshal keeps it without one: its bytes, and so
// its signature, do not change. A bilinear one keeps its field.
func TestParseInterpolation(t *testing.T) {
	m := parseExample(t)
	if m.Image.Input.Interpolation != "" || m.Image.Input.Interp() != bundle.InterpBicubic {
		t.Errorf("omitted interpolation: field %q, Interp %q; want empty and bicubic", m.Image.Input.Interpolation, m.Image.Input.Interp())
	}
	out, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "interpolation") {
		t.Errorf("Marshal added an interpolation to a manifest without one:\n%s", out)
	}
	m.Image.Input.Interpolation = bundle.InterpBilinear
	if out, err = m.Marshal(); err != nil {
		t.Fatal(err)
	}
	m2, err := bundle.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := m2.Image.Input.Interp(); got != bundle.InterpBilinear {
		t.Errorf("bilinear round trip: Interp %q", got)
	}
}

func TestParseNCHW(t *testing.T) {
	m := parseExample(t)
	m.Image.Input.Layout = bundle.LayoutNCHW
	m.Image.Input.Shape = []int{-1, 3, 96, 128}
	if err := m.Validate(); err != nil {
		t.Fatalf("NCHW with a dynamic batch: %v", err)
	}
}

func TestMarshalRefusesInvalid(t *testing.T) {
	m := parseExample(t)
	m.EmbeddingDim = 0
	if _, err := m.Marshal(); !errors.Is(err, bundle.ErrInvalid) {
		t.Fatalf("Marshal of an invalid manifest: %v, want ErrInvalid", err)
	}
}

// Each case breaks one rule of a valid manifest; the error must list exactly
// the problems given, each naming its field.
func TestParseBrokenFields(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(m *bundle.Manifest)
		want   []string
	}{
		{"format", func(m *bundle.Manifest) { m.Format = 3 },
			[]string{"format: unsupported manifest format 3 (this sightd reads format 1)"}},
		{"format missing", func(m *bundle.Manifest) { m.Format = 0 },
			[]string{"format: missing (want 1)"}},
		{"name missing", func(m *bundle.Manifest) { m.Name = "" },
			[]string{"name: missing"}},
		{"name control", func(m *bundle.Manifest) { m.Name = "demo\n" },
			[]string{`name: "demo\n" has unprintable characters`}},
		{"version", func(m *bundle.Manifest) { m.Version = 0 },
			[]string{"version: want an integer >= 1, got 0"}},
		{"embedding_dim", func(m *bundle.Manifest) {
			m.EmbeddingDim = -4
			m.Image.Output.Shape = []int{1, -4}
			m.Text.Output.Shape = []int{1, -4}
			m.Probes = nil
		}, []string{"embedding_dim: want > 0, got -4"}},
		{"logit_scale", func(m *bundle.Manifest) { m.LogitScale = 0 },
			[]string{"logit_scale: want a finite number > 0, got 0"}},

		{"tower file missing", func(m *bundle.Manifest) { m.Image.File = "" },
			[]string{"image.file: missing"}},
		{"tower file dotdot", func(m *bundle.Manifest) { m.Image.File = "../image.tflite" },
			[]string{`image.file: "../image.tflite": want a relative path inside the bundle (no "..", no leading "/", no backslashes), not manifest.json`}},
		{"tower file absolute", func(m *bundle.Manifest) { m.Text.File = "/etc/passwd" },
			[]string{`text.file: "/etc/passwd": want a relative path inside the bundle (no "..", no leading "/", no backslashes), not manifest.json`}},
		{"tower file backslash", func(m *bundle.Manifest) { m.Text.File = `models\text.tflite` },
			[]string{`text.file: "models\\text.tflite": want a relative path inside the bundle (no "..", no leading "/", no backslashes), not manifest.json`}},
		{"tower file unclean", func(m *bundle.Manifest) { m.Text.File = "./text.tflite" },
			[]string{`text.file: "./text.tflite": want a relative path inside the bundle (no "..", no leading "/", no backslashes), not manifest.json`}},
		{"tower file is the manifest", func(m *bundle.Manifest) { m.Text.File = "manifest.json" },
			[]string{`text.file: "manifest.json": want a relative path inside the bundle (no "..", no leading "/", no backslashes), not manifest.json`}},
		{"same file twice", func(m *bundle.Manifest) { m.Text.File = "image.tflite" },
			[]string{`text.file: "image.tflite" conflicts with image.file "image.tflite"`}},
		{"file inside a file", func(m *bundle.Manifest) { m.Probes[1].File = "image.tflite/red.png" },
			[]string{`probes[1].file: "image.tflite/red.png" conflicts with image.file "image.tflite"`}},
		{"sha256 missing", func(m *bundle.Manifest) { m.Image.SHA256 = "" },
			[]string{"image.sha256: missing"}},
		{"sha256 upper case", func(m *bundle.Manifest) { m.Image.SHA256 = strings.ToUpper(m.Image.SHA256) },
			[]string{`image.sha256: want 64 lowercase hex digits, got "0B8E3C7E1C1E0B7CF4A5E0E5C1F7D1E7B1D6B8E5A3B2C1D0E9F8A7B6C5D4E3F2"`}},
		{"sha256 short", func(m *bundle.Manifest) { m.Text.SHA256 = "abc" },
			[]string{`text.sha256: want 64 lowercase hex digits, got "abc"`}},
		{"size zero", func(m *bundle.Manifest) { m.Image.Size = 0 },
			[]string{"image.size: want > 0, got 0"}},
		{"size huge", func(m *bundle.Manifest) { m.Text.Size = 3 << 30 },
			[]string{"text.size: 3221225472 bytes exceeds the limit of 2147483648"}},

		{"image rank", func(m *bundle.Manifest) { m.Image.Input.Shape = []int{224, 224, 3} },
			[]string{"image.input.shape: want 4 dimensions, got 3"}},
		{"image batch", func(m *bundle.Manifest) { m.Image.Input.Shape[0] = 8 },
			[]string{"image.input.shape[0]: want batch 1 or -1 (dynamic), got 8"}},
		{"image height", func(m *bundle.Manifest) { m.Image.Input.Shape[1] = 0 },
			[]string{"image.input.shape[1]: want > 0, got 0"}},
		{"image channels NHWC", func(m *bundle.Manifest) { m.Image.Input.Shape[3] = 1 },
			[]string{"image.input.shape[3]: want 3 channels (NHWC), got 1"}},
		{"image channels NCHW", func(m *bundle.Manifest) { m.Image.Input.Layout = "NCHW" },
			[]string{"image.input.shape[1]: want 3 channels (NCHW), got 224"}},
		{"image layout", func(m *bundle.Manifest) { m.Image.Input.Layout = "HWC" },
			[]string{`image.input.layout: want "NHWC" or "NCHW", got "HWC"`}},
		{"image dtype", func(m *bundle.Manifest) { m.Image.Input.DType = bundle.Int32 },
			[]string{`image.input.dtype: want one of uint8, int8, float32, got "int32"`}},
		{"image dtype missing", func(m *bundle.Manifest) { m.Image.Input.DType = "" },
			[]string{"image.input.dtype: missing (one of uint8, int8, float32)"}},
		{"color", func(m *bundle.Manifest) { m.Image.Input.Color = "rgb" },
			[]string{`image.input.color: want one of RGB, BGR, got "rgb"`}},
		{"resize", func(m *bundle.Manifest) { m.Image.Input.Resize = "" },
			[]string{"image.input.resize: missing (one of shortest_side_center_crop, squash)"}},
		{"interpolation", func(m *bundle.Manifest) { m.Image.Input.Interpolation = "lanczos" },
			[]string{`image.input.interpolation: want one of bicubic, bilinear, got "lanczos"`}},
		{"mean length", func(m *bundle.Manifest) { m.Image.Input.Mean = []float32{0.5} },
			[]string{"image.input.mean: want 3 values, got 1"}},
		{"std length", func(m *bundle.Manifest) { m.Image.Input.Std = []float32{1, 1} },
			[]string{"image.input.std: want 3 values, got 2"}},
		{"std zero", func(m *bundle.Manifest) { m.Image.Input.Std[2] = 0 },
			[]string{"image.input.std[2]: want > 0, got 0"}},
		{"mean NaN", func(m *bundle.Manifest) { m.Image.Input.Mean[0] = float32(math.NaN()) },
			[]string{"image.input.mean[0]: want a finite number, got NaN"}},

		{"text rank", func(m *bundle.Manifest) { m.Text.Input.Shape = []int{77} },
			[]string{"text.input.shape: want 2 dimensions [batch, context_length], got 1"}},
		{"text context", func(m *bundle.Manifest) { m.Text.Input.Shape = []int{-1, 64} },
			[]string{"text.input.shape[1]: want tokenizer.context_length 77, got 64"}},
		{"text dtype", func(m *bundle.Manifest) { m.Text.Input.DType = bundle.Float32 },
			[]string{`text.input.dtype: want one of int32, int64, got "float32"`}},

		{"image output dim", func(m *bundle.Manifest) { m.Image.Output.Shape = []int{1, 8} },
			[]string{"image.output.shape[1]: want embedding_dim 4, got 8"}},
		{"text output dim", func(m *bundle.Manifest) { m.Text.Output.Shape = []int{4, 4} },
			[]string{"text.output.shape[0]: want batch 1 or -1 (dynamic), got 4"}},
		{"output missing", func(m *bundle.Manifest) { m.Text.Output.Shape = nil },
			[]string{"text.output.shape: missing"}},
		{"output dtype", func(m *bundle.Manifest) { m.Text.Output.DType = bundle.Int64 },
			[]string{`text.output.dtype: want one of float32, int8, uint8, got "int64"`}},

		{"tokenizer kind", func(m *bundle.Manifest) { m.Tokenizer.Kind = "wordpiece" },
			[]string{`tokenizer.kind: want "clip-bpe", got "wordpiece"`}},
		{"tokenizer file", func(m *bundle.Manifest) { m.Tokenizer.File = "a//vocab" },
			[]string{`tokenizer.file: "a//vocab": want a relative path inside the bundle (no "..", no leading "/", no backslashes), not manifest.json`}},
		{"tokenizer merges", func(m *bundle.Manifest) { m.Tokenizer.Merges = 0 },
			[]string{"tokenizer.merges: want > 0, got 0"}},
		{"tokenizer context", func(m *bundle.Manifest) {
			m.Tokenizer.ContextLength = 2
			m.Text.Input.Shape[1] = 2
		}, []string{"tokenizer.context_length: want > 2, got 2"}},

		{"probe tower", func(m *bundle.Manifest) { m.Probes[0].Tower = "audio" },
			[]string{`probes[0].tower: want one of image, text, got "audio"`}},
		{"probe text on image tower", func(m *bundle.Manifest) { m.Probes[0].Tower = "image" },
			[]string{`probes[0].tower: a probe with text needs tower "text", got "image"`}},
		{"probe file on text tower", func(m *bundle.Manifest) { m.Probes[1].Tower = "text" },
			[]string{`probes[1].tower: a probe with a file needs tower "image", got "text"`}},
		{"probe text and file", func(m *bundle.Manifest) { m.Probes[1].Text = "a red car" },
			[]string{"probes[1]: has both text and file; want exactly one"}},
		{"probe neither", func(m *bundle.Manifest) { m.Probes[0].Text = "" },
			[]string{"probes[0]: has neither text nor file; want exactly one"}},
		{"probe text with hash", func(m *bundle.Manifest) { m.Probes[0].Size = 3 },
			[]string{"probes[0]: sha256 and size belong to a file probe, not a text probe"}},
		{"probe file hash", func(m *bundle.Manifest) { m.Probes[1].SHA256 = "" },
			[]string{"probes[1].sha256: missing"}},
		{"probe expected length", func(m *bundle.Manifest) { m.Probes[1].Expected = []float32{1, 0, 0} },
			[]string{"probes[1].expected: want embedding_dim 4 values, got 3"}},
		{"probe expected inf", func(m *bundle.Manifest) { m.Probes[0].Expected[2] = float32(math.Inf(-1)) },
			[]string{"probes[0].expected[2]: want a finite number, got -Inf"}},
		{"probe expected zero", func(m *bundle.Manifest) { m.Probes[0].Expected = make([]float32, 4) },
			[]string{"probes[0].expected: all zero: a cosine needs a non-zero vector"}},
		{"probe min_cosine zero", func(m *bundle.Manifest) { m.Probes[0].MinCosine = 0 },
			[]string{"probes[0].min_cosine: want a value in (0, 1], got 0"}},
		{"probe min_cosine above one", func(m *bundle.Manifest) { m.Probes[1].MinCosine = 1.5 },
			[]string{"probes[1].min_cosine: want a value in (0, 1], got 1.5"}},

		{"everything at once", func(m *bundle.Manifest) {
			m.Version = -1
			m.Image.Input.Shape = []int{1, 224, 224}
			m.Text.Output.Shape = []int{1, 8}
			m.Probes[1].MinCosine = 2
		}, []string{
			"version: want an integer >= 1, got -1",
			"image.input.shape: want 4 dimensions, got 3",
			"text.output.shape[1]: want embedding_dim 4, got 8",
			"probes[1].min_cosine: want a value in (0, 1], got 2",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := parseExample(t)
			c.mutate(m)
			// Validate sees NaN and Inf, which JSON cannot carry.
			if got := problemLines(t, m.Validate()); !slices.Equal(got, c.want) {
				t.Errorf("Validate:\n got  %q\n want %q", got, c.want)
			}
			data, err := json.Marshal(m)
			if err != nil {
				return // NaN or Inf
			}
			_, err = bundle.Parse(data)
			if got := problemLines(t, err); !slices.Equal(got, c.want) {
				t.Errorf("Parse:\n got  %q\n want %q", got, c.want)
			}
		})
	}
}

// Problems only the JSON shows: unknown, repeated and mistyped fields,
// syntax, format versions.
func TestParseBrokenJSON(t *testing.T) {
	cases := []struct {
		name     string
		old, new string // replaced once in testdata/manifest.json
		want     []string
	}{
		{"unknown field", `"color"`, `"colour"`, []string{
			"image.input.colour: unknown field",
			"image.input.color: missing (one of RGB, BGR)",
		}},
		{"unknown top-level field", `"format": 1,`, `"format": 1, "signature": {"alg": ["ed25519"]},`, []string{
			"signature: unknown field",
		}},
		{"field names are case-sensitive", `"name"`, `"Name"`, []string{
			"Name: unknown field",
		}},
		{"repeated field", `"version": 3,`, `"version": 3, "version": 4,`, []string{
			"version: repeated field",
		}},
		{"string for integer", `"version": 3`, `"version": "3"`, []string{
			`version: want an integer, got the string "3"`,
		}},
		{"fraction for integer", `"version": 3`, `"version": 3.5`, []string{
			"version: want an integer, got 3.5",
		}},
		{"integer overflow", `"version": 3`, `"version": 99999999999999999999`, []string{
			"version: want an integer, got 99999999999999999999",
		}},
		{"float32 overflow", `0.4815`, `1e39`, []string{
			"image.input.mean[0]: 1e39 is out of range",
		}},
		{"object for array", `"shape": [1, 77]`, `"shape": {"batch": 1}`, []string{
			"text.input.shape: want an array, got an object",
		}},
		{"null for a number", `"merges": 48894`, `"merges": null`, []string{
			"tokenizer.merges: want an integer, got null",
		}},
		{"string element", `"shape": [1, 224,`, `"shape": [1, "224",`, []string{
			`image.input.shape[1]: want an integer, got the string "224"`,
		}},
		{"wrong type and bad value", `"tower": "text"`, `"tower": 7, "min_cosine": 0, "min_cosine": 0.5`, []string{
			"probes[0].tower: want a string, got the number 7",
			"probes[0].min_cosine: repeated field",
			"probes[0].min_cosine: repeated field",
		}},
		{"format 2", `"format": 1`, `"format": 2, "colour_space": "p3"`, []string{
			"format: unsupported manifest format 2 (this sightd reads format 1)",
		}},
		{"format not an integer", `"format": 1`, `"format": 1.0`, []string{
			"format: want an integer, got 1.0",
		}},
		{"format missing", `"format": 1,`, ``, []string{
			"format: missing (want 1)",
		}},
		{"syntax", `"name": "sightd-demo",`, `"name": "sightd-demo"`, []string{
			"manifest: invalid JSON on line 4: invalid character '\"' after object key:value pair",
		}},
		{"trailing data", "\n}\n", "\n} {}\n", []string{
			"manifest: invalid JSON on line 62: invalid character '{' after top-level value",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := string(example(t))
			if !strings.Contains(src, c.old) {
				t.Fatalf("%q not in the example", c.old)
			}
			_, err := bundle.Parse([]byte(strings.Replace(src, c.old, c.new, 1)))
			if got := problemLines(t, err); !slices.Equal(got, c.want) {
				t.Errorf("\n got  %q\n want %q", got, c.want)
			}
			// ErrFormat means "needs a newer sightd", not "broken".
			if got, want := errors.Is(err, bundle.ErrFormat), c.name == "format 2"; got != want {
				t.Errorf("errors.Is(err, ErrFormat) = %v, want %v", got, want)
			}
		})
	}
}

func TestParseNotAnObject(t *testing.T) {
	for _, in := range []string{"", "null", "[]", `"manifest"`, "1"} {
		if _, err := bundle.Parse([]byte(in)); !errors.Is(err, bundle.ErrInvalid) {
			t.Errorf("Parse(%q): %v, want ErrInvalid", in, err)
		}
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	m := parseExample(t)
	m.Probes[0].Text = `a "quoted" <cat> & dog`
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`<cat> & dog`)) {
		t.Errorf("HTML characters escaped:\n%s", data)
	}
	m2, err := bundle.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, m2) {
		t.Errorf("round trip changed the manifest:\n%+v\n%+v", m, m2)
	}
}

// A distilled bundle names its teacher, student, data and inherited licence;
// the field is optional and checked as strictly as the rest.
func TestParseDistill(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(example(t), &doc); err != nil {
		t.Fatal(err)
	}
	doc["distill"] = map[string]any{"teacher": "MobileCLIP2-S0", "teacher_licence": "research only",
		"research_only": true, "student": "mobilenetv3-large", "student_size": 224, "data_sha256": "ab"}
	b, _ := json.Marshal(doc)
	m, err := bundle.Parse(b)
	if err != nil {
		t.Fatalf("Parse with distill: %v", err)
	}
	if d := m.Distill; d == nil || !d.ResearchOnly || d.Student != "mobilenetv3-large" || d.StudentSize != 224 {
		t.Fatalf("distill %+v", m.Distill)
	}
	if parseExample(t).Distill != nil {
		t.Fatal("a bundle without distill has one")
	}
	doc["distill"] = map[string]any{"teacher": "x", "research_only": "yes", "studnet": "y"}
	b, _ = json.Marshal(doc)
	_, err = bundle.Parse(b)
	got := strings.Join(problemLines(t, err), "\n")
	for _, want := range []string{"distill.research_only: want true or false", "distill.studnet: unknown field"} {
		if !strings.Contains(got, want) {
			t.Errorf("want %q in:\n%s", want, got)
		}
	}
}
