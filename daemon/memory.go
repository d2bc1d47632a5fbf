package main

import (
	"fmt"
	"io"
	"time"

	"github.com/sightd/sightd/daemon/procstat"
)

// memoryLine says a process's memory as a user counts it, as sightd bench
// and sightd version --memory print it (and make bench-memory reads it).
func memoryLine(m procstat.Memory, libraries int) string {
	return fmt.Sprintf("RSS %s MB, PSS %s MB, private %s MB (anonymous %s MB), file-backed %s MB; %d shared libraries mapped",
		procstat.MB(m.Rss), procstat.MB(m.Pss), procstat.MB(m.Private()), procstat.MB(m.Anonymous), procstat.MB(m.FileBacked()), libraries)
}

// sinceProcessStart says how long after the process started (before the
// dynamic loader mapped the shared libraries) t was, to 10 ms.
func sinceProcessStart(t time.Time) string {
	started, err := procstat.Started()
	if err != nil {
		return "(the process's start is unknown: " + err.Error() + ")"
	}
	return fmt.Sprintf("%.0f ms from the process's start", ms(t.Sub(started)))
}

// printMemory prints this process's memory line and its age.
func printMemory(w io.Writer) error {
	now := time.Now()
	mem, err := procstat.Self()
	if err != nil {
		return err
	}
	libs, err := procstat.LibrariesOf(0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "memory   %s; %s\n", memoryLine(mem, len(libs)), sinceProcessStart(now))
	return err
}
