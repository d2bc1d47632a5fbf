package camera

import (
	"errors"
	"fmt"
	"image"
	"image/color"

	"gocv.io/x/gocv"
)

// SnapshotConfig bounds the JPEGs sent over MQTT and HTTP.
type SnapshotConfig struct {
	// MaxWidth: wider frames are scaled down (the height follows).
	MaxWidth int `yaml:"max_width"`
	// Quality is the JPEG quality, 1..100.
	Quality int `yaml:"quality"`
}

// SnapshotDefaults: 1280 pixels wide at most, quality 80 (about 100 to 200 KB
// for a 720p street scene).
func SnapshotDefaults() SnapshotConfig { return SnapshotConfig{MaxWidth: 1280, Quality: 80} }

// Validate names each bad field.
func (c SnapshotConfig) Validate() error {
	var errs []error
	if c.MaxWidth < 64 || c.MaxWidth > 8192 {
		errs = append(errs, fieldErr("max_width", "%d: want 64..8192", c.MaxWidth))
	}
	if c.Quality < 1 || c.Quality > 100 {
		errs = append(errs, fieldErr("quality", "%d: want 1..100", c.Quality))
	}
	return errors.Join(errs...)
}

// Snapshotter draws a region and a label on a copy of a frame and encodes it
// as JPEG. It keeps its scratch Mat. Not safe for concurrent use.
type Snapshotter struct {
	cfg     SnapshotConfig
	scratch gocv.Mat
}

// NewSnapshotter validates cfg. Close frees the scratch Mat.
func NewSnapshotter(cfg SnapshotConfig) (*Snapshotter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return &Snapshotter{cfg: cfg, scratch: gocv.NewMat()}, nil
}

// Close frees the scratch Mat.
func (s *Snapshotter) Close() error {
	if s.scratch.Ptr() != nil {
		s.scratch.Close()
	}
	return nil
}

var (
	outline = color.RGBA{R: 255, G: 200, A: 255} // amber: visible on grass, sky and asphalt
	ink     = color.RGBA{A: 255}
)

// JPEG returns frame (8-bit BGR) as a JPEG with r (frame coordinates)
// outlined and label written above it; an empty r outlines nothing and an
// empty label writes nothing. The frame itself is not drawn on.
func (s *Snapshotter) JPEG(frame gocv.Mat, r image.Rectangle, label string) ([]byte, error) {
	if frame.Empty() || frame.Type() != gocv.MatTypeCV8UC3 {
		return nil, fmt.Errorf("snapshot: %w", ErrNoFrame)
	}
	f := 1.0
	if frame.Cols() > s.cfg.MaxWidth {
		f = float64(s.cfg.MaxWidth) / float64(frame.Cols())
		h := max(1, int(float64(frame.Rows())*f+0.5))
		gocv.Resize(frame, &s.scratch, image.Pt(s.cfg.MaxWidth, h), 0, 0, gocv.InterpolationArea)
	} else {
		frame.CopyTo(&s.scratch)
	}
	// Lines and text scale with the picture, so that they read the same on
	// a phone notification whatever the camera's resolution.
	thick := max(2, s.scratch.Cols()/320)
	font := float64(s.scratch.Cols()) / 1280
	font = max(font, 0.4)
	r = image.Rect(scale(r.Min.X, f), scale(r.Min.Y, f), scale(r.Max.X, f), scale(r.Max.Y, f)).
		Intersect(image.Rect(0, 0, s.scratch.Cols(), s.scratch.Rows()))
	if !r.Empty() {
		gocv.Rectangle(&s.scratch, r, outline, thick)
	}
	if label != "" {
		s.label(r, label, font, max(1, thick/2))
	}
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, s.scratch, []int{gocv.IMWriteJpegQuality, s.cfg.Quality})
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...), nil
}

// label writes text on an outline-coloured band above r (inside it when r
// touches the top, at the top-left corner when there is no r).
func (s *Snapshotter) label(r image.Rectangle, text string, font float64, thick int) {
	size, base := gocv.GetTextSizeWithBaseline(text, gocv.FontHersheySimplex, font, thick)
	pad := max(2, size.Y/4)
	x, y := r.Min.X, r.Min.Y-size.Y-base-2*pad
	if y < 0 {
		y = r.Min.Y
	}
	band := image.Rect(x, y, x+size.X+2*pad, y+size.Y+base+2*pad)
	if band.Max.X > s.scratch.Cols() { // keep the text in the picture
		band = band.Sub(image.Pt(band.Max.X-s.scratch.Cols(), 0))
	}
	gocv.Rectangle(&s.scratch, band, outline, -1)
	gocv.PutText(&s.scratch, text, image.Pt(band.Min.X+pad, band.Min.Y+pad+size.Y), gocv.FontHersheySimplex, font, ink, thick)
}

func scale(v int, f float64) int { return int(float64(v)*f + 0.5) }

// Placeholder is a w×h grey JPEG with lines centred on it, one under the
// other: the picture of a rule that has not fired yet, so that an image
// entity shows what it is instead of a broken picture. The Hershey font
// draws ASCII only: other characters come out as '?'.
func Placeholder(w, h int, lines ...string) ([]byte, error) {
	if w < 64 || h < 32 || w > 8192 || h > 8192 {
		return nil, fmt.Errorf("placeholder: %dx%d: want 64..8192 by 32..8192", w, h)
	}
	m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(96, 96, 96, 0), h, w, gocv.MatTypeCV8UC3)
	defer m.Close()
	font, thick := float64(w)/900, max(1, w/400)
	ink := color.RGBA{R: 230, G: 230, B: 230, A: 255}
	sizes := make([]image.Point, len(lines))
	total := 0
	for i, l := range lines {
		sizes[i] = gocv.GetTextSize(l, gocv.FontHersheySimplex, font, thick)
		total += sizes[i].Y * 2
	}
	y := (h - total) / 2
	for i, l := range lines {
		// a line too wide for the picture is scaled down to fit it
		f := font
		if sizes[i].X > w*9/10 {
			f = font * float64(w*9/10) / float64(sizes[i].X)
			sizes[i] = gocv.GetTextSize(l, gocv.FontHersheySimplex, f, thick)
		}
		y += sizes[i].Y
		gocv.PutText(&m, l, image.Pt((w-sizes[i].X)/2, y), gocv.FontHersheySimplex, f, ink, thick)
		y += sizes[i].Y
	}
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, m, []int{gocv.IMWriteJpegQuality, 80})
	if err != nil {
		return nil, fmt.Errorf("placeholder: %w", err)
	}
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...), nil
}
