// Command memtable runs sightd binaries several times each, interleaved
// (`sightd version --memory`, which loads sightd and does nothing, and
// `sightd bench` on a bundle and a video), and prints the medians of what
// they report as a Markdown table: shared libraries mapped, peak RSS (from
// the kernel's rusage of the child), RSS, PSS and private memory, and the
// time from the process's start to the end of `version` or to the first
// encoded frame of `bench`. `make bench-memory` runs it on sightd linked with
// the OpenCV modules it uses and with every module gocv references.
//
//	memtable -runs 5 -bundle bin/bench-bundle -source bin/street-720p.avi bin/sightd-opencv-all bin/sightd
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

var (
	memRE   = regexp.MustCompile(`RSS ([0-9.]+) MB, PSS ([0-9.]+) MB, private ([0-9.]+) MB \(anonymous [0-9.]+ MB\), file-backed [0-9.]+ MB; ([0-9]+) shared libraries mapped`)
	startRE = regexp.MustCompile(`([0-9]+) ms from the process's start`)
	peakRE  = regexp.MustCompile(`peak private ([0-9.]+) MB`)
	fpsRE   = regexp.MustCompile(`([0-9.]+) frames/s`)
)

// sample is one run's figures by column key.
type sample map[string]float64

var columns = []struct{ key, title string }{
	{"libs", "shared libraries"}, {"peak", "peak RSS (MB)"}, {"rss", "RSS (MB)"}, {"pss", "PSS (MB)"},
	{"private", "private (MB)"}, {"peakprivate", "peak private (MB)"}, {"start", "process start to done / first frame (ms)"}, {"fps", "frames/s"},
}

func run(bin string, args []string) (sample, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stderr = nil
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", bin, strings.Join(args, " "), err, out)
	}
	s := sample{"peak": float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss) * 1024 / 1e6}
	text := string(out)
	m := memRE.FindStringSubmatch(text)
	st := startRE.FindStringSubmatch(text)
	if m == nil || st == nil {
		return nil, fmt.Errorf("%s %s: no memory or start line in\n%s", bin, strings.Join(args, " "), text)
	}
	for i, k := range []string{"rss", "pss", "private", "libs"} {
		s[k], _ = strconv.ParseFloat(m[i+1], 64)
	}
	s["start"], _ = strconv.ParseFloat(st[1], 64)
	if p := peakRE.FindStringSubmatch(text); p != nil {
		s["peakprivate"], _ = strconv.ParseFloat(p[1], 64)
	}
	if f := fpsRE.FindStringSubmatch(text); f != nil {
		s["fps"], _ = strconv.ParseFloat(f[1], 64)
	}
	return s, nil
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if n := len(v); n%2 == 1 {
		return v[n/2]
	} else {
		return (v[n/2-1] + v[n/2]) / 2
	}
}

func main() {
	runs := flag.Int("runs", 5, "runs of each command on each binary (interleaved)")
	bundle := flag.String("bundle", "bin/bench-bundle", "bundle for sightd bench")
	source := flag.String("source", "bin/street-720p.avi", "video for sightd bench")
	frames := flag.Int("frames", 300, "frames for sightd bench")
	flag.Parse()
	bins := flag.Args()
	if len(bins) == 0 {
		fmt.Fprintln(os.Stderr, "memtable: name the sightd binaries to compare")
		os.Exit(2)
	}
	commands := []struct {
		name string
		args []string
	}{
		{"`sightd version`", []string{"version", "--memory"}},
		{"`sightd bench`", []string{"bench", "--bundle", *bundle, "--source", *source, "--frames", strconv.Itoa(*frames)}},
	}
	got := map[string]map[string][]float64{} // row -> column -> runs
	var rows []string
	for i := 0; i < *runs; i++ {
		for _, c := range commands {
			for _, b := range bins {
				row := b + "\x00" + c.name
				if got[row] == nil {
					got[row] = map[string][]float64{}
					rows = append(rows, row)
				}
				s, err := run(b, c.args)
				if err != nil {
					fmt.Fprintln(os.Stderr, "memtable:", err)
					os.Exit(1)
				}
				for k, v := range s {
					got[row][k] = append(got[row][k], v)
				}
				fmt.Fprintf(os.Stderr, "memtable: run %d/%d %s %s: %v\n", i+1, *runs, b, c.name, s)
			}
		}
	}
	fmt.Printf("Medians of %d runs each, interleaved (min–max in brackets where they differ).\n\n", *runs)
	fmt.Print("| binary | command |")
	for _, c := range columns {
		fmt.Printf(" %s |", c.title)
	}
	fmt.Print("\n| --- | --- |")
	fmt.Print(strings.Repeat(" --- |", len(columns)))
	fmt.Println()
	slices.SortStableFunc(rows, func(a, b string) int { // by command, binaries in the order given
		return strings.Compare(strings.SplitN(a, "\x00", 2)[1], strings.SplitN(b, "\x00", 2)[1])
	})
	for _, row := range rows {
		b, c, _ := strings.Cut(row, "\x00")
		fmt.Printf("| %s | %s |", b, c)
		for _, col := range columns {
			v := got[row][col.key]
			if len(v) == 0 {
				fmt.Print(" |")
				continue
			}
			lo, hi := slices.Min(v), slices.Max(v)
			prec := 1
			if col.key == "libs" || col.key == "start" {
				prec = 0
			}
			if lo == hi {
				fmt.Printf(" %.*f |", prec, lo)
			} else {
				fmt.Printf(" %.*f (%.*f–%.*f) |", prec, median(v), prec, lo, prec, hi)
			}
		}
		fmt.Println()
	}
}
