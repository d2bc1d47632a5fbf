package bundle_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/sightd/sightd/quant/bundle"
)

// contents are the files the example manifest names. Open does not look
// inside them; CheckModels tests use real models.
func contents() map[string][]byte {
	return map[string][]byte{
		"image.tflite":   []byte("image encoder bytes"),
		"text.tflite":    []byte("text encoder bytes"),
		"vocab.txt.gz":   []byte("vocabulary bytes"),
		"probes/red.png": []byte("a red picture"),
	}
}

// writeBundle writes the example bundle into a new directory.
func writeBundle(t *testing.T) (string, *bundle.Manifest) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	m := parseExample(t)
	if err := bundle.Write(dir, m, contents()); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return dir, m
}

func TestWriteOpenDir(t *testing.T) {
	dir, m := writeBundle(t)
	if m.Image.Size != 19 || m.Image.SHA256 != sha("image encoder bytes") {
		t.Fatalf("Write did not fill size and sha256: %+v", m.Image.FileRef)
	}
	b, err := bundle.Open(dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !reflect.DeepEqual(b.Manifest, m) {
		t.Errorf("manifest read back differs:\n%+v\n%+v", b.Manifest, m)
	}
	if b.Dir != dir {
		t.Errorf("Dir %q, want %q", b.Dir, dir)
	}
	got, err := os.ReadFile(b.Path("probes/red.png"))
	if err != nil || string(got) != "a red picture" {
		t.Errorf("Path(probes/red.png): %q, %v", got, err)
	}
	if p := b.Path("../x"); p != "" {
		t.Errorf("Path(../x) = %q, want \"\"", p)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("Close removed a bundle directory it did not create: %v", err)
	}
}

func TestWriteRefuses(t *testing.T) {
	t.Run("missing file", func(t *testing.T) {
		files := contents()
		delete(files, "vocab.txt.gz")
		err := bundle.Write(filepath.Join(t.TempDir(), "b"), parseExample(t), files)
		if !errors.Is(err, bundle.ErrMissingFile) || !strings.Contains(err.Error(), `tokenizer.file "vocab.txt.gz": missing file`) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("extra file", func(t *testing.T) {
		files := contents()
		files["notes.txt"] = []byte("x")
		err := bundle.Write(filepath.Join(t.TempDir(), "b"), parseExample(t), files)
		if !errors.Is(err, bundle.ErrInvalid) || !strings.Contains(err.Error(), `"notes.txt": not named by the manifest`) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("non-empty directory", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "old"), nil, 0o644)
		if err := bundle.Write(dir, parseExample(t), contents()); err == nil || !strings.Contains(err.Error(), "not empty") {
			t.Errorf("got %v", err)
		}
	})
}

// rewriteManifest replaces a bundle's manifest.json with m as plain JSON,
// unvalidated.
func rewriteManifest(t *testing.T, dir string, m *bundle.Manifest) {
	t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpenBrokenDir(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(t *testing.T, dir string, m *bundle.Manifest)
		is     error
		want   []string // the problems, in order
	}{
		{"missing file", func(t *testing.T, dir string, m *bundle.Manifest) {
			os.Remove(filepath.Join(dir, "text.tflite"))
		}, bundle.ErrMissingFile, []string{`text.file "text.tflite": missing file`}},
		{"size mismatch", func(t *testing.T, dir string, m *bundle.Manifest) {
			os.WriteFile(filepath.Join(dir, "vocab.txt.gz"), []byte("vocabulary bytes!"), 0o644)
		}, bundle.ErrSizeMismatch, []string{`tokenizer.file "vocab.txt.gz": size mismatch: manifest 16 bytes, file 17 bytes`}},
		{"hash mismatch", func(t *testing.T, dir string, m *bundle.Manifest) {
			os.WriteFile(filepath.Join(dir, "image.tflite"), []byte("image encoder byteZ"), 0o644)
		}, bundle.ErrHashMismatch, []string{`image.file "image.tflite": sha256 mismatch: manifest ` +
			sha("image encoder bytes") + ", file " + sha("image encoder byteZ")}},
		{"several at once", func(t *testing.T, dir string, m *bundle.Manifest) {
			os.Remove(filepath.Join(dir, "image.tflite"))
			os.WriteFile(filepath.Join(dir, "probes/red.png"), []byte("a red pictur3"), 0o644)
		}, bundle.ErrMissingFile, []string{
			`image.file "image.tflite": missing file`,
			`probes[1].file "probes/red.png": sha256 mismatch: manifest ` + sha("a red picture") + ", file " + sha("a red pictur3"),
		}},
		{"directory instead of file", func(t *testing.T, dir string, m *bundle.Manifest) {
			os.Remove(filepath.Join(dir, "text.tflite"))
			os.Mkdir(filepath.Join(dir, "text.tflite"), 0o755)
		}, bundle.ErrInvalid, []string{`text.file "text.tflite": not a regular file (d---------)`}},
		{"missing manifest", func(t *testing.T, dir string, m *bundle.Manifest) {
			os.Remove(filepath.Join(dir, "manifest.json"))
		}, bundle.ErrMissingFile, []string{"manifest.json: missing file"}},
		{"oversize manifest", func(t *testing.T, dir string, m *bundle.Manifest) {
			os.WriteFile(filepath.Join(dir, "manifest.json"), bytes.Repeat([]byte(" "), bundle.MaxManifestSize+1), 0o644)
		}, bundle.ErrInvalid, []string{"manifest.json: 1048577 bytes exceeds the limit of 1048576"}},
		{"manifest is a fifo", func(t *testing.T, dir string, m *bundle.Manifest) {
			os.Remove(filepath.Join(dir, "manifest.json"))
			if err := syscall.Mkfifo(filepath.Join(dir, "manifest.json"), 0o644); err != nil {
				t.Skip(err)
			}
		}, bundle.ErrInvalid, []string{"manifest.json: not a regular file (p---------)"}},
		{"unknown format version", func(t *testing.T, dir string, m *bundle.Manifest) {
			m.Format = 7
			rewriteManifest(t, dir, m)
		}, bundle.ErrFormat, []string{"format: unsupported manifest format 7 (this sightd reads format 1)"}},
		{"towers of different dimensions", func(t *testing.T, dir string, m *bundle.Manifest) {
			m.Text.Output.Shape = []int{1, 8}
			rewriteManifest(t, dir, m)
		}, bundle.ErrInvalid, []string{"text.output.shape[1]: want embedding_dim 4, got 8"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, m := writeBundle(t)
			c.mutate(t, dir, m)
			_, err := bundle.Open(dir)
			if !errors.Is(err, c.is) || !errors.Is(err, bundle.ErrInvalid) {
				t.Fatalf("Open: %v\nwant errors.Is %v and ErrInvalid", err, c.is)
			}
			lines := strings.Split(err.Error(), "\n")
			if want := "bundle " + dir + ": invalid model bundle"; lines[0] != want {
				t.Errorf("first line %q, want %q", lines[0], want)
			}
			if got := lines[1:]; !reflect.DeepEqual(got, c.want) {
				t.Errorf("\n got  %q\n want %q", got, c.want)
			}
		})
	}
}

// A symlink in a bundle directory may not reach outside it, even to a file
// with the right content.
func TestOpenDirSymlinkOutside(t *testing.T) {
	dir, _ := writeBundle(t)
	outside := filepath.Join(t.TempDir(), "image.tflite")
	os.WriteFile(outside, contents()["image.tflite"], 0o644)
	os.Remove(filepath.Join(dir, "image.tflite"))
	if err := os.Symlink(outside, filepath.Join(dir, "image.tflite")); err != nil {
		t.Fatal(err)
	}
	_, err := bundle.Open(dir)
	if err == nil || !strings.Contains(err.Error(), `image.file "image.tflite": `) {
		t.Fatalf("Open with a symlink leaving the bundle: %v", err)
	}
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func tarOf(t *testing.T, b *bundle.Bundle, gz bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	if gz {
		zw := gzip.NewWriter(&buf)
		if err := b.WriteTar(zw); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	} else if err := b.WriteTar(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestOpenTar(t *testing.T) {
	dir, m := writeBundle(t)
	src, err := bundle.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := tarOf(t, src, false), tarOf(t, src, false); !bytes.Equal(a, b) {
		t.Error("WriteTar is not reproducible")
	}
	for _, gz := range []bool{false, true} {
		name := map[bool]string{false: "bundle.tar", true: "bundle.tar.gz"}[gz]
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(path, tarOf(t, src, gz), 0o644); err != nil {
				t.Fatal(err)
			}
			b, err := bundle.Open(path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !reflect.DeepEqual(b.Manifest, m) {
				t.Errorf("manifest differs")
			}
			for name, want := range contents() {
				if got, err := os.ReadFile(b.Path(name)); err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s: %q, %v", name, got, err)
				}
			}
			// The manifest's exact bytes (what a signature covers) survive.
			orig, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
			if got, _ := os.ReadFile(b.Path("manifest.json")); !bytes.Equal(got, orig) {
				t.Error("manifest.json bytes changed")
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(b.Dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Close left the temporary directory: %v", err)
			}
		})
	}
}

func TestExtractIntoDir(t *testing.T) {
	dir, _ := writeBundle(t)
	src, err := bundle.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := tarOf(t, src, true)

	dst := filepath.Join(t.TempDir(), "v3")
	b, err := bundle.Extract(bytes.NewReader(data), dst)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, err := bundle.Open(dst); err != nil {
		t.Errorf("Close removed, or damaged, a directory the caller owns: %v", err)
	}
	if _, err := bundle.Extract(bytes.NewReader(data), dst); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Extract into a non-empty directory: %v", err)
	}
	empty := t.TempDir()
	if _, err := bundle.Extract(bytes.NewReader(data), empty); err != nil {
		t.Errorf("Extract into an existing empty directory: %v", err)
	}
}

// entry is one tar member for handmade archives.
type entry struct {
	hdr  tar.Header
	data string
}

func file(name, data string) entry {
	return entry{tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644}, data}
}

// goodEntries are the example bundle as tar members, manifest first.
func goodEntries(t *testing.T) []entry {
	t.Helper()
	dir, m := writeBundle(t)
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	c := contents()
	es := []entry{file("manifest.json", string(raw))}
	for _, name := range []string{m.Image.File, m.Text.File, m.Tokenizer.File, m.Probes[1].File} {
		es = append(es, file(name, string(c[name])))
	}
	return es
}

func makeTar(t *testing.T, es []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		if err := tw.WriteHeader(&e.hdr); err != nil {
			t.Fatalf("%s: %v", e.hdr.Name, err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatalf("%s: %v", e.hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Archives that tar tools make and that Extract must accept.
func TestExtractAcceptedForms(t *testing.T) {
	dirEntry := func(name string) entry { return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}} }
	cases := map[string]func([]entry) []entry{
		"dot-slash names and directories first": func(es []entry) []entry {
			for i := range es {
				es[i].hdr.Name = "./" + es[i].hdr.Name
			}
			return append([]entry{dirEntry("./"), dirEntry("./probes/")}, es...)
		},
		"pax global header": func(es []entry) []entry {
			g := entry{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "abc"}}}
			return append([]entry{g}, es...)
		},
		"any order after the manifest": func(es []entry) []entry {
			es[1], es[4] = es[4], es[1]
			return es
		},
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			data := makeTar(t, edit(goodEntries(t)))
			if _, err := bundle.Extract(bytes.NewReader(data), filepath.Join(t.TempDir(), "x")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestExtractRefuses(t *testing.T) {
	link := func(typ byte, name, target string) entry {
		return entry{hdr: tar.Header{Typeflag: typ, Name: name, Linkname: target, Mode: 0o777}}
	}
	cases := []struct {
		name string
		edit func(es []entry) []entry
		is   error
		want string // the problem line
	}{
		{"dot-dot path", func(es []entry) []entry { return append(es, file("../evil", "x")) },
			bundle.ErrUnsafeEntry, `tar entry "../evil": unsafe tar entry: path leaves the bundle directory`},
		{"dot-dot inside", func(es []entry) []entry { return append(es, file("probes/../../evil", "x")) },
			bundle.ErrUnsafeEntry, `tar entry "probes/../../evil": unsafe tar entry: path leaves the bundle directory`},
		{"absolute path", func(es []entry) []entry { return append(es, file("/tmp/evil", "x")) },
			bundle.ErrUnsafeEntry, `tar entry "/tmp/evil": unsafe tar entry: path leaves the bundle directory`},
		{"backslash", func(es []entry) []entry { return append(es, file(`..\evil`, "x")) },
			bundle.ErrUnsafeEntry, `tar entry "..\\evil": unsafe tar entry: path leaves the bundle directory`},
		{"symlink", func(es []entry) []entry {
			return append([]entry{es[0], link(tar.TypeSymlink, "image.tflite", "/etc/passwd")}, es[2:]...)
		}, bundle.ErrUnsafeEntry, `tar entry "image.tflite": unsafe tar entry: not a regular file or directory (symlink)`},
		{"hard link", func(es []entry) []entry {
			return append([]entry{es[0], link(tar.TypeLink, "image.tflite", "text.tflite")}, es[2:]...)
		}, bundle.ErrUnsafeEntry, `tar entry "image.tflite": unsafe tar entry: not a regular file or directory (hard link)`},
		{"device", func(es []entry) []entry {
			return append(es, entry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}})
		}, bundle.ErrUnsafeEntry, `tar entry "null": unsafe tar entry: not a regular file or directory (device)`},
		{"fifo", func(es []entry) []entry {
			return append(es, entry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "pipe"}})
		}, bundle.ErrUnsafeEntry, `tar entry "pipe": unsafe tar entry: not a regular file or directory (fifo)`},
		{"duplicate name", func(es []entry) []entry { return append(es, es[1]) },
			bundle.ErrUnsafeEntry, `tar entry "image.tflite": unsafe tar entry: duplicate entry`},
		{"duplicate through ./", func(es []entry) []entry {
			e := es[2]
			e.hdr.Name = "./" + e.hdr.Name
			return append(es, e)
		}, bundle.ErrUnsafeEntry, `tar entry "./text.tflite": unsafe tar entry: duplicate entry`},
		{"second manifest", func(es []entry) []entry { return append(es, es[0]) },
			bundle.ErrUnsafeEntry, `tar entry "manifest.json": unsafe tar entry: duplicate entry`},
		{"file not in the manifest", func(es []entry) []entry { return append(es, file("extra.bin", "x")) },
			bundle.ErrUnsafeEntry, `tar entry "extra.bin": unsafe tar entry: not named by the manifest`},
		{"stray directory", func(es []entry) []entry {
			return append(es, entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "junk/", Mode: 0o755}})
		}, bundle.ErrUnsafeEntry, `tar entry "junk": unsafe tar entry: directory holds no file named by the manifest`},
		{"duplicate directory", func(es []entry) []entry {
			d := entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "probes/", Mode: 0o755}}
			return append(es, d, d)
		}, bundle.ErrUnsafeEntry, `tar entry "probes/": unsafe tar entry: duplicate entry`},
		{"endless directories", func(es []entry) []entry {
			for i := range 1000 {
				es = append(es, entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("d%d/", i), Mode: 0o755}})
			}
			return es
		}, bundle.ErrInvalid, `tar: more than 1000 entries`},
		{"oversize entry", func(es []entry) []entry {
			es[1] = file("image.tflite", "image encoder bytes, and then a great deal more")
			return es
		}, bundle.ErrSizeMismatch, `image.file "image.tflite": size mismatch: manifest 19 bytes, tar entry 47 bytes`},
		{"hash mismatch", func(es []entry) []entry {
			es[2] = file("text.tflite", "text encoder byteZ")
			return es
		}, bundle.ErrHashMismatch, `text.file "text.tflite": sha256 mismatch: manifest ` + sha("text encoder bytes") + ", file " + sha("text encoder byteZ")},
		{"missing file", func(es []entry) []entry { return es[:4] },
			bundle.ErrMissingFile, `probes[1].file "probes/red.png": missing file`},
		{"no manifest", func(es []entry) []entry { return nil },
			bundle.ErrMissingFile, `manifest.json: missing file`},
		{"manifest not first", func(es []entry) []entry {
			es[0], es[1] = es[1], es[0]
			return es
		}, bundle.ErrInvalid, `tar: manifest.json must be the first file, got "image.tflite"`},
		{"oversize manifest", func(es []entry) []entry {
			return []entry{file("manifest.json", strings.Repeat(" ", bundle.MaxManifestSize+1))}
		}, bundle.ErrInvalid, `manifest.json: 1048577 bytes exceeds the limit of 1048576`},
		{"invalid manifest", func(es []entry) []entry {
			es[0] = file("manifest.json", strings.Replace(es[0].data, `"version": 3`, `"version": 0`, 1))
			return es
		}, bundle.ErrInvalid, `version: want an integer >= 1, got 0`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "x")
			_, err := bundle.Extract(bytes.NewReader(makeTar(t, c.edit(goodEntries(t)))), dst)
			if !errors.Is(err, c.is) || !errors.Is(err, bundle.ErrInvalid) {
				t.Fatalf("Extract: %v\nwant errors.Is %v and ErrInvalid", err, c.is)
			}
			if lines := strings.Split(err.Error(), "\n"); len(lines) != 2 || lines[1] != c.want {
				t.Errorf("\n got  %q\n want %q", err.Error(), c.want)
			}
			if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Extract left %s behind: %v", dst, err)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Errorf("Extract wrote beside its directory: %v", ents)
			}
		})
	}
}

func TestOpenTruncatedTar(t *testing.T) {
	dir, _ := writeBundle(t)
	src, err := bundle.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, gz := range []bool{false, true} {
		data := tarOf(t, src, gz)
		path := filepath.Join(t.TempDir(), "b.tar")
		os.WriteFile(path, data[:len(data)/2], 0o644)
		if _, err := bundle.Open(path); !errors.Is(err, bundle.ErrInvalid) {
			t.Errorf("gzip %v: Open of a truncated tar: %v, want ErrInvalid", gz, err)
		}
	}
}

// A tar extracted by Open goes to a temporary directory that a failure
// removes as well.
func TestOpenTarFailureCleansUp(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	es := goodEntries(t)
	path := filepath.Join(t.TempDir(), "b.tar")
	os.WriteFile(path, makeTar(t, append(es, file("../evil", "x"))), 0o644)
	if _, err := bundle.Open(path); !errors.Is(err, bundle.ErrUnsafeEntry) {
		t.Fatalf("Open: %v", err)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("left in TMPDIR: %v", ents)
	}
}

// A signed bundle's manifest.sig is carried, unchecked, from directory to
// tar and back: WriteTar writes it right after manifest.json, Extract and
// Open accept it there and write it out, and a directory with one opens.
func TestSignatureCarried(t *testing.T) {
	dir, _ := writeBundle(t)
	sig := []byte("sightd-bundle-signature 1\n(checked by package ota)\n")
	if err := os.WriteFile(filepath.Join(dir, bundle.SignatureName), sig, 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := bundle.Open(dir)
	if err != nil {
		t.Fatalf("Open of a directory with manifest.sig: %v", err)
	}
	for _, gz := range []bool{false, true} {
		data := tarOf(t, src, gz)
		if !gz {
			es := readEntries(t, data)
			if len(es) != 6 || es[0].hdr.Name != "manifest.json" || es[1].hdr.Name != "manifest.sig" || es[1].data != string(sig) {
				t.Fatalf("WriteTar: %d entries, second %q", len(es), es[1].hdr.Name)
			}
		}
		b, err := bundle.Extract(bytes.NewReader(data), filepath.Join(t.TempDir(), "x"))
		if err != nil {
			t.Fatalf("gzip %v: Extract: %v", gz, err)
		}
		if got, err := os.ReadFile(b.Path(bundle.SignatureName)); err != nil || !bytes.Equal(got, sig) {
			t.Errorf("gzip %v: extracted manifest.sig %q, %v", gz, got, err)
		}
		path := filepath.Join(t.TempDir(), "b.tar")
		os.WriteFile(path, data, 0o644)
		ob, err := bundle.Open(path)
		if err != nil {
			t.Fatalf("gzip %v: Open of a signed tar: %v", gz, err)
		}
		// Written out again, the signature is still there.
		if again := tarOf(t, ob, false); !bytes.Equal(again, tarOf(t, src, false)) {
			t.Errorf("gzip %v: tar of the extracted bundle differs", gz)
		}
		ob.Close()
	}
	// WriteSignedTar: nil leaves the signature out, whatever the directory
	// holds; another one replaces it.
	var buf bytes.Buffer
	if err := src.WriteSignedTar(&buf, nil); err != nil {
		t.Fatal(err)
	}
	if es := readEntries(t, buf.Bytes()); len(es) != 5 || es[1].hdr.Name != "image.tflite" {
		t.Errorf("WriteSignedTar(nil) wrote %d entries", len(es))
	}
	buf.Reset()
	if err := src.WriteSignedTar(&buf, []byte("other")); err != nil {
		t.Fatal(err)
	}
	if es := readEntries(t, buf.Bytes()); es[1].hdr.Name != "manifest.sig" || es[1].data != "other" {
		t.Errorf("WriteSignedTar(other) wrote %q %q", es[1].hdr.Name, es[1].data)
	}
	// An unsigned directory still gives an unsigned tar.
	plain, _ := writeBundle(t)
	pb, _ := bundle.Open(plain)
	if es := readEntries(t, tarOf(t, pb, false)); len(es) != 5 {
		t.Errorf("WriteTar of an unsigned bundle wrote %d entries", len(es))
	}
}

func readEntries(t *testing.T, data []byte) []entry {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var es []entry
	for {
		hdr, err := tr.Next()
		if err != nil {
			return es
		}
		b, _ := io.ReadAll(tr)
		es = append(es, entry{*hdr, string(b)})
	}
}

func TestExtractRefusesSignature(t *testing.T) {
	sig := file("manifest.sig", "signature")
	cases := []struct {
		name string
		edit func(es []entry) []entry
		is   error
		want string
	}{
		{"signature after a file", func(es []entry) []entry { return append(es, sig) },
			bundle.ErrUnsafeEntry, `tar entry "manifest.sig": unsafe tar entry: must come right after manifest.json`},
		{"signature first", func(es []entry) []entry { return append([]entry{sig}, es...) },
			bundle.ErrUnsafeEntry, `tar entry "manifest.sig": unsafe tar entry: must come right after manifest.json`},
		{"two signatures", func(es []entry) []entry { return append([]entry{es[0], sig, sig}, es[1:]...) },
			bundle.ErrUnsafeEntry, `tar entry "manifest.sig": unsafe tar entry: duplicate entry`},
		{"oversize signature", func(es []entry) []entry {
			return append([]entry{es[0], file("manifest.sig", strings.Repeat("x", bundle.MaxSignatureSize+1))}, es[1:]...)
		}, bundle.ErrInvalid, `manifest.sig: 16385 bytes exceeds the limit of 16384`},
		{"signature as a symlink", func(es []entry) []entry {
			l := entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "manifest.sig", Linkname: "/etc/shadow"}}
			return append([]entry{es[0], l}, es[1:]...)
		}, bundle.ErrUnsafeEntry, `tar entry "manifest.sig": unsafe tar entry: not a regular file or directory (symlink)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "x")
			_, err := bundle.Extract(bytes.NewReader(makeTar(t, c.edit(goodEntries(t)))), dst)
			if !errors.Is(err, c.is) || !errors.Is(err, bundle.ErrInvalid) {
				t.Fatalf("Extract: %v\nwant errors.Is %v and ErrInvalid", err, c.is)
			}
			if lines := strings.Split(err.Error(), "\n"); len(lines) != 2 || lines[1] != c.want {
				t.Errorf("\n got  %q\n want %q", err.Error(), c.want)
			}
			if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Extract left %s behind: %v", dst, err)
			}
		})
	}
	// With a signature in place, the files that follow are checked as ever.
	es := goodEntries(t)
	es = append([]entry{es[0], sig}, es[1:]...)
	es[2] = file("image.tflite", "image encoder byteZ")
	if _, err := bundle.Extract(bytes.NewReader(makeTar(t, es)), filepath.Join(t.TempDir(), "x")); !errors.Is(err, bundle.ErrHashMismatch) {
		t.Errorf("signed tar with a bad file: %v, want ErrHashMismatch", err)
	}
}

// No manifest may name the signature's file: Extract would take one for
// the other.
func TestParseRefusesSignatureName(t *testing.T) {
	m := parseExample(t)
	m.Text.File = bundle.SignatureName
	err := m.Validate()
	if !errors.Is(err, bundle.ErrInvalid) || !strings.Contains(err.Error(), `text.file: "manifest.sig" is reserved for the bundle's signature`) {
		t.Fatalf("Validate: %v", err)
	}
}

// Files lists what the manifest names, with pointers into it.
func TestFiles(t *testing.T) {
	m := parseExample(t)
	fs := m.Files()
	var got []string
	for _, f := range fs {
		got = append(got, f.String())
	}
	want := []string{`image.file "image.tflite"`, `text.file "text.tflite"`, `tokenizer.file "vocab.txt.gz"`, `probes[1].file "probes/red.png"`}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Files: %q\nwant %q", got, want)
	}
	fs[1].Ref.Size = 42
	if m.Text.Size != 42 {
		t.Error("Files does not point into the manifest")
	}
}
