package tokenizer

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

// hfText is the input of Hugging Face transformers' CLIP tokenizer
// integration test (tests/models/clip/test_tokenization_clip.py): upper
// case, an emoji, digits, accents, CJK, runs of white space and newlines,
// markup-like text and Thai combining vowels.
const hfText = "This is a test \U0001F60A\nI was born in 92000, and this is fals\u00e9.\n生活的真谛是\n" +
	"Hi  Hello\nHi   Hello\n\n \n  \n Hello\n<s>\nhi<s>there\n" +
	"The following string should be properly encoded: Hello.\n" +
	"But ird and \u0e1b\u0e35   ird   \u0e14\nHey how are you doing"

// hfIDs and hfTokens are that test's expected ids and tokens (no start or end).
var (
	hfIDs = []int32{589, 533, 320, 1628, 3020, 328, 739, 2683, 530, 280, 273, 271, 271, 271, 267, 537, 589,
		533, 2778, 82, 4166, 269, 33375, 162, 112, 119, 163, 248, 226, 41570, 164, 108, 249, 42891, 363,
		1883, 3306, 1883, 3306, 3306, 283, 338, 285, 1883, 283, 338, 285, 997, 518, 3473, 9696, 1535, 655,
		12560, 524, 33703, 281, 3306, 269, 767, 2770, 537, 1777, 505, 20278, 2770, 38825, 2189, 829, 631,
		592, 1960}
	hfTokens = []string{"this</w>", "is</w>", "a</w>", "test</w>", "ðŁĺĬ</w>", "i</w>", "was</w>",
		"born</w>", "in</w>", "9</w>", "2</w>", "0</w>", "0</w>", "0</w>", ",</w>", "and</w>", "this</w>",
		"is</w>", "fal", "s", "Ã©</w>", ".</w>", "çĶŁ", "æ", "´", "»", "ç", "ļ", "Ħ", "çľŁ", "è", "°", "Ľ",
		"æĺ", "¯</w>", "hi</w>", "hello</w>", "hi</w>", "hello</w>", "hello</w>", "<</w>", "s</w>",
		"></w>", "hi</w>", "<</w>", "s</w>", "></w>", "there</w>", "the</w>", "following</w>",
		"string</w>", "should</w>", "be</w>", "properly</w>", "en", "coded</w>", ":</w>", "hello</w>",
		".</w>", "but</w>", "ird</w>", "and</w>", "à¸", "Ľ</w>", "à¸µ</w>", "ird</w>", "à¸Ķ</w>", "hey</w>",
		"how</w>", "are</w>", "you</w>", "doing</w>"}
)

func TestEncodeKnown(t *testing.T) {
	tok := clip(t)
	withSpecials := func(ids ...int32) []int32 { return append(append([]int32{49406}, ids...), 49407) }
	tests := []struct {
		text, source string
		want         []int32
	}{
		{"a photo of a cat", "CLIP vocabulary README", withSpecials(320, 1125, 539, 320, 2368)},
		{"a dog", "CLIP vocabulary README", withSpecials(320, 1929)},
		{"a photo of a dog", "Bumblebee clip_tokenizer_test.exs", withSpecials(320, 1125, 539, 320, 1929)},
		{"the quick brown fox jumped over the lazy dog", "Apple corenet test_openai_clip_tokenizer",
			withSpecials(518, 3712, 2866, 3240, 16901, 962, 518, 10753, 1929)},
		{"n kabrie", "zer0int/CLIP-tokenizer README", withSpecials(333, 6554, 5322)},
		{hfText, "transformers CLIP integration test", withSpecials(hfIDs...)},
		{strings.Replace(hfText, " \U0001F60A", "", 1), "transformers CLIP integration test, emoji-free version",
			withSpecials(slices.Delete(slices.Clone(hfIDs), 4, 5)...)},
	}
	for _, tt := range tests {
		if got := tok.Encode(tt.text); !slices.Equal(got, tt.want) {
			t.Errorf("Encode(%q) (from %s)\n got %v\nwant %v", tt.text, tt.source, got, tt.want)
		}
	}
	if got := tok.Tokens(hfText); !slices.Equal(got, hfTokens) {
		t.Errorf("Tokens(hfText)\n got %q\nwant %q", got, hfTokens)
	}
}

// TestEncodeEquivalent checks texts that CLIP's clean-up makes equal.
func TestEncodeEquivalent(t *testing.T) {
	tok := clip(t)
	tests := []struct{ text, same string }{
		{"A PHOTO OF A CAT", "a photo of a cat"},
		{"  a\tphoto \n\n of\u00a0a\u3000cat \r\n", "a photo of a cat"},
		{"CAFÉ", "café"},
		{"it’s", "it's"},               // curly apostrophe, as ftfy straightens it
		{"“dog”", `"dog"`},             // curly quotes
		{"ﬁsh", "fish"},                // Latin ligature
		{"ａ　ｄｏｇ", "a dog"},             // full-width forms and ideographic space
		{"cat &amp; dog", "cat & dog"}, // HTML entities
		{"cat &amp;amp; dog", "cat & dog"},
		{"a&#32;dog", "a dog"},
		{"\x1b[1;31ma dog\x1b[0m", "a dog"}, // terminal colours
		{"a\x00 d\x7fog\ufeff", "a dog"},    // control characters
		{"\u0085", "…"},                     // C1 control read as Windows-1252
	}
	for _, tt := range tests {
		if got, want := tok.Encode(tt.text), tok.Encode(tt.same); !slices.Equal(got, want) {
			t.Errorf("Encode(%q) = %v, want %v as for %q", tt.text, got, want, tt.same)
		}
	}
}

func TestEncodeSplits(t *testing.T) {
	tok := clip(t)
	digit := func(c byte) string { return tok.vocab[tok.byteID[c]+256] } // "2</w>"
	tests := []struct {
		text string
		want []string
	}{
		// Each digit is a pre-token of its own, and so a byte token with "</w>".
		{"2024", []string{digit('2'), digit('0'), digit('2'), digit('4')}},
		{"it's", []string{"it</w>", "'s</w>"}},
		{"we'll", []string{"we</w>", "'ll</w>"}},
		{"don't", []string{"don</w>", "'t</w>"}},
		{"IT'S", []string{"it</w>", "'s</w>"}},
		{"hello, world!", []string{"hello</w>", ",</w>", "world</w>", "!</w>"}},
		{"", nil},
		{" \t\n ", nil},
	}
	for _, tt := range tests {
		if got := tok.Tokens(tt.text); !slices.Equal(got, tt.want) {
			t.Errorf("Tokens(%q) = %q, want %q", tt.text, got, tt.want)
		}
	}
}

func TestEncodeEmpty(t *testing.T) {
	tok := clip(t)
	for _, text := range []string{"", "   ", "\x00\x01"} {
		if got, want := tok.Encode(text), []int32{49406, 49407}; !slices.Equal(got, want) {
			t.Errorf("Encode(%q) = %v, want %v", text, got, want)
		}
	}
}

func TestEncodeUnicode(t *testing.T) {
	tok := clip(t)
	for _, text := range []string{"café", "生活的真谛是", "东京 😊", "👍🏽 🇫🇷", "ΟΔΟΣ", "naïve straße"} {
		ids := tok.Encode(text)
		for _, id := range ids[1 : len(ids)-1] {
			if id < 0 || id >= 49406 {
				t.Errorf("Encode(%q) has id %d", text, id)
			}
		}
		// Byte-level BPE loses nothing: the tokens hold the text's bytes.
		if got, want := tok.Decode(ids), tok.Clean(text); got != want {
			t.Errorf("Decode(Encode(%q)) = %q, want %q", text, got, want)
		}
	}
	// Without NFC, a decomposed accent is a pre-token of its own; with a
	// Normalize that composes it, the text reads as CLIP (through ftfy) reads it.
	nfd := "cafe\u0301"
	if slices.Equal(tok.Encode(nfd), tok.Encode("café")) {
		t.Errorf("Encode(%q) = Encode(café) without Normalize", nfd)
	}
	compose := func(s string) string { return strings.ReplaceAll(s, "e\u0301", "é") }
	ntok, err := LoadFile(vocabPath(t), Config{Normalize: compose})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ntok.Encode(nfd), tok.Encode("café"); !slices.Equal(got, want) {
		t.Errorf("with Normalize, Encode(%q) = %v, want %v", nfd, got, want)
	}
}

// TestEncodeSpecialText checks CLIP's treatment of text that spells out its
// special tokens: they become those tokens.
func TestEncodeSpecialText(t *testing.T) {
	tok := clip(t)
	got := tok.Encode("a <|endoftext|> b")
	want := slices.Concat([]int32{49406}, tok.Encode("a")[1:2], []int32{49407}, tok.Encode("b")[1:2], []int32{49407})
	if !slices.Equal(got, want) {
		t.Errorf("Encode = %v, want %v", got, want)
	}
}

func TestEncodeTruncates(t *testing.T) {
	tok := clip(t)
	long := strings.Repeat("a photo of a big cat, ", 40)
	all := tok.Tokens(long)
	ids := tok.Encode(long)
	if len(ids) != DefaultContextLength || ids[0] != 49406 || ids[len(ids)-1] != 49407 {
		t.Fatalf("Encode(long) = %v: want %d ids from 49406 to 49407", ids, DefaultContextLength)
	}
	for i, id := range ids[1 : len(ids)-1] {
		if tok.vocab[id] != all[i] {
			t.Fatalf("Encode(long)[%d] = %q, want %q, the text's token", i+1, tok.vocab[id], all[i])
		}
	}

	// A word cut by the context: its first ids are kept.
	small, err := LoadFile(vocabPath(t), Config{ContextLength: 4})
	if err != nil {
		t.Fatal(err)
	}
	word := tok.Encode("生活的真谛是") // many ids for one word
	if got, want := small.Encode("生活的真谛是"), []int32{49406, word[1], word[2], 49407}; !slices.Equal(got, want) {
		t.Errorf("context 4: Encode = %v, want %v", got, want)
	}
}

func TestEncodeTo(t *testing.T) {
	tok := clip(t)
	for _, text := range []string{"a photo of a cat", "", hfText, strings.Repeat("dog ", 100)} {
		dst := make([]int32, tok.ContextLength())
		for i := range dst {
			dst[i] = -1 // must all be overwritten
		}
		n, err := tok.EncodeTo(dst, text)
		if err != nil {
			t.Fatal(err)
		}
		want := tok.Encode(text)
		if n != len(want) || !slices.Equal(dst[:n], want) {
			t.Errorf("EncodeTo(%q) = %d, %v, want %v", text, n, dst[:n], want)
		}
		if slices.ContainsFunc(dst[n:], func(id int32) bool { return id != 0 }) {
			t.Errorf("EncodeTo(%q) padding = %v, want zeros", text, dst[n:])
		}
		if got := tok.Decode(dst); got != tok.Decode(want) {
			t.Errorf("Decode of the padded buffer = %q, want %q", got, tok.Decode(want))
		}
	}
	for _, size := range []int{0, 76, 78} {
		if _, err := tok.EncodeTo(make([]int32, size), "a dog"); !errors.Is(err, ErrBufferSize) {
			t.Errorf("EncodeTo(len %d) error = %v, want ErrBufferSize", size, err)
		}
	}
}

func TestEncodeToDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	tok := clip(t)
	dst := make([]int32, tok.ContextLength())
	text := benchRule
	if _, err := tok.EncodeTo(dst, text); err != nil { // warm the scratch pool
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = tok.EncodeTo(dst, text) }); n != 0 {
		t.Errorf("EncodeTo allocates %v times per call once warm", n)
	}
}

func TestConcurrentEncode(t *testing.T) {
	tok := clip(t)
	texts := append(strings.Split(hfText, "\n"), benchRule, "")
	want := make([][]int32, len(texts))
	for i, text := range texts {
		want[i] = tok.Encode(text)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			dst := make([]int32, tok.ContextLength())
			for i := range 200 {
				k := (i*7 + g) % len(texts)
				n, _ := tok.EncodeTo(dst, texts[k])
				if !slices.Equal(dst[:n], want[k]) {
					t.Errorf("EncodeTo(%q) = %v, want %v", texts[k], dst[:n], want[k])
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestDecode(t *testing.T) {
	tok := clip(t)
	for _, text := range []string{"a photo of a cat", "A Dog Running", "naïve café", "東京 😊", "x  y"} {
		if got, want := tok.Decode(tok.Encode(text)), tok.Clean(text); got != want {
			t.Errorf("Decode(Encode(%q)) = %q, want %q", text, got, want)
		}
	}
	// Pre-tokens not parted by white space come back parted.
	if got, want := tok.Decode(tok.Encode("it's 42!")), "it 's 4 2 !"; got != want {
		t.Errorf("Decode(Encode(it's 42!)) = %q, want %q", got, want)
	}
	euro := tok.Tokens("€") // three byte tokens, or fewer
	ids := tok.Encode("€")
	if got := tok.Decode(ids[:len(ids)-2]); len(euro) > 1 && got != "\ufffd" {
		t.Errorf("Decode of a cut € = %q, want one U+FFFD", got)
	}
	if got, want := tok.Decode([]int32{320, -1, 49408, 1929}), "a \ufffd\ufffddog"; got != want {
		t.Errorf("Decode with bad ids = %q, want %q", got, want)
	}
}

func TestValidUTF8(t *testing.T) {
	// Python's decode(errors="replace") gives one U+FFFD per maximal
	// ill-formed subsequence.
	tests := []struct{ in, want string }{
		{"abc", "abc"},
		{"a\xe2\x82b", "a\ufffdb"},
		{"\xf0\x9f\x98", "\ufffd"},
		{"\xff\xfe", "\ufffd\ufffd"},
		{"\xe0\x80\x80", "\ufffd\ufffd\ufffd"}, // overlong: the lead byte alone
		{"\xed\xa0\x80", "\ufffd\ufffd\ufffd"}, // surrogate
		{"\xc3", "\ufffd"},
	}
	for _, tt := range tests {
		if got := string(validUTF8([]byte(tt.in))); got != tt.want {
			t.Errorf("validUTF8(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestClean checks the clean-up against what CLIP's Python does (outputs
// of html.unescape, str.lower and ftfy's tables).
func TestClean(t *testing.T) {
	tok := clip(t)
	tests := []struct{ in, want string }{
		{"  Hello\t\n WORLD  ", "hello world"},
		{"a\u2028b\u00a0c\u0085d", "a b c…d"},
		{"&lt;b&gt; &amp;lt;", "<b> <"},
		{"<b>&amp;amp;</b>", "<b>&</b>"}, // with '<', ftfy does not unescape: two passes
		{"&amp;amp;amp;", "&"},           // without, three
		{"&notit; &copy &#128512; &#x41;", "¬it; © 😀 a"},
		{"a&#1;b&#x7f;c&#xfdd0;d", "abcd"},                                               // Python drops these references
		{"&#0;&#xd800;&#99999999999999999999;&#4294967361;", "\ufffd\ufffd\ufffd\ufffd"}, // Go's html wraps the last to "A"
		{"&#x80;&#150;", "€–"},
		{"it’s ‘x’ “y” ʼ", "it's 'x' \"y\" '"},
		{"ﬁﬂ ŉ Ǆ", "fifl 'n dž"},
		{"ＡＢＣ　ｘ ｶ ￥", "abc x カ ¥"},
		{"\u0080\u0081\u0092", "€\u0081'"},
		{"\x1b[31mred\x1b[0m \x1b[1;2mX \x1bY", "red x y"},
		{"a\x00b\x08c\x0bd\x1fe\x7ff\u200bg", "abcdef\u200bg"},
		{"İ", "i\u0307"},
		{"ΟΔΟΣ ΣΑΣ. Σ", "οδος σας. σ"},
		{"\xff a \xe2\x82", "\ufffd a \ufffd\ufffd"},
	}
	for _, tt := range tests {
		if got := tok.Clean(tt.in); got != tt.want {
			t.Errorf("Clean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// clipPattern is CLIP's pre-tokenisation pattern, for Go's regexp: the
// scanner must find the same pre-tokens.
var clipPattern = regexp.MustCompile(`(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`)

func pretokens(clean string) []string {
	var out []string
	for i := 0; ; {
		start, end := nextWord([]byte(clean), i)
		if start == end {
			return out
		}
		out = append(out, clean[start:end])
		i = end
	}
}

// regexpPretokens splits clean text with clipPattern. U+0345 is made a
// space first: Python's regex module matches it with no alternative, Go's
// regexp (folding it to ι) with [\p{L}].
func regexpPretokens(clean string) []string {
	return clipPattern.FindAllString(strings.ReplaceAll(clean, "\u0345", " "), -1)
}

func TestPretokens(t *testing.T) {
	tok := clip(t)
	tests := []struct {
		text string
		want []string
	}{
		{"it's a dog's life", []string{"it", "'s", "a", "dog", "'s", "life"}},
		{"x'sa 'd ''d !'s", []string{"x", "'s", "a", "'d", "''", "d", "!'", "s"}},
		{"they're we've i'm we'll 'ſ", []string{"they", "'re", "we", "'ve", "i", "'m", "we", "'ll", "'ſ"}},
		{"room 101b", []string{"room", "1", "0", "1", "b"}},
		{"e-mail: a@b.c...", []string{"e", "-", "mail", ":", "a", "@", "b", ".", "c", "..."}},
		{"<|startoftext|>hi<|endoftext|>", []string{"<|startoftext|>", "hi", "<|endoftext|>"}},
		{".<|endoftext|>", []string{".<|", "endoftext", "|>"}},
		{"ι\u0345ι x\u0345.", []string{"ι", "ι", "x", "."}},
		{"ปี ½²", []string{"ป", "ี", "½", "²"}},
	}
	for _, tt := range tests {
		clean := tok.Clean(tt.text)
		if got := pretokens(clean); !slices.Equal(got, tt.want) {
			t.Errorf("pretokens(%q) = %q, want %q", clean, got, tt.want)
		}
		if got := regexpPretokens(clean); !slices.Equal(got, tt.want) {
			t.Errorf("regexp on %q = %q, want %q", clean, got, tt.want)
		}
	}
}
