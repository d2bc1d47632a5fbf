package hatest

import (
	"os"
	"strings"
	"testing"
)

// The entries a test fails on: warnings and worse that mention MQTT or
// sightd, a traceback kept with its entry, INFO and DEBUG lines never.
func TestProblems(t *testing.T) {
	b, err := os.ReadFile("testdata/home-assistant.log")
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	got := Problems(log, "MQTT", "sightd")
	if len(got) != 2 {
		t.Fatalf("got %d entries, want 2: %q", len(got), got)
	}
	if !strings.Contains(got[0], "extra keys not allowed") {
		t.Errorf("first entry: %q", got[0])
	}
	if !strings.HasPrefix(got[1], "2026-12-06 23:10:04.404 ERROR") || !strings.HasSuffix(got[1], "ValueError: from sightd's snapshot topic") {
		t.Errorf("second entry with its traceback: %q", got[1])
	}
	all := Problems(log)
	if len(all) != 4 || !strings.Contains(all[0], "custom integration") || !strings.Contains(all[3], "CRITICAL") {
		t.Errorf("every warning and error: %q", all)
	}
	if p := Problems("", "mqtt"); p != nil {
		t.Errorf("empty log: %q", p)
	}
}

// Any log: every entry returned starts with a warning's or error's header
// line from the log and mentions the word.
func FuzzProblems(f *testing.F) {
	b, err := os.ReadFile("testdata/home-assistant.log")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(b), "mqtt")
	f.Add("2026-12-06 23:10:03 ERROR x\n  tb sightd\n", "sightd")
	f.Fuzz(func(t *testing.T, log, word string) {
		for _, e := range Problems(log, word) {
			first, _, _ := strings.Cut(e, "\n")
			m := entryStart.FindStringSubmatch(first)
			if m == nil || m[1] == "INFO" || m[1] == "DEBUG" || !strings.Contains(log, first) {
				t.Fatalf("entry %q does not start with a problem's header", e)
			}
			if !strings.Contains(strings.ToLower(e), strings.ToLower(word)) {
				t.Fatalf("entry %q does not mention %q", e, word)
			}
		}
	})
}
