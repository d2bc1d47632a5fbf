package ota_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sightd/sightd/ota"
	"github.com/sightd/sightd/quant/bundle"
	"github.com/sightd/sightd/quant/modelgen/demo"
)

// testKey is a fixed signing key, so that signatures (Ed25519 is
// deterministic) and fuzz seeds are reproducible.
func testKey(t testing.TB, name string) *ota.PrivateKey {
	t.Helper()
	seed := sha256.Sum256([]byte("sightd ota test key " + name))
	k, err := ota.GenerateKey(bytes.NewReader(seed[:]))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// far is an expiry that the tests' clocks never reach.
var far = time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)

// tinyManifest is a valid manifest over small files, for the many bundles
// the table tests build; Pack fills in the sizes and hashes.
func tinyManifest(version int64) *bundle.Manifest {
	out := bundle.Tensor{Shape: []int{1, 4}, DType: bundle.Float32}
	return &bundle.Manifest{
		Format: bundle.Format, Name: "tiny", Version: version, EmbeddingDim: 4, LogitScale: 100,
		Image: bundle.ImageTower{
			FileRef: bundle.FileRef{File: "image.tflite"},
			Input: bundle.ImageInput{Tensor: bundle.Tensor{Shape: []int{1, 8, 8, 3}, DType: bundle.UInt8},
				Color: bundle.ColorRGB, Resize: bundle.ResizeSquash},
			Output: out,
		},
		Text: bundle.TextTower{
			FileRef: bundle.FileRef{File: "text.tflite"},
			Input:   bundle.Tensor{Shape: []int{1, 8}, DType: bundle.Int32},
			Output:  out,
		},
		Tokenizer: bundle.Tokenizer{Kind: bundle.TokenizerCLIPBPE, FileRef: bundle.FileRef{File: "vocab.txt.gz"}, Merges: 10, ContextLength: 8},
		Probes: []bundle.Probe{{Tower: bundle.TowerImage, FileRef: bundle.FileRef{File: "probes/red.png"},
			Expected: []float32{1, 0, 0, 0}, MinCosine: 0.9}},
	}
}

func tinyFiles() map[string][]byte {
	return map[string][]byte{
		"image.tflite":   bytes.Repeat([]byte("image encoder "), 100),
		"text.tflite":    bytes.Repeat([]byte("text encoder "), 50),
		"vocab.txt.gz":   []byte("vocabulary"),
		"probes/red.png": []byte("a red picture"),
	}
}

// tinyDir writes the tiny bundle of a version into a new directory.
func tinyDir(t testing.TB, version int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tiny")
	if err := bundle.Write(dir, tinyManifest(version), tinyFiles()); err != nil {
		t.Fatal(err)
	}
	return dir
}

// demoDir builds the demo bundle (real encoders) of a version.
func demoDir(t testing.TB, version int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "demo")
	if err := demo.Build(dir, demo.Options{Version: version}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// packed is Pack of dir.
func packed(t testing.TB, dir string, gz bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := ota.Pack(dir, &buf, gz); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// signed is dir packed and signed with key.
func signed(t testing.TB, dir string, key *ota.PrivateKey, gz bool) []byte {
	t.Helper()
	var out bytes.Buffer
	if _, err := ota.SignTar(bytes.NewReader(packed(t, dir, gz)), &out, key, far); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// entry is one tar member, for archives edited by hand.
type entry struct {
	hdr  tar.Header
	data []byte
}

func reg(name string, data []byte) entry {
	return entry{tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644}, data}
}

// entries reads a plain tar.
func entries(t testing.TB, data []byte) []entry {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var es []entry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return es
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, entry{*hdr, b})
	}
}

func makeTar(t testing.TB, es []entry, gz bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
	for _, e := range es {
		if err := tw.WriteHeader(&e.hdr); err != nil {
			t.Fatalf("%s: %v", e.hdr.Name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatalf("%s: %v", e.hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func policy(keys ...*ota.PrivateKey) ota.Policy {
	var r ota.Keyring
	for _, k := range keys {
		r = append(r, k.Public())
	}
	return ota.Policy{Keys: r, Floor: 0, Now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// The demo bundle, with real encoders, packed, signed and verified, plain
// and gzip'ed; its files come out of VerifyTar as the manifest lists them.
func TestVerifyTarDemo(t *testing.T) {
	dir := demoDir(t, 7)
	key := testKey(t, "a")
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", gz), func(t *testing.T) {
			data := signed(t, dir, key, gz)
			if gz && (data[0] != 0x1f || data[1] != 0x8b) {
				t.Fatal("SignTar did not keep the gzip compression")
			}
			v, err := ota.VerifyTar(bytes.NewReader(data), policy(key))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := os.ReadFile(filepath.Join(dir, bundle.ManifestName))
			if !bytes.Equal(v.ManifestBytes, raw) {
				t.Error("ManifestBytes are not manifest.json's bytes")
			}
			if v.Manifest.Name != demo.Name || v.Manifest.Version != 7 || len(v.Manifest.Files()) != 5 {
				t.Errorf("manifest %q version %d, %d files", v.Manifest.Name, v.Manifest.Version, len(v.Manifest.Files()))
			}
			want := ota.Signed{KeyID: key.ID, Name: demo.Name, Version: 7, Expires: far, ManifestSHA256: fmt.Sprintf("%x", sha256.Sum256(raw))}
			if *v.Signed != want {
				t.Errorf("Signed %+v\nwant %+v", *v.Signed, want)
			}
			if size := ota.MaxTarSize(v, len(signatureOf(t, data))); int64(len(data)) > size {
				t.Errorf("tar of %d bytes over MaxTarSize %d", len(data), size)
			}
			// bundle.Extract carries the signature into the directory.
			b, err := bundle.Extract(bytes.NewReader(data), filepath.Join(t.TempDir(), "x"))
			if err != nil {
				t.Fatal(err)
			}
			sig, err := os.ReadFile(b.Path(bundle.SignatureName))
			if err != nil || !bytes.Equal(sig, signatureOf(t, data)) {
				t.Errorf("extracted manifest.sig: %v", err)
			}
		})
	}
}

func signatureOf(t testing.TB, data []byte) []byte {
	t.Helper()
	_, sig, err := ota.ReadHead(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// Every way a bundle tar can be bad is refused with its sentinel and
// ErrInvalid, plain and gzip'ed.
func TestVerifyTarRefuses(t *testing.T) {
	key, other := testKey(t, "a"), testKey(t, "b")
	dir := tinyDir(t, 5)
	good := entries(t, signed(t, dir, key, false))
	names := func(es []entry) (s []string) {
		for _, e := range es {
			s = append(s, e.hdr.Name)
		}
		return s
	}
	if got := strings.Join(names(good), " "); got != "manifest.json manifest.sig image.tflite text.tflite vocab.txt.gz probes/red.png" {
		t.Fatalf("signed tar holds %s", got)
	}
	otherSig := entries(t, signed(t, dir, other, false))[1]
	link := func(typ byte, name, target string) entry {
		return entry{hdr: tar.Header{Typeflag: typ, Name: name, Linkname: target, Mode: 0o777}}
	}
	// A manifest with other bytes (an added space) that means the same.
	respaced := reg("manifest.json", bytes.Replace(good[0].data, []byte(`"name": "tiny"`), []byte(`"name":  "tiny"`), 1))
	older := entries(t, signed(t, tinyDir(t, 4), key, false))
	cases := []struct {
		name  string
		edit  func(es []entry) []entry
		floor int64
		is    error
		want  string // in the message
	}{
		{"flipped byte in a model file", func(es []entry) []entry {
			es[2].data = bytes.Clone(es[2].data)
			es[2].data[100] ^= 1
			return es
		}, 0, bundle.ErrHashMismatch, `image.file "image.tflite": sha256 mismatch`},
		{"file shorter than listed", func(es []entry) []entry {
			es[3] = reg("text.tflite", es[3].data[:10])
			return es
		}, 0, bundle.ErrSizeMismatch, `text.file "text.tflite": size mismatch: manifest 650 bytes, tar entry 10 bytes`},
		{"oversized file", func(es []entry) []entry {
			es[3] = reg("text.tflite", append(bytes.Clone(es[3].data), 'x'))
			return es
		}, 0, bundle.ErrSizeMismatch, `manifest 650 bytes, tar entry 651 bytes`},
		{"wrong key", func(es []entry) []entry { es[1] = otherSig; return es },
			0, ota.ErrUntrustedKey, "key " + other.ID + " (trusted: " + key.ID + ")"},
		{"unsigned", func(es []entry) []entry { return append(es[:1], es[2:]...) },
			0, ota.ErrUnsigned, `the file after manifest.json is "image.tflite", not manifest.sig`},
		{"empty signature", func(es []entry) []entry { es[1] = reg("manifest.sig", nil); return es },
			0, ota.ErrUnsigned, "manifest.sig: bundle is not signed: missing or empty"},
		{"signature after the files", func(es []entry) []entry { return append(append(es[:1:1], es[2:]...), es[1]) },
			0, ota.ErrUnsigned, `not manifest.sig`},
		{"signature over other manifest bytes", func(es []entry) []entry { es[0] = respaced; return es },
			0, ota.ErrBadSignature, "signed for a manifest with sha256"},
		{"signature of another bundle", func(es []entry) []entry { es[1] = older[1]; return es },
			0, ota.ErrBadSignature, "signed for a manifest with sha256"},
		{"version equal to the floor (replay)", func(es []entry) []entry { return es },
			5, ota.ErrOldVersion, `manifest.json: version is not newer than the installed one: "tiny" version 5 is not above 5`},
		{"older version", func(es []entry) []entry { return es },
			6, ota.ErrOldVersion, `version 5 is not above 6`},
		{"dot-dot entry", func(es []entry) []entry { return append(es, reg("../evil", []byte("x"))) },
			0, bundle.ErrUnsafeEntry, `tar entry "../evil": unsafe tar entry: path leaves the bundle directory`},
		{"dot-dot inside", func(es []entry) []entry { return append(es, reg("probes/../../evil", []byte("x"))) },
			0, bundle.ErrUnsafeEntry, `path leaves the bundle directory`},
		{"absolute path", func(es []entry) []entry { return append(es, reg("/etc/cron.d/evil", []byte("x"))) },
			0, bundle.ErrUnsafeEntry, `tar entry "/etc/cron.d/evil": unsafe tar entry: path leaves the bundle directory`},
		{"symlink", func(es []entry) []entry {
			es[2] = link(tar.TypeSymlink, "image.tflite", "/etc/passwd")
			return es
		}, 0, bundle.ErrUnsafeEntry, `tar entry "image.tflite": unsafe tar entry: not a regular file or directory (symlink)`},
		{"hard link", func(es []entry) []entry {
			es[2] = link(tar.TypeLink, "image.tflite", "text.tflite")
			return es
		}, 0, bundle.ErrUnsafeEntry, `not a regular file or directory (hard link)`},
		{"device", func(es []entry) []entry {
			return append(es, entry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}})
		}, 0, bundle.ErrUnsafeEntry, `not a regular file or directory (device)`},
		{"unlisted extra file", func(es []entry) []entry { return append(es, reg("extra.bin", []byte("x"))) },
			0, bundle.ErrUnsafeEntry, `tar entry "extra.bin": unsafe tar entry: not named by the manifest`},
		{"duplicate entry", func(es []entry) []entry { return append(es, es[2]) },
			0, bundle.ErrUnsafeEntry, `tar entry "image.tflite": unsafe tar entry: duplicate entry`},
		{"duplicate through ./", func(es []entry) []entry {
			e := es[3]
			e.hdr.Name = "./text.tflite"
			return append(es, e)
		}, 0, bundle.ErrUnsafeEntry, `tar entry "./text.tflite": unsafe tar entry: duplicate entry`},
		{"second signature", func(es []entry) []entry { return append(es, es[1]) },
			0, bundle.ErrUnsafeEntry, `tar entry "manifest.sig": unsafe tar entry: duplicate entry`},
		{"stray directory", func(es []entry) []entry {
			return append(es, entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "junk/", Mode: 0o755}})
		}, 0, bundle.ErrUnsafeEntry, `tar entry "junk": unsafe tar entry: directory holds no file named by the manifest`},
		{"missing file", func(es []entry) []entry { return es[:5] },
			0, bundle.ErrMissingFile, `probes[0].file "probes/red.png": missing file`},
		{"manifest not first", func(es []entry) []entry {
			es[0], es[2] = es[2], es[0]
			return es
		}, 0, bundle.ErrInvalid, `tar: manifest.json must be the first file, got "image.tflite"`},
		{"no manifest", func(es []entry) []entry { return nil },
			0, bundle.ErrMissingFile, `manifest.json: missing file`},
		{"oversize manifest", func(es []entry) []entry {
			return []entry{reg("manifest.json", bytes.Repeat([]byte(" "), bundle.MaxManifestSize+1))}
		}, 0, bundle.ErrInvalid, `manifest.json: 1048577 bytes exceeds the limit of 1048576`},
		{"oversize signature", func(es []entry) []entry {
			es[1] = reg("manifest.sig", bytes.Repeat([]byte("x"), bundle.MaxSignatureSize+1))
			return es
		}, 0, ota.ErrBadSignature, `manifest.sig: bad signature: 16385 bytes exceeds the limit of 16384`},
		{"endless directories", func(es []entry) []entry {
			for i := range bundle.MaxTarEntries {
				es = append(es, entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("d%d/", i), Mode: 0o755}})
			}
			return es
		}, 0, bundle.ErrInvalid, `tar: more than 1000 entries`},
	}
	for _, c := range cases {
		for _, gz := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/gzip=%v", c.name, gz), func(t *testing.T) {
				es := c.edit(append([]entry(nil), good...))
				p := policy(key)
				p.Floor = c.floor
				_, err := ota.VerifyTar(bytes.NewReader(makeTar(t, es, gz)), p)
				if !errors.Is(err, c.is) || !errors.Is(err, bundle.ErrInvalid) {
					t.Fatalf("VerifyTar: %v\nwant errors.Is %v and ErrInvalid", err, c.is)
				}
				if !strings.Contains(err.Error(), c.want) {
					t.Errorf("error %q\ndoes not say %q", err, c.want)
				}
			})
		}
	}
}

// A signature that expired is refused, at the second.
func TestVerifyTarExpired(t *testing.T) {
	key := testKey(t, "a")
	data := signed(t, tinyDir(t, 5), key, true)
	p := policy(key)
	p.Now = far
	if _, err := ota.VerifyTar(bytes.NewReader(data), p); !errors.Is(err, ota.ErrExpired) || !errors.Is(err, bundle.ErrInvalid) {
		t.Fatalf("at the expiry: %v, want ErrExpired", err)
	}
	p.Now = far.Add(-time.Second)
	if _, err := ota.VerifyTar(bytes.NewReader(data), p); err != nil {
		t.Fatalf("a second before the expiry: %v", err)
	}
}

// A keyring of two keys, as while keys rotate, accepts bundles signed by
// either, and only by them.
func TestVerifyTarKeyRotation(t *testing.T) {
	oldKey, newKey, stranger := testKey(t, "old"), testKey(t, "new"), testKey(t, "stranger")
	dir := tinyDir(t, 2)
	p := policy(oldKey, newKey)
	for _, k := range []*ota.PrivateKey{oldKey, newKey} {
		v, err := ota.VerifyTar(bytes.NewReader(signed(t, dir, k, false)), p)
		if err != nil {
			t.Fatalf("signed by %s: %v", k.ID, err)
		}
		if v.Signed.KeyID != k.ID {
			t.Errorf("Signed.KeyID %s, want %s", v.Signed.KeyID, k.ID)
		}
	}
	if _, err := ota.VerifyTar(bytes.NewReader(signed(t, dir, stranger, false)), p); !errors.Is(err, ota.ErrUntrustedKey) {
		t.Fatalf("signed by a third key: %v, want ErrUntrustedKey", err)
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// An entry far larger than the manifest lists is refused from its header:
// its data is never read. The reader may run ahead by its buffer (bufio's
// 4 KiB, gzip's), never by the oversized file.
func TestVerifyTarOversizedNotRead(t *testing.T) {
	key := testKey(t, "a")
	es := entries(t, signed(t, tinyDir(t, 5), key, false))
	huge := bytes.Repeat([]byte{0x5a}, 8<<20)
	es[2] = reg("image.tflite", huge)
	data := makeTar(t, es, false)
	offset := int64(bytes.Index(data, huge[:4096])) // where its data starts
	if offset < 0 {
		t.Fatal("huge entry not in the tar")
	}
	cr := &countingReader{r: bytes.NewReader(data)}
	_, err := ota.VerifyTar(cr, policy(key))
	if !errors.Is(err, bundle.ErrSizeMismatch) {
		t.Fatalf("VerifyTar: %v, want ErrSizeMismatch", err)
	}
	declared := int64(len(tinyFiles()["image.tflite"]))
	if limit := offset + declared + 1 + 8<<10; cr.n > limit {
		t.Errorf("read %d bytes, want at most %d (data at %d, %d listed)", cr.n, limit, offset, declared)
	}
}

// ReadHead on every prefix of a signed tar, as a downloader sees it: a
// prefix that ends before the signature is complete is io.ErrUnexpectedEOF
// (try again later); once both are in, the head is returned.
func TestReadHeadPartial(t *testing.T) {
	key := testKey(t, "a")
	for _, gz := range []bool{false, true} {
		data := signed(t, tinyDir(t, 5), key, gz)
		manifest, sig, err := ota.ReadHead(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		complete := -1
		for n := 0; n <= len(data); n++ {
			m, s, err := ota.ReadHead(bytes.NewReader(data[:n]))
			if err != nil {
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("gzip %v: prefix of %d bytes: %v, want io.ErrUnexpectedEOF", gz, n, err)
				}
				if complete >= 0 {
					t.Fatalf("gzip %v: prefix of %d bytes fails after %d succeeded: %v", gz, n, complete, err)
				}
				continue
			}
			if !bytes.Equal(m, manifest) || !bytes.Equal(s, sig) {
				t.Fatalf("gzip %v: prefix of %d bytes gives another head", gz, n)
			}
			if complete < 0 {
				complete = n
			}
		}
		// Plain: complete as soon as the signature's last byte is in.
		if want := 512 + (len(manifest)+511)/512*512 + 512 + len(sig); !gz && complete != want {
			t.Errorf("plain head complete at %d bytes, want %d", complete, want)
		}
		if complete < 0 || (!gz && complete > 4*512+len(manifest)+len(sig)) {
			t.Errorf("gzip %v: head complete at %d bytes of %d", gz, complete, len(data))
		}
	}
}

// A tar cut short is refused, wherever the cut, even where archive/tar
// sees a clean end (at an entry boundary): the end-of-archive blocks are
// required.
func TestVerifyTarTruncated(t *testing.T) {
	key := testKey(t, "a")
	for _, gz := range []bool{false, true} {
		data := signed(t, tinyDir(t, 5), key, gz)
		cuts := []int{len(data) / 2, len(data) - 1, len(data) - 1024, len(data) - 1025}
		if gz {
			// In the deflate data, and in the gzip trailer (CRC, length).
			cuts = []int{len(data) / 2, len(data) - 9, len(data) - 1}
		}
		for _, n := range cuts {
			if _, err := ota.VerifyTar(bytes.NewReader(data[:n]), policy(key)); !errors.Is(err, bundle.ErrInvalid) {
				t.Errorf("gzip %v: cut at %d of %d: %v, want ErrInvalid", gz, n, len(data), err)
			}
		}
	}
	// Plain, cut right after the last file's data: a clean entry boundary.
	data := signed(t, tinyDir(t, 5), key, false)
	end := len(data)
	for end > 0 && data[end-1] == 0 {
		end--
	}
	end = (end + 511) / 512 * 512
	_, err := ota.VerifyTar(bytes.NewReader(data[:end]), policy(key))
	if !errors.Is(err, io.ErrUnexpectedEOF) || !errors.Is(err, bundle.ErrInvalid) {
		t.Fatalf("cut at the end of the last entry: %v, want io.ErrUnexpectedEOF and ErrInvalid", err)
	}
}

// An I/O failure of the reader is passed on, not taken for a bad bundle.
func TestVerifyTarReadError(t *testing.T) {
	key := testKey(t, "a")
	data := signed(t, tinyDir(t, 5), key, false)
	boom := errors.New("disk on fire")
	r := io.MultiReader(bytes.NewReader(data[:3000]), iotestErr{boom})
	_, err := ota.VerifyTar(r, policy(key))
	if !errors.Is(err, boom) || errors.Is(err, bundle.ErrInvalid) {
		t.Fatalf("VerifyTar: %v, want the reader's error and not ErrInvalid", err)
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

// Archives made by GNU tar, with directory entries, "./" names and pax
// headers, verify, and stay within MaxTarSize, gzip'ed too.
func TestVerifyTarGNU(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Fatalf("GNU tar is needed: %v", err)
	}
	key := testKey(t, "a")
	dir := tinyDir(t, 5)
	sig := signatureOf(t, signed(t, dir, key, false))
	if err := os.WriteFile(filepath.Join(dir, bundle.SignatureName), sig, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		is   error // nil: verifies
	}{
		{"b.tar", []string{"-cf", "OUT", "manifest.json", "manifest.sig", "image.tflite", "text.tflite", "vocab.txt.gz", "probes"}, nil},
		{"b.tar.gz", []string{"--format=pax", "-czf", "OUT", "./manifest.json", "./manifest.sig", "./image.tflite", "./text.tflite", "./vocab.txt.gz", "./probes"}, nil},
		// A common slip: "." lists the manifest and signature again.
		{"dup.tar", []string{"-cf", "OUT", "manifest.json", "manifest.sig", "."}, bundle.ErrUnsafeEntry},
	}
	for _, c := range cases {
		out := filepath.Join(t.TempDir(), c.name)
		args := append([]string{"-C", dir}, c.args...)
		for i := range args {
			if args[i] == "OUT" {
				args[i] = out
			}
		}
		if msg, err := exec.Command("tar", args...).CombinedOutput(); err != nil {
			t.Fatalf("tar %v: %v\n%s", args, err, msg)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		v, err := ota.VerifyTar(bytes.NewReader(data), policy(key))
		if c.is != nil {
			if !errors.Is(err, c.is) {
				t.Errorf("%s: %v, want %v", c.name, err, c.is)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if max := ota.MaxTarSize(v, len(sig)); int64(len(data)) > max {
			t.Errorf("%s: %d bytes over MaxTarSize %d", c.name, len(data), max)
		}
	}
}

// MaxTarSize holds for incompressible files gzip'ed, the worst case.
func TestMaxTarSizeIncompressible(t *testing.T) {
	files := tinyFiles()
	files["image.tflite"] = pseudoRandom(3 << 20)
	dir := filepath.Join(t.TempDir(), "b")
	if err := bundle.Write(dir, tinyManifest(1), files); err != nil {
		t.Fatal(err)
	}
	key := testKey(t, "a")
	for _, gz := range []bool{false, true} {
		data := signed(t, dir, key, gz)
		v, err := ota.VerifyTar(bytes.NewReader(data), policy(key))
		if err != nil {
			t.Fatal(err)
		}
		if max := ota.MaxTarSize(v, len(signatureOf(t, data))); int64(len(data)) > max {
			t.Errorf("gzip %v: %d bytes over MaxTarSize %d", gz, len(data), max)
		} else if slack := max - int64(len(data)); slack > 200<<10 {
			t.Errorf("gzip %v: MaxTarSize %d leaves %d bytes of slack over %d: too loose to cap a download", gz, max, slack, len(data))
		}
	}
}

// BenchmarkVerifyTar: the demo bundle (small: fixed costs, the signature
// and the manifest's parse, dominate) and an 8 MiB one (hashing dominates).
func BenchmarkVerifyTar(b *testing.B) {
	key := testKey(b, "a")
	files := tinyFiles()
	files["image.tflite"] = pseudoRandom(8 << 20)
	large := filepath.Join(b.TempDir(), "large")
	if err := bundle.Write(large, tinyManifest(1), files); err != nil {
		b.Fatal(err)
	}
	for _, bb := range []struct {
		name string
		dir  string
	}{{"demo", demoDir(b, 1)}, {"8MiB", large}} {
		for _, gz := range []bool{false, true} {
			data := signed(b, bb.dir, key, gz)
			b.Run(fmt.Sprintf("%s/gzip=%v", bb.name, gz), func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					if _, err := ota.VerifyTar(bytes.NewReader(data), policy(key)); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// pseudoRandom is n incompressible bytes, the same every time.
func pseudoRandom(n int) []byte {
	out := make([]byte, 0, n+32)
	for i := 0; len(out) < n; i++ {
		sum := sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(i >> 16), byte(i >> 24)})
		out = append(out, sum[:]...)
	}
	return out[:n]
}

// fuzzFiles and fuzzDir are the smallest bundle, for fuzzing.
func fuzzFiles() map[string][]byte {
	return map[string][]byte{"image.tflite": []byte("i"), "text.tflite": []byte("t"), "vocab.txt.gz": []byte("v"), "probes/red.png": []byte("p")}
}

func fuzzDir(t testing.TB) string {
	t.Helper()
	m := tinyManifest(1)
	m.Name = "fuzz"
	dir := filepath.Join(t.TempDir(), "fuzz")
	if err := bundle.Write(dir, m, fuzzFiles()); err != nil {
		t.Fatal(err)
	}
	return dir
}

func fuzzManifest(t testing.TB) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fuzzDir(t), bundle.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// FuzzVerifyTar: ReadHead and VerifyTar on arbitrary bytes never panic and
// refuse only as a bad bundle (bytes.Reader has no I/O errors); a tar that
// VerifyTar accepts carries the fuzz bundle's manifest exactly as signed
// (the fuzzer cannot forge a signature), and its head reads back the same.
func FuzzVerifyTar(f *testing.F) {
	key := testKey(f, "fuzz")
	dir := fuzzDir(f)
	f.Add(signed(f, dir, key, false))
	f.Add(signed(f, dir, key, true))
	manifest := fuzzManifest(f)
	p := policy(key)
	f.Fuzz(func(t *testing.T, data []byte) {
		hm, hs, herr := ota.ReadHead(bytes.NewReader(data))
		if herr != nil && !errors.Is(herr, bundle.ErrInvalid) {
			t.Fatalf("ReadHead: not ErrInvalid: %v", herr)
		}
		v, err := ota.VerifyTar(bytes.NewReader(data), p)
		if err != nil {
			if !errors.Is(err, bundle.ErrInvalid) {
				t.Fatalf("VerifyTar: not ErrInvalid: %v", err)
			}
			return
		}
		if herr != nil || !bytes.Equal(hm, manifest) || !bytes.Equal(v.ManifestBytes, manifest) {
			t.Fatalf("accepted a tar whose head is not the signed manifest (ReadHead: %v)", herr)
		}
		if _, err := p.CheckHead(hm, hs); err != nil {
			t.Fatalf("VerifyTar accepted a head that CheckHead refuses: %v", err)
		}
	})
}

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the fuzz seed corpus in testdata/fuzz")

// fuzzSeeds are the seed corpus of each fuzz target, made from real keys,
// signatures and bundles. Seeds named valid_* are accepted, the others
// refused.
func fuzzSeeds(t *testing.T) map[string]map[string][]byte {
	key, other, stranger := testKey(t, "fuzz"), testKey(t, "other"), testKey(t, "stranger")
	pub := key.Public().Marshal()
	manifest := fuzzManifest(t)
	sign := func(m []byte, k *ota.PrivateKey, expires time.Time) []byte {
		s, err := ota.Sign(m, k, expires)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	sig := sign(manifest, key, far)
	dir := fuzzDir(t)
	good := signed(t, dir, key, false)
	es := entries(t, good)
	edited := func(edit func([]entry) []entry) []byte {
		return makeTar(t, edit(append([]entry(nil), es...)), false)
	}
	m2 := bytes.Replace(manifest, []byte(`"version": 1`), []byte(`"version": 2`), 1)
	return map[string]map[string][]byte{
		"FuzzParsePublicKey": {
			"valid_line":      pub,
			"valid_commented": append([]byte("# release key of 2027\n\n"), pub...),
			"valid_bare":      bytes.TrimSpace(pub),
			"private_key":     key.Marshal(),
			"ssh_key":         []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEuRmUlhWz0Ri7YFUnGbWv6PHM4ZxZ7Cb8Dq5pcqoVLR user@host\n"),
			"wrong_id":        bytes.Replace(pub, []byte(key.ID), []byte(other.ID), 1),
			"two_keys":        append(bytes.Clone(pub), other.Public().Marshal()...),
		},
		"FuzzParsePrivateKey": {
			"valid_key":  key.Marshal(),
			"valid_bare": []byte(strings.Split(string(key.Marshal()), "\n")[1]),
			"public_key": pub,
			"wrong_id":   bytes.Replace(key.Marshal(), []byte(" "+key.ID+" "), []byte(" "+other.ID+" "), 1),
		},
		"FuzzVerifySignature": {
			"valid_sig":         sig,
			"valid_rotated_key": sign(manifest, other, far),
			"expired":           sign(manifest, key, time.Date(2029, 6, 1, 0, 0, 0, 0, time.UTC)),
			"untrusted_key":     sign(manifest, stranger, far),
			"other_manifest":    sign(m2, key, far),
			"crlf":              bytes.ReplaceAll(sig, []byte("\n"), []byte("\r\n")),
			"truncated":         sig[:len(sig)/2],
			"version_edited":    bytes.Replace(sig, []byte("version 1\n"), []byte("version 2\n"), 1),
			"empty":             {},
		},
		"FuzzVerifyTar": {
			"valid_plain": good,
			"valid_gzip":  signed(t, dir, key, true),
			"valid_dotslash": edited(func(es []entry) []entry {
				for i := range es {
					es[i].hdr.Name = "./" + es[i].hdr.Name
				}
				return append([]entry{{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}}}, es...)
			}),
			"unsigned":      packed(t, dir, false),
			"untrusted_key": signed(t, dir, stranger, false),
			"dotdot_entry":  edited(func(es []entry) []entry { return append(es, reg("../evil", []byte("x"))) }),
			"symlink_entry": edited(func(es []entry) []entry {
				es[2] = entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "image.tflite", Linkname: "/etc/passwd"}}
				return es
			}),
			"extra_file":    edited(func(es []entry) []entry { return append(es, reg("extra", []byte("x"))) }),
			"hash_mismatch": edited(func(es []entry) []entry { es[2] = reg("image.tflite", []byte("I")); return es }),
			"truncated":     good[:len(good)/2],
		},
	}
}

// The fuzz seed corpus is there, in the format go test reads, and each
// seed is accepted or refused as its name says, so that the fuzzers start
// from inputs that reach every check. -update-seeds writes it anew.
func TestFuzzSeeds(t *testing.T) {
	seeds := fuzzSeeds(t)
	if *updateSeeds {
		for target, files := range seeds {
			d := filepath.Join("testdata", "fuzz", target)
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, data := range files {
				corpus := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(data)))
				if err := os.WriteFile(filepath.Join(d, name), []byte(corpus), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	key := testKey(t, "fuzz")
	keys := ota.Keyring{testKey(t, "other").Public(), key.Public()}
	manifest := fuzzManifest(t)
	check := map[string]func([]byte) error{
		"FuzzParsePublicKey":  func(b []byte) error { _, err := ota.ParsePublicKey(b); return err },
		"FuzzParsePrivateKey": func(b []byte) error { _, err := ota.ParsePrivateKey(b); return err },
		"FuzzVerifySignature": func(b []byte) error { _, err := keys.Verify(manifest, b, now2030); return err },
		"FuzzVerifyTar":       func(b []byte) error { _, err := ota.VerifyTar(bytes.NewReader(b), policy(key)); return err },
	}
	for target, files := range seeds {
		for name := range files {
			path := filepath.Join("testdata", "fuzz", target, name)
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("%v (run go test -run TestFuzzSeeds -update-seeds)", err)
				continue
			}
			lit, ok := strings.CutPrefix(string(raw), "go test fuzz v1\n[]byte(")
			lit, ok2 := strings.CutSuffix(lit, ")\n")
			data, err := strconv.Unquote(lit)
			if !ok || !ok2 || err != nil {
				t.Errorf("%s: not a []byte corpus entry (%v)", path, err)
				continue
			}
			err = check[target]([]byte(data))
			if valid := strings.HasPrefix(name, "valid_"); valid != (err == nil) {
				t.Errorf("%s: valid %v, but: %v", path, valid, err)
			}
		}
	}
}
