package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"
)

// The path `make install` puts the binary at, and the daemon's default config.
const execStart = "/usr/local/bin/sightd run -c /etc/sightd/sightd.yml"

// testableUnit is the unit with ExecStart pointing at a program that exists
// here (this test binary): verify checks that the program is executable.
func testableUnit(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	old := "ExecStart=/usr/local/bin/sightd "
	if strings.Count(Unit(), old) != 1 {
		t.Fatalf("the unit has no single %q line", old)
	}
	return strings.Replace(Unit(), old, "ExecStart="+exe+" ", 1)
}

// analyze runs systemd-analyze with args and the unit written to a file.
func analyze(t *testing.T, content string, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze (Debian package systemd) is needed: %v", err)
	}
	p := filepath.Join(t.TempDir(), UnitName)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, append(args, p)...).CombinedOutput()
	return string(out), err
}

// verify runs `systemd-analyze verify`. By default systemd 252 prints syntax
// warnings (an unknown key, a value it cannot parse) but exits 0; any
// --recursive-errors mode makes them fail, and "no" counts only this unit's,
// not those of the host's units it names (multi-user.target and so on).
// Users are not looked up, so no sightd user is needed here.
func verify(t *testing.T, content string) (string, error) {
	return analyze(t, content, "verify", "--man=no", "--recursive-errors=no")
}

func TestUnitVerifies(t *testing.T) {
	if out, err := verify(t, testableUnit(t)); err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// Each mistake must fail verify, or TestUnitVerifies would prove nothing.
func TestUnitVerifyCatchesMistakes(t *testing.T) {
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"misspelled key", "ProtectSystem=strict", "ProtectSystm=strict", "Unknown key 'ProtectSystm'"},
		{"bad value", "WatchdogSec=30s", "WatchdogSec=30 sekunden", "Failed to parse"},
		{"unknown syscall group", "SystemCallFilter=~@privileged", "SystemCallFilter=~@privilegd", "@privilegd"},
		{"missing program", "ExecReload=/bin/kill", "ExecReload=/nonexistent/kill", "is not executable"},
		{"bad file limit", "LimitNOFILE=4096", "LimitNOFILE=lots", "Failed to parse"},
		{"bad memory limit", "MemoryMax=1G", "MemoryMax=1 gigabyte", "Invalid memory limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := testableUnit(t)
			if !strings.Contains(u, tc.old) {
				t.Fatalf("the unit has no %q", tc.old)
			}
			out, err := verify(t, strings.Replace(u, tc.old, tc.new, 1))
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("verify did not fail with %q: err %v\n%s", tc.want, err, out)
			}
		})
	}
}

// systemd's own rating of the sandbox (0 best, 10 worst) must stay at 2.0 or
// better: 1.6 today. A unit without the sandbox must fail the same check.
func TestUnitExposure(t *testing.T) {
	security := func(content string) (string, error) {
		return analyze(t, content, "security", "--offline=yes", "--threshold=20", "--no-pager")
	}
	if out, err := security(testableUnit(t)); err != nil {
		t.Fatalf("exposure above 2.0: %v\n%s", err, out)
	}
	bare, _, ok := strings.Cut(testableUnit(t), "# A fixed system user")
	if !ok {
		t.Fatal("the unit's sandbox no longer starts at the user's comment")
	}
	if out, err := security(bare); err == nil {
		t.Fatalf("a unit without the sandbox passed:\n%s", out)
	}
}

// The settings that the Go side and `make install` rely on.
func TestUnitSettings(t *testing.T) {
	opts, err := unit.DeserializeOptions(strings.NewReader(Unit()))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, o := range opts {
		k := o.Section + "." + o.Name
		got[k] = append(got[k], o.Value)
	}
	for k, want := range map[string]string{
		"Service.Type":            "notify",
		"Service.NotifyAccess":    "main",
		"Service.ExecStart":       execStart,
		"Service.WatchdogSec":     "30s",
		"Service.User":            "sightd",
		"Service.Group":           "sightd",
		"Service.StateDirectory":  "sightd",
		"Service.ProtectSystem":   "strict",
		"Service.DevicePolicy":    "closed",
		"Install.WantedBy":        "multi-user.target",
		"Service.NoNewPrivileges": "yes",
		"Service.LimitNOFILE":     "4096",
		"Service.MemoryHigh":      "768M",
		"Service.MemoryMax":       "1G",
	} {
		if v := got[k]; len(v) != 1 || v[0] != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
}
