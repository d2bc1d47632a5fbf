package tokenizer

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// bpeReference is CLIP's merge loop as simple_tokenizer.py writes it: find
// the lowest-ranked adjacent pair, merge all its occurrences left to right,
// repeat. The heap in bpe must give the same ids.
func bpeReference(t *Tokenizer, word []byte) []int32 {
	sym := make([]int32, len(word))
	for i, b := range word {
		sym[i] = t.byteID[b]
	}
	sym[len(sym)-1] += 256
	for len(sym) > 1 {
		best, at := uint64(0), -1
		for i := 0; i+1 < len(sym); i++ {
			if m, ok := t.merges[pairKey(sym[i], sym[i+1])]; ok && (at < 0 || m>>32 < best>>32) {
				best, at = m, i
			}
		}
		if at < 0 {
			break
		}
		left, right := sym[at], sym[at+1]
		var out []int32
		for i := 0; i < len(sym); {
			if i+1 < len(sym) && sym[i] == left && sym[i+1] == right {
				out = append(out, int32(uint32(best)))
				i += 2
			} else {
				out = append(out, sym[i])
				i++
			}
		}
		sym = out
	}
	return sym
}

// checkEncoding checks the invariants of tok's encoding of text.
func checkEncoding(t *testing.T, tok *Tokenizer, text string) {
	t.Helper()
	ids := tok.Encode(text)
	n := len(ids)
	if n < 2 || n > tok.ContextLength() || ids[0] != tok.StartID() || ids[n-1] != tok.EndID() {
		t.Fatalf("Encode(%q) = %v: want 2 to %d ids from the start to the end id", text, ids, tok.ContextLength())
	}
	for _, id := range ids {
		if id < 0 || int(id) >= tok.VocabSize() {
			t.Fatalf("Encode(%q) has id %d, out of range", text, id)
		}
	}
	dst := make([]int32, tok.ContextLength())
	if k, err := tok.EncodeTo(dst, text); err != nil || !slices.Equal(dst[:k], ids) ||
		slices.ContainsFunc(dst[k:], func(id int32) bool { return id != 0 }) {
		t.Fatalf("EncodeTo(%q) = %d, %v, %v; want %v then zeros", text, k, err, dst, ids)
	}

	tokens := tok.Tokens(text)
	if n != min(len(tokens)+2, tok.ContextLength()) {
		t.Fatalf("Tokens(%q) has %d tokens but Encode gives %d ids", text, len(tokens), n)
	}
	truncated := len(tokens)+2 > n
	for i, id := range ids[1 : n-1] {
		if tok.vocab[id] != tokens[i] {
			t.Fatalf("Encode(%q)[%d] is %q, Tokens has %q", text, i+1, tok.vocab[id], tokens[i])
		}
	}

	clean := tok.Clean(text)
	words := pretokens(clean)
	if want := regexpPretokens(clean); !slices.Equal(words, want) {
		t.Fatalf("pre-tokens of %q = %q, CLIP's pattern gives %q", clean, words, want)
	}
	special := false
	var s scratch
	for _, w := range words {
		if w == startText || w == endText {
			special = true
			continue
		}
		if got, want := tok.bpe(&s, []byte(w)), bpeReference(tok, []byte(w)); !slices.Equal(got, want) {
			t.Fatalf("bpe(%q) = %v, CLIP's loop gives %v", w, got, want)
		}
	}

	if truncated || special {
		return
	}
	// Decoding gives back the cleaned text, with a space between every two
	// pre-tokens: exactly the cleaned text where only spaces parted them.
	dec := tok.Decode(ids)
	if joined := strings.Join(words, " "); dec != joined {
		t.Fatalf("Decode(Encode(%q)) = %q, want %q", text, dec, joined)
	}
	// The pattern skips U+0345 like a space (see separator).
	noSpace := strings.NewReplacer(" ", "", "\u0345", "").Replace
	if noSpace(dec) != noSpace(clean) {
		t.Fatalf("Decode(Encode(%q)) = %q, want %q up to spaces", text, dec, clean)
	}
	if !utf8.ValidString(dec) {
		t.Fatalf("Decode(Encode(%q)) = %q, invalid UTF-8", text, dec)
	}
}

// FuzzEncode checks the invariants of the real vocabulary's encoding. Its
// seeds are in testdata/fuzz/FuzzEncode.
func FuzzEncode(f *testing.F) {
	tok := clip(f)
	f.Add("a photo of a cat")
	f.Add(hfText)
	f.Fuzz(func(t *testing.T, text string) {
		checkEncoding(t, tok, text)
	})
}

// FuzzLoad feeds the parser arbitrary merge lists: it must not panic, must
// reject bad ones with ErrBadVocab, and what it accepts must encode within
// the invariants, the heap agreeing with CLIP's loop. Seeds are in
// testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(mergeList("t h", "th e</w>", "a n", "an d</w>", "c a", "ca t</w>")))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, merges := range []int{1, 3, 6} {
			tok, err := Load(bytes.NewReader(data), Config{Merges: merges, ContextLength: 12})
			if err != nil {
				if !errors.Is(err, ErrBadVocab) {
					t.Fatalf("Load: %v, not ErrBadVocab", err)
				}
				continue
			}
			if tok.VocabSize() != 512+merges+2 {
				t.Fatalf("VocabSize = %d with %d merges", tok.VocabSize(), merges)
			}
			for _, text := range []string{"the cat and the hat", "aaaa bbbb abab", string(data)} {
				checkEncoding(t, tok, text)
			}
		}
	})
}
