// Package bundle is sightd's model bundle format: a directory, or a tar of one
// (optionally gzip-compressed), holding manifest.json and the files it names:
// the image and text encoders (.tflite), the tokenizer's vocabulary and
// optional probe inputs.
//
// Parse checks a manifest without touching files; Open and Extract also check
// that every named file is present with its declared size and SHA-256;
// CheckModels loads both encoders and checks their tensors against the
// manifest. Every problem found is reported at once, under ErrInvalid.
//
// In the tar form manifest.json must be the first file (directory entries may
// come before it), so that a bundle can be checked while it streams. A
// signed bundle has manifest.sig right after it (package ota checks it;
// this package only carries it). Each later entry must be a regular file
// named by the manifest, exactly as large as the manifest says and hashed
// as it is written. Bundle.WriteTar writes this form; with GNU tar, list
// manifest.json (and manifest.sig) first:
//
//	tar -C dir -czf bundle.tar.gz manifest.json manifest.sig image.tflite text.tflite vocab.txt.gz
package bundle

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Sentinel errors; match them with errors.Is. Every error that says the
// bundle itself is bad wraps ErrInvalid, whatever else it wraps, so that a
// caller can tell a bad bundle from an I/O failure.
var (
	ErrInvalid       = errors.New("invalid model bundle")
	ErrFormat        = errors.New("unsupported manifest format")
	ErrMissingFile   = errors.New("missing file")
	ErrSizeMismatch  = errors.New("size mismatch")
	ErrHashMismatch  = errors.New("sha256 mismatch")
	ErrUnsafeEntry   = errors.New("unsafe tar entry")
	ErrModelMismatch = errors.New("model does not match the manifest")
)

// Bundle is a verified bundle on disk.
type Bundle struct {
	Dir      string // absolute
	Manifest *Manifest
	temp     bool // Dir was made by Open; Close removes it
}

// Path is the absolute path of name, a slash-separated path as the manifest
// spells it, or "" when name would leave the bundle directory.
func (b *Bundle) Path(name string) string {
	if !localName(name) {
		return ""
	}
	return filepath.Join(b.Dir, filepath.FromSlash(name))
}

// Close removes the temporary directory Open extracted a tar into; it leaves
// a bundle directory alone.
func (b *Bundle) Close() error {
	if !b.temp {
		return nil
	}
	b.temp = false
	return os.RemoveAll(b.Dir)
}

// Open opens the bundle at path: a directory, or a tar (optionally gzip'ed)
// that it extracts into a new temporary directory, removed by Close. It
// checks the manifest and the size and SHA-256 of every file it names.
func Open(path string) (*Bundle, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if fi.IsDir() {
		return openDir(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	tmp, err := os.MkdirTemp("", "sightd-bundle-")
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	b, err := Extract(f, tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("bundle %s: %w", path, err)
	}
	b.temp = true
	return b, nil
}

func openDir(dir string) (*Bundle, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	// The root keeps symlinks inside the bundle from reaching outside it.
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	defer root.Close()
	m, err := readManifest(root)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", abs, err)
	}
	var p []error
	for _, nf := range m.files() {
		if err := verifyFile(root, nf); err != nil {
			p = append(p, err)
		}
	}
	if err := invalid(p...); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", abs, err)
	}
	return &Bundle{Dir: abs, Manifest: m}, nil
}

func readManifest(root *os.Root) (*Manifest, error) {
	fi, err := root.Stat(ManifestName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, invalid(fmt.Errorf("%s: %w", ManifestName, ErrMissingFile))
	}
	if err != nil {
		return nil, err
	}
	switch {
	case !fi.Mode().IsRegular(): // opening a fifo would block
		return nil, invalid(fmt.Errorf("%s: not a regular file (%s)", ManifestName, fi.Mode().Type()))
	case fi.Size() > MaxManifestSize:
		return nil, invalid(fmt.Errorf("%s: %d bytes exceeds the limit of %d", ManifestName, fi.Size(), MaxManifestSize))
	}
	f, err := root.Open(ManifestName)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxManifestSize)) // in case it grew
	if err != nil {
		return nil, err
	}
	return Parse(data)
}

// verifyFile checks one named file's type, size and SHA-256.
func verifyFile(root *os.Root, nf namedFile) error {
	name := nf.ref.File
	fi, err := root.Stat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: %w", nf, ErrMissingFile)
	case err != nil:
		return fmt.Errorf("%s: %w", nf, err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s: not a regular file (%s)", nf, fi.Mode().Type())
	case fi.Size() != nf.ref.Size:
		return sizeMismatch(nf, "file", fi.Size())
	}
	f, err := root.Open(name)
	if err != nil {
		return fmt.Errorf("%s: %w", nf, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("%s: %w", nf, err)
	}
	if n != nf.ref.Size {
		return sizeMismatch(nf, "file", n) // it changed under us
	}
	return checkSum(nf, h)
}

func sizeMismatch(nf namedFile, what string, got int64) error {
	return fmt.Errorf("%s: %w: manifest %d bytes, %s %d bytes", nf, ErrSizeMismatch, nf.ref.Size, what, got)
}

func checkSum(nf namedFile, h hash.Hash) error {
	if got := hex.EncodeToString(h.Sum(nil)); got != nf.ref.SHA256 {
		return fmt.Errorf("%s: %w: manifest %s, file %s", nf, ErrHashMismatch, nf.ref.SHA256, got)
	}
	return nil
}

// Extract reads a bundle tar, gzip-compressed or not, from r into dir, which
// must not exist or be empty, checking it as it streams (see the package
// documentation), and writes manifest.sig, when the tar has one, unchecked.
// manifest.json is written last, so a directory left by a failure is never a
// bundle; on failure Extract also removes what it wrote.
// The caller owns dir.
func Extract(r io.Reader, dir string) (_ *Bundle, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	created, err := makeEmptyDir(abs)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			clearDir(abs, created)
		}
	}()
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	defer root.Close()
	m, err := extract(r, root)
	if err != nil {
		return nil, err
	}
	return &Bundle{Dir: abs, Manifest: m}, nil
}

func extract(r io.Reader, root *os.Root) (*Manifest, error) {
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, invalid(fmt.Errorf("gzip: %w", err))
		}
		defer zr.Close()
		src = zr
	}
	tr := tar.NewReader(src)

	var (
		m        *Manifest
		raw      []byte
		sig      []byte
		files    int // regular files read
		want     map[string]namedFile
		seen     = map[string]bool{}
		dirs     []string
		unsafeEn = func(name, why string) error {
			return invalid(fmt.Errorf("tar entry %q: %w: %s", name, ErrUnsafeEntry, why))
		}
	)
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, tarErr(err)
		}
		if n == MaxTarEntries {
			// Headers cost no disk; without a cap a small gzip stream
			// could feed us directory entries forever.
			return nil, invalid(fmt.Errorf("tar: more than %d entries", MaxTarEntries))
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue // pax comment, as git archive writes
		}
		name, err := CheckTarEntry(hdr)
		if err != nil {
			return nil, err
		}
		if name == "." {
			continue
		}
		if seen[name] {
			return nil, unsafeEn(hdr.Name, "duplicate entry")
		}
		seen[name] = true
		if hdr.Typeflag == tar.TypeDir {
			dirs = append(dirs, name) // checked once the manifest is known
			continue
		}
		files++

		if name == SignatureName {
			// Checked by package ota, which knows the trusted keys; kept
			// so that the installed bundle can be checked again.
			if files != 2 {
				return nil, unsafeEn(hdr.Name, "must come right after "+ManifestName)
			}
			if hdr.Size > MaxSignatureSize {
				return nil, invalid(fmt.Errorf("%s: %d bytes exceeds the limit of %d", SignatureName, hdr.Size, MaxSignatureSize))
			}
			if sig, err = io.ReadAll(tr); err != nil {
				return nil, tarErr(err)
			}
			continue
		}
		if m == nil {
			if name != ManifestName {
				return nil, invalid(fmt.Errorf("tar: %s must be the first file, got %q", ManifestName, hdr.Name))
			}
			if hdr.Size > MaxManifestSize {
				return nil, invalid(fmt.Errorf("%s: %d bytes exceeds the limit of %d", ManifestName, hdr.Size, MaxManifestSize))
			}
			if raw, err = io.ReadAll(tr); err != nil {
				return nil, tarErr(err)
			}
			if m, err = Parse(raw); err != nil {
				return nil, err
			}
			want = map[string]namedFile{}
			for _, nf := range m.files() {
				want[nf.ref.File] = nf
			}
			continue
		}

		nf, ok := want[name]
		if !ok {
			return nil, unsafeEn(hdr.Name, "not named by the manifest")
		}
		if hdr.Size != nf.ref.Size {
			return nil, invalid(sizeMismatch(nf, "tar entry", hdr.Size))
		}
		if err := extractFile(root, tr, nf); err != nil {
			return nil, err
		}
	}
	if m == nil {
		return nil, invalid(fmt.Errorf("%s: %w", ManifestName, ErrMissingFile))
	}
	var missing []error
	for _, nf := range m.files() {
		if !seen[nf.ref.File] {
			missing = append(missing, fmt.Errorf("%s: %w", nf, ErrMissingFile))
		}
	}
	if err := invalid(missing...); err != nil {
		return nil, err
	}
	for _, d := range dirs {
		if !slices.ContainsFunc(m.files(), func(nf namedFile) bool { return strings.HasPrefix(nf.ref.File, d+"/") }) {
			return nil, unsafeEn(d, "directory holds no file named by the manifest")
		}
	}
	if sig != nil {
		if err := writeFile(root, SignatureName, sig); err != nil {
			return nil, err
		}
	}
	// The exact bytes, which a signature covers.
	if err := writeFile(root, ManifestName, raw); err != nil {
		return nil, err
	}
	return m, nil
}

// MaxTarEntries bounds a bundle tar's entries: a few files and their
// directories.
const MaxTarEntries = 1000

// CheckTarEntry checks one tar header as Extract does: a name that stays
// inside the bundle directory, and a regular file or a directory (no links,
// devices or fifos). It returns the entry's slash-separated bundle path, "."
// for the bundle directory itself, or an error wrapping ErrInvalid and
// ErrUnsafeEntry. Callers skip pax global headers before calling it.
func CheckTarEntry(hdr *tar.Header) (string, error) {
	name, ok := entryName(hdr.Name)
	if !ok {
		return "", invalid(fmt.Errorf("tar entry %q: %w: path leaves the bundle directory", hdr.Name, ErrUnsafeEntry))
	}
	if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeDir {
		return "", invalid(fmt.Errorf("tar entry %q: %w: not a regular file or directory (%s)", hdr.Name, ErrUnsafeEntry, typeName(hdr.Typeflag)))
	}
	return name, nil
}

// entryName turns a tar entry name into a bundle path: "./" and a trailing
// "/" are dropped, anything that could leave the directory is refused.
func entryName(name string) (string, bool) {
	if strings.HasPrefix(name, "/") || strings.ContainsRune(name, '\\') {
		return "", false
	}
	name = strings.TrimSuffix(strings.TrimPrefix(name, "./"), "/")
	if name == "" || name == "." {
		return ".", true
	}
	return name, localName(name)
}

func typeName(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar, tar.TypeBlock:
		return "device"
	case tar.TypeFifo:
		return "fifo"
	default:
		return fmt.Sprintf("type %q", t)
	}
}

// tarErr marks a malformed or truncated archive as an invalid bundle.
func tarErr(err error) error {
	if errors.Is(err, tar.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) {
		return invalid(fmt.Errorf("tar: %w", err))
	}
	return fmt.Errorf("bundle: read tar: %w", err)
}

// extractFile writes one entry (its size already checked) and verifies its
// hash as it goes.
func extractFile(root *os.Root, r io.Reader, nf namedFile) error {
	name := nf.ref.File
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	h := sha256.New()
	// The tar reader yields exactly the header's size, checked by the caller,
	// or an error.
	_, err = io.Copy(io.MultiWriter(f, h), r)
	if err == nil {
		err = f.Sync() // an update must survive a power cut once switched to
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return tarErr(err)
	}
	return invalid(checkSum(nf, h))
}

func writeFile(root *os.Root, name string, data []byte) error {
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bundle: write %s: %w", name, err)
	}
	return nil
}

// makeEmptyDir creates dir, or accepts it when it exists and is empty;
// created says which, for clearDir.
func makeEmptyDir(dir string) (created bool, err error) {
	err = os.Mkdir(dir, 0o755)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return false, fmt.Errorf("bundle: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("bundle: %w", err)
	}
	if len(ents) > 0 {
		return false, fmt.Errorf("bundle: %s is not empty", dir)
	}
	return false, nil
}

// clearDir undoes makeEmptyDir and what was written since.
func clearDir(dir string, created bool) {
	if created {
		os.RemoveAll(dir)
		return
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// Write makes a bundle in dir, which must not exist or be empty: it fills in
// the size and SHA-256 of every file m names from files (keyed by the
// manifest's names), validates m, and writes the files, then manifest.json.
// files must hold exactly the files m names.
func Write(dir string, m *Manifest, files map[string][]byte) (err error) {
	var p []error
	named := map[string]bool{}
	for _, nf := range m.files() {
		if nf.ref.File == "" {
			continue // Validate reports it
		}
		named[nf.ref.File] = true
		data, ok := files[nf.ref.File]
		if !ok {
			p = append(p, fmt.Errorf("%s: %w", nf, ErrMissingFile))
			continue
		}
		sum := sha256.Sum256(data)
		nf.ref.Size = int64(len(data))
		nf.ref.SHA256 = hex.EncodeToString(sum[:])
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if !named[name] {
			p = append(p, fmt.Errorf("%q: not named by the manifest", name))
		}
	}
	if err := invalid(p...); err != nil {
		return err
	}
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	created, err := makeEmptyDir(dir)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			clearDir(dir, created)
		}
	}()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	defer root.Close()
	for _, nf := range m.files() {
		if err := writeFile(root, nf.ref.File, files[nf.ref.File]); err != nil {
			return err
		}
	}
	return writeFile(root, ManifestName, data)
}

// WriteTar writes b as a tar in the form Extract reads: manifest.json (its
// exact bytes) first, then manifest.sig when the bundle directory holds one,
// then the named files in manifest order, with fixed owners, modes and times
// so that the same bundle always gives the same bytes. Each file is hashed
// again as it is copied. Wrap w in a gzip.Writer for a .tar.gz.
func (b *Bundle) WriteTar(w io.Writer) error {
	root, err := os.OpenRoot(b.Dir)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	defer root.Close()
	sig, err := readSignature(root)
	if err != nil {
		return err
	}
	return b.writeTar(root, w, sig)
}

// WriteSignedTar is WriteTar with sig as manifest.sig instead of the
// directory's; a nil sig writes an unsigned tar, whatever the directory
// holds.
func (b *Bundle) WriteSignedTar(w io.Writer, sig []byte) error {
	root, err := os.OpenRoot(b.Dir)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	defer root.Close()
	return b.writeTar(root, w, sig)
}

// readSignature reads the bundle directory's manifest.sig, or returns nil
// when there is none.
func readSignature(root *os.Root) ([]byte, error) {
	fi, err := root.Stat(SignatureName)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("bundle: %w", err)
	case !fi.Mode().IsRegular(): // opening a fifo would block
		return nil, invalid(fmt.Errorf("%s: not a regular file (%s)", SignatureName, fi.Mode().Type()))
	case fi.Size() > MaxSignatureSize:
		return nil, invalid(fmt.Errorf("%s: %d bytes exceeds the limit of %d", SignatureName, fi.Size(), MaxSignatureSize))
	}
	sig, err := root.ReadFile(SignatureName)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	return sig, nil
}

func (b *Bundle) writeTar(root *os.Root, w io.Writer, sig []byte) error {
	tw := tar.NewWriter(w)
	hdr := func(name string, size int64) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: time.Unix(0, 0)}
	}
	raw, err := root.ReadFile(ManifestName)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	put := func(name string, data []byte) error {
		if err := tw.WriteHeader(hdr(name, int64(len(data)))); err != nil {
			return fmt.Errorf("bundle: tar: %w", err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("bundle: tar: %w", err)
		}
		return nil
	}
	if err := put(ManifestName, raw); err != nil {
		return err
	}
	if sig != nil {
		if err := put(SignatureName, sig); err != nil {
			return err
		}
	}
	for _, nf := range b.Manifest.files() {
		if err := tw.WriteHeader(hdr(nf.ref.File, nf.ref.Size)); err != nil {
			return fmt.Errorf("bundle: tar: %w", err)
		}
		if err := copyFile(tw, root, nf); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("bundle: tar: %w", err)
	}
	return nil
}

func copyFile(w io.Writer, root *os.Root, nf namedFile) error {
	f, err := root.Open(nf.ref.File)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(f, nf.ref.Size))
	if err != nil {
		return fmt.Errorf("bundle: %s: %w", nf, err)
	}
	if n != nf.ref.Size {
		return invalid(sizeMismatch(nf, "file", n))
	}
	return invalid(checkSum(nf, h))
}
