package ota

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrMalformedKey is wrapped by every key parsing error.
var ErrMalformedKey = errors.New("malformed key")

// The first word of a key line says what the line holds, so that a private
// key pasted where a public one belongs is named as such.
const (
	publicKeyTag  = "sightd-ed25519"
	privateKeyTag = "sightd-ed25519-private"
)

// maxKeyFile bounds a key file: one line of about 80 bytes, and comments.
const maxKeyFile = 4 << 10

// PublicKey is a key that bundle signatures are checked with. ID is the first
// 16 hex digits of the SHA-256 of the 32-byte key: a signature names the key
// it was made with, and the CLI and logs show it.
type PublicKey struct {
	ID  string
	Key ed25519.PublicKey
}

// PrivateKey signs bundles. ID is its public key's.
type PrivateKey struct {
	ID  string
	Key ed25519.PrivateKey
}

// KeyID is the id of an Ed25519 public key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// GenerateKey makes a new signing key with entropy from rand (nil: the
// system's secure source).
func GenerateKey(rand io.Reader) (*PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("ota: generate key: %w", err)
	}
	return &PrivateKey{ID: KeyID(pub), Key: priv}, nil
}

// Public is the key that checks k's signatures.
func (k *PrivateKey) Public() PublicKey {
	pub := k.Key.Public().(ed25519.PublicKey)
	return PublicKey{ID: k.ID, Key: pub}
}

// Marshal encodes k as one line, "sightd-ed25519-private <id> <base64
// seed>", after a comment saying what the file is. Keep it secret (the CLI
// writes it with mode 0600).
func (k *PrivateKey) Marshal() []byte {
	return fmt.Appendf(nil, "# sightd bundle signing key %s: keep it secret\n%s %s %s\n",
		k.ID, privateKeyTag, k.ID, base64.StdEncoding.EncodeToString(k.Key.Seed()))
}

// ParsePrivateKey decodes what PrivateKey.Marshal wrote.
func ParsePrivateKey(data []byte) (*PrivateKey, error) {
	id, raw, err := parseKeyLine(data, privateKeyTag, ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	priv := ed25519.NewKeyFromSeed(raw)
	if want := KeyID(priv.Public().(ed25519.PublicKey)); id != want {
		return nil, fmt.Errorf("%w: key id %s does not match the key (its id is %s): the line was edited or damaged", ErrMalformedKey, id, want)
	}
	return &PrivateKey{ID: id, Key: priv}, nil
}

// Marshal encodes k as one line, "sightd-ed25519 <id> <base64 key>\n"; the
// same line may stand inline in the configuration's list of trusted keys.
func (k PublicKey) Marshal() []byte {
	return fmt.Appendf(nil, "%s %s %s\n", publicKeyTag, k.ID, base64.StdEncoding.EncodeToString(k.Key))
}

// String is the key's line without the newline.
func (k PublicKey) String() string { return strings.TrimSuffix(string(k.Marshal()), "\n") }

// ParsePublicKey decodes what PublicKey.Marshal wrote. Blank lines and
// lines starting with '#' are ignored; exactly one key line must remain.
func ParsePublicKey(data []byte) (PublicKey, error) {
	id, raw, err := parseKeyLine(data, publicKeyTag, ed25519.PublicKeySize)
	if err != nil {
		return PublicKey{}, err
	}
	if want := KeyID(raw); id != want {
		return PublicKey{}, fmt.Errorf("%w: key id %s does not match the key (its id is %s): the line was edited or damaged", ErrMalformedKey, id, want)
	}
	return PublicKey{ID: id, Key: ed25519.PublicKey(raw)}, nil
}

// parseKeyLine finds the one key line of data, "<tag> <id> <base64>", and
// returns its id and decoded key bytes, which must be size long.
func parseKeyLine(data []byte, tag string, size int) (id string, raw []byte, err error) {
	var line string
	for l := range strings.Lines(string(data)) {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if line != "" {
			return "", nil, fmt.Errorf("%w: more than one key line", ErrMalformedKey)
		}
		line = l
	}
	if line == "" {
		return "", nil, fmt.Errorf("%w: no key line (want %q)", ErrMalformedKey, tag+" <id> <base64>")
	}
	f := strings.Fields(line)
	switch {
	case len(f) > 0 && f[0] == privateKeyTag && tag == publicKeyTag:
		return "", nil, fmt.Errorf("%w: this is a private key; give the public key (the .pub file)", ErrMalformedKey)
	case len(f) > 0 && f[0] == publicKeyTag && tag == privateKeyTag:
		return "", nil, fmt.Errorf("%w: this is a public key; signing needs the private key (the .key file)", ErrMalformedKey)
	case len(f) != 3 || f[0] != tag:
		// Only the first word: the rest may be a secret.
		return "", nil, fmt.Errorf("%w: want %q, got a line of %d words starting %q", ErrMalformedKey, tag+" <id> <base64>", len(f), truncate(f[0], 24))
	}
	id = f[1]
	if len(id) != 16 || !isLowerHex(id) {
		return "", nil, fmt.Errorf("%w: key id %q: want 16 lowercase hex digits", ErrMalformedKey, truncate(id, 20))
	}
	raw, err = base64.StdEncoding.Strict().DecodeString(f[2])
	if err != nil {
		return "", nil, fmt.Errorf("%w: key %s: bad base64: %w", ErrMalformedKey, id, err)
	}
	if len(raw) != size {
		return "", nil, fmt.Errorf("%w: key %s: %d bytes, want %d", ErrMalformedKey, id, len(raw), size)
	}
	return id, raw, nil
}

func isLowerHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Keyring is the set of public keys a device trusts. Listing two lets keys be
// rotated: bundles signed by either verify.
type Keyring []PublicKey

// LoadKeyring reads the trusted keys from the configuration's entries: each
// is either a public key line (as PublicKey.Marshal writes it) or the path of
// a file holding one. An empty list is an error: nothing would verify.
func LoadKeyring(entries []string) (Keyring, error) {
	if len(entries) == 0 {
		return nil, errors.New("ota: no trusted keys: list at least one public key")
	}
	var r Keyring
	where := map[string]int{}
	for i, e := range entries {
		k, err := loadKey(e)
		if err != nil {
			return nil, fmt.Errorf("ota: trusted key %d (%s): %w", i, describeEntry(e), err)
		}
		if j, dup := where[k.ID]; dup {
			return nil, fmt.Errorf("ota: trusted keys %d and %d are the same key (id %s)", j, i, k.ID)
		}
		where[k.ID] = i
		r = append(r, k)
	}
	return r, nil
}

// LoadKey reads one keyring entry, as LoadKeyring does each; the error
// describes the entry (a path, or "inline") without the caller's index.
func LoadKey(entry string) (PublicKey, error) {
	k, err := loadKey(entry)
	if err != nil {
		return PublicKey{}, fmt.Errorf("ota: trusted key (%s): %w", describeEntry(entry), err)
	}
	return k, nil
}

// inline reports whether a keyring entry holds a key line (perhaps with
// comments) rather than a path.
func inline(entry string) bool {
	for l := range strings.Lines(entry) {
		if f := strings.Fields(l); len(f) > 0 && (f[0] == publicKeyTag || f[0] == privateKeyTag) {
			return true
		}
	}
	return false
}

// describeEntry names an entry in an error without repeating key material.
func describeEntry(entry string) string {
	if inline(entry) {
		return "inline"
	}
	return fmt.Sprintf("%q", truncate(strings.TrimSpace(entry), 200))
}

// loadKey reads one keyring entry: an inline key line, or a file.
func loadKey(entry string) (PublicKey, error) {
	s := strings.TrimSpace(entry)
	if inline(s) {
		return ParsePublicKey([]byte(s))
	}
	if s == "" {
		return PublicKey{}, fmt.Errorf("%w: empty entry", ErrMalformedKey)
	}
	f, err := os.Open(s)
	if err != nil {
		return PublicKey{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return PublicKey{}, err
	}
	if len(data) > maxKeyFile {
		return PublicKey{}, fmt.Errorf("%w: file larger than %d bytes, not a key file", ErrMalformedKey, maxKeyFile)
	}
	return ParsePublicKey(data)
}

// Key returns the key with the given id.
func (r Keyring) Key(id string) (PublicKey, bool) {
	for _, k := range r {
		if k.ID == id {
			return k, true
		}
	}
	return PublicKey{}, false
}

// IDs lists the keys' ids, for messages.
func (r Keyring) IDs() string {
	var b bytes.Buffer
	for i, k := range r {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k.ID)
	}
	return b.String()
}
