package tokenizer

import (
	"bytes"
	"unicode"
	"unicode/utf8"
)

// nextWord returns the bounds of the first pre-token of s at or after i, as
// CLIP's re.findall would find it with its pattern
//
//	<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//
// (case-insensitive), or start == end when there is none. s must be cleaned
// text: valid UTF-8 whose only white space is ' '. A scanner rather than
// Go's regexp, which would allocate on every call; the tests check the two
// agree.
func nextWord(s []byte, i int) (start, end int) {
	for i < len(s) {
		r, size := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRune(s[i:])
		}
		switch {
		case separator(r):
			i += size
			continue
		case r == '<':
			for _, special := range [...]string{startText, endText} {
				if bytes.HasPrefix(s[i:], []byte(special)) {
					return i, i + len(special)
				}
			}
		case r == '\'':
			if n := contraction(s[i+1:]); n > 0 {
				return i, i + 1 + n
			}
		case isLetter(r):
			return i, i + size + span(s[i+size:], isLetter)
		case unicode.IsNumber(r):
			return i, i + size // one digit a pre-token
		}
		return i, i + size + span(s[i+size:], isOther)
	}
	return len(s), len(s)
}

// contraction returns the length of the contraction suffix ('s, 't, 're,
// 've, 'm, 'll, 'd) that starts s after its apostrophe, or 0.
func contraction(s []byte) int {
	for _, c := range [...]string{"s", "t", "re", "ve", "m", "ll", "d", "ſ"} {
		// The pattern is case-insensitive and the text lower-case; only the
		// long s (ſ) folds to one of the letters.
		if bytes.HasPrefix(s, []byte(c)) {
			return len(c)
		}
	}
	return 0
}

// span returns the length of the longest prefix of s whose runes satisfy f.
func span(s []byte, f func(rune) bool) int {
	n := 0
	for n < len(s) {
		r, size := rune(s[n]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRune(s[n:])
		}
		if !f(r) {
			break
		}
		n += size
	}
	return n
}

func isLetter(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'
	}
	return unicode.IsLetter(r)
}

// isOther reports the runes of [^\s\p{L}\p{N}].
func isOther(r rune) bool { return !separator(r) && !isLetter(r) && !unicode.IsNumber(r) }

// separator reports the runes no alternative of the pattern matches. Besides
// white space that is U+0345 (combining ypogegrammeni): under the regex
// module's case-insensitive matching it folds to ι, so [^\s\p{L}\p{N}]
// rejects it, yet it is no letter for [\p{L}].
func separator(r rune) bool { return r == ' ' || r == 0x345 }
