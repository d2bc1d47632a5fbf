package tokenizer

import (
	"bytes"
	"html"
	"strings"
	"unicode"
	"unicode/utf8"
)

// clean runs CLIP's whitespace_clean(basic_clean(text)).lower() and returns
// the result in s.clean. See Clean for what stands in for ftfy.
func (t *Tokenizer) clean(s *scratch, text string) []byte {
	// ftfy.fix_text starts by unescaping HTML unless the text has a '<',
	// which suggests real markup.
	if strings.IndexByte(text, '&') >= 0 && strings.IndexByte(text, '<') < 0 {
		text = unescape(text)
	}
	s.text = fixText(s.text[:0], text)
	if t.normalize != nil {
		s.text = append(s.text[:0], t.normalize(string(s.text))...)
	}
	// basic_clean: html.unescape(html.unescape(text)).
	if bytes.IndexByte(s.text, '&') >= 0 {
		s.text = append(s.text[:0], unescape(unescape(string(s.text)))...)
	}
	s.clean = lowerCollapse(s.clean[:0], s.text)
	return s.clean
}

// unescape is Python's html.unescape. Go's html.UnescapeString follows
// the same HTML5 rules for named references, but numeric ones differ: Go
// keeps the code points Python drops (&#1;, &#x7f;, noncharacters) and
// wraps around on huge numbers, so those are decoded here.
func unescape(s string) string {
	amp := strings.IndexByte(s, '&')
	if amp < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for amp >= 0 {
		b.WriteString(s[:amp])
		s = s[amp:]
		n := numericRef(&b, s)
		if n == 0 {
			// A reference never holds '&', so up to the next one there is
			// at most this one to decode.
			n = strings.IndexByte(s[1:], '&') + 1
			if n == 0 {
				n = len(s)
			}
			b.WriteString(html.UnescapeString(s[:n]))
		}
		s = s[n:]
		amp = strings.IndexByte(s, '&')
	}
	b.WriteString(s)
	return b.String()
}

// numericRef decodes the numeric character reference (&#65; or &#x41;, the
// ';' optional) at the start of s into b as Python does, and returns its
// length, or 0 if s does not start with one.
func numericRef(b *strings.Builder, s string) int {
	if !strings.HasPrefix(s, "&#") {
		return 0
	}
	i, base := 2, rune(10)
	if i < len(s) && (s[i] == 'x' || s[i] == 'X') {
		i, base = 3, 16
	}
	digits, v := i, rune(0)
	for ; i < len(s); i++ {
		c, d := rune(s[i]), rune(-1)
		switch lower := c | 0x20; {
		case '0' <= c && c <= '9':
			d = c - '0'
		case base == 16 && 'a' <= lower && lower <= 'f':
			d = lower - 'a' + 10
		}
		if d < 0 {
			break
		}
		v = min(v*base+d, unicode.MaxRune+1) // saturate: all too-large values read alike
	}
	if i == digits {
		return 0
	}
	if i < len(s) && s[i] == ';' {
		i++
	}
	switch {
	case v == 0:
		v = utf8.RuneError
	case 0x80 <= v && v <= 0x9f: // as browsers do
		v = cp1252[v-0x80]
	case 0xd800 <= v && v <= 0xdfff || v > unicode.MaxRune:
		v = utf8.RuneError
	case v < 0x20 && v != '\t' && v != '\n' && v != '\f' && v != '\r' || v == 0x7f ||
		0xfdd0 <= v && v <= 0xfdef || v&0xfffe == 0xfffe:
		return i // Python drops these
	}
	b.WriteRune(v)
	return i
}

// fixText appends text to dst after the rule-based steps of ftfy.fix_text,
// in ftfy's order: remove ANSI terminal escapes, read C1 controls as
// Windows-1252, split Latin ligatures, standardise character width,
// straighten curly quotes, remove control characters. (Its line-break fix
// is left out: the white-space clean-up makes every line break a space.)
func fixText(dst []byte, text string) []byte {
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			if c == 0x1b {
				i += ansiEscapeLen(text[i:])
				continue
			}
			if !isControl(rune(c)) {
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:]) // invalid UTF-8 gives U+FFFD
		i += size
		if 0x80 <= r && r <= 0x9f {
			r = cp1252[r-0x80]
		}
		if lig, ok := ligatures[r]; ok {
			for _, l := range lig {
				dst = appendFixed(dst, l)
			}
			continue
		}
		switch {
		case r == 0x3000: // ideographic space
			r = ' '
		case 0xff01 <= r && r <= 0xff5e: // full-width ASCII
			r -= 0xff01 - '!'
		case r == 0xffe3: // full-width macron: NFKC gives space + combining macron
			dst = append(dst, ' ')
			r = 0x304
		case 0xff5f <= r && r < 0xff5f+rune(len(widthForms)) && widthForms[r-0xff5f] != 0:
			r = rune(widthForms[r-0xff5f])
		}
		dst = appendFixed(dst, r)
	}
	return dst
}

// appendFixed appends r after the last two steps: quotes and controls.
func appendFixed(dst []byte, r rune) []byte {
	switch {
	case r == 0x2bc || 0x2018 <= r && r <= 0x201b:
		r = '\''
	case 0x201c <= r && r <= 0x201f:
		r = '"'
	case isControl(r):
		return dst
	}
	return utf8.AppendRune(dst, r)
}

// isControl reports the characters ftfy's remove_control_chars drops: C0
// controls but tab and line ends, DEL, deprecated format characters, the
// byte-order mark and interlinear annotation characters.
func isControl(r rune) bool {
	return r < 0x20 && r != '\t' && r != '\n' && r != '\f' && r != '\r' || r == 0x7f ||
		0x206a <= r && r <= 0x206f || r == 0xfeff || 0xfff9 <= r && r <= 0xfffc
}

// ansiEscapeLen returns the length of the terminal escape at the start of
// s, ftfy's ESC '[' (digit|';')* letter, or 1 to drop a lone ESC, which is
// a control character anyway.
func ansiEscapeLen(s string) int {
	if len(s) < 2 || s[1] != '[' {
		return 1
	}
	for i := 2; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z':
			return i + size
		case r == ';' || unicode.IsDigit(r): // Python's \d is any decimal digit
			i += size
		default:
			return 1
		}
	}
	return 1
}

// lowerCollapse appends src to dst with runs of white space made one space,
// leading and trailing white space stripped, and letters lower-cased like
// Python's str.lower, which differs from unicode.ToLower in two places: İ
// becomes "i̇" and a capital sigma ending a word becomes ς.
func lowerCollapse(dst, src []byte) []byte {
	space := false
	for i := 0; i < len(src); {
		r, size := rune(src[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRune(src[i:])
		}
		if unicode.IsSpace(r) { // the White_Space set, as the regex module's \s
			space = true
			i += size
			continue
		}
		if space && len(dst) > 0 {
			dst = append(dst, ' ')
		}
		space = false
		switch {
		case 'A' <= r && r <= 'Z':
			dst = append(dst, byte(r)+'a'-'A')
		case r < utf8.RuneSelf:
			dst = append(dst, byte(r))
		case r == 'İ':
			dst = append(dst, "i\u0307"...)
		case r == 'Σ' && finalSigma(src, i, i+size):
			dst = utf8.AppendRune(dst, 'ς')
		default:
			dst = utf8.AppendRune(dst, unicode.ToLower(r))
		}
		i += size
	}
	return dst
}

// finalSigma reports Unicode's Final_Sigma condition for the sigma at
// src[i:j], as Python checks it: a cased letter before it and none after
// it, skipping case-ignorable characters on both sides.
func finalSigma(src []byte, i, j int) bool {
	before := false
	for i > 0 {
		r, size := utf8.DecodeLastRune(src[:i])
		if !caseIgnorable(r) {
			before = cased(r)
			break
		}
		i -= size
	}
	if !before {
		return false
	}
	for j < len(src) {
		r, size := utf8.DecodeRune(src[j:])
		if !caseIgnorable(r) {
			return !cased(r)
		}
		j += size
	}
	return true
}

func cased(r rune) bool {
	return unicode.IsUpper(r) || unicode.IsLower(r) || unicode.IsTitle(r) ||
		unicode.Is(unicode.Other_Lowercase, r) || unicode.Is(unicode.Other_Uppercase, r)
}

// caseIgnorable is Unicode's Case_Ignorable: marks, format characters,
// modifiers and the Word_Break MidLetter, MidNumLet and Single_Quote
// characters, which Go's unicode package has no table for.
func caseIgnorable(r rune) bool {
	switch r {
	case '\'', '.', ':', 0xb7, 0x387, 0x55f, 0x5f4, 0x2018, 0x2019, 0x2024, 0x2027,
		0xfe13, 0xfe52, 0xfe55, 0xff07, 0xff0e, 0xff1a:
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}

// cp1252 is ftfy's sloppy-windows-1252 for bytes 0x80-0x9f: Windows-1252,
// with its five unassigned bytes kept as the C1 controls they were.
var cp1252 = [32]rune{
	'€', 0x81, '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', 0x8d, 'Ž', 0x8f,
	0x90, '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', 0x9d, 'ž', 'Ÿ',
}

// ligatures is ftfy's LIGATURES table.
var ligatures = map[rune]string{
	'Ĳ': "IJ", 'ĳ': "ij", 'ŉ': "ʼn",
	'Ǳ': "DZ", 'ǲ': "Dz", 'ǳ': "dz", 'Ǆ': "DŽ", 'ǅ': "Dž", 'ǆ': "dž",
	'Ǉ': "LJ", 'ǈ': "Lj", 'ǉ': "lj", 'Ǌ': "NJ", 'ǋ': "Nj", 'ǌ': "nj",
	'ﬀ': "ff", 'ﬁ': "fi", 'ﬂ': "fl", 'ﬃ': "ffi", 'ﬄ': "ffl", 'ﬅ': "ſt", 'ﬆ': "st",
}

// widthForms is the NFKC form of U+FF5F..U+FFEE (0: unchanged), the part of
// ftfy's WIDTH_MAP past full-width ASCII: white parentheses, half-width CJK
// punctuation, katakana and hangul, full-width signs, half-width arrows.
// Generated with Python's unicodedata.normalize("NFKC", ...); U+FFE3 maps
// to two runes and is handled in fixText.
var widthForms = [...]uint16{
	0x2985, 0x2986, 0x3002, 0x300C, 0x300D, 0x3001, 0x30FB, 0x30F2,
	0x30A1, 0x30A3, 0x30A5, 0x30A7, 0x30A9, 0x30E3, 0x30E5, 0x30E7,
	0x30C3, 0x30FC, 0x30A2, 0x30A4, 0x30A6, 0x30A8, 0x30AA, 0x30AB,
	0x30AD, 0x30AF, 0x30B1, 0x30B3, 0x30B5, 0x30B7, 0x30B9, 0x30BB,
	0x30BD, 0x30BF, 0x30C1, 0x30C4, 0x30C6, 0x30C8, 0x30CA, 0x30CB,
	0x30CC, 0x30CD, 0x30CE, 0x30CF, 0x30D2, 0x30D5, 0x30D8, 0x30DB,
	0x30DE, 0x30DF, 0x30E0, 0x30E1, 0x30E2, 0x30E4, 0x30E6, 0x30E8,
	0x30E9, 0x30EA, 0x30EB, 0x30EC, 0x30ED, 0x30EF, 0x30F3, 0x3099,
	0x309A, 0x1160, 0x1100, 0x1101, 0x11AA, 0x1102, 0x11AC, 0x11AD,
	0x1103, 0x1104, 0x1105, 0x11B0, 0x11B1, 0x11B2, 0x11B3, 0x11B4,
	0x11B5, 0x111A, 0x1106, 0x1107, 0x1108, 0x1121, 0x1109, 0x110A,
	0x110B, 0x110C, 0x110D, 0x110E, 0x110F, 0x1110, 0x1111, 0x1112,
	0, 0, 0, 0x1161, 0x1162, 0x1163, 0x1164, 0x1165,
	0x1166, 0, 0, 0x1167, 0x1168, 0x1169, 0x116A, 0x116B,
	0x116C, 0, 0, 0x116D, 0x116E, 0x116F, 0x1170, 0x1171,
	0x1172, 0, 0, 0x1173, 0x1174, 0x1175, 0, 0,
	0, 0x00A2, 0x00A3, 0x00AC, 0, 0x00A6, 0x00A5, 0x20A9,
	0, 0x2502, 0x2190, 0x2191, 0x2192, 0x2193, 0x25A0, 0x25CB,
}
