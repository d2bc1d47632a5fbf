package encoder

import (
	"errors"
	"fmt"
	"image"
	"math"

	"gocv.io/x/gocv"
	"golang.org/x/text/unicode/norm"

	"github.com/sightd/sightd/quant/bundle"
	"github.com/sightd/sightd/quant/tflite"
	"github.com/sightd/sightd/quant/tokenizer"
)

// ErrProbe is returned when a bundle's probe input does not give the vector
// the manifest expects.
var ErrProbe = errors.New("encoder: probe mismatch")

// ErrDegenerate is an output that cannot be an embedding (all zeros, NaN or
// infinite): a broken model, or a runtime that computes it wrong.
var ErrDegenerate = errors.New("encoder: degenerate output")

// Towers is a loaded bundle: both models and the tokenizer, shared read-only
// by every encoder made from them (one per goroutine).
type Towers struct {
	Bundle *bundle.Bundle
	image  *tflite.Model
	text   *tflite.Model
	tok    *tokenizer.Tokenizer
}

// Load loads the towers and the tokenizer of an opened bundle. The caller
// keeps ownership of b.
func Load(b *bundle.Bundle) (_ *Towers, err error) {
	m := b.Manifest
	t := &Towers{Bundle: b}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	if m.Tokenizer.Kind != bundle.TokenizerCLIPBPE {
		return nil, fmt.Errorf("encoder: tokenizer kind %q is not supported", m.Tokenizer.Kind)
	}
	if t.tok, err = tokenizer.LoadFile(b.Path(m.Tokenizer.File), tokenizer.Config{
		Merges: m.Tokenizer.Merges, ContextLength: m.Tokenizer.ContextLength,
		Normalize: norm.NFC.String, // what CLIP's ftfy does to the text
	}); err != nil {
		return nil, fmt.Errorf("encoder: bundle %s tokenizer: %w", m.Name, err)
	}
	if t.image, err = tflite.NewModelFromFile(b.Path(m.Image.File)); err != nil {
		return nil, fmt.Errorf("encoder: bundle %s image tower: %w", m.Name, err)
	}
	if t.text, err = tflite.NewModelFromFile(b.Path(m.Text.File)); err != nil {
		return nil, fmt.Errorf("encoder: bundle %s text tower: %w", m.Name, err)
	}
	return t, nil
}

// Manifest is the bundle's manifest.
func (t *Towers) Manifest() *bundle.Manifest { return t.Bundle.Manifest }

// Tokenizer is the bundle's tokenizer.
func (t *Towers) Tokenizer() *tokenizer.Tokenizer { return t.tok }

// SpecFromManifest translates the manifest's image input into a preprocessing spec.
func SpecFromManifest(in bundle.ImageInput) (ImageSpec, error) {
	if len(in.Shape) != 4 || len(in.Mean) != 3 || len(in.Std) != 3 {
		return ImageSpec{}, fmt.Errorf("encoder: image input %v needs a 4-d shape and 3 means and stds", in.Shape)
	}
	s := ImageSpec{NCHW: in.Layout == bundle.LayoutNCHW, BGR: in.Color == bundle.ColorBGR}
	if s.NCHW {
		s.Height, s.Width = in.Shape[2], in.Shape[3]
	} else {
		s.Height, s.Width = in.Shape[1], in.Shape[2]
	}
	if in.Resize == bundle.ResizeSquash {
		s.Resize = Squash
	}
	switch in.Interp() {
	case bundle.InterpBicubic:
		s.PIL = PILBicubic
	case bundle.InterpBilinear:
		s.PIL = PILBilinear
	default:
		return ImageSpec{}, fmt.Errorf("encoder: image input interpolation %q is neither %q nor %q", in.Interp(), bundle.InterpBicubic, bundle.InterpBilinear)
	}
	copy(s.Mean[:], in.Mean)
	copy(s.Std[:], in.Std)
	return s, nil
}

// NewImage makes an image encoder for one goroutine.
func (t *Towers) NewImage(rt tflite.Options) (*Image, error) {
	in := t.Manifest().Image.Input
	spec, err := SpecFromManifest(in)
	if err != nil {
		return nil, err
	}
	return NewImage(t.image, ImageConfig{Spec: spec, DynamicBatch: in.Shape[0] == -1, Runtime: rt})
}

// NewText makes a text encoder for one goroutine.
func (t *Towers) NewText(rt tflite.Options) (*Text, error) {
	return NewText(t.text, t.tok, TextConfig{Runtime: rt})
}

// CheckProbes runs the manifest's probe inputs through fresh encoders and
// compares each result with the expected vector: the smoke test that a
// bundle computes what its author computed. It reports every probe's
// cosine, and ErrProbe for those below their minimum.
func (t *Towers) CheckProbes(rt tflite.Options) ([]float64, error) {
	m := t.Manifest()
	if len(m.Probes) == 0 {
		return nil, nil
	}
	img, err := t.NewImage(rt)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	txt, err := t.NewText(rt)
	if err != nil {
		return nil, err
	}
	defer txt.Close()

	got := make([]float32, m.EmbeddingDim)
	cosines := make([]float64, len(m.Probes))
	var errs []error
	for i, p := range m.Probes {
		switch p.Tower {
		case bundle.TowerText:
			err = txt.Encode(p.Text, got)
		default:
			err = encodeFile(img, t.Bundle.Path(p.File), got)
		}
		if errors.Is(err, ErrDegenerate) {
			// The runtime computed no direction at all: the worst mismatch.
			cosines[i] = math.NaN()
			errs = append(errs, fmt.Errorf("%w: probe %d (%s %q): cosine undefined (%v), want >= %.4f", ErrProbe, i, p.Tower, p.Text+p.File, err, p.MinCosine))
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("probe %d (%s): %w", i, p.Tower, err))
			continue
		}
		cosines[i] = Cosine(got, p.Expected)
		if cosines[i] < p.MinCosine || math.IsNaN(cosines[i]) {
			errs = append(errs, fmt.Errorf("%w: probe %d (%s %q): cosine %.4f < %.4f", ErrProbe, i, p.Tower, p.Text+p.File, cosines[i], p.MinCosine))
		}
	}
	return cosines, errors.Join(errs...)
}

// encodeFile embeds the whole of an image file.
func encodeFile(e *Image, path string, dst []float32) error {
	frame, err := ReadImage(path)
	if err != nil {
		return err
	}
	defer frame.Close()
	return e.Encode(frame, []image.Rectangle{image.Rect(0, 0, frame.Cols(), frame.Rows())}, dst)
}

// ReadImage decodes a JPEG or PNG file into an 8-bit BGR Mat.
func ReadImage(path string) (gocv.Mat, error) {
	m := gocv.IMRead(path, gocv.IMReadColor)
	if m.Empty() {
		m.Close()
		return gocv.Mat{}, fmt.Errorf("%w: cannot read or decode %s", ErrBadImage, path)
	}
	return m, nil
}

// Cosine is the cosine similarity of a and b (NaN when either is zero or
// their lengths differ).
func Cosine(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.NaN()
	}
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

// Close frees the models. Encoders made from them must be closed first.
func (t *Towers) Close() error {
	var errs []error
	if t.image != nil {
		errs = append(errs, t.image.Close())
		t.image = nil
	}
	if t.text != nil {
		errs = append(errs, t.text.Close())
		t.text = nil
	}
	return errors.Join(errs...)
}

// EncodeBytes embeds the whole of an encoded image (JPEG, PNG) into dst:
// for reference snapshots kept in the store.
func (e *Image) EncodeBytes(data []byte, dst []float32) error {
	frame, err := gocv.IMDecode(data, gocv.IMReadColor)
	if err != nil || frame.Empty() {
		frame.Close()
		return fmt.Errorf("%w: cannot decode a %d-byte image", ErrBadImage, len(data))
	}
	defer frame.Close()
	return e.Encode(frame, []image.Rectangle{image.Rect(0, 0, frame.Cols(), frame.Rows())}, dst)
}
