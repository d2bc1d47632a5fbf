package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sightd/sightd/quant/tflite"
)

// run executes the sightd CLI in-process and returns its standard output.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// sharedFile finds a file of ../shared beside the repository.
func sharedFile(t *testing.T, env string, rel ...string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	p := filepath.Join(append([]string{"..", "..", "shared"}, rel...)...)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not found (set %s): %v", p, env, err)
	}
	return p
}

func TestVersionCommand(t *testing.T) {
	out, err := run(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "sightd ") || !strings.Contains(out, "tensorflow lite "+tflite.Version()) {
		t.Fatalf("version output:\n%s", out)
	}
}

func TestTokenizeCommand(t *testing.T) {
	vocab := sharedFile(t, "SIGHTD_CLIP_VOCAB", "testdata", "clip", "bpe_simple_vocab_16e6.txt.gz")
	out, err := run(t, "tokenize", "--vocab", vocab, "a photo of a cat", "a dog")
	if err != nil {
		t.Fatal(err)
	}
	want := "49406 320 1125 539 320 2368 49407\n49406 320 1929 49407\n"
	if out != want {
		t.Fatalf("tokenize printed\n%s\nwant\n%s", out, want)
	}
	if _, err := run(t, "tokenize", "a dog"); err == nil {
		t.Fatal("tokenize without --vocab or --bundle succeeded")
	}
	if _, err := run(t, "tokenize", "--vocab", filepath.Join(t.TempDir(), "none.gz"), "a dog"); err == nil {
		t.Fatal("tokenize with a missing vocabulary succeeded")
	}
}
