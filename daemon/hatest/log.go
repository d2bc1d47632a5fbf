package hatest

import (
	"regexp"
	"strings"
)

// An entry of home-assistant.log starts with a timestamp and a level, e.g.
// "2026-12-06 23:10:11.123 WARNING (MainThread) [homeassistant.components.mqtt] ...";
// lines that do not (a traceback) belong to the entry before them.
var entryStart = regexp.MustCompile(`^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? ([A-Z]+) `)

// Problems returns the WARNING, ERROR and CRITICAL entries of a Home
// Assistant log that mention any of words (case-insensitive), each with its
// continuation lines. With no words it returns every such entry.
func Problems(log string, words ...string) []string {
	var out []string
	var cur []string
	flush := func() {
		if cur == nil {
			return
		}
		entry := strings.Join(cur, "\n")
		cur = nil
		low := strings.ToLower(entry)
		for _, w := range words {
			if strings.Contains(low, strings.ToLower(w)) {
				out = append(out, entry)
				return
			}
		}
		if len(words) == 0 {
			out = append(out, entry)
		}
	}
	for _, line := range strings.Split(log, "\n") {
		if m := entryStart.FindStringSubmatch(line); m != nil {
			flush()
			switch m[1] {
			case "WARNING", "ERROR", "CRITICAL":
				cur = []string{line}
			}
			continue
		}
		if cur != nil && line != "" {
			cur = append(cur, line)
		}
	}
	flush()
	return out
}
