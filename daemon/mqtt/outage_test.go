package mqtt

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sightd/sightd/store"
)

// The broker stops for a while and comes back (same port, its persistence
// on) while detections keep coming: every one arrives, in order, and the
// duplicates at-least-once delivery allows carry the same id.
func TestBrokerRestartLosesNothing(t *testing.T) {
	ctx := context.Background()
	m := startMosquitto(t, mosqOptions{})
	st := openStore(t, nil)
	s := subscribe(t, m.url(), subOptions{id: "watcher"}, "sightd/test/events")
	c := runClient(t, testConfig(m.url()), Options{Outbox: st})
	waitFor(t, 30*time.Second, "connected", func() bool { return c.Health().Connected })

	const n = 900
	t0 := time.Now().Add(-time.Hour)
	var ids []string
	for i := range n {
		msg, err := EventMessage("test", detection("package", "porch", t0.Add(time.Duration(i)*time.Millisecond)), "")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Push(ctx, msg); err != nil {
			t.Fatal(err)
		}
		var e event
		json.Unmarshal(msg.Payload, &e)
		ids = append(ids, e.ID)
		switch i {
		case n / 3:
			m.stop()
			waitFor(t, 30*time.Second, "the client to notice", func() bool { return !c.Health().Connected })
		case 2 * n / 3:
			if st.Len() == 0 {
				t.Fatal("the outbox emptied while the broker was down")
			}
			m.start()
		}
		if i > n/3 && i < 2*n/3 {
			time.Sleep(3 * time.Millisecond) // a longer outage
		}
	}

	first := map[string]int{}
	var order []string
	dups := 0
	s.waitFor(t, fmt.Sprintf("all %d detections", n), func() bool {
		for _, r := range s.all()[len(order)+dups:] {
			var e event
			if err := json.Unmarshal(r.payload, &e); err != nil {
				t.Fatalf("event %q: %v", r.payload, err)
			}
			if _, seen := first[e.ID]; seen {
				dups++
				continue
			}
			first[e.ID] = len(order)
			order = append(order, e.ID)
		}
		return len(order) == n
	})
	for i, id := range ids {
		if order[i] != id {
			t.Fatalf("detection %d arrived as number %d: out of order", i, first[id])
		}
	}
	// Counters are waited for, never read once: the drain may still be
	// between a PUBACK and its bookkeeping.
	waitFor(t, 30*time.Second, "outbox drained and every message counted", func() bool {
		return st.Len() == 0 && c.Health().Acked >= n
	})
	h := c.Health()
	if h.Attempts < 2 || h.Dropped != 0 || h.Acked < n {
		t.Errorf("health %+v", h)
	}
	t.Logf("%d detections, %d duplicates, %d connection attempts", n, dups, h.Attempts)
}

// While the broker is unreachable nothing is published (paho's own store
// stays empty) and the outbox holds at most its bound: memory stays flat
// however long the outage.
func TestOutboxBoundedWhileBrokerDown(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, func(c *store.Config) { c.OutboxMaxEntries = 300 })
	c := runClient(t, testConfig(fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))), Options{Outbox: st})
	for i := range 1200 {
		msg, _ := EventMessage("test", detection("package", "porch", time.Now().Add(time.Duration(i)*time.Millisecond)), "")
		if err := c.Push(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "a failed attempt", func() bool { return c.Health().Err != nil })
	h := c.Health()
	if h.Connected || h.Outbox != 300 || h.Dropped != 900 || h.Acked != 0 {
		t.Errorf("health %+v", h)
	}
	if !strings.Contains(h.Err.Error(), "connection refused") {
		t.Errorf("error %v does not say why", h.Err)
	}
}
