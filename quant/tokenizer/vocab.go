package tokenizer

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"
)

const (
	startText = "<|startoftext|>"
	endText   = "<|endoftext|>"
	wordEnd   = "</w>"

	maxLine = 64 << 10 // a merge line is a few bytes; longer means not a merge list
)

// byteOrder lists the 256 byte values in the order of CLIP's
// bytes_to_unicode, which is the order of the first 256 ids; byteRune maps a
// byte to the printable rune that stands for it in the vocabulary.
var byteOrder, byteRune = bytesToUnicode()

// bytesToUnicode mirrors CLIP's bytes_to_unicode: printable Latin-1 bytes
// stand for themselves, the others (controls, space, soft hyphen...) are
// moved to U+0100 onwards so that no token holds white space.
func bytesToUnicode() (order [256]byte, runes [256]rune) {
	printable := func(b rune) bool {
		return '!' <= b && b <= '~' || '¡' <= b && b <= '¬' || '®' <= b && b <= 'ÿ'
	}
	n := 0
	for b := range 256 {
		if printable(rune(b)) {
			order[n], runes[b] = byte(b), rune(b)
			n++
		}
	}
	extra := rune(256)
	for b := range 256 {
		if !printable(rune(b)) {
			order[n], runes[b] = byte(b), extra
			n++
			extra++
		}
	}
	return order, runes
}

// LoadFile reads a merge list from path, gzip'ed or plain text. See Load.
func LoadFile(path string, cfg Config) (*Tokenizer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	defer f.Close()
	t, err := Load(f, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return t, nil
}

// Load reads a merge list in CLIP's format, gzip'ed (detected by its magic
// bytes) or plain text: a "#version" header line, then one merge "a b" a
// line, of which the first cfg.Merges are used and the rest are not parsed
// (a gzip'ed list is read to its end, for its checksum).
// Each side of a merge must be a byte token or the result of an earlier
// merge, and each merge must make a new token, as BPE training produces
// them (and as CLIP's list is). A list that breaks this, is malformed or
// is too short is rejected with an error wrapping ErrBadVocab that names
// the line.
func Load(r io.Reader, cfg Config) (*Tokenizer, error) {
	if cfg.Merges == 0 {
		cfg.Merges = DefaultMerges
	}
	if cfg.ContextLength == 0 {
		cfg.ContextLength = DefaultContextLength
	}
	if cfg.Merges < 0 || cfg.ContextLength < 2 {
		return nil, fmt.Errorf("tokenizer: bad config: %d merges, context length %d (need >= 0 and >= 2)",
			cfg.Merges, cfg.ContextLength)
	}

	br := bufio.NewReader(r)
	var zr *gzip.Reader
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		var err error
		if zr, err = gzip.NewReader(br); err != nil {
			return nil, readError(0, err)
		}
		defer zr.Close()
	}
	var src io.Reader = br
	if zr != nil {
		src = zr
	}
	merges, err := readMerges(src, cfg.Merges)
	if err != nil {
		return nil, err
	}
	if zr != nil {
		// Read to the end for gzip's checksum: a damaged file can still
		// inflate to plausible merges.
		if _, err := io.Copy(io.Discard, zr); err != nil {
			return nil, readError(0, err)
		}
	}
	t := build(merges)
	t.context = cfg.ContextLength
	t.normalize = cfg.Normalize
	return t, nil
}

// readMerges returns the first n merges of a list, validated.
func readMerges(r io.Reader, n int) ([][2]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, readError(1, err)
		}
		return nil, fmt.Errorf("%w: empty input", ErrBadVocab)
	}
	if !strings.Contains(sc.Text(), "#version") {
		return nil, fmt.Errorf("%w: line 1: no \"#version\" header; not a gzip'ed or plain-text merge list?", ErrBadVocab)
	}

	// madeBy holds every symbol a merge may use so far, with the line that
	// made it: the byte tokens with and without "</w>" (line 0), then each
	// merge's result. The map hints are capped: n comes from the caller.
	madeBy := make(map[string]int, min(512+n, 1<<18))
	for _, r := range byteRune {
		madeBy[string(r)] = 0
		madeBy[string(r)+wordEnd] = 0
	}
	merges := make([][2]string, 0, min(n, 1<<18))
	for line := 2; len(merges) < n; line++ {
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return nil, readError(line, err)
			}
			return nil, fmt.Errorf("%w: %d merges, need %d", ErrBadVocab, len(merges), n)
		}
		text := sc.Text()
		if !utf8.ValidString(text) {
			return nil, fmt.Errorf("%w: line %d: invalid UTF-8", ErrBadVocab, line)
		}
		f := strings.Fields(text)
		if len(f) != 2 {
			return nil, fmt.Errorf("%w: line %d: want 2 symbols, got %d in %q", ErrBadVocab, line, len(f), text)
		}
		for _, sym := range f {
			if _, ok := madeBy[sym]; !ok {
				return nil, fmt.Errorf("%w: line %d: %q is neither a byte token nor made by an earlier merge",
					ErrBadVocab, line, sym)
			}
		}
		if strings.HasSuffix(f[0], wordEnd) {
			return nil, fmt.Errorf("%w: line %d: %q ends a word, so it cannot be a merge's left side", ErrBadVocab, line, f[0])
		}
		made := f[0] + f[1]
		if prev, ok := madeBy[made]; ok {
			return nil, fmt.Errorf("%w: line %d: merge %q makes %q, already made by line %d", ErrBadVocab, line, text, made, prev)
		}
		if made == startText || made == endText {
			return nil, fmt.Errorf("%w: line %d: merge %q makes a special token", ErrBadVocab, line, text)
		}
		madeBy[made] = line
		merges = append(merges, [2]string{f[0], f[1]})
	}
	return merges, nil
}

// build lays out CLIP's vocabulary: the 256 byte tokens, the same with
// "</w>", one token per merge, then the start and end tokens.
func build(merges [][2]string) *Tokenizer {
	t := &Tokenizer{vocab: make([]string, 0, 512+len(merges)+2)}
	for i, b := range byteOrder {
		t.byteID[b] = int32(i)
		t.vocab = append(t.vocab, string(byteRune[b]))
	}
	for i := range 256 {
		t.vocab = append(t.vocab, t.vocab[i]+wordEnd)
	}
	for _, m := range merges {
		t.vocab = append(t.vocab, m[0]+m[1])
	}
	t.start = int32(len(t.vocab))
	t.end = t.start + 1
	t.vocab = append(t.vocab, startText, endText)

	// readMerges made sure each token is made once, so ids and strings
	// are one to one.
	id := make(map[string]int32, len(t.vocab))
	for i, tok := range t.vocab {
		id[tok] = int32(i)
	}
	t.merges = make(map[uint64]uint64, len(merges))
	for rank, m := range merges {
		t.merges[pairKey(id[m[0]], id[m[1]])] = uint64(rank)<<32 | uint64(id[m[0]+m[1]])
	}
	return t
}

// readError classifies an error met while reading line (0: the gzip
// header): a damaged gzip stream or an over-long line is a bad vocabulary,
// anything else (a failing disk) is passed on.
func readError(line int, err error) error {
	where := ""
	if line > 0 {
		where = fmt.Sprintf("line %d: ", line)
	}
	var corrupt flate.CorruptInputError
	switch {
	case errors.Is(err, bufio.ErrTooLong):
		return fmt.Errorf("%w: %slonger than %d bytes", ErrBadVocab, where, maxLine)
	case errors.Is(err, gzip.ErrHeader), errors.Is(err, gzip.ErrChecksum),
		errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &corrupt):
		return fmt.Errorf("%w: %sgzip: %w", ErrBadVocab, where, err)
	}
	return fmt.Errorf("tokenizer: reading vocabulary: %s%w", where, err)
}
