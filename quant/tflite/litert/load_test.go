package litert_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sightd/sightd/quant/tflite/litert"
)

// TestMain lets the test binary load LiteRT in a child process whose
// LD_LIBRARY_PATH (searched before the binary's run path) holds a broken
// libLiteRt.so.
func TestMain(m *testing.M) {
	if os.Getenv("SIGHTD_TEST_LITERT_CHILD") != "" {
		_, err := litert.NewModel([]byte("0000TFL3"))
		fmt.Printf("no-runtime=%v\n%v\n", errors.Is(err, litert.ErrNoRuntime), err)
		fmt.Println("version:", litert.Version())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A library that is not there or not LiteRT 2.3 is one clear error naming
// the library and how to get it; nothing crashes, and Version says why.
func TestRuntimeMissing(t *testing.T) {
	// A real library of this architecture (a loader skips one of another,
	// as under QEMU) that is not LiteRT: TensorFlow Lite 2.9's.
	other, err := os.ReadFile(filepath.Join("..", "..", "..", "third_party", "tflite", "linux_"+runtime.GOARCH, "lib", "libtensorflowlite_c.so"))
	if err != nil {
		t.Fatalf("TensorFlow Lite 2.9 missing (run `make deps`): %v", err)
	}
	for name, c := range map[string]struct {
		content []byte
		want    string
	}{
		"not a library":   {[]byte("this is not an ELF file\n"), "libLiteRt.so"},
		"another library": {other, "libLiteRt.so has no LiteRtCreateEnvironment: not LiteRT 2.3"},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "libLiteRt.so"), c.content, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "SIGHTD_TEST_LITERT_CHILD=1", "LD_LIBRARY_PATH="+dir+":"+os.Getenv("LD_LIBRARY_PATH"))
		out, err := cmd.CombinedOutput()
		s := string(out)
		if err != nil || !strings.Contains(s, "no-runtime=true") || !strings.Contains(s, c.want) ||
			!strings.Contains(s, "make deps") || !strings.Contains(s, "version: "+litert.PinnedVersion+" (") {
			t.Errorf("%s: %v\n%s", name, err, s)
		}
	}
}
