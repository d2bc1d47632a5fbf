package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func testConfig(dir string) Config {
	cfg := Defaults()
	cfg.Dir = dir
	cfg.MemTableSize = 1 << 20
	cfg.ValueLogFileSize = 1 << 20
	cfg.MaxPayloadBytes = 64 << 10
	return cfg
}

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
}

func open(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func openTemp(t testing.TB) *Store { return open(t, testConfig(t.TempDir())) }

func TestConfigValidate(t *testing.T) {
	if err := Defaults().Validate(); err != nil {
		t.Fatalf("Defaults().Validate() = %v", err)
	}
	tests := []struct {
		field  string
		mutate func(*Config)
	}{
		{"dir", func(c *Config) { c.Dir = "" }},
		{"detection_ttl", func(c *Config) { c.DetectionTTL = 500 * time.Millisecond }},
		{"outbox_max_entries", func(c *Config) { c.OutboxMaxEntries = 0 }},
		{"max_payload_bytes", func(c *Config) { c.MaxPayloadBytes = 0 }},
		{"max_payload_bytes", func(c *Config) { c.MemTableSize = 2 << 20 }}, // too small for 512 KiB payloads
		{"outbox_max_bytes", func(c *Config) { c.OutboxMaxBytes = int64(c.MaxPayloadBytes) }},
		{"memtable_size", func(c *Config) { c.MemTableSize = 1000 }},
		{"value_log_file_size", func(c *Config) { c.ValueLogFileSize = 1 << 30 }},
		{"gc_interval", func(c *Config) { c.GCInterval = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			c := Defaults()
			tt.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.field+":") {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.field)
			}
			if _, err := Open(context.Background(), c, testLogger(t)); err == nil {
				t.Fatal("Open accepted an invalid config")
			}
		})
	}
}

func TestRulesCRUD(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	for _, id := range []string{"porch-package", "car", "garage_door", "a1"} {
		if err := s.PutRule(ctx, id, []byte(`{"id":"`+id+`"}`)); err != nil {
			t.Fatalf("PutRule(%s): %v", id, err)
		}
	}
	if err := s.PutRule(ctx, "car", []byte(`{"id":"car","v":2}`)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Rule(ctx, "car")
	if err != nil || string(got) != `{"id":"car","v":2}` {
		t.Fatalf("Rule(car) = %s, %v", got, err)
	}
	rules, err := s.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rules {
		ids = append(ids, r.ID)
	}
	if want := []string{"a1", "car", "garage_door", "porch-package"}; !slices.Equal(ids, want) {
		t.Fatalf("Rules ids = %v, want %v", ids, want)
	}
	if err := s.DeleteRule(ctx, "car"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rule(ctx, "car"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Rule after delete: %v, want ErrNotFound", err)
	}
	if err := s.DeleteRule(ctx, "car"); err != nil {
		t.Fatalf("deleting a missing rule: %v", err)
	}
}

func TestBadInputWritesNothing(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	big := []byte(`"` + strings.Repeat("x", MaxRuleBytes) + `"`)
	vec := Vector{Model: 1, Rule: "r", Name: "prompt", Data: []int8{1, 2}, Scale: 0.01}
	tests := []struct {
		name string
		want error
		do   func() error
	}{
		{"empty id", ErrInvalid, func() error { return s.PutRule(ctx, "", []byte(`{}`)) }},
		{"id with space", ErrInvalid, func() error { return s.PutRule(ctx, "a b", []byte(`{}`)) }},
		{"id with slash", ErrInvalid, func() error { return s.PutRule(ctx, "a/b", []byte(`{}`)) }},
		{"uppercase id", ErrInvalid, func() error { return s.PutRule(ctx, "Car", []byte(`{}`)) }},
		{"id starting with dash", ErrInvalid, func() error { return s.PutRule(ctx, "-a", []byte(`{}`)) }},
		{"long id", ErrInvalid, func() error { return s.PutRule(ctx, strings.Repeat("a", MaxIDLen+1), []byte(`{}`)) }},
		{"invalid JSON", ErrInvalid, func() error { return s.PutRule(ctx, "a", []byte(`{"a":`)) }},
		{"empty JSON", ErrInvalid, func() error { return s.PutRule(ctx, "a", nil) }},
		{"oversize rule", ErrTooLarge, func() error { return s.PutRule(ctx, "a", big) }},
		{"vector version 0", ErrInvalid, func() error { v := vec; v.Model = 0; return s.ReplaceVectors(ctx, 0, []Vector{v}) }},
		{"vector no data", ErrInvalid, func() error { v := vec; v.Data = nil; return s.ReplaceVectors(ctx, 1, []Vector{v}) }},
		{"vector NaN scale", ErrInvalid, func() error { v := vec; v.Scale = float32(nan()); return s.ReplaceVectors(ctx, 1, []Vector{v}) }},
		{"vector zero scale", ErrInvalid, func() error { v := vec; v.Scale = 0; return s.ReplaceVectors(ctx, 1, []Vector{v}) }},
		{"vector name with space", ErrInvalid, func() error { v := vec; v.Name = "neg 0"; return s.ReplaceVectors(ctx, 1, []Vector{v}) }},
		{"vector too long", ErrTooLarge, func() error {
			v := vec
			v.Data = make([]int8, MaxVectorDim+1)
			return s.ReplaceVectors(ctx, 1, []Vector{v})
		}},
		{"vector of another version", ErrInvalid, func() error { return s.ReplaceVectors(ctx, 2, []Vector{vec}) }},
		{"empty topic", ErrInvalid, func() error { _, err := s.Push(ctx, Message{Payload: []byte("x")}); return err }},
		{"wildcard topic", ErrInvalid, func() error { _, err := s.Push(ctx, Message{Topic: "a/#"}); return err }},
		{"qos 3", ErrInvalid, func() error { _, err := s.Push(ctx, Message{Topic: "a", QoS: 3}); return err }},
		{"oversize payload", ErrTooLarge, func() error {
			_, err := s.Push(ctx, Message{Topic: "a", Payload: make([]byte, s.cfg.MaxPayloadBytes+1)})
			return err
		}},
		{"detection JSON", ErrInvalid, func() error { _, err := s.AppendDetection(ctx, time.Now(), []byte("nope")); return err }},
		{"detection before 1970", ErrInvalid, func() error { _, err := s.AppendDetection(ctx, time.Unix(-1, 0), []byte("{}")); return err }},
		{"meta key empty", ErrInvalid, func() error { return s.PutMeta(ctx, "", []byte("x")) }},
		{"meta too large", ErrTooLarge, func() error { return s.PutMeta(ctx, "k", make([]byte, MaxMetaBytes+1)) }},
		{"model version negative", ErrInvalid, func() error { return s.AcceptModel(ctx, -3) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	rules, _ := s.Rules(ctx)
	versions, _ := s.VectorVersions(ctx)
	n, _ := s.CountDetections(ctx)
	_, _, err := s.ModelVersions(ctx)
	if len(rules) != 0 || len(versions) != 0 || s.Len() != 0 || n != 0 || err != nil {
		t.Fatalf("something was written: %d rules, versions %v, %d outbox, %d detections, %v", len(rules), versions, s.Len(), n, err)
	}
	if _, err := s.Meta(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("meta written: %v", err)
	}
}

func nan() float64 { var z float64; return z / z }

func TestUpdateIsAtomic(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	boom := errors.New("boom")
	err := s.Update(ctx, func(tx *Tx) error {
		if err := tx.PutRule("porch", []byte(`{}`)); err != nil {
			return err
		}
		if err := tx.PutVector(Vector{Model: 1, Rule: "porch", Name: "prompt", Data: []int8{1}, Scale: 1}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v", err)
	}
	if _, err := s.Rule(ctx, "porch"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rule half-written: %v", err)
	}
	if _, err := s.Vector(ctx, 1, "porch", "prompt"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("vector half-written: %v", err)
	}
	// The same transaction with a bad vector in the middle: nothing either.
	err = s.Update(ctx, func(tx *Tx) error {
		if err := tx.PutRule("porch", []byte(`{}`)); err != nil {
			return err
		}
		return tx.PutVector(Vector{Model: 1, Rule: "porch", Name: "bad name", Data: []int8{1}, Scale: 1})
	})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Update = %v", err)
	}
	if _, err := s.Rule(ctx, "porch"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rule half-written: %v", err)
	}
}

func randVector(version int64, rule, name string, dim int, seed int) Vector {
	d := make([]int8, dim)
	for i := range d {
		d[i] = int8(i*31 + seed*7)
	}
	return Vector{Model: version, Rule: rule, Name: name, Data: d, Scale: float32(seed+1) / 1000}
}

func TestVectors(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	var v1 []Vector
	for _, rule := range []string{"b", "a", "ab"} {
		for i, name := range []string{"prompt", "negative/0", "ref/0"} {
			v1 = append(v1, randVector(1, rule, name, 512, i))
		}
	}
	if err := s.ReplaceVectors(ctx, 1, v1); err != nil {
		t.Fatal(err)
	}
	got, err := s.Vectors(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(v1)
	slices.SortFunc(want, func(a, b Vector) int {
		return strings.Compare(a.Rule+"\x00"+a.Name, b.Rule+"\x00"+b.Name)
	})
	if len(got) != len(want) {
		t.Fatalf("got %d vectors, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Model != w.Model || g.Rule != w.Rule || g.Name != w.Name || g.Scale != w.Scale || !slices.Equal(g.Data, w.Data) {
			t.Fatalf("vector %d = %s/%s, want %s/%s (or data differs)", i, g.Rule, g.Name, w.Rule, w.Name)
		}
	}

	// A version written vector by vector, never completed.
	if err := s.Update(ctx, func(tx *Tx) error { return tx.PutVector(randVector(2, "a", "prompt", 512, 9)) }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Vectors(ctx, 2); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Vectors(2) = %v, want ErrIncomplete", err)
	}
	if _, err := s.Vectors(ctx, 3); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Vectors(3) = %v, want ErrIncomplete", err)
	}
	if vs, err := s.VectorVersions(ctx); err != nil || !slices.Equal(vs, []int64{1, 2}) {
		t.Fatalf("VectorVersions = %v, %v", vs, err)
	}

	if err := s.Update(ctx, func(tx *Tx) error { return tx.DeleteVectors(1, "b") }); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Vectors(ctx, 1); err != nil || len(got) != 6 {
		t.Fatalf("after DeleteVectors(1, b): %d vectors, %v", len(got), err)
	}

	// Replacing version 1 drops what the new set lacks.
	if err := s.ReplaceVectors(ctx, 1, []Vector{randVector(1, "z", "prompt", 16, 1)}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Vectors(ctx, 1); err != nil || len(got) != 1 || got[0].Rule != "z" {
		t.Fatalf("after replace: %v, %v", got, err)
	}

	// DeleteRule removes the rule's vectors of every version.
	if err := s.DeleteRule(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Vector(ctx, 2, "a", "prompt"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("vector of a deleted rule: %v", err)
	}
	if err := s.DeleteVersion(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Vectors(ctx, 1); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Vectors of a deleted version: %v", err)
	}
	if vs, err := s.VectorVersions(ctx); err != nil || len(vs) != 0 {
		t.Fatalf("VectorVersions = %v, %v", vs, err)
	}
	// An empty set is a complete set.
	if err := s.ReplaceVectors(ctx, 7, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Vectors(ctx, 7); err != nil || len(got) != 0 {
		t.Fatalf("empty set: %v, %v", got, err)
	}
}

// A model change re-embeds every rule: far more vectors than one Badger
// transaction holds.
func TestReplaceVectorsLarge(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	var vecs []Vector
	for i := range 3000 {
		vecs = append(vecs, randVector(5, fmt.Sprintf("rule-%05d", i), "prompt", 512, i))
	}
	if err := s.ReplaceVectors(ctx, 5, vecs); err != nil {
		t.Fatal(err)
	}
	got, err := s.Vectors(ctx, 5)
	if err != nil || len(got) != len(vecs) {
		t.Fatalf("Vectors: %d, %v", len(got), err)
	}
	for i := range got {
		if got[i].Rule != vecs[i].Rule || !slices.Equal(got[i].Data, vecs[i].Data) {
			t.Fatalf("vector %d differs", i)
		}
	}
}

func TestDetections(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t.TempDir())
	cfg.DetectionTTL = time.Hour
	s := open(t, cfg)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var ids []string
	// Out of order and with a repeated time: ids stay unique, order is by time.
	for _, sec := range []int{3, 1, 2, 2} {
		id, err := s.AppendDetection(ctx, base.Add(time.Duration(sec)*time.Second), []byte(fmt.Sprintf(`{"s":%d}`, sec)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if n, err := s.CountDetections(ctx); err != nil || n != 4 {
		t.Fatalf("CountDetections = %d, %v", n, err)
	}
	recent, err := s.RecentDetections(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range recent {
		got = append(got, string(d.JSON))
		if exp := time.Until(d.ExpiresAt); exp < 59*time.Minute || exp > time.Hour+time.Second {
			t.Errorf("ExpiresAt %v is not about an hour from now", d.ExpiresAt)
		}
	}
	if want := []string{`{"s":3}`, `{"s":2}`, `{"s":2}`}; !slices.Equal(got, want) {
		t.Fatalf("RecentDetections = %v, want %v", got, want)
	}
	if !recent[0].At.Equal(base.Add(3*time.Second)) || recent[0].ID != ids[0] {
		t.Fatalf("newest = %+v", recent[0])
	}
	if recent[1].ID == recent[2].ID {
		t.Fatal("two detections share an id")
	}
}

func TestDetectionsExpire(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t.TempDir())
	cfg.DetectionTTL = time.Second
	s := open(t, cfg)
	if _, err := s.AppendDetection(ctx, time.Now(), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	recent, err := s.RecentDetections(ctx, 10)
	if err != nil || len(recent) != 1 {
		t.Fatalf("RecentDetections = %v, %v", recent, err)
	}
	// Badger expires an entry once the clock's whole second reaches ExpiresAt.
	exp := recent[0].ExpiresAt
	if time.Until(exp) > time.Second {
		t.Fatalf("ExpiresAt %v is more than the TTL away", exp)
	}
	time.Sleep(time.Until(exp) + 50*time.Millisecond)
	if n, err := s.CountDetections(ctx); err != nil || n != 0 {
		t.Fatalf("CountDetections after the TTL = %d, %v", n, err)
	}
	if recent, err := s.RecentDetections(ctx, 10); err != nil || len(recent) != 0 {
		t.Fatalf("RecentDetections after the TTL = %d, %v", len(recent), err)
	}
}

func TestOutboxOrderAcrossReopen(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t.TempDir())
	s, err := Open(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for i := range 10 {
		seq, err := s.Push(ctx, Message{Topic: "sightd/dev/events", Payload: []byte(fmt.Sprint(i)), QoS: byte(i % 3), Retained: i%2 == 0})
		if err != nil {
			t.Fatal(err)
		}
		if len(seqs) > 0 && seq <= seqs[len(seqs)-1] {
			t.Fatalf("seq %d after %d", seq, seqs[len(seqs)-1])
		}
		seqs = append(seqs, seq)
	}
	for _, i := range []int{0, 1, 5} {
		if err := s.Delete(ctx, seqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, seqs[0]); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
	lenBefore, bytesBefore := s.Len(), s.Bytes()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, cfg)
	if s.Len() != lenBefore || s.Bytes() != bytesBefore || lenBefore != 7 {
		t.Fatalf("after reopen Len/Bytes = %d/%d, before %d/%d", s.Len(), s.Bytes(), lenBefore, bytesBefore)
	}
	entries, err := s.Peek(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var payloads []string
	for _, e := range entries {
		payloads = append(payloads, string(e.Payload))
		i := int(e.Payload[0] - '0')
		if e.Seq != seqs[i] || e.QoS != byte(i%3) || e.Retained != (i%2 == 0) || e.Topic != "sightd/dev/events" {
			t.Errorf("entry %d = %+v", i, e)
		}
		if time.Since(e.Created) > time.Minute || time.Since(e.Created) < 0 {
			t.Errorf("Created = %v", e.Created)
		}
	}
	if want := []string{"2", "3", "4", "6", "7", "8", "9"}; !slices.Equal(payloads, want) {
		t.Fatalf("payloads after reopen = %v, want %v", payloads, want)
	}
	if first, _ := s.Peek(ctx, 2); len(first) != 2 || first[0].Seq != seqs[2] {
		t.Fatalf("Peek(2) = %+v", first)
	}
	seq, err := s.Push(ctx, Message{Topic: "t"})
	if err != nil || seq <= seqs[9] {
		t.Fatalf("Push after reopen: seq %d (last before %d), %v", seq, seqs[9], err)
	}
}

func TestOutboxBound(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t.TempDir())
	cfg.OutboxMaxEntries = 50
	cfg.MaxPayloadBytes = 4 << 10
	cfg.OutboxMaxBytes = 100 << 10
	s := open(t, cfg)

	payload := func(i int) []byte {
		// Above the value threshold, so the payloads go to the value log and
		// only value-log GC gets their space back.
		p := bytes.Repeat([]byte{byte(i)}, 3000)
		copy(p, fmt.Sprintf("%08d", i))
		return p
	}
	push := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if _, err := s.Push(ctx, Message{Topic: "sightd/dev/snapshot", Payload: payload(i)}); err != nil {
				t.Fatal(err)
			}
			if s.Len() > cfg.OutboxMaxEntries || s.Bytes() > cfg.OutboxMaxBytes {
				t.Fatalf("after push %d: Len %d, Bytes %d above the bounds", i, s.Len(), s.Bytes())
			}
		}
	}
	checkNewest := func(total int) {
		t.Helper()
		entries, err := s.Peek(ctx, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != s.Len() {
			t.Fatalf("Peek found %d entries, Len says %d", len(entries), s.Len())
		}
		for k, e := range entries {
			want := payload(total - len(entries) + k)
			if !bytes.Equal(e.Payload, want) {
				t.Fatalf("entry %d holds payload %.8s, want %.8s", k, e.Payload, want)
			}
		}
		if got := s.Dropped(); got != uint64(total-len(entries)) {
			t.Fatalf("Dropped = %d, want %d", got, total-len(entries))
		}
	}

	// ~3 KB entries fill 100 KiB before 50 entries do: the byte bound rules.
	entrySize := int64(len(encodeOutbox(Message{Topic: "sightd/dev/snapshot", Payload: payload(0)})))
	byBytes := int(cfg.OutboxMaxBytes / entrySize)
	push(0, 500)
	checkNewest(500)
	if s.Len() != byBytes || s.Bytes() != int64(byBytes)*entrySize {
		t.Fatalf("Len, Bytes = %d, %d, want %d, %d (the byte bound)", s.Len(), s.Bytes(), byBytes, int64(byBytes)*entrySize)
	}
	// Tiny messages: the entry bound rules.
	if _, err := s.Push(ctx, Message{Topic: "x"}); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if _, err := s.Push(ctx, Message{Topic: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if s.Len() != cfg.OutboxMaxEntries {
		t.Fatalf("Len = %d, want %d", s.Len(), cfg.OutboxMaxEntries)
	}
	dropped := s.Dropped()

	// The drop counter survives a restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, cfg)
	if s.Dropped() != dropped || s.Len() != cfg.OutboxMaxEntries {
		t.Fatalf("after reopen Dropped %d Len %d, want %d %d", s.Dropped(), s.Len(), dropped, cfg.OutboxMaxEntries)
	}

	// Disk stays flat: five times more pushes do not grow the directory beyond
	// the memtables, which fill and flush in cycles, once compaction has run.
	sizeAfter := func() int64 {
		t.Helper()
		if err := s.db.Flatten(2); err != nil {
			t.Fatal(err)
		}
		if err := s.collectGarbage(ctx); err != nil {
			t.Fatal(err)
		}
		return dirSize(t, cfg.Dir)
	}
	push(1000, 2000)
	size1 := sizeAfter()
	push(2000, 7000)
	size2 := sizeAfter()
	pushed := int64(6000) * entrySize
	t.Logf("directory after 1k more pushes: %d KiB, after 5k more: %d KiB (%d MiB pushed in all)", size1>>10, size2>>10, pushed>>20)
	if size2 > size1+2*cfg.MemTableSize || size2 > pushed/10 {
		t.Fatalf("directory grew from %d to %d bytes while the outbox stayed at %d bytes", size1, size2, s.Bytes())
	}
	if s.Len() != byBytes {
		t.Fatalf("Len = %d, want %d", s.Len(), byBytes)
	}
}

// One large message displaces more small ones than a Badger transaction
// holds: the drops are committed in chunks, and still counted exactly.
func TestOutboxLargeDrop(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t.TempDir())
	cfg.OutboxMaxEntries = 5000
	cfg.MaxPayloadBytes = 40 << 10
	cfg.OutboxMaxBytes = 48 << 10
	s := open(t, cfg)
	for range 1500 {
		if _, err := s.Push(ctx, Message{Topic: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	small := s.Bytes() / 1500
	big, err := s.Push(ctx, Message{Topic: "x", Payload: make([]byte, cfg.MaxPayloadBytes)})
	if err != nil {
		t.Fatal(err)
	}
	dropped := 1500 - (s.Len() - 1)
	if dropped <= maxDropsPerTxn || uint64(dropped) != s.Dropped() || s.Bytes() > cfg.OutboxMaxBytes {
		t.Fatalf("dropped %d (counter %d), Bytes %d", dropped, s.Dropped(), s.Bytes())
	}
	entries, err := s.Peek(ctx, 5000)
	if err != nil || len(entries) != s.Len() || entries[len(entries)-1].Seq != big {
		t.Fatalf("Peek: %d entries, %v", len(entries), err)
	}
	if want := int64(len(entries)-1)*small + int64(len(encodeOutbox(entries[len(entries)-1].Message))); s.Bytes() != want {
		t.Fatalf("Bytes = %d, want %d", s.Bytes(), want)
	}
}

// dirSize is the disk space (allocated blocks, not apparent size: Badger's
// memtable and value-log files are sparse while open) of dir's files.
func dirSize(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		// Badger deletes flushed memtables and old files in the background:
		// a file listed a moment ago may be gone, and then takes no space.
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		n += allocated(info)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func allocated(info os.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}

func TestOpenLocked(t *testing.T) {
	cfg := testConfig(t.TempDir())
	open(t, cfg)
	start := time.Now()
	s2, err := Open(context.Background(), cfg, testLogger(t))
	if !errors.Is(err, ErrLocked) {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second Open took %v", d)
	}
	t.Log(err)
}

func TestOpenCorrupt(t *testing.T) {
	ctx := context.Background()
	// A real database with a few tables, then its files overwritten.
	build := func(t *testing.T) Config {
		cfg := testConfig(t.TempDir())
		s, err := Open(ctx, cfg, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2000 {
			if err := s.PutRule(ctx, fmt.Sprintf("r%d", i), []byte(`{"x":"`+strings.Repeat("y", 500)+`"}`)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	garbage := bytes.Repeat([]byte("garbage!"), 4096)
	overwrite := func([]byte) []byte { return garbage }
	flipMiddle := func(b []byte) []byte {
		for i := len(b) / 2; i < len(b)/2+64; i++ {
			b[i] ^= 0x5a
		}
		return b
	}
	tests := []struct {
		name   string
		glob   string
		damage func([]byte) []byte
	}{
		{"manifest", "MANIFEST", overwrite},
		{"manifest bit flips", "MANIFEST", func(b []byte) []byte { b[len(b)-3] ^= 1; return b }},
		{"key registry", "KEYREGISTRY", overwrite},
		{"tables", "*.sst", overwrite},
		{"table body", "*.sst", flipMiddle},
		{"value log", "*.vlog", overwrite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := build(t)
			files, _ := filepath.Glob(filepath.Join(cfg.Dir, tt.glob))
			if len(files) == 0 {
				t.Fatalf("no %s in %s", tt.glob, cfg.Dir)
			}
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(f, tt.damage(b), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Open(ctx, cfg, testLogger(t))
			if err == nil {
				// Badger may defer reading a file until it is needed; then the
				// read must fail cleanly.
				defer s.Close()
				_, err = s.Rules(ctx)
			}
			if err == nil {
				t.Fatalf("garbage %s: no error", tt.glob)
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("garbage %s: %v, want ErrCorrupt", tt.glob, err)
			}
			t.Log(err)
		})
	}
	t.Run("not a database", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "MANIFEST"), []byte("hello"), 0o600)
		os.WriteFile(filepath.Join(dir, "000001.sst"), garbage, 0o600)
		_, err := Open(ctx, testConfig(dir), testLogger(t))
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open = %v, want ErrCorrupt", err)
		}
		t.Log(err)
	})
}

func TestModelVersions(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t.TempDir())
	s := open(t, cfg)
	if in, hi, err := s.ModelVersions(ctx); in != 0 || hi != 0 || err != nil {
		t.Fatalf("fresh: %d %d %v", in, hi, err)
	}
	for _, v := range []int64{1, 3} {
		if err := s.AcceptModel(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range []int64{3, 2} {
		if err := s.AcceptModel(ctx, v); !errors.Is(err, ErrRollback) {
			t.Fatalf("AcceptModel(%d) = %v, want ErrRollback", v, err)
		}
	}
	if err := s.SetInstalledModel(ctx, 4); !errors.Is(err, ErrInvalid) {
		t.Fatalf("installing an unaccepted version: %v", err)
	}
	if err := s.SetInstalledModel(ctx, 3); err != nil {
		t.Fatal(err)
	}
	// Rolling back a failed update to the previous version is allowed.
	if err := s.SetInstalledModel(ctx, 1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, cfg)
	if in, hi, err := s.ModelVersions(ctx); in != 1 || hi != 3 || err != nil {
		t.Fatalf("after reopen: installed %d highest %d, %v", in, hi, err)
	}
	if err := s.AcceptModel(ctx, 3); !errors.Is(err, ErrRollback) {
		t.Fatalf("anti-rollback forgotten after reopen: %v", err)
	}
}

func TestMeta(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	if _, err := s.Meta(ctx, "device/name"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if err := s.PutMeta(ctx, "device/name", []byte("porch-pi")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Meta(ctx, "device/name"); err != nil || string(v) != "porch-pi" {
		t.Fatalf("Meta = %q, %v", v, err)
	}
	// The caller's keys cannot reach the store's own.
	if err := s.PutMeta(ctx, highestModelKey, []byte("xxxxxxxx")); err != nil {
		t.Fatal(err)
	}
	if _, hi, err := s.ModelVersions(ctx); hi != 0 || err != nil {
		t.Fatalf("meta key overwrote the model version: %d %v", hi, err)
	}
	if err := s.DeleteMeta(ctx, "device/name"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Meta(ctx, "device/name"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}

func TestClosed(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, testConfig(t.TempDir()), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.PutRule(ctx, "a", []byte("{}")); !errors.Is(err, ErrClosed) {
		t.Fatalf("PutRule after Close = %v", err)
	}
	if _, err := s.Push(ctx, Message{Topic: "a"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Push after Close = %v", err)
	}
	if _, err := s.Peek(ctx, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Peek after Close = %v", err)
	}
}

func TestContextStopsGC(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cfg := testConfig(t.TempDir())
	cfg.GCInterval = time.Second
	s, err := Open(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cancel()
	select {
	case <-s.gcDone:
	case <-time.After(10 * time.Second):
		t.Fatal("GC goroutine still running after the context was cancelled")
	}
	if _, err := s.Rules(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Rules with a cancelled context = %v", err)
	}
}

// Badger's log lines go to the zerolog logger, none to stderr.
func TestBadgerLogsToZerolog(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	var buf bytes.Buffer
	log := zerolog.New(&buf).Level(zerolog.DebugLevel)
	s, err := Open(context.Background(), testConfig(t.TempDir()), log)
	if err == nil {
		_ = s.PutRule(context.Background(), "a", []byte("{}"))
		err = s.Close()
	}
	os.Stderr = stderr
	w.Close()
	leaked, _ := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(leaked) > 0 {
		t.Fatalf("written to stderr: %s", leaked)
	}
	if !strings.Contains(buf.String(), `"component":"store"`) {
		t.Fatalf("no Badger lines in the zerolog output: %q", buf.String())
	}
}

func TestReferences(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	jpeg := []byte{0xff, 0xd8, 0xff, 0xe0, 1, 2, 3}
	if err := s.PutReference(ctx, "my-car", jpeg); err != nil {
		t.Fatal(err)
	}
	got, err := s.Reference(ctx, "my-car")
	if err != nil || string(got) != string(jpeg) {
		t.Fatalf("Reference = %v, %v", got, err)
	}
	if _, err := s.Reference(ctx, "none"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing reference: %v", err)
	}
	for name, err := range map[string]error{
		"empty":     s.PutReference(ctx, "x", nil),
		"too large": s.PutReference(ctx, "x", make([]byte, MaxReferenceBytes+1)),
		"bad id":    s.PutReference(ctx, "My Car", jpeg),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := s.Update(ctx, func(tx *Tx) error { return tx.DeleteReference("my-car") }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reference(ctx, "my-car"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted reference: %v", err)
	}
}
