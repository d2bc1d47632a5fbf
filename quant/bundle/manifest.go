package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Format is the manifest format version this package reads and writes.
const Format = 1

// Limits that keep a hostile manifest from exhausting memory or disk.
const (
	// MaxManifestSize bounds manifest.json.
	MaxManifestSize = 1 << 20
	// MaxFileSize bounds each named file: flatbuffers, and so .tflite
	// files, cannot exceed 2 GiB.
	MaxFileSize = 2 << 30
)

// ManifestName is the manifest's file name in a bundle.
const ManifestName = "manifest.json"

// SignatureName is the file holding the signature over manifest.json's exact
// bytes (package ota writes and checks it). In a tar it comes right after
// manifest.json; no manifest may name a file so.
const SignatureName = "manifest.sig"

// MaxSignatureSize bounds manifest.sig: a few lines of text.
const MaxSignatureSize = 16 << 10

// DType is a tensor element type as the manifest spells it.
type DType string

// The element types a manifest may name.
const (
	Float32 DType = "float32"
	Int8    DType = "int8"
	UInt8   DType = "uint8"
	Int32   DType = "int32"
	Int64   DType = "int64"
)

// Values of the manifest's enumerated strings.
const (
	LayoutNHWC = "NHWC"
	LayoutNCHW = "NCHW"

	ColorRGB = "RGB"
	ColorBGR = "BGR"

	// ResizeCenterCrop scales the shortest side to the input size and crops
	// the centre; ResizeSquash scales both sides, ignoring the aspect ratio.
	ResizeCenterCrop = "shortest_side_center_crop"
	ResizeSquash     = "squash"

	// InterpBicubic and InterpBilinear are PIL's antialiased resize filters
	// (what open_clip's transform calls interpolation): CLIP's is bicubic,
	// MobileCLIP's bilinear.
	InterpBicubic  = "bicubic"
	InterpBilinear = "bilinear"

	TowerImage = "image"
	TowerText  = "text"

	TokenizerCLIPBPE = "clip-bpe"
)

// Manifest is a bundle's manifest.json. Parse returns only manifests that
// pass Validate, with defaults filled in.
type Manifest struct {
	Format       int        `json:"format"`
	Name         string     `json:"name"`
	Version      int64      `json:"version"`
	EmbeddingDim int        `json:"embedding_dim"`
	LogitScale   float64    `json:"logit_scale"` // CLIP's exp(logit_scale), e.g. 100
	Image        ImageTower `json:"image"`
	Text         TextTower  `json:"text"`
	Tokenizer    Tokenizer  `json:"tokenizer"`
	Probes       []Probe    `json:"probes,omitempty"`
	// Distill says where a distilled image tower came from (sightd-export
	// distill): sightd shows it, and the licence a student inherits.
	Distill *Distill `json:"distill,omitempty"`
}

// Distill names a student image tower's teacher, the data it was trained on
// and the teacher's weights licence, which the student inherits.
type Distill struct {
	Teacher        string `json:"teacher"`
	TeacherWeights string `json:"teacher_weights,omitempty"`
	TeacherLicence string `json:"teacher_licence"`
	ResearchOnly   bool   `json:"research_only"`
	LicenceNote    string `json:"licence_note,omitempty"`
	Student        string `json:"student"`
	StudentTimm    string `json:"student_timm,omitempty"`
	StudentSize    int    `json:"student_size,omitempty"`
	DataSHA256     string `json:"data_sha256"`
}

// FileRef names a file of the bundle: a slash-separated path relative to the
// bundle directory, with its size and SHA-256.
type FileRef struct {
	File   string `json:"file,omitempty"`
	SHA256 string `json:"sha256,omitempty"` // 64 lowercase hex digits
	Size   int64  `json:"size,omitempty"`
}

// ImageTower is the image encoder.
type ImageTower struct {
	FileRef
	Input  ImageInput `json:"input"`
	Output Tensor     `json:"output"`
}

// TextTower is the text encoder.
type TextTower struct {
	FileRef
	Input  Tensor `json:"input"` // [batch, context_length] token ids
	Output Tensor `json:"output"`
}

// Tensor is the expected shape and element type of a model input or output.
// A batch dimension of -1 means dynamic.
type Tensor struct {
	Shape []int `json:"shape"`
	DType DType `json:"dtype"`
}

// ImageInput is the image tower's input tensor and how to preprocess a frame
// for it.
type ImageInput struct {
	Tensor
	// Layout is LayoutNHWC (the default when omitted) or LayoutNCHW.
	Layout string `json:"layout,omitempty"`
	Color  string `json:"color"`
	Resize string `json:"resize"`
	// Interpolation is the resize filter, InterpBicubic or InterpBilinear.
	// Omitted means bicubic: bundles written before the field existed keep
	// their meaning and their bytes (Parse does not fill it in; see Interp).
	Interpolation string `json:"interpolation,omitempty"`
	// Mean and Std normalise each channel of a pixel scaled to [0,1]:
	// (p - mean) / std, channels in the order Color names them. When
	// omitted they default to 0 and 1 (no normalisation); after Parse both
	// always hold 3 values.
	Mean []float32 `json:"mean,omitempty"`
	Std  []float32 `json:"std,omitempty"`
}

// Tokenizer is the text tower's tokenizer.
type Tokenizer struct {
	Kind string `json:"kind"`
	FileRef
	// Merges is how many merge lines of the file are used (CLIP: 48894).
	Merges        int `json:"merges"`
	ContextLength int `json:"context_length"`
}

// Probe is a known input with its expected embedding, for a smoke test
// after an update. Exactly one of Text (tower "text") and File (tower
// "image") is set.
type Probe struct {
	Tower string `json:"tower"`
	Text  string `json:"text,omitempty"`
	FileRef
	Expected  []float32 `json:"expected"`
	MinCosine float64   `json:"min_cosine"`
}

// Parse decodes and validates a manifest without touching any file. Errors
// wrap ErrInvalid (and ErrFormat for an unknown format version) and list every
// problem found, each naming its JSON field.
func Parse(data []byte) (*Manifest, error) {
	// Look at the format first: a newer manifest is reported as such, not as
	// a list of the fields this version does not know.
	var head struct {
		Format json.Number `json:"format"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		if se := (*json.SyntaxError)(nil); errors.As(err, &se) {
			line := 1 + bytes.Count(data[:se.Offset], []byte("\n"))
			return nil, invalid(fmt.Errorf("manifest: invalid JSON on line %d: %w", line, err))
		}
	}
	if n, err := strconv.ParseInt(string(head.Format), 10, 64); err == nil && n > Format {
		return nil, invalid(&fieldError{"format", fmt.Errorf("%w %d (this sightd reads format %d)", ErrFormat, n, Format)})
	}

	var p problems
	if err := checkJSON(data, &p); err != nil {
		return nil, invalid(fmt.Errorf("manifest: %w", err))
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil && len(p) == 0 {
		// checkJSON should have caught it; never pass a half-decoded manifest.
		return nil, invalid(fmt.Errorf("manifest: %w", err))
	}
	structural := p
	var sem problems
	m.validate(&sem)
	for _, e := range sem {
		if !structural.overlaps(e) {
			p = append(p, e)
		}
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	m.setDefaults()
	return &m, nil
}

func (m *Manifest) setDefaults() {
	in := &m.Image.Input
	if in.Layout == "" {
		in.Layout = LayoutNHWC
	}
	if in.Mean == nil {
		in.Mean = []float32{0, 0, 0}
	}
	if in.Std == nil {
		in.Std = []float32{1, 1, 1}
	}
	if len(m.Probes) == 0 {
		m.Probes = nil // "probes": [] and no probes are the same manifest
	}
}

// Marshal validates m and encodes it as indented JSON, fields in a fixed
// order, ending in a newline.
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // probe texts like "salt & pepper" stay readable
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("bundle: encode manifest: %w", err)
	}
	return numberArrays.ReplaceAllFunc(b.Bytes(), func(a []byte) []byte {
		inner := bytes.TrimSpace(a[1 : len(a)-1])
		return append(append([]byte("["), spaces.ReplaceAll(inner, []byte(" "))...), ']')
	}), nil
}

// Arrays of numbers (shapes, means, probe vectors) go on one line each, so a
// manifest with 512-value probes stays readable.
var (
	numberArrays = regexp.MustCompile(`\[\s*-?[0-9][-+0-9.eE,\s]*\]`)
	spaces       = regexp.MustCompile(`\s+`)
)

// Validate checks every rule of the manifest format and reports all
// problems at once, wrapping ErrInvalid.
func (m *Manifest) Validate() error {
	var p problems
	m.validate(&p)
	return p.err()
}

func (m *Manifest) validate(p *problems) {
	switch m.Format {
	case Format:
	case 0:
		p.addf("format", "missing (want %d)", Format)
	default:
		p.add("format", fmt.Errorf("%w %d (this sightd reads format %d)", ErrFormat, m.Format, Format))
	}
	switch {
	case m.Name == "":
		p.addf("name", "missing")
	case strings.IndexFunc(m.Name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		p.addf("name", "%q has unprintable characters", m.Name)
	}
	if m.Version < 1 {
		p.addf("version", "want an integer >= 1, got %d", m.Version)
	}
	if m.EmbeddingDim <= 0 {
		p.addf("embedding_dim", "want > 0, got %d", m.EmbeddingDim)
	}
	if !(m.LogitScale > 0) || math.IsInf(m.LogitScale, 0) {
		p.addf("logit_scale", "want a finite number > 0, got %g", m.LogitScale)
	}

	checkFileRef(p, "image", m.Image.FileRef)
	checkImageInput(p, "image.input", &m.Image.Input)
	checkOutput(p, "image.output", m.Image.Output, m.EmbeddingDim)

	checkFileRef(p, "text", m.Text.FileRef)
	checkTextInput(p, "text.input", m.Text.Input, m.Tokenizer.ContextLength)
	checkOutput(p, "text.output", m.Text.Output, m.EmbeddingDim)

	tk := m.Tokenizer
	switch tk.Kind {
	case TokenizerCLIPBPE:
	case "":
		p.addf("tokenizer.kind", "missing")
	default:
		p.addf("tokenizer.kind", "want %q, got %q", TokenizerCLIPBPE, tk.Kind)
	}
	checkFileRef(p, "tokenizer", tk.FileRef)
	if tk.Merges <= 0 {
		p.addf("tokenizer.merges", "want > 0, got %d", tk.Merges)
	}
	if tk.ContextLength <= 2 {
		// Room for the start and end tokens and at least one word.
		p.addf("tokenizer.context_length", "want > 2, got %d", tk.ContextLength)
	}

	for i := range m.Probes {
		checkProbe(p, fmt.Sprintf("probes[%d]", i), &m.Probes[i], m.EmbeddingDim)
	}
	checkDistinct(p, m.files())
}

func checkFileRef(p *problems, at string, f FileRef) {
	switch {
	case f.File == "":
		p.addf(at+".file", "missing")
	case !localName(f.File) || f.File == ManifestName:
		p.addf(at+".file", "%q: want a relative path inside the bundle (no \"..\", no leading \"/\", no backslashes), not %s", f.File, ManifestName)
	case f.File == SignatureName:
		p.addf(at+".file", "%q is reserved for the bundle's signature", f.File)
	}
	switch {
	case f.SHA256 == "":
		p.addf(at+".sha256", "missing")
	case !isSHA256(f.SHA256):
		p.addf(at+".sha256", "want 64 lowercase hex digits, got %q", f.SHA256)
	}
	switch {
	case f.Size <= 0:
		p.addf(at+".size", "want > 0, got %d", f.Size)
	case f.Size > MaxFileSize:
		p.addf(at+".size", "%d bytes exceeds the limit of %d", f.Size, int64(MaxFileSize))
	}
}

// localName reports whether name is a clean, slash-separated path that stays
// inside the bundle directory.
func localName(name string) bool {
	if name == "." || !fs.ValidPath(name) || strings.ContainsRune(name, '\\') {
		return false
	}
	return strings.IndexFunc(name, unicode.IsControl) < 0
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func checkImageInput(p *problems, at string, in *ImageInput) {
	shape := at + ".shape"
	chanDim := -1
	switch in.Layout {
	case "", LayoutNHWC:
		chanDim = 3
	case LayoutNCHW:
		chanDim = 1
	default:
		p.addf(at+".layout", "want %q or %q, got %q", LayoutNHWC, LayoutNCHW, in.Layout)
	}
	if len(in.Shape) != 4 {
		p.addf(shape, "want 4 dimensions, got %d", len(in.Shape))
	} else {
		checkBatch(p, shape, in.Shape[0])
		for i, d := range in.Shape[1:] {
			i++
			switch {
			case i == chanDim && d != 3:
				p.addf(fmt.Sprintf("%s[%d]", shape, i), "want 3 channels (%s), got %d", in.layout(), d)
			case i != chanDim && d <= 0:
				p.addf(fmt.Sprintf("%s[%d]", shape, i), "want > 0, got %d", d)
			}
		}
	}
	checkDType(p, at+".dtype", in.DType, UInt8, Int8, Float32)
	checkEnum(p, at+".color", in.Color, ColorRGB, ColorBGR)
	checkEnum(p, at+".resize", in.Resize, ResizeCenterCrop, ResizeSquash)
	if in.Interpolation != "" {
		checkEnum(p, at+".interpolation", in.Interpolation, InterpBicubic, InterpBilinear)
	}
	checkTriple(p, at+".mean", in.Mean, false)
	checkTriple(p, at+".std", in.Std, true)
}

// Interp is the resize filter: Interpolation, or InterpBicubic when omitted.
func (in *ImageInput) Interp() string {
	if in.Interpolation == "" {
		return InterpBicubic
	}
	return in.Interpolation
}

func (in *ImageInput) layout() string {
	if in.Layout == "" {
		return LayoutNHWC
	}
	return in.Layout
}

func checkBatch(p *problems, shape string, d int) {
	if d != 1 && d != -1 {
		p.addf(shape+"[0]", "want batch 1 or -1 (dynamic), got %d", d)
	}
}

func checkTriple(p *problems, at string, v []float32, positive bool) {
	if v == nil {
		return // omitted: the default applies
	}
	if len(v) != 3 {
		p.addf(at, "want 3 values, got %d", len(v))
		return
	}
	for i, x := range v {
		f := float64(x)
		switch {
		case math.IsNaN(f) || math.IsInf(f, 0):
			p.addf(fmt.Sprintf("%s[%d]", at, i), "want a finite number, got %g", f)
		case positive && f <= 0:
			p.addf(fmt.Sprintf("%s[%d]", at, i), "want > 0, got %g", f)
		}
	}
}

func checkTextInput(p *problems, at string, in Tensor, context int) {
	shape := at + ".shape"
	if len(in.Shape) != 2 {
		p.addf(shape, "want 2 dimensions [batch, context_length], got %d", len(in.Shape))
	} else {
		checkBatch(p, shape, in.Shape[0])
		if in.Shape[1] != context {
			p.addf(shape+"[1]", "want tokenizer.context_length %d, got %d", context, in.Shape[1])
		}
	}
	checkDType(p, at+".dtype", in.DType, Int32, Int64)
}

func checkOutput(p *problems, at string, out Tensor, dim int) {
	shape := at + ".shape"
	n := len(out.Shape)
	if n == 0 {
		p.addf(shape, "missing")
	}
	for i, d := range out.Shape {
		switch {
		case i == n-1:
			if d != dim {
				p.addf(fmt.Sprintf("%s[%d]", shape, i), "want embedding_dim %d, got %d", dim, d)
			}
		case i == 0:
			checkBatch(p, shape, d)
		case d <= 0:
			p.addf(fmt.Sprintf("%s[%d]", shape, i), "want > 0, got %d", d)
		}
	}
	checkDType(p, at+".dtype", out.DType, Float32, Int8, UInt8)
}

func checkDType(p *problems, at string, t DType, allowed ...DType) {
	s := make([]string, len(allowed))
	for i, a := range allowed {
		s[i] = string(a)
	}
	checkEnum(p, at, string(t), s...)
}

func checkEnum(p *problems, at, v string, allowed ...string) {
	if v == "" {
		p.addf(at, "missing (one of %s)", strings.Join(allowed, ", "))
		return
	}
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	p.addf(at, "want one of %s, got %q", strings.Join(allowed, ", "), v)
}

func checkProbe(p *problems, at string, pr *Probe, dim int) {
	var tower, input string // what the input asks for
	switch {
	case pr.Text != "" && pr.File != "":
		p.addf(at, "has both text and file; want exactly one")
	case pr.Text != "":
		tower, input = TowerText, "text"
		if pr.SHA256 != "" || pr.Size != 0 {
			p.addf(at, "sha256 and size belong to a file probe, not a text probe")
		}
	case pr.File != "":
		tower, input = TowerImage, "a file"
		checkFileRef(p, at, pr.FileRef)
	default:
		p.addf(at, "has neither text nor file; want exactly one")
	}
	switch {
	case pr.Tower != TowerImage && pr.Tower != TowerText:
		checkEnum(p, at+".tower", pr.Tower, TowerImage, TowerText)
	case tower != "" && pr.Tower != tower:
		p.addf(at+".tower", "a probe with %s needs tower %q, got %q", input, tower, pr.Tower)
	}
	if len(pr.Expected) != dim {
		p.addf(at+".expected", "want embedding_dim %d values, got %d", dim, len(pr.Expected))
	}
	var norm float64
	for i, x := range pr.Expected {
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			p.addf(fmt.Sprintf("%s.expected[%d]", at, i), "want a finite number, got %g", f)
			continue
		}
		norm += f * f
	}
	if len(pr.Expected) > 0 && norm == 0 {
		p.addf(at+".expected", "all zero: a cosine needs a non-zero vector")
	}
	if !(pr.MinCosine > 0 && pr.MinCosine <= 1) {
		p.addf(at+".min_cosine", "want a value in (0, 1], got %g", pr.MinCosine)
	}
}

// namedFile is a file the manifest names; field is the JSON path of its
// FileRef ("image", "probes[2]").
type namedFile struct {
	field string
	ref   *FileRef
}

func (f namedFile) String() string { return fmt.Sprintf("%s.file %q", f.field, f.ref.File) }

// NamedFile is a file a manifest names. Field is the JSON path of its
// FileRef ("image", "probes[2]"); Ref points into the manifest, so that a
// packer can fill in Size and SHA256.
type NamedFile struct {
	Field string
	Ref   *FileRef
}

// String names the file as errors do: image.file "image.tflite".
func (f NamedFile) String() string { return namedFile{f.Field, f.Ref}.String() }

// Files lists the files m names, in manifest order: the image and text
// towers, the tokenizer's vocabulary, then the probe files.
func (m *Manifest) Files() []NamedFile {
	var out []NamedFile
	for _, nf := range m.files() {
		out = append(out, NamedFile{nf.field, nf.ref})
	}
	return out
}

// files lists the files m names, in manifest order.
func (m *Manifest) files() []namedFile {
	fs := []namedFile{
		{"image", &m.Image.FileRef},
		{"text", &m.Text.FileRef},
		{"tokenizer", &m.Tokenizer.FileRef},
	}
	for i := range m.Probes {
		if m.Probes[i].File != "" {
			fs = append(fs, namedFile{fmt.Sprintf("probes[%d]", i), &m.Probes[i].FileRef})
		}
	}
	return fs
}

// checkDistinct refuses two references to one file, or a file inside
// another: each file is extracted and verified exactly once.
func checkDistinct(p *problems, files []namedFile) {
	for i, a := range files {
		for _, b := range files[:i] {
			x, y := a.ref.File, b.ref.File
			if x == "" || y == "" {
				continue
			}
			if x == y || strings.HasPrefix(x, y+"/") || strings.HasPrefix(y, x+"/") {
				p.addf(a.field+".file", "%q conflicts with %s", x, b)
				break
			}
		}
	}
}

// fieldError is a problem with one field of the manifest.
type fieldError struct {
	field string // JSON path, e.g. "image.input.shape[0]"
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

// problems collects everything wrong, so that one run reports it all.
type problems []error

func (p *problems) add(field string, err error) { *p = append(*p, &fieldError{field, err}) }

func (p *problems) addf(field, format string, args ...any) {
	p.add(field, fmt.Errorf(format, args...))
}

func (p problems) err() error { return invalid(p...) }

// overlaps reports whether e concerns a field at, inside or above a field
// that already has a problem in p: a value of the wrong JSON type decodes as
// zero, and "want > 0, got 0" on top of "want a number" is noise.
func (p problems) overlaps(e error) bool {
	fe, ok := e.(*fieldError)
	if !ok {
		return false
	}
	within := func(a, b string) bool {
		return a == b || strings.HasPrefix(a, b+".") || strings.HasPrefix(a, b+"[")
	}
	for _, q := range p {
		if qe, ok := q.(*fieldError); ok && (within(fe.field, qe.field) || within(qe.field, fe.field)) {
			return true
		}
	}
	return false
}

// invalid joins the non-nil errs under ErrInvalid, or returns nil when
// there are none.
func invalid(errs ...error) error {
	errs = slices.DeleteFunc(slices.Clone(errs), func(e error) bool { return e == nil })
	if len(errs) == 0 {
		return nil
	}
	return errors.Join(append([]error{ErrInvalid}, errs...)...)
}
