package encoder

import (
	"fmt"
	"image"
	"math"
)

// pilResampler reproduces what CLIP-family models were trained on: PIL's
// Image.resize(BICUBIC) or, for MobileCLIP, Image.resize(BILINEAR), both of
// which antialias when they shrink (the kernel is stretched by the scale
// factor), on torchvision's geometry (shortest side
// to the input size, the other side truncated, the centre crop's offset
// rounded half to even). OpenCV has no antialiased bicubic resize: its
// bilinear aliases fine detail on downscaling, and its area averaging is a
// box filter; both move the embedding of a detailed photo measurably (see
// ImageSpec.Interp).
//
// It follows Pillow's ImagingResample for 8-bit images: separable, the
// horizontal pass first and only over the rows the vertical pass reads, each
// pass in 22-bit fixed point, rounded and clamped to 8 bits. Only the output
// pixels inside the crop are computed.
type pilResampler struct {
	filter  PILFilter
	hx, vy  taps // horizontal taps per output column, vertical per output row
	key     resizeKey
	squash  bool
	tmp     []uint8 // the horizontal pass's rows
	acc     []int32 // one output row of the vertical pass
	scratch []float64
}

// taps are the filter weights of each output pixel over the input.
type taps struct {
	first []int   // first input index per output pixel
	n     []int   // number of inputs per output pixel
	k     []int32 // weights, stride = width
	width int
	lo    int // smallest input index any output pixel reads
	hi    int // one past the largest
}

const pilPrecisionBits = 32 - 8 - 2

// PILFilter is the kernel of PIL's resize that ImageSpec asks for.
type PILFilter int

const (
	// PILBicubic is Image.BICUBIC (Keys' cubic, a = -0.5, support 2): CLIP's.
	PILBicubic PILFilter = iota
	// PILBilinear is Image.BILINEAR (the triangle, support 1): MobileCLIP's.
	PILBilinear
)

func (f PILFilter) String() string {
	switch f {
	case PILBicubic:
		return "bicubic"
	case PILBilinear:
		return "bilinear"
	}
	return fmt.Sprintf("PILFilter(%d)", int(f))
}

// kernel is Pillow's filter function and its support at scale 1.
func (f PILFilter) kernel() (func(float64) float64, float64) {
	if f == PILBilinear {
		return triangle, 1
	}
	return bicubic, 2
}

func triangle(x float64) float64 {
	x = math.Abs(x)
	if x < 1 {
		return 1 - x
	}
	return 0
}

func bicubic(x float64) float64 {
	const a = -0.5
	x = math.Abs(x)
	switch {
	case x < 1:
		return ((a+2)*x-(a+3))*x*x + 1
	case x < 2:
		return (((x-5)*x+8)*x - 4) * a
	}
	return 0
}

// set computes Pillow's coefficients (precompute_coeffs) of filter f for
// resizing inSize to outSize, for the output pixels [out0, out0+n), reusing
// t's buffers.
func (t *taps) set(f PILFilter, inSize, outSize, out0, n int, scratch *[]float64) {
	kernel, support := f.kernel()
	scale := float64(inSize) / float64(outSize)
	filterscale := math.Max(scale, 1)
	support *= filterscale
	width := int(math.Ceil(support))*2 + 1
	t.first, t.n = grow(t.first, n), grow(t.n, n)
	t.k = grow(t.k, n*width)
	t.width, t.lo, t.hi = width, inSize, 0
	w := grow(*scratch, width)
	*scratch = w
	for i := range n {
		center := (float64(out0+i) + 0.5) * scale
		xmin := max(int(center-support+0.5), 0)
		xmax := min(int(center+support+0.5), inSize) - xmin
		var sum float64
		for x := range xmax {
			w[x] = kernel((float64(x+xmin) - center + 0.5) / filterscale)
			sum += w[x]
		}
		for x := range xmax {
			v := w[x]
			if sum != 0 {
				v /= sum
			}
			r := 0.5
			if v < 0 {
				r = -0.5
			}
			t.k[i*width+x] = int32(v*(1<<pilPrecisionBits) + r)
		}
		t.first[i], t.n[i] = xmin, xmax
		t.lo, t.hi = min(t.lo, xmin), max(t.hi, xmin+xmax)
	}
}

// grow returns s with length n, reallocated only when it is too short.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func clip8(v int32) uint8 {
	v >>= pilPrecisionBits
	switch {
	case v < 0:
		return 0
	case v > 255:
		return 255
	}
	return uint8(v)
}

// pilGeometry is torchvision's Resize(size)+CenterCrop(size) on a w x h
// region for a W x H input (squash: Resize((H, W)) alone): the resized size
// and where the crop starts in it.
func pilGeometry(w, h, W, H int, squash bool) (nw, nh, ox, oy int) {
	if squash {
		return W, H, 0, 0
	}
	if w*H <= h*W { // the width binds: it becomes W, the height follows
		nw, nh = W, max(int(float64(W)*float64(h)/float64(w)), H)
	} else {
		nh, nw = H, max(int(float64(H)*float64(w)/float64(h)), W)
	}
	ox = int(math.RoundToEven(float64(nw-W) / 2))
	oy = int(math.RoundToEven(float64(nh-H) / 2))
	return nw, nh, ox, oy
}

// resizeKey is what the taps depend on.
type resizeKey struct{ w, h, W, H int }

// resize writes the W x H input (3 channels, interleaved, the frame's
// channel order) for region r of src (stride bytes per row) into dst. In
// steady state (regions of sizes seen last time) it does not allocate.
func (p *pilResampler) resize(dst, src []uint8, stride int, r image.Rectangle, W, H int, squash bool) {
	w, h := r.Dx(), r.Dy()
	nw, nh, ox, oy := pilGeometry(w, h, W, H, squash)
	if k := (resizeKey{w, h, W, H}); k != p.key || p.squash != squash {
		p.hx.set(p.filter, w, nw, ox, W, &p.scratch)
		p.vy.set(p.filter, h, nh, oy, H, &p.scratch)
		p.key, p.squash = k, squash
	}
	rows := p.vy.hi - p.vy.lo
	p.tmp = grow(p.tmp, rows*W*3)
	p.acc = grow(p.acc, W*3)
	tmp, acc := p.tmp, p.acc
	half := int32(1) << (pilPrecisionBits - 1)
	hx := &p.hx
	// Horizontal pass over the rows the vertical pass reads.
	for y := range rows {
		off := (r.Min.Y+p.vy.lo+y)*stride + r.Min.X*3
		row := src[off : off+w*3]
		out := tmp[y*W*3 : (y+1)*W*3]
		for x := range W {
			n, first := hx.n[x], hx.first[x]
			k := hx.k[x*hx.width : x*hx.width+n]
			in := row[first*3 : (first+n)*3]
			s0, s1, s2 := half, half, half
			for i, c := range k {
				px := in[i*3 : i*3+3 : i*3+3]
				s0 += int32(px[0]) * c
				s1 += int32(px[1]) * c
				s2 += int32(px[2]) * c
			}
			o := out[x*3 : x*3+3 : x*3+3]
			o[0], o[1], o[2] = clip8(s0), clip8(s1), clip8(s2)
		}
	}
	// Vertical pass, a whole output row at a time (rows of tmp in order).
	for y := range H {
		n, first := p.vy.n[y], p.vy.first[y]-p.vy.lo
		k := p.vy.k[y*p.vy.width : y*p.vy.width+n]
		for x := range acc {
			acc[x] = half
		}
		for i, c := range k {
			in := tmp[(first+i)*W*3 : (first+i+1)*W*3]
			in = in[:len(acc)]
			for x, v := range in {
				acc[x] += int32(v) * c
			}
		}
		out := dst[y*W*3 : (y+1)*W*3]
		out = out[:len(acc)]
		for x, v := range acc {
			out[x] = clip8(v)
		}
	}
}
