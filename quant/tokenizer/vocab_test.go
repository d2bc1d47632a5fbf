package tokenizer

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// mergeList writes a merge list in CLIP's format.
func mergeList(merges ...string) string {
	return "#version: 0.2\n" + strings.Join(merges, "\n") + "\n"
}

func gzipped(tb testing.TB, s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write([]byte(s)); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

func TestLoadCLIP(t *testing.T) {
	tok := clip(t)
	if tok.VocabSize() != 49408 || tok.StartID() != 49406 || tok.EndID() != 49407 || tok.ContextLength() != 77 {
		t.Fatalf("VocabSize, StartID, EndID, ContextLength = %d, %d, %d, %d; want 49408, 49406, 49407, 77",
			tok.VocabSize(), tok.StartID(), tok.EndID(), tok.ContextLength())
	}
	// bytes_to_unicode order: printable bytes first, standing for
	// themselves; the 68 others then take U+0100 on, so space is "Ġ".
	checks := []struct {
		id   int
		want string
	}{
		{0, "!"}, {93, "~"}, {94, "¡"}, {187, "ÿ"}, {188, "Ā"}, {188 + 32, "Ġ"}, {255, "Ń"},
		{256, "!</w>"}, {256 + 188 + 32, "Ġ</w>"}, {511, "Ń</w>"},
		{512, "in"}, {513, "th"}, // the first merges of the list, "i n" and "t h"
		{49406, "<|startoftext|>"}, {49407, "<|endoftext|>"},
	}
	for _, c := range checks {
		if got := tok.vocab[c.id]; got != c.want {
			t.Errorf("vocab[%d] = %q, want %q", c.id, got, c.want)
		}
	}
	for b := range 256 {
		if got, want := tok.vocab[tok.byteID[b]], string(byteRune[b]); got != want {
			t.Errorf("byte %#x: token %q, want %q", b, got, want)
		}
	}
}

func TestLoadMerges(t *testing.T) {
	list := mergeList("b c", "a b", "a bc", "a a", "aa aa", "t h", "th e</w>")
	tok, err := Load(strings.NewReader(list), Config{Merges: 7})
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 512+7+2 || tok.StartID() != 519 || tok.EndID() != 520 {
		t.Fatalf("VocabSize, StartID, EndID = %d, %d, %d; want 521, 519, 520", tok.VocabSize(), tok.StartID(), tok.EndID())
	}
	merged := func(rank int) int32 { return int32(512 + rank) }
	single := func(c byte) int32 { return tok.byteID[c] }
	last := func(c byte) int32 { return tok.byteID[c] + 256 }
	tests := []struct {
		word string
		want []int32
	}{
		// The lowest rank merges first, wherever it is: "b c" before "a b".
		{"abcd", []int32{merged(2), last('d')}},
		// All occurrences merge, left to right, without overlap.
		{"aaaaa", []int32{merged(4), last('a')}},
		{"aaa", []int32{merged(3), last('a')}},
		// "</w>" marks the word's last symbol; "th e</w>" only ends words.
		{"the", []int32{merged(6)}},
		{"then", []int32{merged(5), single('e'), last('n')}},
		{"x", []int32{last('x')}},
	}
	for _, tt := range tests {
		want := slices.Concat([]int32{519}, tt.want, []int32{520})
		if got := tok.Encode(tt.word); !slices.Equal(got, want) {
			t.Errorf("Encode(%q) = %v, want %v", tt.word, got, want)
		}
	}
}

func TestLoadGzipOrText(t *testing.T) {
	list := mergeList("t h", "th e</w>", "c a", "ca t</w>")
	plain, err := Load(strings.NewReader(list), Config{Merges: 4})
	if err != nil {
		t.Fatal(err)
	}
	zipped, err := Load(bytes.NewReader(gzipped(t, list)), Config{Merges: 4})
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"the cat", "a cathedral", "théâtre"} {
		if got, want := zipped.Encode(text), plain.Encode(text); !slices.Equal(got, want) {
			t.Errorf("Encode(%q): gzip'ed list gives %v, text list %v", text, got, want)
		}
	}
	// CRLF line ends and extra blanks are read as CLIP's split() reads them.
	crlf := strings.ReplaceAll(list, "\n", " \r\n")
	if tok, err := Load(strings.NewReader(crlf), Config{Merges: 4}); err != nil {
		t.Errorf("CRLF list: %v", err)
	} else if got, want := tok.Encode("the cat"), plain.Encode("the cat"); !slices.Equal(got, want) {
		t.Errorf("CRLF list: Encode = %v, want %v", got, want)
	}
}

func TestLoadErrors(t *testing.T) {
	valid := mergeList("t h", "th e</w>", "c a")
	truncated := gzipped(t, valid)
	truncated = truncated[:len(truncated)-6]
	badCRC := gzipped(t, valid)
	badCRC[len(badCRC)-5] ^= 0xff
	tests := []struct {
		name, input string
		merges      int
		want        string // in the message
	}{
		{"empty", "", 3, "empty input"},
		{"not a merge list", "\x00\x01binary\xff\n", 3, "line 1: no \"#version\" header"},
		{"no header", "t h\nth e</w>\nc a\n", 2, "line 1"},
		{"too few merges", valid, 4, "3 merges, need 4"},
		{"CLIP needs 48894", valid, 0, "3 merges, need 48894"},
		{"one symbol", mergeList("t h", "th", "c a"), 3, "line 3: want 2 symbols, got 1"},
		{"three symbols", mergeList("t h", "c a", "a b c"), 3, "line 4: want 2 symbols, got 3"},
		{"blank line", mergeList("t h", "", "c a"), 3, "line 3: want 2 symbols, got 0"},
		{"unknown symbol", mergeList("t h", "the e"), 2, `line 3: "the" is neither`},
		{"symbol of a later merge", mergeList("th e", "t h"), 2, `line 2: "th" is neither`},
		{"word end on the left", mergeList("t</w> h"), 1, `line 2: "t</w>" ends a word`},
		{"repeated merge", mergeList("t h", "c a", "t h"), 3, `line 4: merge "t h" makes "th", already made by line 2`},
		{"token made twice", mergeList("a b", "ab c", "b c", "a bc"), 4, `line 5: merge "a bc" makes "abc", already made by line 3`},
		{"invalid UTF-8", mergeList("t h", "\xff h"), 2, "line 3: invalid UTF-8"},
		{"line too long", mergeList("t h", strings.Repeat("a", maxLine+1)), 2, "line 3: longer than"},
		{"truncated gzip", string(truncated), 3, "gzip"},
		{"corrupt gzip", string(badCRC), 3, "gzip"},
		{"gzip magic only", "\x1f\x8b", 3, "gzip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tt.input), Config{Merges: tt.merges})
			if !errors.Is(err, ErrBadVocab) {
				t.Fatalf("error = %v, want ErrBadVocab", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to say %q", err, tt.want)
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadFile(filepath.Join(dir, "missing.txt.gz"), Config{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadFile(missing) error = %v, want fs.ErrNotExist", err)
	}
	bad := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(bad, []byte(mergeList("t h")), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadFile(bad, Config{Merges: 2})
	if !errors.Is(err, ErrBadVocab) || !strings.Contains(err.Error(), bad) {
		t.Errorf("LoadFile(short list) error = %v, want ErrBadVocab naming %s", err, bad)
	}
	// The real list, cut to its first 1000 merges.
	tok, err := LoadFile(vocabPath(t), Config{Merges: 1000, ContextLength: 16})
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 1514 || tok.StartID() != 1512 || tok.ContextLength() != 16 {
		t.Errorf("Merges 1000: VocabSize, StartID, ContextLength = %d, %d, %d; want 1514, 1512, 16",
			tok.VocabSize(), tok.StartID(), tok.ContextLength())
	}
}

func TestLoadBadConfig(t *testing.T) {
	for _, cfg := range []Config{{Merges: -1}, {ContextLength: 1}, {ContextLength: -5}} {
		if _, err := Load(strings.NewReader(mergeList("t h")), cfg); err == nil {
			t.Errorf("Load with %+v: no error", cfg)
		}
	}
}
