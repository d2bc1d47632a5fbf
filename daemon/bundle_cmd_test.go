package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sightd/sightd/ota"
	"github.com/sightd/sightd/quant/bundle"
)

// The whole signing workflow on the demo bundle, as a release engineer
// runs it: keygen, pack, sign, verify; then every refusal verify reports.
func TestBundleCommands(t *testing.T) {
	src := demoBundle(t)
	dir := t.TempDir()
	at := func(name string) string { return filepath.Join(dir, name) }

	out, err := run(t, "bundle", "keygen", "-o", at("release"))
	if err != nil {
		t.Fatal(err)
	}
	pubData, _ := os.ReadFile(at("release.pub"))
	pub, err := ota.ParsePublicKey(pubData)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "key id "+pub.ID) || !strings.Contains(out, strings.TrimSpace(string(pubData))) {
		t.Errorf("keygen printed:\n%s", out)
	}
	if fi, err := os.Stat(at("release.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("release.key: %v, mode %v; want 0600", err, fi.Mode())
	}
	keyData, _ := os.ReadFile(at("release.key"))
	if _, err := run(t, "bundle", "keygen", "-o", at("release")); err == nil || !strings.Contains(err.Error(), "exists; not overwriting a key") {
		t.Errorf("keygen over an existing key: %v", err)
	}
	if again, _ := os.ReadFile(at("release.key")); !bytes.Equal(again, keyData) {
		t.Fatal("keygen overwrote release.key")
	}
	if _, err := run(t, "bundle", "keygen", "-o", at("next")); err != nil {
		t.Fatal(err)
	}

	out, err = run(t, "bundle", "pack", src, "-o", at("demo.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "wrote " + at("demo.tar.gz") + ": sightd-demo version 1, 5 files, unsigned\n"; out != want {
		t.Errorf("pack printed %q, want %q", out, want)
	}
	if _, err := run(t, "bundle", "verify", "--pubkey", at("release.pub"), at("demo.tar.gz")); !errors.Is(err, ota.ErrUnsigned) {
		t.Errorf("verify of an unsigned bundle: %v, want ErrUnsigned", err)
	}

	// Signed in place.
	out, err = run(t, "bundle", "sign", "--key", at("release.key"), at("demo.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "signed "+at("demo.tar.gz")+": sightd-demo version 1, key "+pub.ID+", expires ") {
		t.Errorf("sign printed %q", out)
	}
	exp, err := time.Parse(time.RFC3339, strings.TrimSpace(out[strings.LastIndex(out, " ")+1:]))
	if err != nil || exp.Sub(time.Now()) < 719*time.Hour || exp.Sub(time.Now()) > 721*time.Hour {
		t.Errorf("default expiry %v (%v), want 720h from now", exp, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 5 {
		t.Errorf("%d files in the directory, want 5 (a temporary file left?)", len(ents))
	}

	out, err = run(t, "bundle", "verify", "--pubkey", at("release.pub"), at("demo.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{": ok\n", "name             sightd-demo\n", "version          1\n", "key              " + pub.ID + "\n",
		"expires          " + exp.UTC().Format(time.RFC3339), "  image.tflite", "  probes/red.png"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}

	// Signed again, with the next key, into another file: both keys
	// trusted, as while keys rotate, it verifies; the original is kept.
	before, _ := os.ReadFile(at("demo.tar.gz"))
	if _, err := run(t, "bundle", "sign", "--key", at("next.key"), "--expires", "2098-01-02T03:04:05Z", at("demo.tar.gz"), "-o", at("next.tar.gz")); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(at("demo.tar.gz")); !bytes.Equal(after, before) {
		t.Error("sign -o changed its input")
	}
	inline := strings.TrimSpace(string(pubData))
	if out, err := run(t, "bundle", "verify", "--pubkey", inline, "--pubkey", at("next.pub"), at("next.tar.gz")); err != nil || !strings.Contains(out, "2098-01-02T03:04:05Z") {
		t.Errorf("verify with two keys: %v\n%s", err, out)
	}

	// A plain tar with one byte of the image tower flipped.
	if _, err := run(t, "bundle", "pack", src, "-o", at("plain.tar")); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "bundle", "sign", "--key", at("release.key"), at("plain.tar")); err != nil {
		t.Fatal(err)
	}
	plain, _ := os.ReadFile(at("plain.tar"))
	flipped := bytes.Clone(plain)
	flipped[len(flipped)/2] ^= 0x40
	os.WriteFile(at("flipped.tar"), flipped, 0o644)

	cases := []struct {
		name string
		args []string
		is   error
		want string
	}{
		{"wrong key", []string{"--pubkey", at("next.pub"), at("demo.tar.gz")}, ota.ErrUntrustedKey, "key " + pub.ID + " (trusted: "},
		{"replayed version", []string{"--pubkey", at("release.pub"), "--floor", "1", at("demo.tar.gz")}, ota.ErrOldVersion, `"sightd-demo" version 1 is not above 1`},
		{"flipped byte", []string{"--pubkey", at("release.pub"), at("flipped.tar")}, bundle.ErrHashMismatch, "sha256 mismatch"},
		{"no key", []string{at("demo.tar.gz")}, nil, "--pubkey is required"},
		{"private key given", []string{"--pubkey", at("release.key"), at("demo.tar.gz")}, ota.ErrMalformedKey, "this is a private key"},
		{"missing bundle", []string{"--pubkey", at("release.pub"), at("none.tar")}, os.ErrNotExist, "none.tar"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := run(t, append([]string{"bundle", "verify"}, c.args...)...)
			if err == nil || (c.is != nil && !errors.Is(err, c.is)) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("verify: %v\nwant %v saying %q", err, c.is, c.want)
			}
		})
	}
}

func TestBundleSignRefuses(t *testing.T) {
	dir := t.TempDir()
	at := func(name string) string { return filepath.Join(dir, name) }
	if _, err := run(t, "bundle", "keygen", "-o", at("k")); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "bundle", "pack", demoBundle(t), "-o", at("b.tar")); err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(at("b.tar"))
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"expiry past", []string{"--key", at("k.key"), "--expires", "2020-01-01T00:00:00Z", at("b.tar")}, "is not in the future"},
		{"bad expiry", []string{"--key", at("k.key"), "--expires", "next week", at("b.tar")}, `--expires "next week": want a duration (720h) or an RFC 3339 time`},
		{"negative duration", []string{"--key", at("k.key"), "--expires", "-1h", at("b.tar")}, "want a positive duration"},
		{"public key", []string{"--key", at("k.pub"), at("b.tar")}, "this is a public key; signing needs the private key"},
		{"no key", []string{at("b.tar")}, "--key is required"},
		{"not a bundle", []string{"--key", at("k.key"), at("k.pub")}, "invalid model bundle"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := run(t, append([]string{"bundle", "sign"}, c.args...)...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("sign: %v\nwant %q", err, c.want)
			}
			if now, _ := os.ReadFile(at("b.tar")); !bytes.Equal(now, orig) {
				t.Fatal("a refused sign changed the bundle")
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 3 {
				t.Errorf("%d files in the directory, want 3 (a temporary file left?)", len(ents))
			}
		})
	}
	if _, err := run(t, "bundle", "pack", filepath.Join(dir, "nowhere"), "-o", at("c.tar")); err == nil {
		t.Error("pack of a missing directory succeeded")
	}
	if _, err := os.Stat(at("c.tar")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed pack left its output: %v", err)
	}
}
