package ota_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sightd/sightd/ota"
	"github.com/sightd/sightd/quant/bundle"
)

// A directory whose manifest has no sizes or hashes, or stale ones, packs
// into a bundle with the right ones, written back into manifest.json.
func TestPack(t *testing.T) {
	dir := tinyDir(t, 3)
	mpath := filepath.Join(dir, bundle.ManifestName)
	want, _ := os.ReadFile(mpath)
	// Drop the sizes and hashes, as an author writes the manifest.
	raw := regexp.MustCompile(`(?m)^\s*"(sha256|size)": .*\n`).ReplaceAll(want, nil)
	if bytes.Contains(raw, []byte("sha256")) {
		t.Fatalf("test manifest still has hashes:\n%s", raw)
	}
	// And a stale one, of a file since changed.
	raw = bytes.Replace(raw, []byte(`"file": "text.tflite",`), []byte(`"file": "text.tflite", "size": 99, "sha256": "`+strings.Repeat("0", 64)+`",`), 1)
	os.WriteFile(mpath, raw, 0o640)
	os.Chmod(mpath, 0o640)
	// A stale signature in the directory is not packed.
	os.WriteFile(filepath.Join(dir, bundle.SignatureName), []byte("stale"), 0o644)

	var plain, gz bytes.Buffer
	m, err := ota.Pack(dir, &plain, false)
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != 3 || m.Image.Size != int64(len(tinyFiles()["image.tflite"])) {
		t.Errorf("manifest version %d, image %+v", m.Version, m.Image.FileRef)
	}
	got, _ := os.ReadFile(mpath)
	if !bytes.Equal(got, want) {
		t.Errorf("manifest.json rewritten as\n%s\nwant\n%s", got, want)
	}
	if fi, _ := os.Stat(mpath); fi.Mode().Perm() != 0o640 {
		t.Errorf("manifest.json mode %v, want it kept (0640)", fi.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 6 {
		t.Errorf("directory holds %d entries, want the 5 it had and probes/: a temporary file left?", len(ents))
	}
	es := entries(t, plain.Bytes())
	var names []string
	for _, e := range es {
		names = append(names, e.hdr.Name)
	}
	if strings.Join(names, " ") != "manifest.json image.tflite text.tflite vocab.txt.gz probes/red.png" {
		t.Errorf("tar holds %v", names)
	}
	if !bytes.Equal(es[0].data, want) {
		t.Error("the tar's manifest is not the directory's")
	}
	// The unsigned tar is refused as such, and signs.
	if _, err := ota.VerifyTar(bytes.NewReader(plain.Bytes()), policy(testKey(t, "a"))); !errors.Is(err, ota.ErrUnsigned) {
		t.Errorf("VerifyTar of a packed tar: %v, want ErrUnsigned", err)
	}
	// Unchanged, the manifest is left alone and the tar is the same.
	before, _ := os.Stat(mpath)
	time.Sleep(10 * time.Millisecond)
	if _, err := ota.Pack(dir, &gz, true); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(mpath); !after.ModTime().Equal(before.ModTime()) {
		t.Error("Pack rewrote an up-to-date manifest.json")
	}
	if b := gz.Bytes(); b[0] != 0x1f || b[1] != 0x8b {
		t.Fatal("gz: not gzip")
	}
	var again bytes.Buffer
	ota.Pack(dir, &again, false)
	if !bytes.Equal(again.Bytes(), plain.Bytes()) {
		t.Error("Pack is not reproducible")
	}
}

func TestPackRefuses(t *testing.T) {
	cases := []struct {
		name string
		edit func(t *testing.T, dir string)
		is   error
		want string
	}{
		{"unknown field", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "manifest.json"), `"embedding_dim"`, `"embeding_dim"`)
		}, bundle.ErrInvalid, `manifest.json: json: unknown field "embeding_dim"`},
		{"missing file", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "vocab.txt.gz")) },
			bundle.ErrInvalid, `tokenizer.file "vocab.txt.gz": missing file`},
		{"symlink out of the directory", func(t *testing.T, dir string) {
			outside := filepath.Join(t.TempDir(), "secret")
			os.WriteFile(outside, []byte("secret"), 0o600)
			os.Remove(filepath.Join(dir, "text.tflite"))
			os.Symlink(outside, filepath.Join(dir, "text.tflite"))
		}, bundle.ErrInvalid, `text.file "text.tflite": statat text.tflite: path escapes from parent`},
		{"directory named as a file", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "text.tflite"))
			os.Mkdir(filepath.Join(dir, "text.tflite"), 0o755)
		}, bundle.ErrInvalid, `text.file "text.tflite": not a regular file (d---------)`},
		{"invalid manifest", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "manifest.json"), `"version": 3`, `"version": 0`)
		}, bundle.ErrInvalid, "version: want an integer >= 1, got 0"},
		{"no manifest", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "manifest.json")) },
			nil, "manifest.json: no such file or directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := tinyDir(t, 3)
			c.edit(t, dir)
			var out bytes.Buffer
			_, err := ota.Pack(dir, &out, false)
			if err == nil || (c.is != nil && !errors.Is(err, c.is)) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Pack: %v\nwant %v saying %q", err, c.is, c.want)
			}
		})
	}
}

func editFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s: %v, or no %q", path, err, old)
	}
	os.WriteFile(path, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644)
}

// SignTar replaces a signature, keeps every other entry's content byte for
// byte, and keeps the archive's "./" naming.
func TestSignTarResign(t *testing.T) {
	a, b := testKey(t, "a"), testKey(t, "b")
	dir := tinyDir(t, 3)
	first := entries(t, signed(t, dir, a, false))
	// Renamed the way tar -C dir . names things, with a directory entry.
	for i := range first {
		first[i].hdr.Name = "./" + first[i].hdr.Name
	}
	dirEntry := entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}}
	in := makeTar(t, append([]entry{dirEntry}, first...), false)
	var out bytes.Buffer
	s, err := ota.SignTar(bytes.NewReader(in), &out, b, far)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyID != b.ID || s.Version != 3 || s.Name != "tiny" || !s.Expires.Equal(far) {
		t.Errorf("Signed %+v", s)
	}
	second := entries(t, out.Bytes())
	if len(second) != len(first)+1 {
		t.Fatalf("%d entries, want %d", len(second), len(first)+1)
	}
	if second[0].hdr.Typeflag != tar.TypeDir || second[2].hdr.Name != "./manifest.sig" {
		t.Fatalf("entries %q %q, want ./ then ./manifest.sig second", second[0].hdr.Name, second[2].hdr.Name)
	}
	for i, e := range first {
		if i == 1 {
			continue // the signature
		}
		if got := second[i+1]; got.hdr.Name != e.hdr.Name || !bytes.Equal(got.data, e.data) || got.hdr.Mode != e.hdr.Mode {
			t.Errorf("entry %s changed", e.hdr.Name)
		}
	}
	if _, err := ota.VerifyTar(bytes.NewReader(out.Bytes()), policy(b)); err != nil {
		t.Fatalf("re-signed: %v", err)
	}
	if _, err := ota.VerifyTar(bytes.NewReader(out.Bytes()), policy(a)); !errors.Is(err, ota.ErrUntrustedKey) {
		t.Fatalf("the old key's signature is still there: %v", err)
	}
}

// Directory entries anywhere are kept, those between the manifest and the
// first file too (where a signature goes).
func TestSignTarKeepsDirectories(t *testing.T) {
	key := testKey(t, "a")
	es := entries(t, packed(t, tinyDir(t, 3), false))
	probes := entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "probes/", Mode: 0o755}}
	in := makeTar(t, append([]entry{es[0], probes}, es[1:]...), false)
	var out bytes.Buffer
	if _, err := ota.SignTar(bytes.NewReader(in), &out, key, far); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries(t, out.Bytes()) {
		names = append(names, e.hdr.Name)
	}
	if got := strings.Join(names, " "); got != "manifest.json manifest.sig probes/ image.tflite text.tflite vocab.txt.gz probes/red.png" {
		t.Errorf("signed tar holds %s", got)
	}
	if _, err := ota.VerifyTar(bytes.NewReader(out.Bytes()), policy(key)); err != nil {
		t.Fatal(err)
	}
}

// SignTar does not sign a broken bundle, nor with an expiry past.
func TestSignTarRefuses(t *testing.T) {
	key := testKey(t, "a")
	es := entries(t, packed(t, tinyDir(t, 3), false))
	es[2].data = bytes.ToUpper(es[2].data)
	var out bytes.Buffer
	if _, err := ota.SignTar(bytes.NewReader(makeTar(t, es, false)), &out, key, far); !errors.Is(err, bundle.ErrHashMismatch) {
		t.Errorf("broken bundle: %v, want ErrHashMismatch", err)
	}
	data := packed(t, tinyDir(t, 3), true)
	if _, err := ota.SignTar(bytes.NewReader(data), &out, key, time.Now().Add(-time.Hour)); err == nil || !strings.Contains(err.Error(), "not in the future") {
		t.Errorf("expired: %v", err)
	}
	if _, err := ota.SignTar(bytes.NewReader([]byte("not a tar at all, really not")), &out, key, far); !errors.Is(err, bundle.ErrInvalid) {
		t.Errorf("not a tar: %v, want ErrInvalid", err)
	}
}
