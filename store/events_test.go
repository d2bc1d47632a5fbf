package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Events and their snapshots are found by id; the snapshots stay within
// event_max_bytes, the oldest going first, and the count survives a reopen.
func TestEvents(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.MaxPayloadBytes = 10 << 10
	cfg.EventMaxBytes = 50 << 10
	s := open(t, cfg)
	if err := s.PutEvent(ctx, "e1", []byte(`{"type":"new","id":"e1"}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutEvent(ctx, "e1", []byte(`{"type":"end","id":"e1"}`)); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Event(ctx, "e1"); err != nil || string(b) != `{"type":"end","id":"e1"}` {
		t.Fatalf("event: %s %v", b, err)
	}
	for _, tc := range []struct {
		id   string
		data string
		want error
	}{{"E1", `{}`, ErrInvalid}, {"e2", `not json`, ErrInvalid}, {"e2", `{"x":"` + strings.Repeat("a", MaxEventBytes) + `"}`, ErrTooLarge}} {
		if err := s.PutEvent(ctx, tc.id, []byte(tc.data)); !errors.Is(err, tc.want) {
			t.Errorf("PutEvent(%q, %.20q): %v, want %v", tc.id, tc.data, err, tc.want)
		}
	}
	if _, err := s.Event(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing event: %v", err)
	}
	if err := s.PutEventSnapshot(ctx, "big", make([]byte, 11<<10)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a snapshot above max_payload_bytes: %v", err)
	}
	jpeg := make([]byte, 8<<10)
	for i := range 20 {
		jpeg[0] = byte(i)
		if err := s.PutEventSnapshot(ctx, fmt.Sprintf("s%02d", i), jpeg); err != nil {
			t.Fatal(err)
		}
		if _, b := s.EventSnapshots(); b > cfg.EventMaxBytes {
			t.Fatalf("after %d: %d bytes of snapshots, above %d", i, b, cfg.EventMaxBytes)
		}
	}
	n, b := s.EventSnapshots()
	if n != 6 {
		t.Fatalf("%d snapshots (%d bytes) kept, want the 6 newest that fit in 50 KiB", n, b)
	}
	if _, err := s.EventSnapshot(ctx, "s13"); !errors.Is(err, ErrNotFound) {
		t.Errorf("s13 should have gone: %v", err)
	}
	if got, err := s.EventSnapshot(ctx, "s19"); err != nil || got[0] != 19 || len(got) != len(jpeg) {
		t.Fatalf("s19: %d bytes, %v", len(got), err)
	}
	s.Close()
	s = open(t, cfg)
	if n2, b2 := s.EventSnapshots(); n2 != n || b2 < int64(n*len(jpeg)) {
		t.Fatalf("after a reopen: %d snapshots, %d bytes; before %d, %d", n2, b2, n, b)
	}
}

// Event records and snapshots expire after event_ttl.
func TestEventsExpire(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t.TempDir())
	cfg.EventTTL = time.Second
	s := open(t, cfg)
	if err := s.PutEvent(ctx, "e1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutEventSnapshot(ctx, "e1", []byte{0xff, 0xd8, 0xff}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the event to expire", func() bool {
		_, err1 := s.Event(ctx, "e1")
		_, err2 := s.EventSnapshot(ctx, "e1")
		return errors.Is(err1, ErrNotFound) && errors.Is(err2, ErrNotFound)
	})
	bad := testConfig("x")
	bad.EventTTL, bad.EventMaxBytes = 0, 1
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "event_ttl") || !strings.Contains(err.Error(), "event_max_bytes") {
		t.Fatalf("validate: %v", err)
	}
}
