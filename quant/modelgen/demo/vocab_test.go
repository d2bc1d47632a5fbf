package demo

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/sightd/sightd/quant/tflite"
)

func TestWordsAreOneToken(t *testing.T) {
	f := demoFiles(t)
	tok := f.voc.tok
	if got, want := tok.VocabSize(), 512+len(f.voc.merges)+2; got != want {
		t.Errorf("vocabulary of %d ids, want 512 byte tokens + %d merges + 2 = %d", got, len(f.voc.merges), want)
	}
	seen := map[int32]string{}
	for _, w := range Words() {
		for _, text := range []string{w.Word, strings.ToUpper(w.Word), "  " + w.Word + " "} {
			ids := tok.Encode(text)
			if len(ids) != 3 || ids[0] != tok.StartID() || ids[2] != tok.EndID() {
				t.Errorf("%q: ids %v (tokens %q), want start, one token, end", text, ids, tok.Tokens(text))
				continue
			}
			if ids[1] != f.voc.ids[w.Word] {
				t.Errorf("%q: id %d, want %d", text, ids[1], f.voc.ids[w.Word])
			}
		}
		id := f.voc.ids[w.Word]
		if other, ok := seen[id]; ok {
			t.Errorf("%q and %q share id %d", w.Word, other, id)
		}
		seen[id] = w.Word
	}
}

func TestMergeListRejects(t *testing.T) {
	for _, w := range []string{"", "Red", "dark-blue", "grün"} {
		if _, err := mergeList([]string{w}); err == nil {
			t.Errorf("mergeList accepted %q", w)
		}
	}
}

// TestTokenTable: only the words' rows of the embedding table are non-zero;
// the start and end tokens, the padding id 0 and every piece of other words
// add nothing to a rule.
func TestTokenTable(t *testing.T) {
	f := demoFiles(t)
	g := textGraph(f.voc)
	var table []float32
	for _, tt := range g.Tensors() {
		if tt.Name == "token_embedding" {
			table = tt.Data.([]float32)
		}
	}
	if len(table) != f.voc.tok.VocabSize()*Dim {
		t.Fatalf("table of %d values, want %d rows of %d", len(table), f.voc.tok.VocabSize(), Dim)
	}
	known := map[int]string{}
	for w, id := range f.voc.ids {
		known[int(id)] = w
	}
	for row := range f.voc.tok.VocabSize() {
		r := table[row*Dim:][:Dim]
		var norm float64
		for _, x := range r {
			norm += float64(x) * float64(x)
		}
		if w, ok := known[row]; ok {
			if math.Abs(norm-1) > 1e-6 || r[biasDim()] != 0 {
				t.Errorf("row %d (%q): %v, want a unit vector without bias", row, w, r)
			}
		} else if norm != 0 {
			t.Errorf("row %d (not a demo word): %v, want zero", row, r)
		}
	}
}

// TestUnknownWords: words the demo does not know add nothing, so a rule
// scores as its colour words alone; a rule without any is the bias vector.
func TestUnknownWords(t *testing.T) {
	f := demoFiles(t)
	s := newTestSession(t, f.files[TextFile], tflite.Options{Threads: 1})
	embed := func(text string) []float32 { return textEmbedding(t, s, f.voc, text) }
	bias := make([]float32, Dim)
	bias[biasDim()] = 1
	for _, c := range []struct{ text, same string }{
		{"a photo of a red car", "red"},
		{"there is something orange on the porch", "orange"},
		{"A DARK SCENE", "dark"},
		{"the garage door is open and the light is on, white", "white"},
		{"grass is green, the sky is blue", "green blue"},
		{"blue and green", "green blue"},
	} {
		got, want := embed(c.text), embed(c.same)
		for i := range got {
			if math.Abs(float64(got[i]-want[i])) > 1e-6 {
				t.Errorf("%q: %v, want %v (as %q)", c.text, got, want, c.same)
				break
			}
		}
	}
	// No demo word: plural and derived forms are other words too.
	for _, text := range []string{"a photo of a cat", "a package on the porch", "oranges", "reddish", "darkness", ""} {
		if c := cosine(embed(text), bias); c < 1-1e-6 {
			t.Errorf("%q: cosine %.6f with the bias vector, want 1 (%v)", text, c, embed(text))
		}
	}
	// A mixture word lies between its colours.
	colourful := embed("colourful")
	if !slices.Equal(colourful, embed("colorful")) {
		t.Errorf("colourful and colorful differ")
	}
	for _, h := range colourfulHues {
		if c := cosine(colourful, embed(h)); math.Abs(c-1/math.Sqrt(6)) > 0.02 {
			t.Errorf("colourful · %s = %.3f, want about 1/√6", h, c)
		}
	}
}
