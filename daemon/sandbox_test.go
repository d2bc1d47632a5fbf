package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/sightd/sightd/quant/modelgen/demo"
)

// The unit's sandbox (systemd/sightd.service) checked against what the
// runtimes really do, without a running systemd: the model commands run in a
// child process of this test binary, once under the kernel's
// memory-deny-write-execute (what MemoryDenyWriteExecute= sets) and once
// traced, every system call checked against the unit's SystemCallFilter.

const (
	prSetMDWE             = 65 // prctl: memory-deny-write-execute, Linux 6.3
	prMDWERefuseExecGain  = 1
	childArgsEnv          = "SIGHTD_TEST_ARGS"
	childMDWEEnv          = "SIGHTD_TEST_MDWE"
	mdweProbeRefusedToken = "MDWE: a writable and executable mapping was refused"
)

// commandChild runs the sightd command line in SIGHTD_TEST_ARGS (JSON),
// first turning on memory-deny-write-execute when asked and proving it holds.
func commandChild() int {
	var args []string
	if err := json.Unmarshal([]byte(os.Getenv(childArgsEnv)), &args); err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	if os.Getenv(childMDWEEnv) != "" {
		if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetMDWE, prMDWERefuseExecGain, 0, 0, 0, 0); e != 0 {
			fmt.Println("ERROR prctl(PR_SET_MDWE):", e)
			return 1
		}
		// The control: the kernel must now refuse memory both writable and
		// executable, or the run below proves nothing.
		if b, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE|syscall.PROT_EXEC, syscall.MAP_PRIVATE|syscall.MAP_ANON); err == nil {
			syscall.Munmap(b)
			fmt.Println("ERROR MDWE is not in force: a W+X mapping was allowed")
			return 1
		}
		fmt.Println(mdweProbeRefusedToken)
	}
	cmd := newRootCmd()
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	return 0
}

// sandboxCommands are the runs that exercise both runtimes: the pipeline
// (LiteRT, OpenCV decoding of a real video) and the side-by-side comparison
// (LiteRT, TensorFlow Lite 2.9 with XNNPACK and built-in kernels) on the
// benchmark bundle, whose int8 tower is big enough for XNNPACK's int8 paths.
func sandboxCommands(t *testing.T) [][]string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bench")
	if err := demo.Build(dir, demo.Options{Bench: true}); err != nil {
		t.Fatal(err)
	}
	return [][]string{
		{"bench", "--bundle", dir, "--source", opencvPhoto(t, "vtest.avi"), "--frames", "10", "--threads", "2"},
		{"bench", "--compare", "--bundle", dir, "--invokes", "1"},
	}
}

func childCmd(t *testing.T, wrapper []string, args []string, env ...string) *exec.Cmd {
	t.Helper()
	js, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	argv := append(slices.Clone(wrapper), os.Args[0], "-test.run=^$")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), append([]string{"SIGHTD_TEST_CHILD=command", childArgsEnv + "=" + string(js)}, env...)...)
	return cmd
}

// MemoryDenyWriteExecute=yes holds: LiteRT and TensorFlow Lite 2.9 (with
// XNNPACK) load, compile and run with no memory both writable and executable.
func TestSandboxMemoryDenyWriteExecute(t *testing.T) {
	for _, args := range sandboxCommands(t) {
		out, err := childCmd(t, nil, args, childMDWEEnv+"=1").CombinedOutput()
		if err != nil || !strings.Contains(string(out), mdweProbeRefusedToken) {
			t.Fatalf("sightd %s under memory-deny-write-execute: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// Every system call of those runs is in the unit's filter
// (SystemCallFilter=@system-service ~@privileged), expanded by systemd's own
// systemd-analyze; a call outside it would fail with EPERM under systemd.
func TestSandboxSystemCalls(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Fatalf("strace is needed (make deps installs it): %v", err)
	}
	allowed := syscallSet(t, "@system-service")
	for name := range syscallSet(t, "@privileged") {
		delete(allowed, name)
	}
	call := regexp.MustCompile(`^\d+\s+([a-z0-9_]+)\(`)
	for _, args := range sandboxCommands(t) {
		trace := filepath.Join(t.TempDir(), "trace")
		out, err := childCmd(t, []string{strace, "-f", "-qq", "-o", trace}, args).CombinedOutput()
		if err != nil {
			t.Fatalf("traced sightd %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		f, err := os.Open(trace)
		if err != nil {
			t.Fatal(err)
		}
		used := map[string]bool{}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if m := call.FindStringSubmatch(sc.Text()); m != nil {
				used[m[1]] = true
			}
		}
		f.Close()
		// The test binary's own start (execve by strace) is not sightd's.
		delete(used, "execve")
		var outside []string
		for name := range used {
			if !allowed[name] {
				outside = append(outside, name)
			}
		}
		slices.Sort(outside)
		if len(used) < 20 || len(outside) > 0 {
			t.Errorf("sightd %s: %d system calls, outside the unit's filter: %v", strings.Join(args, " "), len(used), outside)
		}
	}
}

// syscallSet expands a systemd system call set, nested sets included.
func syscallSet(t *testing.T, name string) map[string]bool {
	t.Helper()
	out, err := exec.Command("systemd-analyze", "syscall-filter", "--no-pager").Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter: %v", err)
	}
	sets := map[string][]string{}
	var cur string
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "@"):
			cur = strings.Fields(line)[0]
		case cur != "" && strings.HasPrefix(line, "    "):
			if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
				sets[cur] = append(sets[cur], f[0])
			}
		}
	}
	got := map[string]bool{}
	var walk func(string)
	seen := map[string]bool{}
	walk = func(s string) {
		if seen[s] {
			return
		}
		seen[s] = true
		for _, m := range sets[s] {
			if strings.HasPrefix(m, "@") {
				walk(m)
			} else {
				got[m] = true
			}
		}
	}
	walk(name)
	if len(got) < 50 {
		t.Fatalf("systemd-analyze lists %d system calls in %s", len(got), name)
	}
	return got
}
