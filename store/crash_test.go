package store

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// The crash test re-executes this test binary as a writer process (the
// standard Go pattern): with crashChildEnv set, TestMain runs the writer
// instead of the tests.
const crashChildEnv = "SIGHTD_STORE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		os.Exit(crashChild(dir, os.Getenv("SIGHTD_STORE_CRASH_ROUND")))
	}
	os.Exit(m.Run())
}

func crashConfig(dir string) Config {
	cfg := testConfig(dir)
	cfg.OutboxMaxEntries = 1 << 20 // nothing may be dropped in this test
	cfg.OutboxMaxBytes = 1 << 30
	return cfg
}

// crashChild writes rules, outbox messages, deletions and meta values in a
// loop and prints one line to stdout after each write returned nil, until it
// is killed.
func crashChild(dir, round string) int {
	ctx := context.Background()
	s, err := Open(ctx, crashConfig(dir), zerolog.New(os.Stderr).Level(zerolog.WarnLevel))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open:", err)
		return 3
	}
	fmt.Println("ready")
	var pushed []uint64
	for i := 0; ; i++ {
		id := fmt.Sprintf("r%s-%d", round, i)
		data := fmt.Sprintf(`{"round":%s,"i":%d}`, round, i)
		if err := s.PutRule(ctx, id, []byte(data)); err != nil {
			fmt.Fprintln(os.Stderr, "child: put rule:", err)
			return 4
		}
		fmt.Printf("rule %s %s\n", id, data)

		// Every fifth payload is large enough for the value log.
		payload := fmt.Sprintf("%s-%d", round, i)
		if i%5 == 0 {
			payload += strings.Repeat(".", 2000)
		}
		seq, err := s.Push(ctx, Message{Topic: "sightd/crash", Payload: []byte(payload), QoS: 1})
		if err != nil {
			fmt.Fprintln(os.Stderr, "child: push:", err)
			return 4
		}
		pushed = append(pushed, seq)
		fmt.Printf("push %d %s\n", seq, payload)

		if i%3 == 2 {
			seq := pushed[0]
			pushed = pushed[1:]
			fmt.Printf("deleting %d\n", seq) // it may land without "del"
			if err := s.Delete(ctx, seq); err != nil {
				fmt.Fprintln(os.Stderr, "child: delete:", err)
				return 4
			}
			fmt.Printf("del %d\n", seq)
		}
		if i%7 == 0 {
			if err := s.PutMeta(ctx, "last/"+round, []byte(strconv.Itoa(i))); err != nil {
				fmt.Fprintln(os.Stderr, "child: meta:", err)
				return 4
			}
			fmt.Printf("meta last/%s %d\n", round, i)
		}
	}
}

func TestCrashKeepsConfirmedWrites(t *testing.T) {
	dir := t.TempDir()
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("seed %d", seed)

	rules := map[string]string{}
	pushes := map[uint64]string{}
	deleted := map[uint64]bool{}
	maybeDeleted := map[uint64]bool{}
	meta := map[string]string{}
	var lastSeq uint64
	const rounds = 6
	for round := range rounds {
		lines := runAndKill(t, dir, round, time.Duration(rng.IntN(300))*time.Millisecond)
		for _, line := range lines {
			f := strings.SplitN(line, " ", 3)
			switch f[0] {
			case "rule":
				rules[f[1]] = f[2]
			case "push":
				seq, _ := strconv.ParseUint(f[1], 10, 64)
				if seq <= lastSeq && lastSeq != 0 {
					t.Fatalf("round %d: seq %d after %d", round, seq, lastSeq)
				}
				lastSeq = seq
				pushes[seq] = f[2]
			case "deleting":
				seq, _ := strconv.ParseUint(f[1], 10, 64)
				maybeDeleted[seq] = true
			case "del":
				seq, _ := strconv.ParseUint(f[1], 10, 64)
				deleted[seq] = true
			case "meta":
				meta[f[1]] = f[2]
			}
		}
		t.Logf("round %d: killed after %d lines", round, len(lines))

		// The database opens, and holds every confirmed write.
		ctx := context.Background()
		s, err := Open(ctx, crashConfig(dir), testLogger(t))
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		for id, data := range rules {
			got, err := s.Rule(ctx, id)
			if err != nil || string(got) != data {
				t.Fatalf("round %d: confirmed rule %s = %q, %v", round, id, got, err)
			}
		}
		entries, err := s.Peek(ctx, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		present := map[uint64]string{}
		for k, e := range entries {
			if k > 0 && e.Seq <= entries[k-1].Seq {
				t.Fatalf("round %d: outbox out of order", round)
			}
			present[e.Seq] = string(e.Payload)
		}
		for seq, payload := range pushes {
			got, ok := present[seq]
			switch {
			case deleted[seq] && ok:
				t.Fatalf("round %d: confirmed delete of %d undone", round, seq)
			case !ok && maybeDeleted[seq]:
			case !deleted[seq] && got != payload:
				t.Fatalf("round %d: confirmed push %d = %.20q (present %v), want %.20q", round, seq, got, ok, payload)
			}
		}
		// The writer counts up under each meta key: a write it did not get to
		// confirm may have landed after the last confirmed one.
		for k, v := range meta {
			got, err := s.Meta(ctx, k)
			g, _ := strconv.Atoi(string(got))
			w, _ := strconv.Atoi(v)
			if err != nil || g < w {
				t.Fatalf("round %d: confirmed meta %s = %q, %v, want %q or later", round, k, got, err, v)
			}
		}
		if s.Len() != len(entries) {
			t.Fatalf("round %d: Len %d, %d entries", round, s.Len(), len(entries))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if len(rules) == 0 || len(pushes) == 0 {
		t.Fatal("the writer confirmed nothing")
	}
}

// runAndKill starts the writer, lets it run for d after it is ready, kills
// it with SIGKILL and returns every line it printed.
func runAndKill(t *testing.T, dir string, round int, d time.Duration) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, "SIGHTD_STORE_CRASH_ROUND="+strconv.Itoa(round))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := bufio.NewReader(out)
		for {
			// A line without its newline was cut by the kill: not confirmed.
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			lines = append(lines, strings.TrimSuffix(line, "\n"))
			if len(lines) == 1 {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-done:
		_ = cmd.Wait()
		t.Fatalf("round %d: the writer exited before it was ready: %s", round, stderr.String())
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("round %d: the writer did not get ready", round)
	}
	time.Sleep(d)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-done // the pipe holds what was printed before the kill
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
		t.Fatalf("round %d: the writer ended with %v before it was killed: %s", round, err, stderr.String())
	}
	if len(lines) == 0 || lines[0] != "ready" {
		t.Fatalf("round %d: first line %q", round, lines)
	}
	return lines[1:]
}
