package encoder

import (
	"errors"
	"fmt"
	"image"
	"math"

	"gocv.io/x/gocv"
)

// ResizeMode says how a region of any aspect ratio becomes the model's input.
type ResizeMode int

const (
	// CenterCrop scales the shortest side to the input size and crops the
	// centre (CLIP's preprocessing).
	CenterCrop ResizeMode = iota
	// Squash scales both sides independently, keeping everything in view.
	Squash
)

// ImageSpec is what the image tower expects, from the bundle's manifest.
type ImageSpec struct {
	Width, Height int
	NCHW          bool // planar input; NHWC (interleaved) otherwise
	BGR           bool // the model wants BGR channel order; RGB otherwise
	Resize        ResizeMode
	// Mean and Std per channel, in the model's channel order, applied to
	// pixels scaled to [0, 1].
	Mean, Std [3]float32
	// Interp is OpenCV's interpolation, with OpenCV's dnn.blobFromImage
	// geometry. The zero value (nearest-neighbour) means PIL's: the
	// antialiased bicubic resize on torchvision's geometry that CLIP-family
	// models are trained on (pilResampler). OpenCV's bilinear aliases fine
	// detail when it shrinks and its sizes and crop offsets round otherwise;
	// on a full-size ViT-B-32 exported with random weights, the cosine of
	// sightd's embedding to open_clip's PyTorch one on opencv-doc's
	// chessboard photo (board.jpg) was 0.971 with OpenCV's area averaging
	// (0.916 for a bilinear resize without antialiasing, emulated in
	// PyTorch) and 1.0000 on all ten photos with this resize, which gives
	// Pillow's pixels exactly. It costs about what area averaging does
	// (BenchmarkImageOverhead, a whole 1280x720 frame: 4.8 ms against 4.3 ms).
	Interp gocv.InterpolationFlags
	// PIL is PIL's filter when Interp is zero: bicubic (the zero value) or
	// bilinear, which MobileCLIP's transform uses; resizing a MobileCLIP's
	// input with the other filter moves its embedding measurably.
	PIL PILFilter
}

// ErrBadImage is returned for an image or region the preprocessor cannot use.
var ErrBadImage = errors.New("encoder: bad image")

// Preprocessor turns a region of a BGR frame into model input. It keeps its
// scratch Mat, so steady-state calls do not allocate. Not safe for
// concurrent use.
type Preprocessor struct {
	spec    ImageSpec
	resized gocv.Mat
	// pil: spec.Interp was left zero; resize as PIL does (pilResampler).
	pil *pilResampler
	// lut maps (model channel, 8-bit value) to the input's real value, which
	// the quantising writers then turn into the tensor's type.
	lut [3][256]float32
}

// NewPreprocessor validates spec and precomputes the per-channel table.
func NewPreprocessor(spec ImageSpec) (*Preprocessor, error) {
	if spec.Width <= 0 || spec.Height <= 0 {
		return nil, fmt.Errorf("%w: input size %dx%d", ErrBadImage, spec.Width, spec.Height)
	}
	for c := 0; c < 3; c++ {
		if !(spec.Std[c] > 0) {
			return nil, fmt.Errorf("%w: std[%d] = %v must be > 0", ErrBadImage, c, spec.Std[c])
		}
	}
	if spec.PIL != PILBicubic && spec.PIL != PILBilinear {
		return nil, fmt.Errorf("%w: PIL filter %v", ErrBadImage, spec.PIL)
	}
	var pil *pilResampler
	if spec.Interp == gocv.InterpolationNearestNeighbor {
		spec.Interp = gocv.InterpolationLinear
		pil = &pilResampler{filter: spec.PIL}
	}
	p := &Preprocessor{spec: spec, pil: pil, resized: gocv.NewMatWithSize(spec.Height, spec.Width, gocv.MatTypeCV8UC3)}
	for c := 0; c < 3; c++ {
		for v := 0; v < 256; v++ {
			p.lut[c][v] = (float32(v)/255 - spec.Mean[c]) / spec.Std[c]
		}
	}
	return p, nil
}

// Close frees the scratch Mat.
func (p *Preprocessor) Close() error {
	if p.resized.Ptr() != nil {
		p.resized.Close()
	}
	return nil
}

// Spec is the preprocessor's input spec.
func (p *Preprocessor) Spec() ImageSpec { return p.spec }

// layout says where the model input sits inside the resized scratch image.
type layout struct {
	stride int // pixels per row of the scratch image
	ox, oy int // top-left of the input inside it
}

// CropRect is the part of r that the model sees. CenterCrop keeps the centred
// rectangle with the input's aspect ratio; Squash keeps all of r.
func (p *Preprocessor) CropRect(r image.Rectangle) image.Rectangle {
	if p.spec.Resize == Squash {
		return r
	}
	if p.pil != nil {
		nw, nh, ox, oy := pilGeometry(r.Dx(), r.Dy(), p.spec.Width, p.spec.Height, false)
		fx, fy := float64(nw)/float64(r.Dx()), float64(nh)/float64(r.Dy())
		x0 := r.Min.X + int(math.Round(float64(ox)/fx))
		y0 := r.Min.Y + int(math.Round(float64(oy)/fy))
		x1 := r.Min.X + int(math.Round(float64(ox+p.spec.Width)/fx))
		y1 := r.Min.Y + int(math.Round(float64(oy+p.spec.Height)/fy))
		return image.Rect(x0, y0, min(x1, r.Max.X), min(y1, r.Max.Y))
	}
	f, l := p.centerCrop(r)
	x0 := r.Min.X + int(math.Round(float64(l.ox)/f))
	y0 := r.Min.Y + int(math.Round(float64(l.oy)/f))
	cw := int(math.Round(float64(p.spec.Width) / f))
	ch := int(math.Round(float64(p.spec.Height) / f))
	return image.Rect(x0, y0, min(x0+cw, r.Max.X), min(y0+ch, r.Max.Y))
}

// centerCrop follows OpenCV's dnn.blobFromImage(crop=true), so that the
// model sees exactly the pixels OpenCV's reference would give it: scale by
// f = max(W/w, H/h) so the region covers the input, then cut the centre.
// OpenCV rounds the scaled size half to even (cvRound).
func (p *Preprocessor) centerCrop(r image.Rectangle) (f float64, l layout) {
	W, H := p.spec.Width, p.spec.Height
	f = math.Max(float64(W)/float64(r.Dx()), float64(H)/float64(r.Dy()))
	w := int(math.RoundToEven(float64(r.Dx()) * f))
	h := int(math.RoundToEven(float64(r.Dy()) * f))
	return f, cropLayout(w, h, W, H)
}

func cropLayout(w, h, W, H int) layout {
	return layout{stride: w, ox: (w - W) / 2, oy: (h - H) / 2}
}

// resize scales region r of frame (8-bit, 3 channels, BGR) into p.resized
// and returns its pixels and where the input sits in them.
func (p *Preprocessor) resize(frame gocv.Mat, r image.Rectangle) ([]uint8, layout, error) {
	if frame.Empty() || frame.Type() != gocv.MatTypeCV8UC3 {
		return nil, layout{}, fmt.Errorf("%w: want a non-empty 8-bit 3-channel frame, got %v", ErrBadImage, frame.Type())
	}
	bounds := image.Rect(0, 0, frame.Cols(), frame.Rows())
	if r.Empty() || !r.In(bounds) {
		return nil, layout{}, fmt.Errorf("%w: region %v is empty or outside the %dx%d frame", ErrBadImage, r, frame.Cols(), frame.Rows())
	}
	l := layout{stride: p.spec.Width}
	if p.pil != nil {
		if !frame.IsContinuous() {
			// A view into a larger Mat: its rows are not where Step says.
			c := frame.Clone()
			defer c.Close()
			frame = c
		}
		src, err := frame.DataPtrUint8()
		if err != nil {
			return nil, layout{}, err
		}
		if p.resized.Cols() != p.spec.Width || p.resized.Rows() != p.spec.Height {
			p.resized.Close()
			p.resized = gocv.NewMatWithSize(p.spec.Height, p.spec.Width, gocv.MatTypeCV8UC3)
		}
		dst, err := p.resized.DataPtrUint8()
		if err != nil {
			return nil, layout{}, err
		}
		p.pil.resize(dst, src, frame.Step(), r, p.spec.Width, p.spec.Height, p.spec.Resize == Squash)
		return dst, l, nil
	}
	view := frame.Region(r)
	defer view.Close()
	if p.spec.Resize == Squash {
		gocv.Resize(view, &p.resized, image.Pt(p.spec.Width, p.spec.Height), 0, 0, p.spec.Interp)
	} else {
		f, _ := p.centerCrop(r)
		// The size follows from f, as in OpenCV's reference; the scratch Mat is
		// only reallocated when a region of another aspect ratio comes along.
		// The layout is taken from the Mat OpenCV made, not from our arithmetic.
		gocv.Resize(view, &p.resized, image.Point{}, f, f, p.spec.Interp)
		l = cropLayout(p.resized.Cols(), p.resized.Rows(), p.spec.Width, p.spec.Height)
	}
	if p.resized.Cols() < l.ox+p.spec.Width || p.resized.Rows() < l.oy+p.spec.Height {
		return nil, layout{}, fmt.Errorf("%w: region %v is too small to resize", ErrBadImage, r)
	}
	px, err := p.resized.DataPtrUint8()
	return px, l, err
}

// srcChannel is the BGR channel that feeds model channel c.
func (p *Preprocessor) srcChannel(c int) int {
	if p.spec.BGR {
		return c
	}
	return 2 - c
}

// Quantizer writes real values into a tensor's element type.
type Quantizer[T int8 | uint8 | float32] struct {
	Scale     float32 // 0 for a float tensor
	ZeroPoint int32
}

func (q Quantizer[T]) table(p *Preprocessor) (t [3][256]T) {
	var lo, hi float32
	var z T
	switch any(z).(type) {
	case int8:
		lo, hi = -128, 127
	case uint8:
		lo, hi = 0, 255
	}
	for c := 0; c < 3; c++ {
		for v := 0; v < 256; v++ {
			x := p.lut[c][v]
			if q.Scale != 0 {
				x = float32(math.Round(float64(x/q.Scale))) + float32(q.ZeroPoint)
				x = min(max(x, lo), hi)
			}
			t[c][v] = T(x)
		}
	}
	return t
}

// Writer fills one image's worth of an input tensor of element type T from a
// frame region. It holds the 3x256 table that maps a pixel byte straight to
// the quantised input value, so the per-pixel work is one lookup.
type Writer[T int8 | uint8 | float32] struct {
	p   *Preprocessor
	tab [3][256]T
}

// NewWriter builds the table for p and the tensor's quantisation.
func NewWriter[T int8 | uint8 | float32](p *Preprocessor, q Quantizer[T]) *Writer[T] {
	return &Writer[T]{p: p, tab: q.table(p)}
}

// Write preprocesses region r of frame into dst, which holds exactly one
// image (H*W*3 values) in the spec's layout.
func (w *Writer[T]) Write(dst []T, frame gocv.Mat, r image.Rectangle) error {
	sp := w.p.spec
	n := sp.Width * sp.Height
	if len(dst) != n*3 {
		return fmt.Errorf("%w: destination holds %d values, want %d", ErrBadImage, len(dst), n*3)
	}
	px, l, err := w.p.resize(frame, r)
	if err != nil {
		return err
	}
	s0, s1, s2 := w.p.srcChannel(0), w.p.srcChannel(1), w.p.srcChannel(2)
	t0, t1, t2 := &w.tab[0], &w.tab[1], &w.tab[2]
	W := sp.Width
	for y := 0; y < sp.Height; y++ {
		row := px[((y+l.oy)*l.stride+l.ox)*3 : ((y+l.oy)*l.stride+l.ox+W)*3]
		if sp.NCHW {
			d0, d1, d2 := dst[y*W:(y+1)*W], dst[n+y*W:n+(y+1)*W], dst[2*n+y*W:2*n+(y+1)*W]
			for x := range W {
				s := row[x*3 : x*3+3 : x*3+3]
				d0[x], d1[x], d2[x] = t0[s[s0]], t1[s[s1]], t2[s[s2]]
			}
			continue
		}
		d := dst[y*W*3 : (y+1)*W*3]
		for x := range W {
			s := row[x*3 : x*3+3 : x*3+3]
			o := d[x*3 : x*3+3 : x*3+3]
			o[0], o[1], o[2] = t0[s[s0]], t1[s[s1]], t2[s[s2]]
		}
	}
	return nil
}
