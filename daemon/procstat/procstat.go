// Package procstat reads what Linux says about a process's memory, as a user
// counts it: resident (RSS), proportional (PSS: a shared page split among the
// processes that map it) and private memory, from /proc/PID/smaps_rollup; the
// shared libraries it maps, from /proc/PID/maps; and when it started.
package procstat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrFormat says that a file did not look like /proc's.
var ErrFormat = errors.New("procstat: unexpected format")

// Memory is the sum of a process's mappings, in bytes.
type Memory struct {
	Rss          int64 // resident: every page mapped and present, shared ones whole
	Pss          int64 // proportional: each page divided by the processes mapping it
	SharedClean  int64
	SharedDirty  int64
	PrivateClean int64 // file pages only this process maps, unchanged: the kernel can drop them
	PrivateDirty int64 // pages only this process maps, written: heap, stacks, relocated library data
	Anonymous    int64 // pages with no file behind them (heap, stacks, copy-on-write copies)
	Swap         int64
}

// Private is the memory that is the process's own and stays when the kernel
// reclaims file pages: its anonymous pages and its private dirty pages. A
// private anonymous page is counted in both (Private_Dirty is a superset of
// private Anonymous unless pages are shared with a forked child or came back
// clean from swap), and the rollup has no cross-tabulation, so Private is the
// larger of the two: exact for a process that does not fork, like sightd.
//
// Private_Dirty also counts file pages that are dirty in the page cache: a
// binary written seconds ago (before writeback) or a written shared file
// mapping (Badger's) adds to it until the kernel writes the pages back, and
// Anonymous alone is then the smaller, steadier figure.
func (m Memory) Private() int64 { return max(m.Anonymous, m.PrivateDirty) }

// FileBacked is the resident memory mapped from files (libraries, the
// binary, mapped model files): the RSS minus the anonymous pages.
func (m Memory) FileBacked() int64 { return max(0, m.Rss-m.Anonymous) }

// Parse reads the "Name: N kB" lines of a smaps_rollup file (or of a whole
// smaps file, whose mappings it adds up) and ignores everything else (mapping
// headers, VmFlags, THPeligible and fields it does not know). It fails on a
// text with no Rss line, or a number it cannot read.
func Parse(r io.Reader) (Memory, error) {
	var m Memory
	fields := map[string]*int64{
		"Rss": &m.Rss, "Pss": &m.Pss, "Shared_Clean": &m.SharedClean, "Shared_Dirty": &m.SharedDirty,
		"Private_Clean": &m.PrivateClean, "Private_Dirty": &m.PrivateDirty, "Anonymous": &m.Anonymous, "Swap": &m.Swap,
	}
	sawRss := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		name, rest, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		dst := fields[string(name)]
		if dst == nil {
			continue
		}
		v, ok := bytes.CutSuffix(bytes.TrimSpace(rest), []byte("kB"))
		if !ok {
			return Memory{}, fmt.Errorf("%w: %s: %q has no kB", ErrFormat, name, rest)
		}
		kb, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
		if err != nil || kb < 0 || kb > 1<<42 { // 4 PiB: no real process
			return Memory{}, fmt.Errorf("%w: %s: %q", ErrFormat, name, rest)
		}
		if *dst += kb << 10; *dst < 0 || *dst > 1<<52 {
			return Memory{}, fmt.Errorf("%w: %s overflows", ErrFormat, name)
		}
		sawRss = sawRss || string(name) == "Rss"
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		return Memory{}, fmt.Errorf("%w: %w", ErrFormat, err)
	} else if err != nil {
		return Memory{}, err
	}
	if !sawRss {
		return Memory{}, fmt.Errorf("%w: no Rss line", ErrFormat)
	}
	return m, nil
}

// Read reads /proc/PID/smaps_rollup (Linux 4.14 and later), or adds up
// /proc/PID/smaps where the rollup is missing. pid 0 is this process.
func Read(pid int) (Memory, error) {
	f, err := os.Open(procPath(pid, "smaps_rollup"))
	if errors.Is(err, os.ErrNotExist) {
		f, err = os.Open(procPath(pid, "smaps"))
	}
	if err != nil {
		return Memory{}, err
	}
	defer f.Close()
	m, err := Parse(f)
	if err != nil {
		return Memory{}, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return m, nil
}

// Self is Read(0): this process.
func Self() (Memory, error) { return Read(0) }

// Libraries lists the shared libraries mapped in a maps file (ELF shared
// objects, by name: "libc.so.6", "ld-linux-x86-64.so.2", "x.so"), each once.
func Libraries(r io.Reader) ([]string, error) {
	seen := map[string]bool{}
	var libs []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// address perms offset dev inode [path]; the path may hold spaces.
		f := strings.SplitN(sc.Text(), " ", 6)
		if len(f) < 6 {
			continue
		}
		path := strings.TrimSuffix(strings.TrimSpace(f[5]), " (deleted)")
		if !strings.HasPrefix(path, "/") || !isLibrary(filepath.Base(path)) || seen[path] {
			continue
		}
		seen[path] = true
		libs = append(libs, path)
	}
	return libs, sc.Err()
}

// isLibrary: NAME.so or NAME.so.VERSION.
func isLibrary(base string) bool {
	i := strings.Index(base, ".so")
	if i <= 0 {
		return false
	}
	rest := base[i+len(".so"):]
	return rest == "" || rest[0] == '.'
}

// LibrariesOf lists the shared libraries process pid maps (0: this one).
func LibrariesOf(pid int) ([]string, error) {
	f, err := os.Open(procPath(pid, "maps"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Libraries(f)
}

// Started is when this process started (its fork, before the dynamic loader
// mapped its libraries), to the kernel's clock tick (10 ms).
func Started() (time.Time, error) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return time.Time{}, err
	}
	ticks, err := startTicks(b)
	if err != nil {
		return time.Time{}, err
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Time{}, err
	}
	// /proc counts in USER_HZ, 100 on every Linux; since boot, on CLOCK_BOOTTIME.
	age := time.Duration(ts.Nano()) - time.Duration(ticks)*(time.Second/100)
	return time.Now().Add(-age), nil
}

// startTicks reads field 22 (starttime) of /proc/PID/stat. The command name,
// field 2, is in parentheses and may hold spaces and parentheses: the fields
// after it start after the last ')'.
func startTicks(stat []byte) (int64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: stat has no ')'", ErrFormat)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 { // fields 3..22
		return 0, fmt.Errorf("%w: stat has %d fields after the name", ErrFormat, len(f))
	}
	return strconv.ParseInt(f[19], 10, 64)
}

func procPath(pid int, name string) string {
	if pid == 0 {
		return "/proc/self/" + name
	}
	return "/proc/" + strconv.Itoa(pid) + "/" + name
}

// MB formats bytes as megabytes (10^6) with one decimal, as sightd prints memory.
func MB(b int64) string { return strconv.FormatFloat(float64(b)/1e6, 'f', 1, 64) }
