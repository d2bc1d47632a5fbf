package ota

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
	"strings"
	"time"

	"github.com/sightd/sightd/quant/bundle"
)

// Pack makes a bundle tar of dir, whose manifest.json names the files (their
// sizes and hashes may be missing or stale): it computes every named file's
// size and SHA-256, rewrites dir's manifest.json with them (everything else
// kept; the layout is Manifest.Marshal's) when they changed, checks the
// bundle and writes the tar to w, gzip'ed when gz is set. The tar is never
// signed, even when dir holds a manifest.sig (which no longer matches a
// rewritten manifest): SignTar signs it.
func Pack(dir string, w io.Writer, gz bool) (*bundle.Manifest, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("ota: pack: %w", err)
	}
	defer root.Close()
	raw, mode, err := readManifestFile(root)
	if err != nil {
		return nil, fmt.Errorf("ota: pack %s: %w", dir, err)
	}
	var m bundle.Manifest
	dec := json.NewDecoder(bytes.NewReader(raw))
	// Marshal would drop a field it does not know: refuse it instead.
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("ota: pack %s: %w", dir, refused(fmt.Errorf("%s: %w", bundle.ManifestName, err)))
	}
	var p []error
	for _, f := range m.Files() {
		if f.Ref.File == "" {
			continue // Marshal reports it
		}
		size, sum, err := hashFile(root, f.Ref.File)
		if err != nil {
			p = append(p, fmt.Errorf("%s: %w", f, err))
			continue
		}
		f.Ref.Size, f.Ref.SHA256 = size, sum
	}
	if len(p) > 0 {
		return nil, fmt.Errorf("ota: pack %s: %w", dir, refused(errors.Join(p...)))
	}
	out, err := m.Marshal()
	if err != nil {
		return nil, fmt.Errorf("ota: pack %s: %w", dir, err)
	}
	if !bytes.Equal(out, raw) {
		if err := replaceFile(root, bundle.ManifestName, out, mode); err != nil {
			return nil, fmt.Errorf("ota: pack %s: %w", dir, err)
		}
	}
	// Open checks the bundle again as it will be read.
	b, err := bundle.Open(dir)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	if err := writeTar(w, gz, func(w io.Writer) error { return b.WriteSignedTar(w, nil) }); err != nil {
		return nil, err
	}
	return b.Manifest, nil
}

// writeTar runs write on w, through a gzip.Writer when gz is set. The gzip
// header carries no name or time, so that the same bundle gives the same
// bytes.
func writeTar(w io.Writer, gz bool, write func(io.Writer) error) error {
	if !gz {
		return write(w)
	}
	zw := gzip.NewWriter(w)
	if err := write(zw); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("ota: gzip: %w", err)
	}
	return nil
}

// readManifestFile reads dir's manifest.json and its permissions.
func readManifestFile(root *os.Root) ([]byte, fs.FileMode, error) {
	fi, err := root.Stat(bundle.ManifestName)
	switch {
	case err != nil:
		return nil, 0, err
	case !fi.Mode().IsRegular():
		return nil, 0, fmt.Errorf("%s: not a regular file (%s)", bundle.ManifestName, fi.Mode().Type())
	case fi.Size() > bundle.MaxManifestSize:
		return nil, 0, fmt.Errorf("%s: %d bytes exceeds the limit of %d", bundle.ManifestName, fi.Size(), bundle.MaxManifestSize)
	}
	raw, err := root.ReadFile(bundle.ManifestName)
	return raw, fi.Mode().Perm(), err
}

// hashFile returns the size and SHA-256 of a file of the bundle directory.
func hashFile(root *os.Root, name string) (int64, string, error) {
	fi, err := root.Stat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, "", bundle.ErrMissingFile
	case err != nil:
		return 0, "", err
	case !fi.Mode().IsRegular():
		return 0, "", fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	case fi.Size() > bundle.MaxFileSize:
		return 0, "", fmt.Errorf("%d bytes exceeds the limit of %d", fi.Size(), int64(bundle.MaxFileSize))
	}
	f, err := root.Open(name)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, bundle.MaxFileSize+1))
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// replaceFile writes data to name through a temporary file and a rename,
// so that a crash leaves the old file or the new one, never half of one.
func replaceFile(root *os.Root, name string, data []byte, mode fs.FileMode) error {
	tmp := "." + name + ".tmp"
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode) // whatever the umask
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		root.Remove(tmp)
	}
	return err
}

// SignTar reads a bundle tar from r (gzip'ed or not, signed or not) and
// writes it to w, compressed as it came, with a new manifest.sig, signed by
// key and valid until expires, right after manifest.json (an old signature
// is dropped). The files' contents are copied byte for byte, and checked
// against the manifest as they go: a broken bundle is not signed. Headers
// keep their names, modes, owners and times.
func SignTar(r io.Reader, w io.Writer, key *PrivateKey, expires time.Time) (*Signed, error) {
	wk, err := newWalker(r)
	if err != nil {
		return nil, err
	}
	var signed *Signed
	err = writeTar(w, wk.gzipped, func(out io.Writer) error {
		tw := tar.NewWriter(out)
		wk.emit = func(hdr *tar.Header) (io.Writer, error) {
			// The old signature, which only signature() reads: dropped.
			if name, _ := bundle.CheckTarEntry(hdr); name == bundle.SignatureName && hdr.Typeflag == tar.TypeReg {
				return io.Discard, nil
			}
			if err := tw.WriteHeader(copyHeader(hdr)); err != nil {
				return nil, writeError{fmt.Errorf("ota: write bundle: %w", err)}
			}
			return tw, nil
		}
		manifest, err := wk.manifest()
		if err != nil {
			return err
		}
		m, err := bundle.Parse(manifest)
		if err != nil {
			return err
		}
		sig, err := Sign(manifest, key, expires)
		if err != nil {
			return err
		}
		// Beside the manifest, as the archive names it ("./manifest.json").
		hdr := copyHeader(wk.manifestHdr)
		hdr.Name = strings.TrimSuffix(hdr.Name, bundle.ManifestName) + bundle.SignatureName
		hdr.Size = int64(len(sig))
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("ota: write bundle: %w", err)
		}
		if _, err := tw.Write(sig); err != nil {
			return fmt.Errorf("ota: write bundle: %w", err)
		}
		if _, err := wk.signature(false); err != nil {
			return err
		}
		if err := wk.body(m); err != nil {
			return err
		}
		if err := tw.Close(); err != nil {
			return fmt.Errorf("ota: write bundle: %w", err)
		}
		signed, _, _, err = parseSignature(sig)
		return err
	})
	if err != nil {
		return nil, err
	}
	return signed, nil
}

// copyHeader keeps what a bundle's entry needs and lets tar.Writer choose
// the format, which a header as read (GNU, with pax records) may not
// round-trip in.
func copyHeader(h *tar.Header) *tar.Header {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return &tar.Header{Typeflag: h.Typeflag, Name: h.Name, PAXRecords: h.PAXRecords}
	}
	return &tar.Header{
		Typeflag: h.Typeflag, Name: h.Name, Size: h.Size, Mode: h.Mode,
		Uid: h.Uid, Gid: h.Gid, Uname: h.Uname, Gname: h.Gname, ModTime: h.ModTime,
	}
}
