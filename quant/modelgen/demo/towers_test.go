package demo

import (
	"math"
	"slices"
	"testing"

	"gocv.io/x/gocv"

	"github.com/sightd/sightd/quant/modelgen"
	"github.com/sightd/sightd/quant/tflite"
)

func TestConceptLayout(t *testing.T) {
	d := buildDetectors()
	var names []string
	for _, u := range d.concepts {
		names = append(names, u.name)
	}
	if !slices.Equal(names, conceptNames()) {
		t.Errorf("detectors %v, concepts %v: want one order", names, conceptNames())
	}
	if biasDim() >= Dim {
		t.Errorf("%d concepts and a bias do not fit %d dimensions", len(concepts), Dim)
	}
	seen := map[string]bool{}
	for _, w := range Words() {
		if seen[w.Word] {
			t.Errorf("word %q twice", w.Word)
		}
		seen[w.Word] = true
		for c := range w.Concepts {
			if !slices.Contains(names, c) {
				t.Errorf("word %q names unknown concept %q", w.Word, c)
			}
		}
	}
}

// testImages are inputs for the tower checks: the calibration images
// (left out with -short), real photos (not used in calibration) and seeded
// structured images.
func testImages(t *testing.T) [][]uint8 {
	var imgs [][]uint8
	if !testing.Short() {
		for _, f := range calibrationImages() {
			imgs = append(imgs, toBytes(f))
		}
	}
	for _, p := range []string{"orange.jpg", "baboon.jpg", "home.jpg", "board.jpg", "aloeL.jpg", "apple.jpg", "squirrel_cls.jpg", "LinuxLogo.jpg"} {
		imgs = append(imgs, loadPhoto(t, p, gocv.InterpolationLinear))
	}
	for seed := range uint64(4) {
		// RandomImage is in (-1, 1); map it to [0, 1].
		r := modelgen.RandomImage(seed, InputSize, InputSize)
		for i, v := range r {
			r[i] = (v + 1) / 2
		}
		imgs = append(imgs, toBytes(r))
	}
	return imgs
}

func toBytes(img []float32) []uint8 {
	b := make([]uint8, len(img))
	for i, v := range img {
		b[i] = uint8(min(max(math.Round(float64(v)*255), 0), 255))
	}
	return b
}

// TestImageTowerRuntime runs the int8 image tower in TensorFlow Lite and
// compares with modelgen's reference on the same int8 input.
//
// The built-in kernels agree with the reference exactly through both
// CONV_2D layers; MEAN may differ by one step (TFLite sums in integers, the
// reference in float). XNNPACK rounds some CONV_2D ties differently, and the
// steep concept units turn a one-step difference in a hidden unit into
// several steps for that pixel; MEAN averages most of it away. One step of
// a share is 1/255 of the image, which is a tenth of a concept that covers
// 4% of it: on a pale photo where every share is that small (aloeL.jpg) one
// step moves the embedding most, to a cosine of about 0.998. The bound is
// 0.995; two different test images are much further apart (checked), so it
// tells a right answer from a wrong one.
func TestImageTowerRuntime(t *testing.T) {
	g, err := imageModel()
	if err != nil {
		t.Fatal(err)
	}
	data, err := g.Build()
	if err != nil {
		t.Fatal(err)
	}
	in, out := g.Inputs()[0].Quant, g.Outputs()[0].Quant
	if in.Scale[0] != 1.0/255 || in.ZeroPoint[0] != -128 {
		t.Errorf("input quantization %v, want scale 1/255 and zero point -128 (pixel p is p-128)", in)
	}
	imgs := testImages(t)
	reference := func(rgb []uint8) []float32 {
		q := make([]int8, len(rgb))
		for i, p := range rgb {
			q[i] = int8(int(p) - 128)
		}
		res, err := g.Eval(q)
		if err != nil {
			t.Fatal(err)
		}
		v := make([]float32, Dim)
		for i, x := range res[0].([]int8) {
			v[i] = out.Scale[0] * float32(int64(x)-out.ZeroPoint[0])
		}
		return v
	}
	if c := cosine(reference(imgs[0]), reference(imgs[len(imgs)-1])); c > 0.9 {
		t.Fatalf("two different test images have cosine %.3f", c)
	}
	for _, rt := range runtimes {
		t.Run(rt.name, func(t *testing.T) {
			s := newTestSession(t, data, rt.opts)
			worstCos, worstDiff := 1.0, 0.0
			for i, img := range imgs {
				got, err := s.image(img)
				if err != nil {
					t.Fatal(err)
				}
				want := reference(img)
				c := cosine(got, want)
				worstCos = min(worstCos, c)
				for j := range got {
					worstDiff = max(worstDiff, math.Abs(float64(got[j]-want[j])))
				}
				if c < 0.995 {
					t.Errorf("image %d: cosine %.5f with the reference, want at least 0.995\n got %v\nwant %v", i, c, got, want)
				}
			}
			t.Logf("%d images: worst cosine %.5f, worst element difference %.4f (%.1f steps)", len(imgs), worstCos, worstDiff, worstDiff*128)
		})
	}
}

// TestImageTowerQuantization: the int8 tower (reference) against the float
// tower it was quantized from, on the same pixels. On photos the shares
// move by about one step (0.4% of the image) and the embeddings agree to
// better than 0.998; the worst cases are flat images (calibration colours)
// that sit on the steep edge of a concept, where no averaging over pixels
// hides a rounding step: about 0.99. The bound is 0.985.
func TestImageTowerQuantization(t *testing.T) {
	q, err := imageModel()
	if err != nil {
		t.Fatal(err)
	}
	f := imageGraph()
	worst := 1.0
	for i, img := range testImages(t) {
		fin := make([]float32, len(img))
		qin := make([]int8, len(img))
		for j, p := range img {
			fin[j], qin[j] = float32(p)/255, int8(int(p)-128)
		}
		fo, err := f.Eval(fin)
		if err != nil {
			t.Fatal(err)
		}
		qo, err := q.Eval(qin)
		if err != nil {
			t.Fatal(err)
		}
		qv := make([]float32, Dim)
		for j, x := range qo[0].([]int8) {
			qv[j] = float32(x) / 128
		}
		c := cosine(fo[0].([]float32), qv)
		worst = min(worst, c)
		if c < 0.985 {
			t.Errorf("image %d: int8 against float cosine %.4f, want at least 0.985", i, c)
		}
	}
	t.Logf("worst cosine int8 against float: %.5f", worst)
}

// TestTextTowerRuntime: the float text tower in TensorFlow Lite against the
// reference.
func TestTextTowerRuntime(t *testing.T) {
	f := demoFiles(t)
	g := textGraph(f.voc)
	for _, rt := range runtimes {
		t.Run(rt.name, func(t *testing.T) {
			s := newTestSession(t, f.files[TextFile], rt.opts)
			for _, text := range []string{"red", "a photo of a red car", "blue and yellow", "colourful", "nothing known here", "black black white"} {
				ids := make([]int32, ContextLength)
				if _, err := f.voc.tok.EncodeTo(ids, text); err != nil {
					t.Fatal(err)
				}
				got, err := s.text(ids)
				if err != nil {
					t.Fatal(err)
				}
				res, err := g.Eval(ids)
				if err != nil {
					t.Fatal(err)
				}
				want := res[0].([]float32)
				for i := range got {
					if math.Abs(float64(got[i]-want[i])) > 1e-6 {
						t.Errorf("%q: %v, reference %v", text, got, want)
						break
					}
				}
			}
		})
	}
}

// TestSolidColours: a flat image of a colour scores best with its word, in
// the int8 tower. Purple has no photo among the test data, so this is where
// it is checked.
func TestSolidColours(t *testing.T) {
	f := demoFiles(t)
	img := newTestSession(t, f.files[ImageFile], tflite.Options{Threads: 1})
	txt := newTestSession(t, f.files[TextFile], tflite.Options{Threads: 1})
	for _, c := range []struct {
		rgb  [3]uint8
		want string
	}{
		{[3]uint8{230, 40, 30}, "red"},
		{[3]uint8{150, 20, 25}, "red"},
		{[3]uint8{245, 150, 20}, "orange"},
		{[3]uint8{240, 220, 30}, "yellow"},
		{[3]uint8{40, 160, 60}, "green"},
		{[3]uint8{20, 90, 40}, "green"},
		{[3]uint8{50, 90, 220}, "blue"},
		{[3]uint8{120, 170, 230}, "blue"},
		{[3]uint8{130, 50, 170}, "purple"},
		{[3]uint8{120, 75, 40}, "brown"},
		{[3]uint8{245, 245, 245}, "white"},
		{[3]uint8{15, 15, 15}, "dark"},
		{[3]uint8{128, 128, 128}, "grey"},
	} {
		px := make([]uint8, InputSize*InputSize*3)
		for i := 0; i < len(px); i += 3 {
			copy(px[i:], c.rgb[:])
		}
		v, err := img.image(px)
		if err != nil {
			t.Fatal(err)
		}
		best, bestCos := "", -1.0
		for _, k := range concepts {
			if cos := cosine(v, textEmbedding(t, txt, f.voc, k.Name)); cos > bestCos {
				best, bestCos = k.Name, cos
			}
		}
		if best != c.want || bestCos < 0.9 {
			t.Errorf("RGB %v: best word %q (cosine %.3f), want %q above 0.9", c.rgb, best, bestCos, c.want)
		}
	}
}
