package ota_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sightd/sightd/ota"
)

func TestKeyRoundTrip(t *testing.T) {
	k := testKey(t, "a")
	pub := k.Public()
	sum := sha256.Sum256(pub.Key)
	if pub.ID != hex.EncodeToString(sum[:8]) || k.ID != pub.ID || len(pub.ID) != 16 {
		t.Fatalf("key id %q (private %q), want the first 16 hex digits of the key's sha256", pub.ID, k.ID)
	}
	line := pub.Marshal()
	if want := "sightd-ed25519 " + pub.ID + " " + base64.StdEncoding.EncodeToString(pub.Key) + "\n"; string(line) != want {
		t.Errorf("public key line %q, want %q", line, want)
	}
	got, err := ota.ParsePublicKey(line)
	if err != nil || got.ID != pub.ID || !got.Key.Equal(pub.Key) {
		t.Fatalf("ParsePublicKey(Marshal()) = %+v, %v", got, err)
	}
	priv, err := ota.ParsePrivateKey(k.Marshal())
	if err != nil || priv.ID != k.ID || !priv.Key.Equal(k.Key) {
		t.Fatalf("ParsePrivateKey(Marshal()) = %v, %v", priv, err)
	}
	// The private key file says what it is; the secret is on its last line.
	if !strings.HasPrefix(string(k.Marshal()), "# ") || !strings.Contains(string(k.Marshal()), "\nsightd-ed25519-private "+k.ID+" ") {
		t.Errorf("private key file:\n%s", k.Marshal())
	}
	// GenerateKey reads its seed from rand: a fixed reader, a fixed key.
	if testKey(t, "a").ID != k.ID || testKey(t, "b").ID == k.ID {
		t.Error("GenerateKey does not take its seed from rand")
	}
	// With a nil reader, the system's source.
	r1, err1 := ota.GenerateKey(nil)
	r2, err2 := ota.GenerateKey(nil)
	if err1 != nil || err2 != nil || r1.ID == r2.ID {
		t.Errorf("GenerateKey(nil): %v %v, ids %s %s", err1, err2, r1.ID, r2.ID)
	}
}

func TestParseKeyRefuses(t *testing.T) {
	k := testKey(t, "a")
	pub := k.Public()
	b64 := base64.StdEncoding.EncodeToString(pub.Key)
	otherID := testKey(t, "b").ID
	cases := []struct {
		name, data, want string
	}{
		{"empty", "", "no key line"},
		{"comments only", "# nothing\n\n", "no key line"},
		{"private key", string(k.Marshal()), "this is a private key; give the public key (the .pub file)"},
		{"other tag", "ssh-ed25519 " + pub.ID + " " + b64, `want "sightd-ed25519 <id> <base64>", got a line of 3 words starting "ssh-ed25519"`},
		{"missing id", "sightd-ed25519 " + b64, "got a line of 2 words"},
		{"two keys", string(pub.Marshal()) + string(testKey(t, "b").Public().Marshal()), "more than one key line"},
		{"short id", "sightd-ed25519 abc " + b64, `key id "abc": want 16 lowercase hex digits`},
		{"upper-case id", "sightd-ed25519 " + strings.ToUpper(pub.ID) + " " + b64, "want 16 lowercase hex digits"},
		{"wrong id", "sightd-ed25519 " + otherID + " " + b64, "key id " + otherID + " does not match the key (its id is " + pub.ID + ")"},
		{"bad base64", "sightd-ed25519 " + pub.ID + " " + b64[:10] + "!" + b64[11:], "bad base64"},
		{"short key", "sightd-ed25519 " + pub.ID + " " + base64.StdEncoding.EncodeToString(pub.Key[:31]), "31 bytes, want 32"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ota.ParsePublicKey([]byte(c.data))
			if !errors.Is(err, ota.ErrMalformedKey) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ParsePublicKey: %v\nwant ErrMalformedKey saying %q", err, c.want)
			}
		})
	}
	// And the private side.
	seed := base64.StdEncoding.EncodeToString(k.Key.Seed())
	for data, want := range map[string]string{
		string(pub.Marshal()):                                                             "this is a public key; signing needs the private key (the .key file)",
		"sightd-ed25519-private " + otherID + " " + seed:                                  "does not match the key",
		"sightd-ed25519-private " + k.ID + " " + b64[:21]:                                 "bad base64",
		"sightd-ed25519-private " + k.ID + " " + base64.StdEncoding.EncodeToString(k.Key): "64 bytes, want 32",
	} {
		_, err := ota.ParsePrivateKey([]byte(data))
		if !errors.Is(err, ota.ErrMalformedKey) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParsePrivateKey(%.40q...): %v\nwant ErrMalformedKey saying %q", data, err, want)
		}
		if strings.Contains(err.Error(), seed[:8]) {
			t.Errorf("error repeats the secret: %v", err)
		}
	}
}

func TestLoadKeyring(t *testing.T) {
	a, b, c := testKey(t, "a").Public(), testKey(t, "b").Public(), testKey(t, "c").Public()
	dir := t.TempDir()
	bFile := filepath.Join(dir, "b.pub")
	os.WriteFile(bFile, append([]byte("# the release key of 2027\n"), b.Marshal()...), 0o644)
	r, err := ota.LoadKeyring([]string{strings.TrimSpace(string(a.Marshal())), bFile})
	if err != nil {
		t.Fatal(err)
	}
	if len(r) != 2 || r[0].ID != a.ID || r[1].ID != b.ID || !r[1].Key.Equal(b.Key) {
		t.Fatalf("keyring %+v", r)
	}
	if k, ok := r.Key(b.ID); !ok || k.ID != b.ID {
		t.Error("Key(b) not found")
	}
	if _, ok := r.Key(c.ID); ok {
		t.Error("Key(c) found in a keyring without it")
	}

	cFile := filepath.Join(dir, "c.pub")
	os.WriteFile(cFile, c.Marshal(), 0o644)
	privFile := filepath.Join(dir, "a.key")
	priv := testKey(t, "a")
	os.WriteFile(privFile, priv.Marshal(), 0o600)
	big := filepath.Join(dir, "big")
	os.WriteFile(big, bytes.Repeat([]byte("#\n"), 4<<10), 0o644)
	cases := []struct {
		name    string
		entries []string
		want    string
	}{
		{"none", nil, "no trusted keys"},
		{"duplicate", []string{string(a.Marshal()), cFile, bFile, string(c.Marshal())}, "trusted keys 1 and 3 are the same key (id " + c.ID + ")"},
		{"malformed inline", []string{cFile, "sightd-ed25519 0123 xyz"}, "trusted key 1 (inline): malformed key"},
		{"missing file", []string{cFile, filepath.Join(dir, "none.pub")}, `trusted key 1 ("` + filepath.Join(dir, "none.pub") + `"): open`},
		{"private key file", []string{privFile}, "trusted key 0 (\"" + privFile + "\"): malformed key: this is a private key"},
		{"private key inline", []string{string(priv.Marshal())}, "trusted key 0 (inline): malformed key: this is a private key"},
		{"not a key file", []string{big}, "not a key file"},
		{"empty entry", []string{cFile, " "}, "trusted key 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ota.LoadKeyring(tc.entries)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadKeyring: %v\nwant %q", err, tc.want)
			}
			if seed := base64.StdEncoding.EncodeToString(priv.Key.Seed()); strings.Contains(err.Error(), seed[:8]) {
				t.Errorf("error repeats a private key: %v", err)
			}
		})
	}
}

// FuzzParsePublicKey: never panics; refuses only with ErrMalformedKey; a key
// it accepts is a valid Ed25519 key with the right id and marshals back to
// a line that parses to the same key.
func FuzzParsePublicKey(f *testing.F) {
	f.Add(testKey(f, "a").Public().Marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ota.ParsePublicKey(data)
		if err != nil {
			if !errors.Is(err, ota.ErrMalformedKey) {
				t.Fatalf("error does not wrap ErrMalformedKey: %v", err)
			}
			return
		}
		sum := sha256.Sum256(k.Key)
		if len(k.Key) != ed25519.PublicKeySize || k.ID != hex.EncodeToString(sum[:8]) {
			t.Fatalf("accepted key %x with id %s", k.Key, k.ID)
		}
		k2, err := ota.ParsePublicKey(k.Marshal())
		if err != nil || k2.ID != k.ID || !k2.Key.Equal(k.Key) {
			t.Fatalf("round trip: %+v, %v", k2, err)
		}
	})
}

// FuzzParsePrivateKey: the same for private keys, which must also sign
// what their public key verifies.
func FuzzParsePrivateKey(f *testing.F) {
	f.Add(testKey(f, "a").Marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ota.ParsePrivateKey(data)
		if err != nil {
			if !errors.Is(err, ota.ErrMalformedKey) {
				t.Fatalf("error does not wrap ErrMalformedKey: %v", err)
			}
			return
		}
		pub := k.Public()
		if pub.ID != k.ID || !ed25519.Verify(pub.Key, []byte("x"), ed25519.Sign(k.Key, []byte("x"))) {
			t.Fatalf("accepted a key that does not sign for its public key %s", k.ID)
		}
		k2, err := ota.ParsePrivateKey(k.Marshal())
		if err != nil || k2.ID != k.ID || !k2.Key.Equal(k.Key) {
			t.Fatalf("round trip: %v, %v", k2, err)
		}
	})
}
