package ota

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sightd/sightd/quant/bundle"
)

// SignatureName is the signature's file name in a bundle: right after
// manifest.json in the tar.
const SignatureName = bundle.SignatureName

// Why a signature is refused; match them with errors.Is. Every refusal also
// wraps bundle.ErrInvalid, so that a caller can tell a refused bundle from an
// I/O failure.
var (
	ErrUnsigned     = errors.New("bundle is not signed")
	ErrUntrustedKey = errors.New("signed by a key that is not trusted")
	ErrBadSignature = errors.New("bad signature")
	ErrExpired      = errors.New("signature expired")
)

// Signed is what a signature vouches for: the manifest's exact bytes (by
// their SHA-256), with its name and version repeated so that they can be
// shown and checked, and the time after which the signature is refused. An
// expiry bounds how long a leaked or superseded bundle can be replayed to a
// device that never saw a newer one.
type Signed struct {
	KeyID          string
	Name           string
	Version        int64
	Expires        time.Time // UTC, whole seconds
	ManifestSHA256 string    // 64 lowercase hex digits
}

// The signature file is a few lines of text, readable with cat:
//
//	sightd-bundle-signature 1
//	key-id 1f2e3d4c5b6a7988
//	name sightd-demo
//	version 3
//	expires 2026-12-29T13:18:19Z
//	manifest-sha256 <64 hex digits>
//	signature <base64 of the 64-byte Ed25519 signature>
//
// The signature covers every byte before the "signature" line, its first
// line included, so that no other sightd signature (or other format) can
// be passed off as one of these. Each line is "<field> <value>", in this
// order, with "\n" endings; anything else is refused, so that one file
// cannot be read two ways.
const sigHeader = "sightd-bundle-signature 1"

var sigFields = []string{"key-id", "name", "version", "expires", "manifest-sha256", "signature"}

// Sign signs the exact bytes of a manifest (which must parse) with key; the
// result is the content of manifest.sig. expires must be in the future; it
// is kept to the second.
func Sign(manifest []byte, key *PrivateKey, expires time.Time) ([]byte, error) {
	if key == nil || len(key.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("ota: sign: no signing key")
	}
	m, err := bundle.Parse(manifest)
	if err != nil {
		return nil, fmt.Errorf("ota: sign: %w", err)
	}
	expires = expires.UTC().Truncate(time.Second)
	if now := time.Now(); !expires.After(now) {
		return nil, fmt.Errorf("ota: sign: expiry %s is not in the future (now %s)", expires.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	sum := sha256.Sum256(manifest)
	s := Signed{KeyID: key.ID, Name: m.Name, Version: m.Version, Expires: expires, ManifestSHA256: hex.EncodeToString(sum[:])}
	msg := s.message()
	sig := ed25519.Sign(key.Key, msg)
	out := fmt.Appendf(msg, "signature %s\n", base64.StdEncoding.EncodeToString(sig))
	if len(out) > bundle.MaxSignatureSize {
		return nil, fmt.Errorf("ota: sign: the signature would be %d bytes, over the limit of %d (the manifest's name is %d bytes long)", len(out), bundle.MaxSignatureSize, len(m.Name))
	}
	return out, nil
}

// message is the signed part of the signature file.
func (s *Signed) message() []byte {
	return fmt.Appendf(nil, "%s\nkey-id %s\nname %s\nversion %d\nexpires %s\nmanifest-sha256 %s\n",
		sigHeader, s.KeyID, s.Name, s.Version, s.Expires.Format(time.RFC3339), s.ManifestSHA256)
}

// parseSignature splits a signature file into what it vouches for, the
// signed bytes and the signature. Errors wrap ErrBadSignature.
func parseSignature(data []byte) (s *Signed, msg, sig []byte, err error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", SignatureName, ErrBadSignature, fmt.Sprintf(format, args...))
	}
	if len(data) > bundle.MaxSignatureSize {
		return nil, nil, nil, bad("%d bytes exceeds the limit of %d", len(data), bundle.MaxSignatureSize)
	}
	if !bytes.HasSuffix(data, []byte("\n")) {
		return nil, nil, nil, bad("does not end in a newline (truncated?)")
	}
	lines := strings.Split(string(data[:len(data)-1]), "\n")
	if lines[0] != sigHeader {
		return nil, nil, nil, bad("first line is %q, want %q", truncate(lines[0], 40), sigHeader)
	}
	if len(lines) != 1+len(sigFields) {
		return nil, nil, nil, bad("%d lines, want %d", len(lines), 1+len(sigFields))
	}
	v := map[string]string{}
	for i, f := range sigFields {
		val, ok := strings.CutPrefix(lines[i+1], f+" ")
		if !ok {
			return nil, nil, nil, bad("line %d is %q, want %q", i+2, truncate(lines[i+1], 40), f+" <value>")
		}
		v[f] = val
	}
	s = &Signed{KeyID: v["key-id"], Name: v["name"], ManifestSHA256: v["manifest-sha256"]}
	if len(s.KeyID) != 16 || !isLowerHex(s.KeyID) {
		return nil, nil, nil, bad("key-id %q: want 16 lowercase hex digits", truncate(s.KeyID, 20))
	}
	if s.Name == "" || strings.ContainsFunc(s.Name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return nil, nil, nil, bad("name %q: empty or has control characters", truncate(s.Name, 40))
	}
	// One spelling of each value: the signed bytes must be the canonical
	// message of what they say.
	if s.Version, err = strconv.ParseInt(v["version"], 10, 64); err != nil || s.Version < 1 || strconv.FormatInt(s.Version, 10) != v["version"] {
		return nil, nil, nil, bad("version %q: want an integer >= 1", truncate(v["version"], 24))
	}
	if s.Expires, err = time.Parse(time.RFC3339, v["expires"]); err != nil || s.Expires.UTC().Format(time.RFC3339) != v["expires"] {
		return nil, nil, nil, bad("expires %q: want a UTC time like 2026-12-29T13:18:19Z", truncate(v["expires"], 40))
	}
	s.Expires = s.Expires.UTC()
	if len(s.ManifestSHA256) != 64 || !isLowerHex(s.ManifestSHA256) {
		return nil, nil, nil, bad("manifest-sha256 %q: want 64 lowercase hex digits", truncate(s.ManifestSHA256, 70))
	}
	sig, err = base64.StdEncoding.Strict().DecodeString(v["signature"])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, nil, nil, bad("signature: want %d bytes in base64", ed25519.SignatureSize)
	}
	msg = data[:len(data)-len("signature ")-len(v["signature"])-1]
	if !bytes.Equal(msg, s.message()) {
		// Unreachable by the checks above; kept so that what is verified is
		// always exactly what was parsed.
		return nil, nil, nil, bad("not in canonical form")
	}
	return s, msg, sig, nil
}

// Verify checks sig, the content of manifest.sig, against the exact manifest
// bytes at time now: a key of r (ErrUntrustedKey), a valid signature
// (ErrBadSignature, also for a malformed file or a signature over other
// manifest bytes), not expired (ErrExpired). A missing or empty signature is
// ErrUnsigned. A manifest that does not parse is refused as bundle.Parse
// refuses it.
func (r Keyring) Verify(manifest, sig []byte, now time.Time) (*Signed, error) {
	s, _, err := r.verify(manifest, sig, now)
	return s, err
}

// verify is Verify that also returns the parsed manifest.
func (r Keyring) verify(manifest, sig []byte, now time.Time) (*Signed, *bundle.Manifest, error) {
	if len(bytes.TrimSpace(sig)) == 0 {
		return nil, nil, refuse(SignatureName, ErrUnsigned, "missing or empty")
	}
	s, msg, raw, err := parseSignature(sig)
	if err != nil {
		return nil, nil, refused(err)
	}
	key, ok := r.Key(s.KeyID)
	if !ok {
		trusted := r.IDs()
		if trusted == "" {
			trusted = "none"
		}
		return nil, nil, refuse(SignatureName, ErrUntrustedKey, "key %s (trusted: %s)", s.KeyID, trusted)
	}
	if !ed25519.Verify(key.Key, msg, raw) {
		return nil, nil, refuse(SignatureName, ErrBadSignature, "does not verify with key %s", s.KeyID)
	}
	// From here on s is authentic.
	sum := sha256.Sum256(manifest)
	if got := hex.EncodeToString(sum[:]); got != s.ManifestSHA256 {
		return nil, nil, refuse(SignatureName, ErrBadSignature, "signed for a manifest with sha256 %s, this %s has sha256 %s",
			s.ManifestSHA256, bundle.ManifestName, got)
	}
	m, err := bundle.Parse(manifest)
	if err != nil {
		return nil, nil, err
	}
	if m.Name != s.Name || m.Version != s.Version {
		// Only a faulty signer gets here: the hash matched.
		return nil, nil, refuse(SignatureName, ErrBadSignature, "signed as %q version %d, the manifest says %q version %d",
			s.Name, s.Version, m.Name, m.Version)
	}
	if !now.Before(s.Expires) {
		return nil, nil, refuse(SignatureName, ErrExpired, "signature by key %s expired at %s (now %s)",
			s.KeyID, s.Expires.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return s, m, nil
}

// refuse makes a refusal, "what: sentinel: detail", wrapping sentinel and
// bundle.ErrInvalid.
func refuse(what string, sentinel error, format string, args ...any) error {
	return refused(fmt.Errorf("%s: %w: %s", what, sentinel, fmt.Sprintf(format, args...)))
}

// refused marks err, which names its problem, as a refused bundle.
func refused(err error) error {
	return errors.Join(bundle.ErrInvalid, err)
}
