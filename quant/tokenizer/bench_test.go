package tokenizer

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// benchRule is a 20-word rule, the size of what users write.
const benchRule = "Alert me when a person in a red jacket walks a large dog past the front gate after dark tonight"

func TestBenchRuleHas20Words(t *testing.T) {
	if n := len(strings.Fields(benchRule)); n != 20 {
		t.Fatalf("benchRule has %d words, want 20", n)
	}
}

// BenchmarkEncodeTo is the hot path: a 20-word rule into a reused buffer.
func BenchmarkEncodeTo(b *testing.B) {
	tok := clip(b)
	dst := make([]int32, tok.ContextLength())
	if _, err := tok.EncodeTo(dst, benchRule); err != nil { // warm the scratch pool
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = tok.EncodeTo(dst, benchRule)
	}
}

func BenchmarkEncode(b *testing.B) {
	tok := clip(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = tok.Encode(benchRule)
	}
}

// BenchmarkEncodeLongWord bounds the worst case: one 10,000-letter word,
// which CLIP's quadratic merge loop would take hundreds of milliseconds on.
func BenchmarkEncodeLongWord(b *testing.B) {
	tok := clip(b)
	r := rand.New(rand.NewPCG(1, 2))
	word := make([]byte, 10000)
	for i := range word {
		word[i] = byte('a' + r.IntN(26))
	}
	text := string(word)
	dst := make([]int32, tok.ContextLength())
	b.ReportAllocs()
	for b.Loop() {
		_, _ = tok.EncodeTo(dst, text)
	}
}

func BenchmarkLoadFile(b *testing.B) {
	path := vocabPath(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LoadFile(path, Config{}); err != nil {
			b.Fatal(err)
		}
	}
}
