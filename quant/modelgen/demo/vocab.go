package demo

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"strings"

	"github.com/sightd/sightd/quant/tokenizer"
)

// mergeHeader is the first line of a merge list in CLIP's format.
const mergeHeader = "#version: 0.2"

// mergeList returns a BPE merge list (without its header) under which each
// word is a single token. For each word in turn it runs BPE with the merges
// so far on the word and, while the word is more than one symbol, appends a
// merge of its two leftmost symbols. Words are lower-case ASCII letters.
func mergeList(words []string) ([]string, error) {
	var merges []string
	for _, w := range words {
		if w == "" || strings.TrimFunc(w, func(r rune) bool { return 'a' <= r && r <= 'z' }) != "" {
			return nil, fmt.Errorf("demo: word %q: want lower-case ASCII letters", w)
		}
		for {
			pieces, err := bpe(merges, w)
			if err != nil {
				return nil, err
			}
			if len(pieces) == 1 {
				break
			}
			merges = append(merges, pieces[0]+" "+pieces[1])
		}
	}
	return merges, nil
}

// bpe splits word as the tokenizer does with the given merges.
func bpe(merges []string, word string) ([]string, error) {
	if len(merges) == 0 {
		// No merges: one symbol per letter, the last with the word end.
		var p []string
		for i := range len(word) {
			p = append(p, word[i:i+1])
		}
		p[len(p)-1] += "</w>"
		return p, nil
	}
	tok, err := loadMerges(mergeFile(merges), len(merges))
	if err != nil {
		return nil, err
	}
	return tok.Tokens(word), nil
}

// mergeFile is the merge list as a file: the header, then one merge a line.
func mergeFile(merges []string) []byte {
	var b bytes.Buffer
	b.WriteString(mergeHeader + "\n")
	for _, m := range merges {
		b.WriteString(m + "\n")
	}
	return b.Bytes()
}

func loadMerges(data []byte, n int) (*tokenizer.Tokenizer, error) {
	tok, err := tokenizer.Load(bytes.NewReader(data), tokenizer.Config{Merges: n, ContextLength: ContextLength})
	if err != nil {
		return nil, fmt.Errorf("demo: merge list: %w", err)
	}
	return tok, nil
}

// gzipped compresses data deterministically (no name, no time stamp).
func gzipped(data []byte) ([]byte, error) {
	var b bytes.Buffer
	zw, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// vocabulary is the demo's tokenizer and the token id of each word.
type vocabulary struct {
	merges []string
	tok    *tokenizer.Tokenizer
	ids    map[string]int32 // word -> its single token id
}

// buildVocabulary makes the merge list for Words() and checks that every
// word is exactly one token, distinct from every other word's.
func buildVocabulary() (*vocabulary, error) {
	var words []string
	for _, w := range Words() {
		words = append(words, w.Word)
	}
	merges, err := mergeList(words)
	if err != nil {
		return nil, err
	}
	tok, err := loadMerges(mergeFile(merges), len(merges))
	if err != nil {
		return nil, err
	}
	v := &vocabulary{merges: merges, tok: tok, ids: map[string]int32{}}
	seen := map[int32]string{}
	for _, w := range words {
		ids := tok.Encode(w)
		if len(ids) != 3 {
			return nil, fmt.Errorf("demo: word %q is %d tokens %q, want 1", w, len(ids)-2, tok.Tokens(w))
		}
		id := ids[1]
		if other, ok := seen[id]; ok {
			return nil, fmt.Errorf("demo: words %q and %q share token %d", other, w, id)
		}
		seen[id] = w
		v.ids[w] = id
	}
	return v, nil
}
