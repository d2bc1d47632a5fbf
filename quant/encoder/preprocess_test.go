package encoder

import (
	"image"
	"math"
	"os"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"
)

// opencvData is Debian opencv-doc's examples/data, unpacked by `make deps`.
func opencvData(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("SIGHTD_OPENCV_DATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "third_party", "opencv-data")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("real test image missing (run `make deps`, or set SIGHTD_OPENCV_DATA): %v", err)
	}
	return p
}

func readImage(t testing.TB, name string) gocv.Mat {
	t.Helper()
	m := gocv.IMRead(opencvData(t, name), gocv.IMReadColor)
	if m.Empty() {
		t.Fatalf("OpenCV could not decode %s", name)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// Our crop-then-resize must land on the pixels of OpenCV's own
// resize-then-centre-crop (dnn.BlobFromImage with crop=true), an independent
// implementation of CLIP's preprocessing.
func TestPreprocessMatchesBlobFromImage(t *testing.T) {
	for _, name := range []string{"fruits.jpg", "butterfly.jpg", "messi5.jpg", "baboon.jpg"} {
		t.Run(name, func(t *testing.T) {
			img := readImage(t, name)
			spec := ImageSpec{Width: 224, Height: 224, NCHW: true, Resize: CenterCrop,
				Std: [3]float32{1, 1, 1}, Interp: gocv.InterpolationLinear}
			p, err := NewPreprocessor(spec)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			got := make([]float32, 3*224*224)
			if err := NewWriter(p, Quantizer[float32]{}).Write(got, img, image.Rect(0, 0, img.Cols(), img.Rows())); err != nil {
				t.Fatal(err)
			}

			blob := gocv.BlobFromImage(img, 1.0/255, image.Pt(224, 224), gocv.NewScalar(0, 0, 0, 0), true, true)
			defer blob.Close()
			want, err := blob.DataPtrFloat32()
			if err != nil {
				t.Fatal(err)
			}
			if len(want) != len(got) {
				t.Fatalf("blob has %d values, ours %d", len(want), len(got))
			}
			// The two orders sample the source up to half a pixel apart
			// (integer crop sizes), so allow small local differences but
			// demand the same picture.
			var sum, maxd float64
			for i := range got {
				d := math.Abs(float64(got[i] - want[i]))
				sum += d
				maxd = math.Max(maxd, d)
			}
			mean := sum / float64(len(got))
			t.Logf("%s %dx%d: mean |diff| %.4f, max %.4f (of 1.0)", name, img.Cols(), img.Rows(), mean, maxd)
			if mean > 2.0/255 {
				t.Fatalf("mean difference %.4f > 2 levels: crop or channel order differs", mean)
			}
		})
	}
}

// Regions whose scaled size lands on exactly .5 pixel (134 x 1.75 = 234.5):
// OpenCV rounds half to even, and the writer must follow the Mat it made.
func TestPreprocessHalfPixelSizes(t *testing.T) {
	frame := gocv.NewMatWithSize(576, 768, gocv.MatTypeCV8UC3)
	defer frame.Close()
	p, err := NewPreprocessor(ImageSpec{Width: 224, Height: 224, Std: [3]float32{1, 1, 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	w := NewWriter(p, Quantizer[uint8]{Scale: 1.0 / 255})
	dst := make([]uint8, 224*224*3)
	for _, r := range []image.Rectangle{image.Rect(0, 0, 134, 128), image.Rect(0, 0, 128, 134),
		image.Rect(0, 0, 585, 576), image.Rect(3, 5, 452, 201), image.Rect(0, 0, 768, 576)} {
		if err := w.Write(dst, frame, r); err != nil {
			t.Errorf("%v: %v", r, err)
		}
	}
}

func TestCropRect(t *testing.T) {
	p, err := NewPreprocessor(ImageSpec{Width: 224, Height: 224, Std: [3]float32{1, 1, 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cases := []struct{ in, want image.Rectangle }{
		{image.Rect(0, 0, 1280, 720), image.Rect(280, 0, 1000, 720)},
		{image.Rect(0, 0, 720, 1280), image.Rect(0, 280, 720, 1000)},
		{image.Rect(10, 20, 110, 120), image.Rect(10, 20, 110, 120)},
		{image.Rect(100, 50, 301, 100), image.Rect(175, 50, 226, 100)}, // torchvision's sizes and offsets (PIL resize)
	}
	for _, c := range cases {
		if got := p.CropRect(c.in); got != c.want {
			t.Errorf("CropRect(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	p.spec.Resize = Squash
	if got := p.CropRect(cases[0].in); got != cases[0].in {
		t.Errorf("squash CropRect = %v", got)
	}
}

func TestPreprocessQuantizesAndOrdersChannels(t *testing.T) {
	// A solid BGR colour: every output value is known exactly.
	frame := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(10, 128, 250, 0), 48, 64, gocv.MatTypeCV8UC3)
	defer frame.Close()
	spec := ImageSpec{Width: 8, Height: 8, Resize: Squash,
		Mean: [3]float32{0.5, 0.5, 0.5}, Std: [3]float32{0.25, 0.25, 0.25}}
	p, err := NewPreprocessor(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const scale, zp = 0.05, -3
	dst := make([]int8, 8*8*3)
	if err := NewWriter(p, Quantizer[int8]{Scale: scale, ZeroPoint: zp}).Write(dst, frame, image.Rect(0, 0, 64, 48)); err != nil {
		t.Fatal(err)
	}
	q := func(v float64) int8 {
		x := math.Round(((v/255-0.5)/0.25)/scale) + zp
		return int8(math.Max(-128, math.Min(127, x)))
	}
	want := [3]int8{q(250), q(128), q(10)} // RGB from BGR
	for i := 0; i < 64; i++ {
		for c := 0; c < 3; c++ {
			if dst[i*3+c] != want[c] {
				t.Fatalf("pixel %d channel %d = %d, want %d", i, c, dst[i*3+c], want[c])
			}
		}
	}
}

func TestPreprocessBadInput(t *testing.T) {
	if _, err := NewPreprocessor(ImageSpec{Width: 0, Height: 224, Std: [3]float32{1, 1, 1}}); err == nil {
		t.Error("width 0 accepted")
	}
	if _, err := NewPreprocessor(ImageSpec{Width: 4, Height: 4, Std: [3]float32{1, 0, 1}}); err == nil {
		t.Error("std 0 accepted")
	}
	if _, err := NewPreprocessor(ImageSpec{Width: 4, Height: 4, Std: [3]float32{1, 1, 1}, PIL: PILBilinear + 1}); err == nil {
		t.Error("unknown PIL filter accepted")
	}
	p, _ := NewPreprocessor(ImageSpec{Width: 4, Height: 4, Std: [3]float32{1, 1, 1}})
	defer p.Close()
	w := NewWriter(p, Quantizer[uint8]{Scale: 1.0 / 255})
	frame := gocv.NewMatWithSize(10, 10, gocv.MatTypeCV8UC3)
	defer frame.Close()
	grey := gocv.NewMatWithSize(10, 10, gocv.MatTypeCV8UC1)
	defer grey.Close()
	empty := gocv.NewMat()
	defer empty.Close()
	dst := make([]uint8, 48)
	for name, err := range map[string]error{
		"outside":   w.Write(dst, frame, image.Rect(5, 5, 20, 20)),
		"empty":     w.Write(dst, frame, image.Rect(3, 3, 3, 9)),
		"grey":      w.Write(dst, grey, image.Rect(0, 0, 10, 10)),
		"no frame":  w.Write(dst, empty, image.Rect(0, 0, 10, 10)),
		"short dst": w.Write(dst[:5], frame, image.Rect(0, 0, 10, 10)),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func BenchmarkPreprocess720p(b *testing.B) {
	frame := gocv.NewMatWithSize(720, 1280, gocv.MatTypeCV8UC3)
	defer frame.Close()
	gocv.RandU(&frame, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(255, 255, 255, 0))
	p, err := NewPreprocessor(ImageSpec{Width: 224, Height: 224, Std: [3]float32{0.27, 0.26, 0.28}, Mean: [3]float32{0.48, 0.46, 0.41}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	w := NewWriter(p, Quantizer[int8]{Scale: 0.02, ZeroPoint: 0})
	dst := make([]int8, 224*224*3)
	r := image.Rect(0, 0, 1280, 720)
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Write(dst, frame, r); err != nil {
			b.Fatal(err)
		}
	}
}

// A preprocessor left at the default interpolation antialiases when it
// shrinks, as PIL's bicubic resize (CLIP's training preprocessing) does:
// fine one-pixel stripes shrunk 3.1x average out to grey, where OpenCV's
// bilinear sampling picks stripes and aliases them into a coarse pattern.
func TestPreprocessAntialiasesWhenShrinking(t *testing.T) {
	const W = 224
	src := gocv.NewMatWithSize(700, 700, gocv.MatTypeCV8UC3)
	defer src.Close()
	px, err := src.DataPtrUint8()
	if err != nil {
		t.Fatal(err)
	}
	for i := range px {
		if (i/3)%2 == 0 { // columns alternate black and white
			px[i] = 255
		}
	}
	spread := func(interp gocv.InterpolationFlags) float64 {
		p, err := NewPreprocessor(ImageSpec{Width: W, Height: W, Resize: Squash, Std: [3]float32{1, 1, 1}, Interp: interp})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		dst := make([]float32, W*W*3)
		if err := NewWriter(p, Quantizer[float32]{}).Write(dst, src, image.Rect(0, 0, 700, 700)); err != nil {
			t.Fatal(err)
		}
		var sum, sq float64
		for _, v := range dst {
			sum += float64(v)
			sq += float64(v) * float64(v)
		}
		n := float64(len(dst))
		return math.Sqrt(sq/n - (sum/n)*(sum/n))
	}
	def, bilinear := spread(0), spread(gocv.InterpolationLinear)
	t.Logf("std of shrunk stripes: default (PIL) %.3f, OpenCV bilinear %.3f", def, bilinear)
	if def > 0.05 || bilinear < 4*def {
		t.Errorf("default interpolation does not antialias: std %.3f (bilinear %.3f)", def, bilinear)
	}
}

// The default resize gives the pixels of torchvision's Resize(BICUBIC) and
// CenterCrop on PIL, and PILBilinear those of Resize(BILINEAR)
// (testdata/graf1-pil-*.png, written by Pillow 13 from opencv-doc's
// graf1.png, a PNG so that both sides decode the same pixels, with
// testdata/make_pil_goldens.py): a whole image centre-cropped, squashed to
// a non-square input, a region, and a small region enlarged.
func TestPreprocessMatchesPIL(t *testing.T) {
	frame := readImage(t, "graf1.png")
	for _, c := range []struct {
		golden string
		filter PILFilter
		w, h   int
		resize ResizeMode
		r      image.Rectangle
	}{
		{"graf1-pil-crop64.png", PILBicubic, 64, 64, CenterCrop, image.Rect(0, 0, 800, 640)},
		{"graf1-pil-squash48x64.png", PILBicubic, 48, 64, Squash, image.Rect(0, 0, 800, 640)},
		{"graf1-pil-region-crop64.png", PILBicubic, 64, 64, CenterCrop, image.Rect(0, 0, 301, 257)},
		{"graf1-pil-bilinear-crop64.png", PILBilinear, 64, 64, CenterCrop, image.Rect(0, 0, 800, 640)},
		{"graf1-pil-bilinear-squash48x64.png", PILBilinear, 48, 64, Squash, image.Rect(0, 0, 800, 640)},
		{"graf1-pil-bilinear-region-crop64.png", PILBilinear, 64, 64, CenterCrop, image.Rect(0, 0, 301, 257)},
		{"graf1-pil-upscale-crop64.png", PILBicubic, 64, 64, CenterCrop, image.Rect(100, 100, 141, 130)},
		{"graf1-pil-bilinear-upscale-crop64.png", PILBilinear, 64, 64, CenterCrop, image.Rect(100, 100, 141, 130)},
	} {
		t.Run(c.golden, func(t *testing.T) {
			want := gocv.IMRead(filepath.Join("testdata", c.golden), gocv.IMReadColor)
			defer want.Close()
			if want.Cols() != c.w || want.Rows() != c.h {
				t.Fatalf("golden is %dx%d, want %dx%d", want.Cols(), want.Rows(), c.w, c.h)
			}
			wpx, _ := want.DataPtrUint8()
			p, err := NewPreprocessor(ImageSpec{Width: c.w, Height: c.h, Resize: c.resize, BGR: true, Std: [3]float32{1, 1, 1}, PIL: c.filter})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			got := make([]float32, c.w*c.h*3)
			if err := NewWriter(p, Quantizer[float32]{}).Write(got, frame, c.r); err != nil {
				t.Fatal(err)
			}
			var worst, off int
			for i, v := range got {
				d := int(math.Round(float64(v)*255)) - int(wpx[i])
				worst = max(worst, max(d, -d))
				if d != 0 {
					off++
				}
			}
			t.Logf("%s: %d of %d values differ from Pillow's, by at most %d", c.golden, off, len(got), worst)
			if off != 0 {
				t.Errorf("%d values differ from Pillow's, by up to %d", off, worst)
			}
			w := NewWriter(p, Quantizer[float32]{})
			if n := testing.AllocsPerRun(20, func() { w.Write(got, frame, c.r) }); n > 0 {
				t.Errorf("Write allocates %v times per call in steady state", n)
			}
		})
	}
}
