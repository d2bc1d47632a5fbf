package procstat

import (
	"errors"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func readFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const kB = 1024

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		text string
		want Memory
	}{{
		// /proc/PID/smaps_rollup of `sightd bench` on Linux 6.18, while
		// another process mapped the same libraries (Pss < Rss).
		name: "smaps_rollup of sightd bench, Linux 6.18",
		text: readFile(t, "bench.smaps_rollup"),
		want: Memory{Rss: 135568 * kB, Pss: 105368 * kB, SharedClean: 58056 * kB, PrivateClean: 32176 * kB,
			PrivateDirty: 45336 * kB, Anonymous: 45336 * kB},
	}, {
		// Two mappings of libopencv_core from /proc/PID/smaps of the same
		// process: the fields add up.
		name: "smaps, two mappings",
		text: readFile(t, "opencv_core.smaps"),
		want: Memory{Rss: (344 + 1388) * kB, Pss: (172 + 1100) * kB, SharedClean: (344 + 576) * kB, PrivateClean: 812 * kB},
	}, {
		// The layout of Linux 5.4 to 5.13 (Raspberry Pi OS 11's 5.10, for
		// one): no Pss_Anon/Pss_File/Pss_Dirty lines.
		name: "smaps_rollup without the Pss_ breakdown",
		text: "00400000-7ffc4b1f5000 ---p 00000000 00:00 0                              [rollup]\n" +
			"Rss:               98304 kB\nPss:               60123 kB\nShared_Clean:      50000 kB\nShared_Dirty:          0 kB\n" +
			"Private_Clean:      8000 kB\nPrivate_Dirty:     40304 kB\nReferenced:        98304 kB\nAnonymous:         40304 kB\n" +
			"LazyFree:              0 kB\nAnonHugePages:         0 kB\nShmemPmdMapped:        0 kB\nFilePmdMapped:         0 kB\n" +
			"Shared_Hugetlb:        0 kB\nPrivate_Hugetlb:       0 kB\nSwap:               1024 kB\nSwapPss:            1024 kB\nLocked:                0 kB\n",
		want: Memory{Rss: 98304 * kB, Pss: 60123 * kB, SharedClean: 50000 * kB, PrivateClean: 8000 * kB,
			PrivateDirty: 40304 * kB, Anonymous: 40304 * kB, Swap: 1024 * kB},
	}, {
		name: "fields in any order, unknown ones ignored, no header",
		text: "Anonymous: 4 kB\nFuture_Field: 12 kB\nRss: 8 kB\nTHPeligible: 0\nVmFlags: rd wr\n",
		want: Memory{Rss: 8 * kB, Anonymous: 4 * kB},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Parse =\n%+v, want\n%+v", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, text := range []string{
		"",
		"Pss: 4 kB\n",              // no Rss
		"Rss: 4\n",                 // no unit
		"Rss: four kB\n",           // not a number
		"Rss: -4 kB\n",             // negative
		"Rss: 99999999999999 kB\n", // beyond any machine
	} {
		if _, err := Parse(strings.NewReader(text)); !errors.Is(err, ErrFormat) {
			t.Errorf("Parse(%q) = %v, want ErrFormat", text, err)
		}
	}
}

func TestPrivate(t *testing.T) {
	m, err := Parse(strings.NewReader(readFile(t, "bench.smaps_rollup")))
	if err != nil {
		t.Fatal(err)
	}
	if m.Private() != 45336*kB || m.FileBacked() != (135568-45336)*kB {
		t.Errorf("Private %d, FileBacked %d", m.Private(), m.FileBacked())
	}
	// Pages shared with a forked child: Anonymous without Private_Dirty.
	if got := (Memory{Anonymous: 10, PrivateDirty: 4}).Private(); got != 10 {
		t.Errorf("Private = %d, want 10", got)
	}
}

func TestLibraries(t *testing.T) {
	text := readFile(t, "bench.maps") +
		"7f0000000000-7f0000001000 r-xp 00000000 fe:00 42   /usr/lib/x86_64-linux-gnu/libold.so.1 (deleted)\n" +
		"7f0000001000-7f0000002000 r--p 00000000 fe:00 43   /opt/my dir/libspace.so\n" +
		"7f0000002000-7f0000003000 r--p 00000000 fe:00 44   /usr/share/not.so.much\n" +
		"7f0000003000-7f0000004000 r--p 00000000 fe:00 45   /usr/lib/python3/x.sock\n"
	got, err := Libraries(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/usr/lib/x86_64-linux-gnu/libopencv_core.so.4.6.0",
		"/usr/lib/x86_64-linux-gnu/libgdal.so.32.3.6.2",
		"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"/usr/lib/x86_64-linux-gnu/libold.so.1",
		"/opt/my dir/libspace.so",
		"/usr/share/not.so.much", // a name like a library's is counted: /proc cannot tell
	}
	if !slices.Equal(got, want) {
		t.Errorf("Libraries =\n%q, want\n%q", got, want)
	}
}

func TestStartTicks(t *testing.T) {
	// A command name with spaces and parentheses, as the kernel writes it.
	stat := "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 0 0\n"
	if got, err := startTicks([]byte(stat)); err != nil || got != 123456 {
		t.Errorf("startTicks = %d, %v; want 123456", got, err)
	}
	if _, err := startTicks([]byte("4242 (x) S 1 2")); !errors.Is(err, ErrFormat) {
		t.Errorf("short stat: %v, want ErrFormat", err)
	}
}

// The live process: its own files, as /metrics and sightd bench read them.
func TestSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	hold := make([]byte, 32<<20) // 32 MiB this process writes: anonymous, private
	for i := range hold {
		hold[i] = byte(i)
	}
	m, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RSS %s MB, PSS %s MB, private %s MB, anonymous %s MB", MB(m.Rss), MB(m.Pss), MB(m.Private()), MB(m.Anonymous))
	if m.Anonymous < int64(len(hold)) || m.Private() < int64(len(hold)) {
		t.Errorf("anonymous %d, private %d: less than the %d bytes written", m.Anonymous, m.Private(), len(hold))
	}
	if m.Rss < m.Private() || m.Pss > m.Rss || m.Pss < m.Private() {
		t.Errorf("want private <= PSS <= RSS: %+v", m)
	}
	runtime.KeepAlive(hold)

	libs, err := LibrariesOf(0)
	if err != nil {
		t.Fatal(err)
	}
	// A test binary of this package links no C library; under the race
	// detector or with cgo it does. Either way the list has no duplicates.
	slices.Sort(libs)
	if len(slices.Compact(slices.Clone(libs))) != len(libs) {
		t.Errorf("duplicates in %q", libs)
	}

	started, err := Started()
	if err != nil {
		t.Fatal(err)
	}
	if age := time.Since(started); age < 0 || age > 2*time.Hour {
		t.Errorf("the process started %v ago", age)
	}
}

func TestRead(t *testing.T) {
	if _, err := Read(os.Getpid()); err != nil {
		t.Error(err)
	}
	if _, err := Read(-7); err == nil {
		t.Error("Read(-7): no error")
	}
}

// Seeds: testdata/fuzz/FuzzParse (the real files of testdata/ and edge cases).
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(strings.NewReader(string(b)))
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v is not ErrFormat", err)
			}
			return
		}
		for _, v := range []int64{m.Rss, m.Pss, m.SharedClean, m.SharedDirty, m.PrivateClean, m.PrivateDirty, m.Anonymous, m.Swap} {
			if v < 0 || v%kB != 0 {
				t.Fatalf("field %d in %+v", v, m)
			}
		}
		if m.Private() < 0 || m.FileBacked() < 0 {
			t.Fatalf("%+v", m)
		}
	})
}
