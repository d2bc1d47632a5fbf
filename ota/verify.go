package ota

import (
	"archive/tar"
	"bufio"
	"compress/flate"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/sightd/sightd/quant/bundle"
)

// ErrOldVersion refuses a bundle whose version is not above the highest the
// device ever accepted: no rollback to an older model, no replay of the
// current one.
var ErrOldVersion = errors.New("version is not newer than the installed one")

// Policy is what a bundle is checked against besides its own consistency.
type Policy struct {
	Keys Keyring
	// Floor is the highest version ever accepted; a bundle's version must
	// be strictly greater.
	Floor int64
	// Now is the time signatures must not have expired at; zero means
	// time.Now().
	Now time.Time
}

func (p Policy) now() time.Time {
	if p.Now.IsZero() {
		return time.Now()
	}
	return p.Now
}

// Verified is a bundle whose head (manifest and signature) passed a Policy.
type Verified struct {
	Manifest      *bundle.Manifest
	ManifestBytes []byte // exactly as signed
	Signed        *Signed
}

// CheckHead checks a bundle's manifest and signature, as ReadHead returns
// them, against p: Keys.Verify at p.Now, then the version floor
// (ErrOldVersion). A downloader calls it before the body arrives.
func (p Policy) CheckHead(manifest, sig []byte) (*Verified, error) {
	s, m, err := p.Keys.verify(manifest, sig, p.now())
	if err != nil {
		return nil, err
	}
	if m.Version <= p.Floor {
		return nil, refuse(bundle.ManifestName, ErrOldVersion, "%q version %d is not above %d, the highest accepted", m.Name, m.Version, p.Floor)
	}
	return &Verified{Manifest: m, ManifestBytes: manifest, Signed: s}, nil
}

// tar's unit: headers and data padding are whole blocks.
const block = 512

func padded(n int64) int64 { return (n + block - 1) / block * block }

// MaxTarSize bounds the size of a bundle tar that v's manifest (and a
// signature of sigLen bytes) can honestly come in, so that a downloader can
// stop a stream that goes on for ever. It counts each entry's header and
// padded data, a pax extended header per entry (GNU tar and Go write one for
// long names), a directory entry for each directory of a listed file, a pax
// global header (git archive), and the end of the archive padded to GNU
// tar's 10 KiB record. The same bound holds for the gzip'ed tar: deflate
// never needs more than about 5 bytes per 16 KiB stored block on
// incompressible data, so 1/1024 of the size plus 64 KiB (the gzip header
// and trailer, and a header's file name or comment) covers it.
func MaxTarSize(v *Verified, sigLen int) int64 {
	entry := func(name string, size int64) int64 {
		// Header, data, and a pax header whose records (path, times,
		// owner names) fit in 1 KiB beyond twice the name.
		return block + padded(size) + block + padded(2*int64(len(name))+1024)
	}
	n := entry(bundle.ManifestName, int64(len(v.ManifestBytes))) + entry(bundle.SignatureName, int64(sigLen))
	n += entry(".", 0) + entry("pax_global_header", 1024)
	dirs := map[string]bool{}
	for _, f := range v.Manifest.Files() {
		n += entry(f.Ref.File, f.Ref.Size)
		for d := path.Dir(f.Ref.File); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			n += entry(d+"/", 0)
		}
	}
	n += 20 * block // the end-of-archive blocks, padded to a 10 KiB record
	return n + n/1024 + 64<<10
}

// ReadHead reads a bundle tar's first two files (gzip'ed or not; directory
// entries may come before them): manifest.json, then manifest.sig. When r
// ends before both are complete the error wraps io.ErrUnexpectedEOF, so that
// a downloader can call it on a partial file and try again later; every
// other refusal wraps bundle.ErrInvalid (and ErrUnsigned when the second
// file is not manifest.sig).
func ReadHead(r io.Reader) (manifest, sig []byte, err error) {
	w, err := newWalker(r)
	if err != nil {
		return nil, nil, err
	}
	if manifest, err = w.manifest(); err != nil {
		return nil, nil, err
	}
	if sig, err = w.signature(true); err != nil {
		return nil, nil, err
	}
	return manifest, sig, nil
}

// VerifyTar reads a whole bundle tar (gzip'ed or not) and checks it without
// writing anything: the head (ReadHead, then p.CheckHead), then every entry:
// a regular file (or a directory holding one), a name that stays inside the
// bundle, named by the manifest, exactly the listed size (checked from the
// header, before its data is read) and SHA-256; every listed file present,
// none twice, and the archive complete: its end-of-archive blocks, nothing
// but zeros after them, and for gzip the stream's own end and checksum. Errors that refuse the bundle wrap
// bundle.ErrInvalid and the specific sentinel (bundle.ErrUnsafeEntry,
// ErrSizeMismatch, ErrHashMismatch, ErrMissingFile, or this package's);
// others are I/O errors of r.
func VerifyTar(r io.Reader, p Policy) (*Verified, error) {
	w, err := newWalker(r)
	if err != nil {
		return nil, err
	}
	manifest, err := w.manifest()
	if err != nil {
		return nil, err
	}
	sig, err := w.signature(true)
	if err != nil {
		return nil, err
	}
	v, err := p.CheckHead(manifest, sig)
	if err != nil {
		return nil, err
	}
	if err := w.body(v.Manifest); err != nil {
		return nil, err
	}
	if err := w.end(); err != nil {
		return nil, err
	}
	return v, nil
}

// maxTrailer bounds the zeros allowed after the end-of-archive blocks: GNU
// tar pads to its record size (10 KiB unless told otherwise).
const maxTrailer = 1 << 20

// end reads what follows the end-of-archive blocks: zero padding only, and
// for a gzip'ed tar the end of the gzip stream, whose checksum and length
// are checked there (a download cut short in the gzip trailer is caught).
func (w *walker) end() error {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := w.src.Read(buf)
		n += int64(k)
		if slices.ContainsFunc(buf[:k], func(b byte) bool { return b != 0 }) {
			return refused(errors.New("tar: data after the end of the archive"))
		}
		if n > maxTrailer {
			return refused(fmt.Errorf("tar: more than %d bytes after the end of the archive", maxTrailer))
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return readErr(err)
		}
	}
}

// walker reads a bundle tar entry by entry, checking each as
// bundle.Extract does. It serves ReadHead, VerifyTar and SignTar.
type walker struct {
	src     *eofWatch
	tr      *tar.Reader
	gzipped bool
	entries int
	files   int // regular files
	seen    map[string]bool
	dirs    []string
	pending *tar.Header // a file read by signature(false) that was not manifest.sig
	// manifestHdr is manifest.json's header, for SignTar.
	manifestHdr *tar.Header
	// emit, when set, is given every entry that is kept, in order, and
	// returns where its data goes (SignTar's output).
	emit func(hdr *tar.Header) (io.Writer, error)
}

// eofWatch records whether the tar reader asked for data past the end of
// the stream, which tells a cut-short archive from one that ended with its
// end-of-archive blocks: archive/tar reports both as io.EOF.
type eofWatch struct {
	r   io.Reader
	hit bool
}

func (e *eofWatch) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if n == 0 && err == io.EOF {
		e.hit = true
	}
	return n, err
}

func newWalker(r io.Reader) (*walker, error) {
	br := bufio.NewReader(r)
	var src io.Reader = br
	magic, err := br.Peek(2)
	if err != nil && err != io.EOF {
		return nil, readErr(err)
	}
	w := &walker{seen: map[string]bool{}}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, readErr(err)
		}
		src, w.gzipped = zr, true
	}
	w.src = &eofWatch{r: src}
	w.tr = tar.NewReader(w.src)
	return w, nil
}

// readErr sorts an error of the stream: a truncated or damaged archive
// refuses the bundle (a truncated one also wraps io.ErrUnexpectedEOF);
// anything else is the reader's own failure, passed on.
func readErr(err error) error {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF:
		return refused(fmt.Errorf("tar: %w: the archive is cut short", io.ErrUnexpectedEOF))
	case errors.Is(err, tar.ErrHeader), errors.Is(err, gzip.ErrHeader), errors.Is(err, gzip.ErrChecksum),
		errors.Is(err, tar.ErrFieldTooLong), errors.Is(err, tar.ErrInsecurePath):
		return refused(fmt.Errorf("tar: %w", err))
	}
	var corrupt flate.CorruptInputError
	if errors.As(err, &corrupt) {
		return refused(fmt.Errorf("gzip: %w", err))
	}
	var we writeError
	if errors.As(err, &we) {
		return we.error
	}
	return fmt.Errorf("ota: read bundle: %w", err)
}

// next returns the next regular file's header and bundle path, handing
// directories and pax global headers to emit on the way; io.EOF (bare) at
// the end of a complete archive.
func (w *walker) next() (*tar.Header, string, error) {
	if h := w.pending; h != nil {
		w.pending = nil
		name, _ := bundle.CheckTarEntry(h) // checked when first read
		return h, name, nil
	}
	for {
		hdr, err := w.tr.Next()
		if err == io.EOF && !w.src.hit {
			return nil, "", io.EOF
		}
		if err != nil {
			return nil, "", readErr(err)
		}
		w.entries++
		if w.entries > bundle.MaxTarEntries {
			// Headers cost nothing to send; a small gzip stream could
			// feed them for ever.
			return nil, "", refused(fmt.Errorf("tar: more than %d entries", bundle.MaxTarEntries))
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			if err := w.keep(hdr); err != nil {
				return nil, "", err
			}
			continue
		}
		name, err := bundle.CheckTarEntry(hdr)
		if err != nil {
			return nil, "", err
		}
		if name != "." && w.seen[name] {
			return nil, "", unsafeEntry(hdr.Name, "duplicate entry")
		}
		w.seen[name] = true
		if hdr.Typeflag == tar.TypeDir {
			if name != "." {
				w.dirs = append(w.dirs, name) // checked once every file is known
			}
			if err := w.keep(hdr); err != nil {
				return nil, "", err
			}
			continue
		}
		w.files++
		return hdr, name, nil
	}
}

// keep passes an entry without data to emit.
func (w *walker) keep(hdr *tar.Header) error {
	if w.emit == nil {
		return nil
	}
	_, err := w.emit(hdr)
	return err
}

func unsafeEntry(name, why string) error {
	return refused(fmt.Errorf("tar entry %q: %w: %s", name, bundle.ErrUnsafeEntry, why))
}

// manifest reads the first file, which must be manifest.json.
func (w *walker) manifest() ([]byte, error) {
	hdr, name, err := w.next()
	if err == io.EOF {
		return nil, refused(fmt.Errorf("%s: %w", bundle.ManifestName, bundle.ErrMissingFile))
	}
	if err != nil {
		return nil, err
	}
	if name != bundle.ManifestName {
		return nil, refused(fmt.Errorf("tar: %s must be the first file, got %q", bundle.ManifestName, hdr.Name))
	}
	if hdr.Size > bundle.MaxManifestSize {
		return nil, refused(fmt.Errorf("%s: %d bytes exceeds the limit of %d", bundle.ManifestName, hdr.Size, bundle.MaxManifestSize))
	}
	w.manifestHdr = hdr
	return w.readSmall(hdr)
}

// signature reads the second file as manifest.sig. When required it must
// be (ErrUnsigned); otherwise a missing signature returns nil and leaves
// the file for body.
func (w *walker) signature(required bool) ([]byte, error) {
	hdr, name, err := w.next()
	switch {
	case err == io.EOF && required:
		return nil, refuse(bundle.SignatureName, ErrUnsigned, "the archive ends after %s", bundle.ManifestName)
	case err == io.EOF:
		return nil, nil
	case err != nil:
		return nil, err
	case name != bundle.SignatureName && required:
		return nil, refuse(bundle.SignatureName, ErrUnsigned, "the file after %s is %q, not %s", bundle.ManifestName, hdr.Name, bundle.SignatureName)
	case name != bundle.SignatureName:
		w.pending = hdr
		return nil, nil
	case hdr.Size > bundle.MaxSignatureSize:
		return nil, refuse(bundle.SignatureName, ErrBadSignature, "%d bytes exceeds the limit of %d", hdr.Size, bundle.MaxSignatureSize)
	}
	return w.readSmall(hdr)
}

// readSmall reads an entry already bounded by a limit, and hands it to emit.
func (w *walker) readSmall(hdr *tar.Header) ([]byte, error) {
	data, err := io.ReadAll(w.tr)
	if err != nil {
		return nil, readErr(err)
	}
	if int64(len(data)) != hdr.Size {
		return nil, readErr(io.ErrUnexpectedEOF)
	}
	if w.emit != nil {
		out, err := w.emit(hdr)
		if err != nil {
			return nil, err
		}
		if _, err := out.Write(data); err != nil {
			return nil, err
		}
	}
	return data, nil
}

// body checks every entry after the head against m: exactly the files m
// names, each of its listed size and SHA-256, and copies them to emit.
func (w *walker) body(m *bundle.Manifest) error {
	want := map[string]bundle.NamedFile{}
	for _, f := range m.Files() {
		want[f.Ref.File] = f
	}
	for {
		hdr, name, err := w.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		f, ok := want[name]
		switch {
		case name == bundle.SignatureName:
			return unsafeEntry(hdr.Name, "must come right after "+bundle.ManifestName)
		case !ok:
			return unsafeEntry(hdr.Name, "not named by the manifest")
		case hdr.Size != f.Ref.Size:
			// Refused from the header: an oversized file is never read.
			return refused(fmt.Errorf("%s: %w: manifest %d bytes, tar entry %d bytes", f, bundle.ErrSizeMismatch, f.Ref.Size, hdr.Size))
		}
		if err := w.copyFile(hdr, f); err != nil {
			return err
		}
	}
	var missing []error
	for _, f := range m.Files() {
		if !w.seen[f.Ref.File] {
			missing = append(missing, fmt.Errorf("%s: %w", f, bundle.ErrMissingFile))
		}
	}
	if len(missing) > 0 {
		return refused(errors.Join(missing...))
	}
	for _, d := range w.dirs {
		holds := func(f bundle.NamedFile) bool { return strings.HasPrefix(f.Ref.File, d+"/") }
		if !slices.ContainsFunc(m.Files(), holds) {
			return unsafeEntry(d, "directory holds no file named by the manifest")
		}
	}
	return nil
}

// copyFile hashes one entry, whose size the caller checked against f, as it
// copies it to emit.
func (w *walker) copyFile(hdr *tar.Header, f bundle.NamedFile) error {
	h := sha256.New()
	var dst io.Writer = h
	if w.emit != nil {
		out, err := w.emit(hdr)
		if err != nil {
			return err
		}
		dst = io.MultiWriter(h, errWriter{out})
	}
	// The tar reader yields at most the header's size.
	n, err := io.Copy(dst, w.tr)
	if err != nil {
		return readErr(err)
	}
	if n != f.Ref.Size {
		return readErr(io.ErrUnexpectedEOF)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.Ref.SHA256 {
		return refused(fmt.Errorf("%s: %w: manifest %s, file %s", f, bundle.ErrHashMismatch, f.Ref.SHA256, got))
	}
	return nil
}

// writeError is a failure of emit's writer, which readErr passes on as it
// is: it says nothing about the bundle.
type writeError struct{ error }

func (e writeError) Unwrap() error { return e.error }

type errWriter struct{ w io.Writer }

func (e errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		err = writeError{fmt.Errorf("ota: write bundle: %w", err)}
	}
	return n, err
}
