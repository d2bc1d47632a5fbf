package tokenizer

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// vocabEnv names the CLIP merge list for the tests; unset, they look for it
// beside the repository, in ../shared/testdata/clip/.
const vocabEnv = "SIGHTD_CLIP_VOCAB"

// vocabPath finds CLIP's bpe_simple_vocab_16e6.txt.gz or fails the test: it
// is never copied into the repository and a missing file must not pass as
// a skip.
func vocabPath(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv(vocabEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			tb.Fatalf("$%s=%q: %v", vocabEnv, p, err)
		}
		return p
	}
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "..", "shared", "testdata", "clip", "bpe_simple_vocab_16e6.txt.gz")
			if _, err := os.Stat(p); err != nil {
				tb.Fatalf("CLIP vocabulary not found: $%s is unset and %v (it is never copied into the repository)", vocabEnv, err)
			}
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatalf("CLIP vocabulary not found: $%s is unset and no go.mod above %s to find ../shared/testdata/clip/ from", vocabEnv, wd)
		}
		dir = parent
	}
}

var (
	clipOnce sync.Once
	clipTok  *Tokenizer
	clipErr  error
)

// clip returns the tokenizer of the real CLIP vocabulary, loaded once.
func clip(tb testing.TB) *Tokenizer {
	tb.Helper()
	p := vocabPath(tb)
	clipOnce.Do(func() { clipTok, clipErr = LoadFile(p, Config{}) })
	if clipErr != nil {
		tb.Fatal(clipErr)
	}
	return clipTok
}
