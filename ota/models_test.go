package ota_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rs/zerolog"

	"github.com/sightd/sightd/ota"
	"github.com/sightd/sightd/ota/otatest"
	"github.com/sightd/sightd/quant/bundle"
)

// stageVersion stages the signed demo bundle of version into m.
func stageVersion(t *testing.T, m *ota.Models, key *ota.PrivateKey, version, floor int64) *ota.Staged {
	t.Helper()
	path := otatest.WriteFile(t, "b.tar", otatest.Bundle(t, key, version))
	s, err := m.Stage(path, ota.Policy{Keys: ota.Keyring{key.Public()}, Floor: floor}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openModels(t *testing.T, dir string, restarts int) (*ota.Models, ota.Recovery) {
	t.Helper()
	m, rec, err := ota.OpenModels(dir, restarts, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return m, rec
}

func active(t *testing.T, m *ota.Models) int64 {
	t.Helper()
	dir, v, err := m.Active()
	if errors.Is(err, ota.ErrNoModel) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	// The active version is always a complete bundle.
	b, err := bundle.Open(dir)
	if err != nil {
		t.Fatalf("active version %d: %v", v, err)
	}
	if b.Manifest.Version != v {
		t.Fatalf("directory v%d holds version %d", v, b.Manifest.Version)
	}
	return v
}

// versions lists the v<N> directories present.
func versions(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "download" {
			out = append(out, e.Name())
		}
	}
	return out
}

// An update goes staged -> current on trial -> committed; the previous
// version is kept for a rollback and older ones are deleted.
func TestStageSwitchCommit(t *testing.T) {
	key := otatest.Key(t)
	dir := t.TempDir()
	m, _ := openModels(t, dir, 2)
	if v := active(t, m); v != 0 {
		t.Fatalf("a new directory has version %d active", v)
	}
	for _, v := range []int64{2, 3, 4} {
		s := stageVersion(t, m, key, v, v-1)
		if active(t, m) == v {
			t.Fatalf("version %d active before the switch", v)
		}
		if err := m.Switch(s); err != nil {
			t.Fatal(err)
		}
		if got := active(t, m); got != v {
			t.Fatalf("active %d after switching to %d", got, v)
		}
		tr := m.Trial()
		if tr == nil || tr.Version != v || tr.Previous != max(v-1, 0)*btoi(v > 2) {
			t.Fatalf("trial %+v after switching to %d", tr, v)
		}
		var verdict ota.Verdict
		for range 5 {
			verdict = m.Frame(true, 5)
		}
		if verdict != ota.Commit {
			t.Fatalf("5 good frames of 5: verdict %v", verdict)
		}
		if err := m.Commit(); err != nil {
			t.Fatal(err)
		}
		if m.Trial() != nil {
			t.Fatal("trial still running after the commit")
		}
		if m.Frame(false, 5) != ota.Continue {
			t.Fatal("a failed frame outside a trial changed something")
		}
	}
	if got, want := versions(t, dir), []string{"v3", "v4"}; !slices.Equal(got, want) {
		t.Errorf("versions kept %v, want %v (current and previous)", got, want)
	}
	if m.Previous() != 3 {
		t.Errorf("previous %d, want 3", m.Previous())
	}
}

func btoi(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// A trial whose frames fail rolls back to the previous version and deletes
// the failed one; a rollback from the first installed version goes back to
// the configured bundle (no current at all).
func TestTrialFailureRollsBack(t *testing.T) {
	key := otatest.Key(t)
	dir := t.TempDir()
	m, _ := openModels(t, dir, 2)
	if err := m.Switch(stageVersion(t, m, key, 2, 1)); err != nil {
		t.Fatal(err)
	}
	if err := m.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := m.Switch(stageVersion(t, m, key, 3, 2)); err != nil {
		t.Fatal(err)
	}
	verdict := ota.Continue
	for i := 0; i < 10 && verdict == ota.Continue; i++ {
		verdict = m.Frame(i%3 == 0, 4) // mostly failing
	}
	if verdict != ota.RollBack {
		t.Fatalf("verdict %v after mostly failed frames", verdict)
	}
	failed, err := m.Rollback("frames failed")
	if err != nil || failed != 3 {
		t.Fatalf("rollback: %d, %v", failed, err)
	}
	if v := active(t, m); v != 2 {
		t.Fatalf("active %d after the rollback, want 2", v)
	}
	if got := versions(t, dir); !slices.Equal(got, []string{"v2"}) {
		t.Errorf("versions %v after the rollback, want [v2]", got)
	}
	// A manual rollback of 2 goes back to the configured bundle.
	if failed, err := m.Rollback("by hand"); err != nil || failed != 2 {
		t.Fatalf("rollback: %d, %v", failed, err)
	}
	if v := active(t, m); v != 0 {
		t.Fatalf("active %d, want none (the configured bundle)", v)
	}
}

// A bundle that fails verification leaves nothing behind: no version
// directory, no staging directory.
func TestStageRefusesBeforeUnpack(t *testing.T) {
	key, other := otatest.Key(t), otatest.Key(t)
	dir := t.TempDir()
	m, _ := openModels(t, dir, 2)
	src := otatest.Dir(t, 2)
	good := otatest.Pack(t, src, key)
	flipped := otatest.Flip(t, good, src, "image.tflite")
	for name, tc := range map[string]struct {
		data  []byte
		keys  ota.Keyring
		floor int64
		want  error
	}{
		"flipped byte": {flipped, ota.Keyring{key.Public()}, 1, bundle.ErrHashMismatch},
		"wrong key":    {good, ota.Keyring{other.Public()}, 1, ota.ErrUntrustedKey},
		"unsigned":     {otatest.Pack(t, otatest.Dir(t, 2), nil), ota.Keyring{key.Public()}, 1, ota.ErrUnsigned},
		"same version": {good, ota.Keyring{key.Public()}, 2, ota.ErrOldVersion},
		"truncated":    {good[:len(good)/2], ota.Keyring{key.Public()}, 1, bundle.ErrInvalid},
	} {
		path := otatest.WriteFile(t, "b.tar", tc.data)
		_, err := m.Stage(path, ota.Policy{Keys: tc.keys, Floor: tc.floor}, nil)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
		if got := versions(t, dir); len(got) != 0 {
			t.Errorf("%s: left %v behind", name, got)
		}
	}
}

// What a power cut can leave, and what the next start makes of it: always
// exactly one complete version current (or none: the configured bundle).
func TestRecovery(t *testing.T) {
	key := otatest.Key(t)
	// setup builds a directory with v2 committed and v3 staged, and then
	// applies the crash state.
	setup := func(t *testing.T) (string, *ota.Models, *ota.Staged) {
		dir := t.TempDir()
		m, _ := openModels(t, dir, 2)
		if err := m.Switch(stageVersion(t, m, key, 2, 1)); err != nil {
			t.Fatal(err)
		}
		if err := m.Commit(); err != nil {
			t.Fatal(err)
		}
		return dir, m, stageVersion(t, m, key, 3, 2)
	}

	t.Run("unpack interrupted", func(t *testing.T) {
		dir, _, _ := setup(t)
		os.MkdirAll(filepath.Join(dir, ".staging-123", "x"), 0o755)
		os.Symlink("v3", filepath.Join(dir, ".link-current"))
		m, rec := openModels(t, dir, 2)
		if v := active(t, m); v != 2 {
			t.Errorf("active %d, want 2", v)
		}
		for _, n := range []string{".staging-123", ".link-current", "v3"} {
			if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
				t.Errorf("%s still there", n)
			}
		}
		if len(rec.Removed) != 3 {
			t.Errorf("removed %v", rec.Removed)
		}
	})
	t.Run("trial marker written, link not moved", func(t *testing.T) {
		dir, _, _ := setup(t)
		os.WriteFile(filepath.Join(dir, "trial.json"), []byte(`{"version":3,"previous":2,"restarts":0}`), 0o644)
		m, _ := openModels(t, dir, 2)
		if v := active(t, m); v != 2 || m.Trial() != nil {
			t.Errorf("active %d, trial %+v: want 2 and no trial", v, m.Trial())
		}
	})
	t.Run("switched, restarts within the limit", func(t *testing.T) {
		dir, m, s := setup(t)
		if err := m.Switch(s); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 2; i++ {
			m, _ = openModels(t, dir, 2)
			if v, tr := active(t, m), m.Trial(); v != 3 || tr == nil || tr.Restarts != i {
				t.Fatalf("start %d: active %d, trial %+v", i, v, tr)
			}
		}
		// One restart too many rolls back.
		m, rec := openModels(t, dir, 2)
		if v := active(t, m); v != 2 || rec.RolledBack != 3 || rec.Reason == "" {
			t.Fatalf("active %d, recovery %+v: want a rollback to 2", v, rec)
		}
		if got := versions(t, dir); !slices.Equal(got, []string{"v2"}) {
			t.Errorf("versions %v, want [v2]", got)
		}
	})
	t.Run("current version damaged", func(t *testing.T) {
		dir, m, s := setup(t)
		if err := m.Switch(s); err != nil {
			t.Fatal(err)
		}
		if err := m.Commit(); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(dir, "v3", "manifest.json"))
		m, rec := openModels(t, dir, 2)
		if v := active(t, m); v != 2 || rec.Reason == "" {
			t.Errorf("active %d, recovery %+v: want a fall back to 2", v, rec)
		}
	})
	t.Run("unreadable trial marker", func(t *testing.T) {
		dir, m, s := setup(t)
		if err := m.Switch(s); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "trial.json"), []byte(`{"version":3,`), 0o644)
		m, rec := openModels(t, dir, 2)
		if v := active(t, m); v != 2 || rec.RolledBack != 3 {
			t.Errorf("active %d, recovery %+v: want a rollback to 2", v, rec)
		}
	})
}

// An update installed over one still on trial keeps the last proven
// version as the one to roll back to.
func TestSwitchDuringTrial(t *testing.T) {
	key := otatest.Key(t)
	dir := t.TempDir()
	m, _ := openModels(t, dir, 2)
	if err := m.Switch(stageVersion(t, m, key, 2, 1)); err != nil {
		t.Fatal(err)
	}
	if err := m.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := m.Switch(stageVersion(t, m, key, 3, 2)); err != nil { // on trial
		t.Fatal(err)
	}
	if err := m.Switch(stageVersion(t, m, key, 4, 3)); err != nil {
		t.Fatal(err)
	}
	if tr := m.Trial(); tr == nil || tr.Version != 4 || tr.Previous != 2 {
		t.Fatalf("trial %+v, want 4 rolling back to 2", tr)
	}
	if got := versions(t, dir); !slices.Equal(got, []string{"v2", "v4"}) {
		t.Errorf("versions %v, want [v2 v4]: the unproven 3 dropped", got)
	}
	if failed, err := m.Rollback("frames failed"); err != nil || failed != 4 || active(t, m) != 2 {
		t.Fatalf("rollback: %d, %v, active %d", failed, err, active(t, m))
	}
}
