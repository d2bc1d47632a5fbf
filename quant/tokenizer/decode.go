package tokenizer

import (
	"bytes"
	"unicode/utf8"
)

// byteOf inverts byteRune: the byte each rune of a byte-level token
// stands for (all such runes are below U+0144).
var byteOf = func() (inv [0x200]byte) {
	for b, r := range byteRune {
		inv[r] = byte(b)
	}
	return inv
}()

// Decode turns ids back into text as CLIP's decode does: the bytes the
// tokens stand for, "</w>" read as a space, invalid UTF-8 replaced by
// U+FFFD. Unlike CLIP's, it skips start ids and stops at the first end id,
// so that an EncodeTo buffer decodes without its padding; writes U+FFFD for
// an id out of range; and drops the space after the last word. For text
// that fits the context and spells out no special token, the result is
// Clean(text) with a space between every two pre-tokens: "it's" gives
// "it 's".
func (t *Tokenizer) Decode(ids []int32) string {
	var buf []byte
	for _, id := range ids {
		if id == t.start {
			continue
		}
		if id == t.end {
			break
		}
		if id < 0 || int(id) >= len(t.vocab) {
			buf = utf8.AppendRune(buf, utf8.RuneError)
			continue
		}
		// Every rune of a token stands for a byte; those of "</w>" and of
		// the special tokens for themselves.
		for _, r := range t.vocab[id] {
			buf = append(buf, byteOf[r])
		}
	}
	// Like CLIP, replace "</w>" after joining, so one spelled out by plain
	// tokens reads as a space too.
	buf = bytes.ReplaceAll(buf, []byte(wordEnd), []byte(" "))
	buf = bytes.TrimSuffix(buf, []byte(" "))
	return string(validUTF8(buf))
}

// validUTF8 replaces each maximal ill-formed subsequence of b by U+FFFD, as
// Python's decode(errors="replace") does (Go's strings.ToValidUTF8 would
// merge a run of them into one).
func validUTF8(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	out := make([]byte, 0, len(b)+8)
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || size > 1 {
			out = append(out, b[i:i+size]...)
			i += size
			continue
		}
		out = utf8.AppendRune(out, utf8.RuneError)
		i += maximalSubpart(b[i:])
	}
	return out
}

// maximalSubpart returns how many bytes at the start of b, which is not a
// valid UTF-8 sequence, form the longest prefix of one (at least 1).
func maximalSubpart(b []byte) int {
	lo, hi := byte(0x80), byte(0xbf) // range of the second byte
	var n int
	switch c := b[0]; {
	case 0xc2 <= c && c <= 0xdf:
		n = 2
	case 0xe0 <= c && c <= 0xef:
		n = 3
		if c == 0xe0 {
			lo = 0xa0
		} else if c == 0xed {
			hi = 0x9f
		}
	case 0xf0 <= c && c <= 0xf4:
		n = 4
		if c == 0xf0 {
			lo = 0x90
		} else if c == 0xf4 {
			hi = 0x8f
		}
	default:
		return 1
	}
	i := 1
	for ; i < n && i < len(b); i++ {
		if b[i] < lo || b[i] > hi {
			break
		}
		lo, hi = 0x80, 0xbf
	}
	return i
}
