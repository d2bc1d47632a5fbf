package demo

import (
	"fmt"
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/sightd/sightd/quant/tflite"
)

// These tests measure the demo on real photos that nobody here made: the
// sample data of Debian's opencv-doc package, which `make deps` unpacks into
// third_party/opencv-data.

// opencvData is the directory of the opencv-doc sample data:
// $SIGHTD_OPENCV_DATA, or third_party/opencv-data in the repository.
func opencvData(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("SIGHTD_OPENCV_DATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "third_party", "opencv-data")
	}
	if _, err := os.Stat(filepath.Join(dir, "orange.jpg")); err != nil {
		t.Fatalf("the real test photos (Debian opencv-doc sample data) are missing: %v\n"+
			"run `make deps`, or set SIGHTD_OPENCV_DATA to a directory holding orange.jpg, home.jpg, ...", err)
	}
	return dir
}

// loadPhoto decodes a photo with OpenCV and squashes it to the tower's input
// size (the manifest's "squash"): InputSize x InputSize RGB bytes, HWC.
func loadPhoto(t testing.TB, name string, interp gocv.InterpolationFlags) []uint8 {
	t.Helper()
	path := filepath.Join(opencvData(t), name)
	m := gocv.IMRead(path, gocv.IMReadColor)
	defer m.Close()
	if m.Empty() {
		t.Fatalf("OpenCV cannot decode %s", path)
	}
	rgb := gocv.NewMat()
	defer rgb.Close()
	gocv.CvtColor(m, &rgb, gocv.ColorBGRToRGB)
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(rgb, &small, image.Pt(InputSize, InputSize), 0, 0, interp)
	b, err := small.DataPtrUint8()
	if err != nil {
		t.Fatal(err)
	}
	return append([]uint8(nil), b...)
}

// photoRules: a rule written in words must score clearly higher on one
// photo than on a contrasting one.
//
// The margin: a word's cosine with an image is, up to the small bias terms,
// the share its concept has in the image's colour profile (the vector of
// concept shares), so 0.3 means the concept makes up 30 points more of the
// first photo's profile than of the second's. That is ten times the largest
// change int8 rounding makes to any of these cosines (0.03, float model
// against int8 model), and more than the resize method (bilinear or area)
// moves any of them. Brown is the weakest concept (a brown dog on a blue
// blanket shares its profile with blue and dark), so it gets 0.2.
var photoRules = []struct {
	rule          string
	higher, lower string
	margin        float64
}{
	{"something orange", "orange.jpg", "home.jpg", 0.3},
	{"an orange on a table", "orange.jpg", "board.jpg", 0.3},
	{"orange toys", "rubberwhale1.png", "starry_night.jpg", 0.3},
	{"half an orange", "fruits.jpg", "butterfly.jpg", 0.3},
	{"a red apple", "apple.jpg", "board.jpg", 0.3},
	{"something red", "pic4.png", "home.jpg", 0.3},
	{"a red nose", "baboon.jpg", "butterfly.jpg", 0.3},
	{"a blue sky", "home.jpg", "orange.jpg", 0.3},
	{"a blue night sky", "starry_night.jpg", "apple.jpg", 0.3},
	{"a blue logo", "WindowsLogo.jpg", "fruits.jpg", 0.3},
	{"a green circuit board", "board.jpg", "apple.jpg", 0.3},
	{"green leaves", "squirrel_cls.jpg", "home.jpg", 0.3},
	{"a butterfly on a green leaf", "butterfly.jpg", "starry_night.jpg", 0.3},
	{"yellow foliage", "squirrel_cls.jpg", "starry_night.jpg", 0.3},
	{"a brown dog", "chicky_512.png", "home.jpg", 0.2},
	{"a dark scene", "LinuxLogo.jpg", "HappyFish.jpg", 0.3},
	{"a dark room", "ela_original.jpg", "smarties.png", 0.3},
	{"black", "pca_test1.jpg", "cards.png", 0.3},
	{"a white background", "cards.png", "LinuxLogo.jpg", 0.3},
	{"a bright picture", "smarties.png", "starry_night.jpg", 0.3},
	{"a white building", "building.jpg", "messi5.jpg", 0.3},
	{"a grey city from the air", "aero1.jpg", "apple.jpg", 0.3},
	{"grey text", "text_defocus.jpg", "HappyFish.jpg", 0.3},
	{"something colourful", "baboon.jpg", "aero1.jpg", 0.3},
	{"a colorful logo", "WindowsLogo.jpg", "LinuxLogo.jpg", 0.3},
}

// matrixPhotos and matrixRules make the similarity matrix that
// TestPhotoSimilarities logs (the README quotes it).
var (
	matrixPhotos = []string{
		"orange.jpg", "apple.jpg", "fruits.jpg", "rubberwhale1.png", "pic4.png", "baboon.jpg",
		"home.jpg", "starry_night.jpg", "WindowsLogo.jpg", "board.jpg", "squirrel_cls.jpg", "butterfly.jpg",
		"chicky_512.png", "LinuxLogo.jpg", "ela_original.jpg", "cards.png", "smarties.png", "building.jpg",
		"aero1.jpg", "text_defocus.jpg",
	}
	matrixRules = []string{"red", "orange", "yellow", "green", "blue", "purple", "brown", "white", "dark", "grey", "colourful"}
)

var interpolations = []struct {
	name string
	flag gocv.InterpolationFlags
}{
	{"bilinear", gocv.InterpolationLinear},
	{"area", gocv.InterpolationArea},
}

func TestPhotoSimilarities(t *testing.T) {
	f := demoFiles(t)
	for _, rt := range runtimes {
		for _, ip := range interpolations {
			t.Run(rt.name+"/"+ip.name, func(t *testing.T) {
				img := newTestSession(t, f.files[ImageFile], rt.opts)
				txt := newTestSession(t, f.files[TextFile], tflite.Options{Threads: 1})
				embed := map[string][]float32{}
				photo := func(name string) []float32 {
					if v, ok := embed[name]; ok {
						return v
					}
					v, err := img.image(loadPhoto(t, name, ip.flag))
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					embed[name] = v
					return v
				}
				var rules strings.Builder
				for _, r := range photoRules {
					w := textEmbedding(t, txt, f.voc, r.rule)
					hi, lo := cosine(w, photo(r.higher)), cosine(w, photo(r.lower))
					if hi-lo < r.margin {
						t.Errorf("%q: %s %.3f, %s %.3f: margin %.3f, want at least %.2f", r.rule, r.higher, hi, r.lower, lo, hi-lo, r.margin)
					}
					fmt.Fprintf(&rules, "\n%-30q %-17s %.3f  %-17s %.3f  margin %.3f", r.rule, r.higher, hi, r.lower, lo, hi-lo)
				}
				t.Log("rules:" + rules.String())

				var b strings.Builder
				fmt.Fprintf(&b, "cosine similarity, %s runtime, %s resize to %dx%d:\n%-18s", rt.name, ip.name, InputSize, InputSize, "")
				for _, r := range matrixRules {
					fmt.Fprintf(&b, " %7.7s", r)
				}
				for _, p := range matrixPhotos {
					fmt.Fprintf(&b, "\n%-18s", p)
					for _, r := range matrixRules {
						fmt.Fprintf(&b, " %7.3f", cosine(textEmbedding(t, txt, f.voc, r), photo(p)))
					}
				}
				t.Log(b.String())
			})
		}
	}
}

// TestPhotoBestWord: on photos that clearly show one colour, that colour's
// word scores best of all the words.
func TestPhotoBestWord(t *testing.T) {
	f := demoFiles(t)
	img := newTestSession(t, f.files[ImageFile], tflite.Options{Threads: 1})
	txt := newTestSession(t, f.files[TextFile], tflite.Options{Threads: 1})
	for photo, want := range map[string]string{
		"orange.jpg":       "orange",
		"rubberwhale1.png": "orange",
		"apple.jpg":        "red",
		"pic4.png":         "red",
		"home.jpg":         "blue",
		"starry_night.jpg": "blue",
		"board.jpg":        "green",
		"LinuxLogo.jpg":    "dark",
		"cards.png":        "white",
		"smarties.png":     "white",
		"aero1.jpg":        "grey",
	} {
		v, err := img.image(loadPhoto(t, photo, gocv.InterpolationLinear))
		if err != nil {
			t.Fatal(err)
		}
		best, bestCos := "", -1.0
		for _, c := range concepts {
			if cos := cosine(v, textEmbedding(t, txt, f.voc, c.Name)); cos > bestCos {
				best, bestCos = c.Name, cos
			}
		}
		if best != want {
			t.Errorf("%s: best word %q (%.3f), want %q", photo, best, bestCos, want)
		}
	}
}
