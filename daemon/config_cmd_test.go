package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sightd/sightd/ota"
	"github.com/sightd/sightd/quant/bundle"
)

// copyDir copies the flat directory src (a bundle) to dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// `config check` refuses, on real files, every file `sightd run` would
// refuse, naming the field, with exit status 2; it starts nothing.
func TestConfigCheckRunsRunsChecks(t *testing.T) {
	dir := t.TempDir()
	good := demoBundle(t)
	man, err := bundle.Open(good)
	if err != nil {
		t.Fatal(err)
	}
	imageFile := man.Manifest.Image.File
	man.Close()

	// A bundle whose image tower lost a byte in the middle.
	corrupt := filepath.Join(dir, "corrupt")
	copyDir(t, good, corrupt)
	tower := filepath.Join(corrupt, imageFile)
	b, err := os.ReadFile(tower)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	os.WriteFile(tower, b, 0o644)
	// A bundle whose probes disagree with its towers: only loading it and
	// running the self-test shows it.
	selftest := filepath.Join(dir, "selftest")
	copyDir(t, good, selftest)
	mj, _ := os.ReadFile(filepath.Join(selftest, "manifest.json"))
	os.WriteFile(filepath.Join(selftest, "manifest.json"), []byte(strings.Replace(string(mj), `"expected": [`, `"expected": [-`, 1)), 0o644)
	// A tar that is not one.
	notTar := filepath.Join(dir, "bundle.tar.gz")
	os.WriteFile(notTar, []byte("this is not a tar"), 0o644)
	// Two keys, the second missing.
	key, err := ota.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "fleet-2026.pub")
	os.WriteFile(pub, key.Public().Marshal(), 0o644)
	missingKey := filepath.Join(dir, "fleet-2027.pub")
	password := filepath.Join(dir, "mqtt-password")
	token := filepath.Join(dir, "api-token")
	os.WriteFile(token, []byte("0123456789abcdef0123456789abcdef\n"), 0o600)

	cfg := func(bundlePath, extra string) string {
		p := filepath.Join(t.TempDir(), "sightd.yml")
		body := fmt.Sprintf("model: {bundle: %q, edgetpu: off}\nstore: {dir: %q}\n%s", bundlePath, filepath.Join(t.TempDir(), "db"), extra)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, bundle, extra string
		want                []string
		run                 bool // sightd run refuses it with the same field (checked for the quick ones)
	}{
		{"missing bundle", filepath.Join(dir, "none.tar.gz"), "", []string{"model.bundle: stat " + filepath.Join(dir, "none.tar.gz")}, true},
		{"corrupt bundle", corrupt, "", []string{"model.bundle: ", "sha256 mismatch"}, true},
		{"bundle failing its self-test", selftest, "", []string{"model.bundle: model self-test"}, false},
		{"not a tar", notTar, "", []string{"model.bundle: bundle " + notTar}, true},
		{"missing password file", good, fmt.Sprintf("mqtt: {username: u, password_file: %q}\n", password), []string{"mqtt.password_file: open " + password}, false},
		{"listen port 99999", good, "http: {listen: \"127.0.0.1:99999\"}\n", []string{`http.listen: "127.0.0.1:99999": port "99999"`}, true},
		{"second trusted key missing", good, fmt.Sprintf("ota: {trusted_keys: [%q, %q], dir: %q}\n", pub, missingKey, dir),
			[]string{"ota.trusted_keys[1]: ota: trusted key (\"" + missingKey + "\"): open "}, true},
		{"short token", good, fmt.Sprintf("http: {token_file: %q}\n", pub), []string{"http.token_file: "}, false},
		{"missing token file", good, fmt.Sprintf("http: {token_file: %q}\n", filepath.Join(dir, "none")), []string{"http.token_file: open "}, false},
		{"everything at once", filepath.Join(dir, "none"), fmt.Sprintf("mqtt: {username: u, password_file: %q}\nhttp: {token_file: %q}\n", password, filepath.Join(dir, "none")),
			[]string{"model.bundle: ", "mqtt.password_file: ", "http.token_file: "}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := cfg(tc.bundle, tc.extra)
			out, err := run(t, "config", "check", "-c", path)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 2 {
				t.Fatalf("config check: %v (output %q), want exit code 2", err, out)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("config check: %v\nwant %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "trusted key 0") {
				t.Errorf("the second key is called key 0: %v", err)
			}
			if !tc.run {
				return
			}
			_, err = run(t, "run", "-c", path)
			if err == nil || !strings.Contains(err.Error(), strings.SplitN(tc.want[0], ":", 2)[0]+":") {
				t.Errorf("run: %v, want it refused naming %s", err, strings.SplitN(tc.want[0], ":", 2)[0])
			}
		})
	}

	// What run accepts, check accepts: a readable password, a token.
	os.WriteFile(password, []byte("secret\n"), 0o600)
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	out, err := run(t, "config", "check", "-c", cfg(good, fmt.Sprintf("mqtt: {username: u, password_file: %q}\n"+
		"http: {listen: \"127.0.0.1:8080\", token_file: \"${CREDENTIALS_DIRECTORY}/api-token\"}\n", password)))
	if err != nil || !strings.Contains(out, ": ok (") || strings.Contains(out, "warning") {
		t.Fatalf("good files: %v\n%s", err, out)
	}
	// An API reachable from the network without a token: ok, with a warning.
	out, err = run(t, "config", "check", "-c", cfg(good, "http: {listen: \":8080\"}\n"))
	if err != nil || !strings.Contains(out, `warning: http.listen: ":8080" reaches beyond this machine, and no http.token_file is set`) || !strings.Contains(out, ": ok (") {
		t.Fatalf("listen :8080 without a token: %v\n%s", err, out)
	}
	out, err = run(t, "config", "check", "-c", cfg(good, fmt.Sprintf("http: {listen: \":8080\", token_file: %q}\n", token)))
	if err != nil || strings.Contains(out, "warning") {
		t.Fatalf("listen :8080 with a token: %v\n%s", err, out)
	}
}
