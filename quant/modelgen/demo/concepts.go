package demo

import (
	"fmt"
	"math"
)

// Concept is one direction of the demo's embedding space: a colour or a
// brightness that the image tower measures, pixel by pixel, and the words
// that name it.
type Concept struct {
	// Name is the concept's name, also its first word.
	Name string
	// Words are the words whose token maps to the concept's direction.
	Words []string
	// Detector says in words what makes a pixel count for the concept.
	Detector string
}

// Word is a word that the text tower knows, with the weight it gives each
// concept. Most words name one concept; "colourful" names all the hues.
type Word struct {
	Word     string
	Concepts map[string]float64
}

// Embedding layout: the concepts in order, then the bias dimension that every
// vector has a share of (so that none is ever zero), then spare dimensions
// that stay zero (Dim is a multiple of 16 for int8 SIMD kernels).
const (
	// Dim is the embedding dimension.
	Dim = 16
	// ContextLength is the text tower's sequence length, as CLIP's.
	ContextLength = 77
	// InputSize is the image tower's input height and width.
	InputSize = 64
)

// hue is a chromatic concept: a cone in the chroma plane (the plane of RGB
// perpendicular to grey), with the pixel's brightness optionally limited.
//
// In the chroma plane a pixel has an angle (red 0°, yellow 60°, green 120°,
// cyan 180°, blue 240°, magenta 300°; the hexagon of pure colours) and a
// radius (0 for grey, 1 for a pure colour). The cone's response is
// x - kTo·relu(y) - kFrom·relu(-y), where x and y are the pixel's chroma
// coordinates along and across the centre angle: r·sin(edge-δ)/sin(edge) at δ
// degrees off centre, falling to zero at the angles from and to.
type hue struct {
	name       string
	centre     float64 // degrees
	from, to   float64 // degrees where the response reaches zero
	minChroma  float64 // response below which a pixel does not count
	fullChroma float64 // response above which a pixel counts fully
	// bright and dark limit a warm hue's brightness (its red channel) to
	// above or below redSplit, by brightPenalty per unit of red beyond it.
	bright, dark  bool
	brightPenalty float64
}

// The hues. The angles come from the chroma angles measured on the photos
// of Debian's opencv-doc (64x64): the fruit of orange.jpg lies at 30-55°,
// the red-orange apple of apple.jpg at 20-25°, the red of pic4.png at
// 5-15°, skies (home.jpg, starry_night.jpg) at 195-225°, foliage from 60°
// (yellowish, squirrel_cls.jpg) to 135° (the board of board.jpg).
var hues = []hue{
	{name: "red", centre: 8, from: -40, to: 35, minChroma: 0.12, fullChroma: 0.35},
	{name: "orange", centre: 38, from: 15, to: 58, minChroma: 0.12, fullChroma: 0.35, bright: true, brightPenalty: 2},
	{name: "yellow", centre: 60, from: 42, to: 72, minChroma: 0.12, fullChroma: 0.35},
	{name: "green", centre: 110, from: 58, to: 170, minChroma: 0.1, fullChroma: 0.3},
	{name: "blue", centre: 218, from: 170, to: 265, minChroma: 0.1, fullChroma: 0.3},
	{name: "purple", centre: 295, from: 255, to: 335, minChroma: 0.12, fullChroma: 0.35},
	{name: "brown", centre: 30, from: 0, to: 60, minChroma: 0.08, fullChroma: 0.22, dark: true, brightPenalty: 2},
}

// chromaAxes returns the RGB weights of the chroma coordinates along angle a
// (degrees) and across it (a+90°), scaled so that a pure colour at angle a
// has x = 1.
func chromaAxes(a float64) (x, y [3]float64) {
	// e1 = (2,-1,-1)/√6 points at red, e2 = (0,1,-1)/√2 at 90°; pure colours
	// lie at radius 2/√6 in this basis.
	e1 := [3]float64{2 / math.Sqrt(6), -1 / math.Sqrt(6), -1 / math.Sqrt(6)}
	e2 := [3]float64{0, 1 / math.Sqrt(2), -1 / math.Sqrt(2)}
	r0 := 2 / math.Sqrt(6)
	c, s := math.Cos(a*math.Pi/180), math.Sin(a*math.Pi/180)
	for i := range 3 {
		x[i] = (c*e1[i] + s*e2[i]) / r0
		y[i] = (-s*e1[i] + c*e2[i]) / r0
	}
	return x, y
}

// unit is one output channel of a 1x1 convolution: w·in + b.
type unit struct {
	name string
	w    []float64
	b    float64
}

// detectors is the image tower's per-pixel part: hidden units of R, G, B
// (first 1x1 CONV_2D, RELU) and concept units of the hidden units (second
// 1x1 CONV_2D, RELU6: 6 means the pixel fully shows the concept).
type detectors struct {
	hidden   []unit
	concepts []unit
}

// redSplit is the red channel (the value of a warm hue) that separates
// orange from brown.
const redSplit = 0.55

// full is the RELU6 ceiling: a concept unit's value for a pixel that fully
// shows it.
const full = 6

// buildDetectors lays out both layers.
func buildDetectors() detectors {
	var d detectors
	idx := map[string]int{}
	addHidden := func(name string, w [3]float64, b float64) {
		idx[name] = len(d.hidden)
		d.hidden = append(d.hidden, unit{name: name, w: w[:], b: b})
	}
	third := 1.0 / 3
	addHidden("mean", [3]float64{third, third, third}, 0)
	addHidden("relu(mean-0.5)", [3]float64{third, third, third}, -0.5)
	addHidden("relu(0.5-mean)", [3]float64{-third, -third, -third}, 0.5)
	// Cyclic differences: their sum is max(R,G,B) - min(R,G,B), the chroma.
	addHidden("relu(R-G)", [3]float64{1, -1, 0}, 0)
	addHidden("relu(G-B)", [3]float64{0, 1, -1}, 0)
	addHidden("relu(B-R)", [3]float64{-1, 0, 1}, 0)
	// For warm hues (red to yellow) red is the largest channel, so it is
	// the pixel's value (HSV's V): it tells orange from brown.
	addHidden("relu(R-0.55)", [3]float64{1, 0, 0}, -redSplit)
	addHidden("relu(0.55-R)", [3]float64{-1, 0, 0}, redSplit)
	for _, h := range hues {
		x, y := chromaAxes(h.centre)
		var ny [3]float64
		for i := range y {
			ny[i] = -y[i]
		}
		addHidden(h.name+".x", x, 0)
		addHidden(h.name+".y+", y, 0)
		addHidden(h.name+".y-", ny, 0)
	}

	addConcept := func(name string, terms map[string]float64, b float64) {
		w := make([]float64, len(d.hidden))
		for n, v := range terms {
			i, ok := idx[n]
			if !ok {
				panic(fmt.Sprintf("demo: concept %s: no hidden unit %q", name, n))
			}
			w[i] = v
		}
		d.concepts = append(d.concepts, unit{name: name, w: w, b: b})
	}
	// scaled maps a response r to full*(r - lo)/(hi - lo): zero at lo,
	// full (RELU6's ceiling) at hi.
	scaled := func(terms map[string]float64, lo, hi float64) (map[string]float64, float64) {
		k := full / (hi - lo)
		out := map[string]float64{}
		for n, v := range terms {
			out[n] = v * k
		}
		return out, -lo * k
	}
	chroma := func(k float64, terms map[string]float64) map[string]float64 {
		for _, n := range []string{"relu(R-G)", "relu(G-B)", "relu(B-R)"} {
			terms[n] -= k
		}
		return terms
	}
	for _, h := range hues {
		kTo := 1 / math.Tan((h.to-h.centre)*math.Pi/180)
		kFrom := 1 / math.Tan((h.centre-h.from)*math.Pi/180)
		terms := map[string]float64{h.name + ".x": 1, h.name + ".y+": -kTo, h.name + ".y-": -kFrom}
		if h.bright {
			terms["relu(0.55-R)"] = -h.brightPenalty
		}
		if h.dark {
			terms["relu(R-0.55)"] = -h.brightPenalty
		}
		w, b := scaled(terms, h.minChroma, h.fullChroma)
		addConcept(h.name, w, b)
	}
	// white: mean - 0.7 - 1.5·chroma, from 0 to 0.12. relu(mean-0.5) - 0.2
	// equals mean - 0.7 where that is positive.
	w, b := scaled(chroma(1.5, map[string]float64{"relu(mean-0.5)": 1}), 0.2, 0.32)
	addConcept("white", w, b)
	// dark: 0.3 - mean - 0.5·chroma, from 0 to 0.15.
	w, b = scaled(chroma(0.5, map[string]float64{"mean": -1}), -0.3, -0.15)
	addConcept("dark", w, b)
	// grey: 0.28 - |mean - 0.5| - 1.5·chroma, from 0 to 0.1.
	w, b = scaled(chroma(1.5, map[string]float64{"relu(mean-0.5)": -1, "relu(0.5-mean)": -1}), -0.28, -0.18)
	addConcept("grey", w, b)
	return d
}

// concepts lists the embedding's concept directions in order, with their
// words. The hues' detector descriptions are filled in from hues.
var concepts = []Concept{
	{Name: "red", Words: []string{"red"}},
	{Name: "orange", Words: []string{"orange"}},
	{Name: "yellow", Words: []string{"yellow"}},
	{Name: "green", Words: []string{"green"}},
	{Name: "blue", Words: []string{"blue"}},
	{Name: "purple", Words: []string{"purple", "violet"}},
	{Name: "brown", Words: []string{"brown"}},
	{Name: "white", Words: []string{"white", "bright"}, Detector: "mean(R,G,B) - 0.7 - 1.5·chroma: 0 (none) to 0.12 (full)"},
	{Name: "dark", Words: []string{"dark", "black"}, Detector: "0.3 - mean(R,G,B) - 0.5·chroma: 0 (none) to 0.15 (full)"},
	{Name: "grey", Words: []string{"grey", "gray"}, Detector: "0.28 - |mean(R,G,B) - 0.5| - 1.5·chroma: 0 (none) to 0.1 (full)"},
}

func init() {
	for _, h := range hues {
		d := fmt.Sprintf("chroma-plane hue cone %g°..%g°..%g°, response %g (none) to %g (full)", h.from, h.centre, h.to, h.minChroma, h.fullChroma)
		if h.bright {
			d += fmt.Sprintf(", minus %g·relu(%g - R) (not dark)", h.brightPenalty, redSplit)
		}
		if h.dark {
			d += fmt.Sprintf(", minus %g·relu(R - %g) (not bright)", h.brightPenalty, redSplit)
		}
		for i := range concepts {
			if concepts[i].Name == h.name {
				concepts[i].Detector = d
			}
		}
	}
}

// Concepts returns the concept directions in embedding order: concept i is
// dimension i; dimension len(Concepts()) is the bias dimension.
func Concepts() []Concept {
	out := make([]Concept, len(concepts))
	for i, c := range concepts {
		c.Words = append([]string(nil), c.Words...)
		out[i] = c
	}
	return out
}

func conceptNames() []string {
	var n []string
	for _, c := range concepts {
		n = append(n, c.Name)
	}
	return n
}

// colourfulHues are the chromatic concepts that "colourful" mixes.
var colourfulHues = []string{"red", "orange", "yellow", "green", "blue", "purple"}

// Words returns every word the text tower knows, in vocabulary order.
func Words() []Word {
	var out []Word
	for _, c := range concepts {
		for _, w := range c.Words {
			out = append(out, Word{Word: w, Concepts: map[string]float64{c.Name: 1}})
		}
	}
	mix := map[string]float64{}
	for _, h := range colourfulHues {
		mix[h] = 1
	}
	for _, w := range []string{"colourful", "colorful"} {
		m := map[string]float64{}
		for k, v := range mix {
			m[k] = v
		}
		out = append(out, Word{Word: w, Concepts: m})
	}
	return out
}
