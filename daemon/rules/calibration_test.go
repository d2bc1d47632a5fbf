package rules

import (
	"image"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sightd/sightd/quant/encoder"
	"github.com/sightd/sightd/quant/modelgen/demo/demotest"
)

type demoTowers struct {
	towers *encoder.Towers
	text   *encoder.Text
	image  *encoder.Image
}

func loadDemo(t *testing.T) *demoTowers {
	t.Helper()
	tw := demotest.Towers(t)
	return &demoTowers{towers: tw, text: demotest.Text(t, tw), image: demotest.Image(t, tw)}
}

// photo embeds a whole real photo from Debian's opencv-doc.
func (d *demoTowers) photo(t *testing.T, name string) []float32 {
	t.Helper()
	dir := os.Getenv("SIGHTD_OPENCV_DATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "third_party", "opencv-data")
	}
	frame, err := encoder.ReadImage(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("real photo missing (run `make deps`): %v", err)
	}
	defer frame.Close()
	v := make([]float32, d.image.Dim())
	if err := d.image.Encode(frame, []image.Rectangle{image.Rect(0, 0, frame.Cols(), frame.Rows())}, v); err != nil {
		t.Fatal(err)
	}
	return v
}

func dot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

// "It got dark on the porch": the porch usually shows a house in daylight,
// the study a butterfly on a black background. A fixed cutoff on the raw
// cosine cannot serve both: any cutoff that fires on the porch at night also
// fires on the study all day. The calibrated score, with each camera's
// learned baseline, fires on the porch at night and never on the study.
func TestCalibrationBeatsFixedCutoff(t *testing.T) {
	d := loadDemo(t)
	rule := &Rule{ID: "dark", Prompts: []string{"a dark scene"}, Kind: Event}
	rule.Defaults()
	if err := rule.Validate(nil); err != nil {
		t.Fatal(err)
	}
	concept, err := Embed(d.text, rule, nil)
	if err != nil {
		t.Fatal(err)
	}
	bgs, err := Backgrounds(d.text, DefaultBackgrounds)
	if err != nil {
		t.Fatal(err)
	}
	compiled, err := Compile(rule, concept)
	if err != nil {
		t.Fatal(err)
	}
	set, err := NewSet(1, d.towers.Manifest().LogitScale, d.text.Dim(), []*Compiled{compiled}, bgs)
	if err != nil {
		t.Fatal(err)
	}

	day, night, study := d.photo(t, "home.jpg"), d.photo(t, "starry_night.jpg"), d.photo(t, "butterfly.jpg")
	rawNight, rawStudy := dot(night, concept.Positive), dot(study, concept.Positive)
	t.Logf("raw cosine to %q: porch by day %.3f, porch at night %.3f, study %.3f",
		rule.Prompts[0], dot(day, concept.Positive), rawNight, rawStudy)
	if !(rawStudy > rawNight) {
		t.Fatalf("premise: the study (%.3f) must score above the porch at night (%.3f)", rawStudy, rawNight)
	}

	t0 := time.Date(2026, 11, 29, 18, 0, 0, 0, time.UTC)
	porch, studyCam := NewCamera("porch", set), NewCamera("study", set)
	fired := map[string]int{}
	var nightP []float64
	feed := func(c *Camera, i int, v []float32) {
		res, err := c.Evaluate(t0.Add(time.Duration(i)*10*time.Second), v, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 1 {
			t.Fatalf("%d results", len(res))
		}
		if res[0].Decision.Fire {
			fired[c.Name]++
		}
		if c == porch && &v[0] == &night[0] {
			nightP = append(nightP, res[0].Score.Calibrated)
		}
	}
	for i := 0; i < 30; i++ { // a day of ordinary views
		feed(porch, i, day)
		feed(studyCam, i, study)
	}
	for i := 30; i < 34; i++ { // dusk on the porch; the study as ever
		feed(porch, i, night)
		feed(studyCam, i, study)
	}
	if fired["study"] != 0 {
		t.Errorf("the study fired %d times on its usual view", fired["study"])
	}
	if fired["porch"] != 1 {
		t.Errorf("the porch fired %d times at night, want once (calibrated %.3f)", fired["porch"], nightP)
	}
	for _, p := range nightP {
		if math.IsNaN(p) || p < 0 || p > 1 {
			t.Fatalf("calibrated score %v outside [0, 1]", p)
		}
	}
}

// Negatives make a rule about one concept refuse its look-alike: "red"
// against "orange" on a photo of oranges and one of a red sign.
func TestNegativesSeparateLookAlikes(t *testing.T) {
	d := loadDemo(t)
	rule := &Rule{ID: "red", Prompts: []string{"something red"}, Negatives: []string{"something orange"}}
	rule.Defaults()
	concept, err := Embed(d.text, rule, nil)
	if err != nil {
		t.Fatal(err)
	}
	neg := concept.Negatives[0]
	for _, tc := range []struct {
		photo string
		high  bool
	}{{"pic4.png", true}, {"orange.jpg", false}} {
		v := d.photo(t, tc.photo)
		p, margin := Calibrate(dot(v, concept.Positive), []float64{dot(v, neg)}, nil, math.NaN(), 100)
		t.Logf("%s: raw %.3f, negative %.3f, calibrated %.3f, margin %.3f", tc.photo, dot(v, concept.Positive), dot(v, neg), p, margin)
		if tc.high != (p > 0.9) || tc.high != (margin > 0) {
			t.Errorf("%s: calibrated %.3f, margin %.3f", tc.photo, p, margin)
		}
	}
}
