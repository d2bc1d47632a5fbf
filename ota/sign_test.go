package ota_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sightd/sightd/ota"
	"github.com/sightd/sightd/quant/bundle"
)

// tinyManifestBytes is the tiny bundle's manifest.json, sizes and hashes
// filled in.
func tinyManifestBytes(t testing.TB, version int64) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(tinyDir(t, version), bundle.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

var now2030 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func TestSignVerify(t *testing.T) {
	key := testKey(t, "a")
	manifest := tinyManifestBytes(t, 9)
	expires := time.Date(2031, 2, 3, 4, 5, 6, 999, time.FixedZone("CET", 3600))
	sig, err := ota.Sign(manifest, key, expires)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(manifest)
	lines := strings.Split(string(sig), "\n")
	want := []string{
		"sightd-bundle-signature 1",
		"key-id " + key.ID,
		"name tiny",
		"version 9",
		"expires 2031-02-03T03:05:06Z", // UTC, whole seconds
		"manifest-sha256 " + hex.EncodeToString(sum[:]),
	}
	if len(lines) != 8 || strings.Join(lines[:6], "\n") != strings.Join(want, "\n") || !strings.HasPrefix(lines[6], "signature ") || lines[7] != "" {
		t.Fatalf("signature file:\n%s", sig)
	}
	s, err := ota.Keyring{key.Public()}.Verify(manifest, sig, now2030)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyID != key.ID || s.Name != "tiny" || s.Version != 9 || !s.Expires.Equal(expires.Truncate(time.Second)) ||
		s.ManifestSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("Signed %+v", s)
	}
	// Ed25519 is deterministic: the same input, the same file.
	if again, _ := ota.Sign(manifest, key, expires); !bytes.Equal(again, sig) {
		t.Error("Sign is not reproducible")
	}
}

func TestSignRefuses(t *testing.T) {
	key := testKey(t, "a")
	manifest := tinyManifestBytes(t, 9)
	if _, err := ota.Sign(manifest, key, time.Now().Add(-time.Minute)); err == nil || !strings.Contains(err.Error(), "is not in the future") {
		t.Errorf("expiry in the past: %v", err)
	}
	broken := bytes.Replace(manifest, []byte(`"version": 9`), []byte(`"version": 0`), 1)
	if _, err := ota.Sign(broken, key, far); !errors.Is(err, bundle.ErrInvalid) || !strings.Contains(err.Error(), "version: want an integer >= 1, got 0") {
		t.Errorf("invalid manifest: %v", err)
	}
	if _, err := ota.Sign(manifest, nil, far); err == nil {
		t.Error("no key: signed")
	}
}

// Every bad signature is refused with its sentinel (and ErrInvalid) and a
// message naming the problem.
func TestVerifyRefuses(t *testing.T) {
	key, other := testKey(t, "a"), testKey(t, "b")
	manifest := tinyManifestBytes(t, 9)
	sig, err := ota.Sign(manifest, key, far)
	if err != nil {
		t.Fatal(err)
	}
	soon, err := ota.Sign(manifest, key, now2030.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	otherSig, _ := ota.Sign(manifest, other, far)
	older, _ := ota.Sign(tinyManifestBytes(t, 8), key, far)
	edit := func(old, new string) func([]byte, []byte) ([]byte, []byte) {
		return func(m, s []byte) ([]byte, []byte) { return m, bytes.Replace(s, []byte(old), []byte(new), 1) }
	}
	lastLine := strings.Split(string(sig), "\n")[6]
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(lastLine, "signature "))
	raw[10] ^= 1
	flipped := "signature " + base64.StdEncoding.EncodeToString(raw)
	cases := []struct {
		name string
		edit func(m, s []byte) ([]byte, []byte)
		now  time.Time
		is   error
		want string
	}{
		{"missing", func(m, s []byte) ([]byte, []byte) { return m, nil }, now2030, ota.ErrUnsigned, "manifest.sig: bundle is not signed: missing or empty"},
		{"blank", func(m, s []byte) ([]byte, []byte) { return m, []byte("\n \n") }, now2030, ota.ErrUnsigned, "missing or empty"},
		{"untrusted key", func(m, s []byte) ([]byte, []byte) { return m, otherSig }, now2030, ota.ErrUntrustedKey, "key " + other.ID + " (trusted: " + key.ID + ")"},
		{"flipped signature bit", edit(lastLine, flipped), now2030, ota.ErrBadSignature, "does not verify with key " + key.ID},
		{"version raised", edit("version 9", "version 10"), now2030, ota.ErrBadSignature, "does not verify"},
		{"expiry extended", edit("expires 2099", "expires 2199"), now2030, ota.ErrBadSignature, "does not verify"},
		{"key id swapped", edit(key.ID, other.ID), now2030, ota.ErrUntrustedKey, "key " + other.ID},
		{"manifest whitespace", func(m, s []byte) ([]byte, []byte) { return append(bytes.Clone(m), ' '), s }, now2030, ota.ErrBadSignature,
			"signed for a manifest with sha256 "},
		{"another manifest's signature", func(m, s []byte) ([]byte, []byte) { return m, older }, now2030, ota.ErrBadSignature, "signed for a manifest"},
		{"expired", func(m, s []byte) ([]byte, []byte) { return m, soon }, now2030.Add(time.Hour), ota.ErrExpired,
			"signature by key " + key.ID + " expired at 2030-01-01T01:00:00Z (now 2030-01-01T01:00:00Z)"},
		{"CRLF", func(m, s []byte) ([]byte, []byte) { return m, bytes.ReplaceAll(s, []byte("\n"), []byte("\r\n")) }, now2030, ota.ErrBadSignature,
			`first line is "sightd-bundle-signature 1\r"`},
		{"no final newline", func(m, s []byte) ([]byte, []byte) { return m, bytes.TrimSuffix(s, []byte("\n")) }, now2030, ota.ErrBadSignature, "does not end in a newline"},
		{"extra line", func(m, s []byte) ([]byte, []byte) { return m, append(bytes.Clone(s), "comment x\n"...) }, now2030, ota.ErrBadSignature, "8 lines, want 7"},
		{"fields reordered", edit("name tiny\nversion 9", "version 9\nname tiny"), now2030, ota.ErrBadSignature, `line 3 is "version 9", want "name <value>"`},
		{"leading zero", edit("version 9", "version 09"), now2030, ota.ErrBadSignature, `version "09": want an integer >= 1`},
		{"local time", edit("expires 2099-01-01T00:00:00Z", "expires 2099-01-01T01:00:00+01:00"), now2030, ota.ErrBadSignature, "want a UTC time"},
		{"short signature", edit(lastLine, lastLine[:60]), now2030, ota.ErrBadSignature, "signature: want 64 bytes in base64"},
		{"other format", func(m, s []byte) ([]byte, []byte) { return m, []byte("untrusted comment: minisign\nRWQ...\n") }, now2030, ota.ErrBadSignature,
			`first line is "untrusted comment: minisign", want "sightd-bundle-signature 1"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, s := c.edit(manifest, sig)
			_, err := ota.Keyring{key.Public()}.Verify(m, s, c.now)
			if !errors.Is(err, c.is) || !errors.Is(err, bundle.ErrInvalid) {
				t.Fatalf("Verify: %v\nwant errors.Is %v and ErrInvalid", err, c.is)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q\ndoes not say %q", err, c.want)
			}
		})
	}
	// An empty keyring trusts nothing.
	if _, err := (ota.Keyring{}).Verify(manifest, sig, now2030); !errors.Is(err, ota.ErrUntrustedKey) || !strings.Contains(err.Error(), "(trusted: none)") {
		t.Errorf("empty keyring: %v", err)
	}
}

// FuzzVerifySignature: Keyring.Verify on arbitrary signature bytes never
// panics and refuses only with its sentinels; what it accepts was made by
// a trusted key over this manifest (the fuzzer cannot forge), and is
// refused as expired once its expiry has come.
func FuzzVerifySignature(f *testing.F) {
	key := testKey(f, "fuzz")
	manifest := fuzzManifest(f)
	sig, err := ota.Sign(manifest, key, far)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sig)
	keys := ota.Keyring{testKey(f, "other").Public(), key.Public()}
	sentinels := []error{ota.ErrUnsigned, ota.ErrUntrustedKey, ota.ErrBadSignature, ota.ErrExpired}
	f.Fuzz(func(t *testing.T, sig []byte) {
		s, err := keys.Verify(manifest, sig, now2030)
		if err != nil {
			if !errors.Is(err, bundle.ErrInvalid) || !isAny(err, sentinels) {
				t.Fatalf("refusal without its sentinels: %v", err)
			}
			return
		}
		sum := sha256.Sum256(manifest)
		if _, trusted := keys.Key(s.KeyID); !trusted || s.ManifestSHA256 != hex.EncodeToString(sum[:]) || s.Version != 1 || s.Name != "fuzz" {
			t.Fatalf("accepted %+v", s)
		}
		if _, err := keys.Verify(manifest, sig, s.Expires); !errors.Is(err, ota.ErrExpired) {
			t.Fatalf("at its expiry: %v, want ErrExpired", err)
		}
	})
}

func isAny(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
