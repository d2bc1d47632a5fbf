// Package tokenizer is a pure-Go port of the text tokenizer of OpenAI's CLIP
// (simple_tokenizer.py): byte-level BPE with "</w>" word ends over CLIP's
// merge list, bpe_simple_vocab_16e6.txt.gz.
//
// It turns a rule written in words into the int32 ids the CLIP text encoders
// take: <|startoftext|> (49406), the text's tokens, <|endoftext|> (49407),
// truncated to a context of 77 ids (the end token kept last) and, for
// EncodeTo, padded with 0.
//
// A Tokenizer is immutable once loaded and safe for concurrent use.
package tokenizer

import (
	"errors"
	"fmt"
	"sync"
)

const (
	// DefaultContextLength is the sequence length of CLIP's text encoders.
	DefaultContextLength = 77
	// DefaultMerges is how many merges of the list CLIP uses: 49152-256-2.
	DefaultMerges = 49152 - 256 - 2
)

var (
	// ErrBadVocab reports a merge list that cannot be used: not gzip or
	// text, a malformed line, too few merges.
	ErrBadVocab = errors.New("tokenizer: bad vocabulary")
	// ErrBufferSize reports a destination whose length is not the context length.
	ErrBufferSize = errors.New("tokenizer: buffer length is not the context length")
)

// Config adjusts how a merge list is read and used. The zero value is CLIP's setting.
type Config struct {
	// Merges is how many merges of the list to use; 0 means DefaultMerges.
	// The vocabulary then has 512+Merges+2 ids, the last two being the
	// start and end tokens.
	Merges int
	// ContextLength is the length of an encoded sequence, start and end
	// tokens included; 0 means DefaultContextLength.
	ContextLength int
	// Normalize, if set, is applied to the text where CLIP (through ftfy)
	// applies Unicode NFC, which Go's standard library lacks: pass
	// norm.NFC.String from golang.org/x/text to match CLIP on decomposed
	// text. See Clean.
	Normalize func(string) string
}

// Tokenizer encodes text to CLIP token ids. Build one with Load or LoadFile.
type Tokenizer struct {
	vocab     []string          // id -> token, in bytes_to_unicode form ("cat</w>")
	byteID    [256]int32        // byte -> id of its single-byte token (add 256 for "</w>")
	merges    map[uint64]uint64 // pairKey(left, right) -> rank<<32 | merged id
	start     int32
	end       int32
	context   int
	normalize func(string) string
	scratch   sync.Pool // *scratch
}

// scratch holds the per-call buffers, pooled so that the hot path does not
// allocate once warm.
type scratch struct {
	text  []byte  // text after the ftfy-style fixes
	clean []byte  // final cleaned text
	ids   []int32 // content ids, without start and end
	word  []int32 // BPE result for one word
	// BPE state: symbols (-1 once merged away), a linked list over them,
	// each symbol's merge with the next (rank<<32 | merged id, or noPair)
	// and the heap of candidate merges.
	sym, next, prev []int32
	pair, heap      []uint64
}

func pairKey(left, right int32) uint64 { return uint64(uint32(left))<<32 | uint64(uint32(right)) }

// ContextLength returns the length of an encoded sequence.
func (t *Tokenizer) ContextLength() int { return t.context }

// VocabSize returns the number of ids, start and end tokens included.
func (t *Tokenizer) VocabSize() int { return len(t.vocab) }

// StartID returns the id of <|startoftext|> (49406 for CLIP).
func (t *Tokenizer) StartID() int32 { return t.start }

// EndID returns the id of <|endoftext|> (49407 for CLIP).
func (t *Tokenizer) EndID() int32 { return t.end }

// Encode returns the ids of text: the start id, the text's tokens and the
// end id, truncated to the context length with the end id kept last. It
// does not pad.
func (t *Tokenizer) Encode(text string) []int32 {
	s := t.getScratch()
	defer t.scratch.Put(s)
	ids := t.encode(s, text, t.context-2)
	out := make([]int32, 0, len(ids)+2)
	out = append(out, t.start)
	out = append(out, ids...)
	return append(out, t.end)
}

// EncodeTo writes the ids of text into dst, whose length must be the context
// length, and pads the rest with 0, as CLIP's tokenize does. It returns the
// number of ids before the padding. Once warm it does not allocate.
func (t *Tokenizer) EncodeTo(dst []int32, text string) (int, error) {
	if len(dst) != t.context {
		return 0, fmt.Errorf("%w: got %d, want %d", ErrBufferSize, len(dst), t.context)
	}
	s := t.getScratch()
	defer t.scratch.Put(s)
	ids := t.encode(s, text, t.context-2)
	dst[0] = t.start
	n := 1 + copy(dst[1:], ids)
	dst[n] = t.end
	n++
	clear(dst[n:])
	return n, nil
}

// Tokens returns the vocabulary strings of the text's tokens, in CLIP's
// bytes_to_unicode form ("falsé" gives "fal", "s", "Ã©</w>"), without start
// and end tokens
// and without truncation: len(Tokens(text))+2 > ContextLength() tells that
// Encode will truncate. It is meant for debugging and for rule editors.
func (t *Tokenizer) Tokens(text string) []string {
	s := t.getScratch()
	defer t.scratch.Put(s)
	ids := t.encode(s, text, -1)
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = t.vocab[id]
	}
	return out
}

// Clean returns text as CLIP's encoder sees it before splitting it into
// words: fixed as ftfy.fix_text would, HTML-unescaped, white space collapsed
// and stripped, lower-cased as Python's str.lower.
//
// ftfy is a Python library; this port applies the parts of fix_text that
// are fixed rules: its HTML unescaping (only when the text has no '<'),
// removal of ANSI terminal escapes, C1 controls read as Windows-1252, Latin
// ligatures split (ﬁ → fi), full- and half-width forms made standard width,
// curly quotes straightened (it’s → it's), and removal of the control
// characters ftfy removes. It leaves out ftfy's heuristic repair of mojibake
// (text decoded in the wrong encoding), which needs ftfy's statistics, and
// NFC normalisation, which is not in Go's standard library: set
// Config.Normalize for it. Without NFC, decomposed accents ("e" followed by
// U+0301) become separate tokens where CLIP would see "é".
//
// Each byte of invalid UTF-8 reads as U+FFFD. Letters and digits follow Go's Unicode
// tables (Unicode 15.0): characters assigned after that count as punctuation.
func (t *Tokenizer) Clean(text string) string {
	s := t.getScratch()
	defer t.scratch.Put(s)
	return string(t.clean(s, text))
}

func (t *Tokenizer) getScratch() *scratch {
	if s, ok := t.scratch.Get().(*scratch); ok {
		return s
	}
	return new(scratch)
}

// encode appends the content ids of text (no start or end) to s.ids[:0] and
// returns them. It stops once limit ids are there, if limit >= 0, so that
// over-long text costs no more BPE work than fits the context.
func (t *Tokenizer) encode(s *scratch, text string, limit int) []int32 {
	s.ids = s.ids[:0]
	clean := t.clean(s, text)
	for i := 0; limit < 0 || len(s.ids) < limit; {
		start, end := nextWord(clean, i)
		if start == end {
			break
		}
		i = end
		s.ids = t.appendWord(s, s.ids, clean[start:end])
	}
	if limit >= 0 && len(s.ids) > limit {
		s.ids = s.ids[:limit]
	}
	return s.ids
}

// appendWord appends the ids of one pre-token to dst.
func (t *Tokenizer) appendWord(s *scratch, dst []int32, word []byte) []int32 {
	// CLIP's bpe cache starts out holding the two special tokens, so text
	// that spells them out yields their ids.
	switch string(word) {
	case startText:
		return append(dst, t.start)
	case endText:
		return append(dst, t.end)
	}
	// No cache of words: BPE on a word takes well under a microsecond (see
	// the benchmarks), and a cache would cost a lock and memory.
	return append(dst, t.bpe(s, word)...)
}

// bpe returns the ids of word after CLIP's merge loop: start from one
// symbol per byte, the last one marked "</w>", and merge the adjacent pair
// of lowest rank, the leftmost first, until no pair has a rank.
//
// CLIP finds that pair by scanning the word and then merges all of its
// occurrences; this keeps candidates in a heap instead, so that a long word
// costs O(n log n), not O(n²). The two agree because Load accepts only
// lists where each token is made by one merge and used only by later ones:
// a merge never creates a pair that outranks it, so the occurrences of a
// pair are merged left to right before any other pair, as in CLIP. The
// tests check it against a direct port of CLIP's loop.
func (t *Tokenizer) bpe(s *scratch, word []byte) []int32 {
	n := int32(len(word))
	s.sym, s.next, s.prev, s.pair, s.heap = s.sym[:0], s.next[:0], s.prev[:0], s.pair[:0], s.heap[:0]
	for i, b := range word {
		s.sym = append(s.sym, t.byteID[b])
		s.next = append(s.next, int32(i)+1)
		s.prev = append(s.prev, int32(i)-1)
		s.pair = append(s.pair, noPair)
	}
	s.sym[n-1] += 256
	for i := range n - 1 {
		t.setPair(s, i)
	}
	for len(s.heap) > 0 {
		top := s.heapPop()
		i := int32(uint32(top))
		if s.sym[i] < 0 || s.pair[i]>>32 != top>>32 {
			continue // stale: merged away, or its pair has changed since
		}
		j := s.next[i]
		s.sym[i], s.sym[j] = int32(uint32(s.pair[i])), -1
		s.next[i] = s.next[j]
		if s.next[i] < n {
			s.prev[s.next[i]] = i
		}
		t.setPair(s, i)
		if p := s.prev[i]; p >= 0 {
			t.setPair(s, p)
		}
	}
	s.word = s.word[:0]
	for i := int32(0); i < n; i = s.next[i] {
		s.word = append(s.word, s.sym[i])
	}
	return s.word
}

const noPair = ^uint64(0)

// setPair records the merge of symbol i with the next one, if any, and
// queues it. Heap keys are rank<<32 | i, so equal ranks pop leftmost first.
func (t *Tokenizer) setPair(s *scratch, i int32) {
	s.pair[i] = noPair
	if j := s.next[i]; int(j) < len(s.sym) {
		if m, ok := t.merges[pairKey(s.sym[i], s.sym[j])]; ok {
			s.pair[i] = m
			s.heapPush(m>>32<<32 | uint64(i))
		}
	}
}

func (s *scratch) heapPush(k uint64) {
	h := append(s.heap, k)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if h[p] <= h[i] {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	s.heap = h
}

func (s *scratch) heapPop() uint64 {
	h := s.heap
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		c := 2*i + 1
		if c >= len(h) {
			break
		}
		if c+1 < len(h) && h[c+1] < h[c] {
			c++
		}
		if h[i] <= h[c] {
			break
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
	s.heap = h
	return top
}
