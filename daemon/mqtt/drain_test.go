package mqtt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/sightd/sightd/store"
)

// fakeToken is a paho token the test completes.
type fakeToken struct {
	done chan struct{}
	err  error
}

func (t *fakeToken) Wait() bool { <-t.done; return true }
func (t *fakeToken) WaitTimeout(d time.Duration) bool {
	select {
	case <-t.done:
		return true
	case <-time.After(d):
		return false
	}
}
func (t *fakeToken) Done() <-chan struct{} { return t.done }
func (t *fakeToken) Error() error          { return t.err }
func (t *fakeToken) complete(err error)    { t.err = err; close(t.done) }

type fakePublish struct {
	topic string
	qos   byte
	tok   *fakeToken
}

// fakePub records publishes; the test acknowledges them.
type fakePub struct {
	mu   sync.Mutex
	pubs []fakePublish
}

func (p *fakePub) Publish(topic string, qos byte, _ bool, _ any) paho.Token {
	p.mu.Lock()
	defer p.mu.Unlock()
	tok := &fakeToken{done: make(chan struct{})}
	p.pubs = append(p.pubs, fakePublish{topic, qos, tok})
	return tok
}

func (p *fakePub) get() []fakePublish {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]fakePublish(nil), p.pubs...)
}

func (p *fakePub) topics(from int) []string {
	var out []string
	for _, f := range p.get()[from:] {
		out = append(out, f.topic)
	}
	return out
}

// startDrain runs a drain over a store holding n messages t0..t<n-1>.
func startDrain(t *testing.T, n int) (*drain, *fakePub, *store.Store) {
	st := openStore(t, nil)
	for i := range n {
		if _, err := st.Push(context.Background(), store.Message{Topic: fmt.Sprintf("t%d", i), Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	pub := &fakePub{}
	d := &drain{out: st, link: newLink(), nudge: make(chan struct{}), pace: newPacer(1e6),
		retry: time.Millisecond, log: zerolog.Nop(), acked: func() {}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return d, pub, st
}

func equal(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// A message in flight when its connection died may or may not have
// arrived: it goes out again on the next connection, and an
// acknowledgement that turns up for the old one deletes nothing.
func TestDrainDistrustsAcksFromAnEarlierConnection(t *testing.T) {
	d, pub, st := startDrain(t, 3)
	d.link.set(pub)
	waitFor(t, 10*time.Second, "3 publishes", func() bool { return len(pub.get()) == 3 })
	old := pub.get()
	if old[0].qos != 1 {
		t.Errorf("a QoS 0 message went out at QoS %d", old[0].qos)
	}

	d.link.set(nil)
	d.link.set(pub)
	for _, p := range old {
		p.tok.complete(nil) // an acknowledgement that comes too late to count
	}
	waitFor(t, 10*time.Second, "the messages sent again", func() bool { return len(pub.get()) == 6 })
	if got := pub.topics(3); !equal(got, []string{"t0", "t1", "t2"}) {
		t.Fatalf("sent again: %v", got)
	}
	if st.Len() != 3 {
		t.Fatalf("outbox holds %d: an acknowledgement of an earlier connection deleted messages", st.Len())
	}
	for _, p := range pub.get()[3:] {
		p.tok.complete(nil)
	}
	waitFor(t, 10*time.Second, "outbox empty", func() bool { return st.Len() == 0 })
}

// A failed publish is sent again, with everything after it, in order; what
// was acknowledged before it is not.
func TestDrainResendsFromAFailure(t *testing.T) {
	d, pub, st := startDrain(t, 3)
	d.link.set(pub)
	waitFor(t, 10*time.Second, "3 publishes", func() bool { return len(pub.get()) == 3 })
	first := pub.get()
	first[2].tok.complete(nil) // acknowledged, but after the failure: sent again
	first[0].tok.complete(nil)
	first[1].tok.complete(errors.New("not Connected"))
	waitFor(t, 10*time.Second, "the resend", func() bool { return len(pub.get()) == 5 })
	if got := pub.topics(3); !equal(got, []string{"t1", "t2"}) {
		t.Fatalf("sent again: %v", got)
	}
	for _, p := range pub.get()[3:] {
		p.tok.complete(nil)
	}
	waitFor(t, 10*time.Second, "outbox empty", func() bool { return st.Len() == 0 })
	if n := len(pub.get()); n != 5 {
		t.Errorf("%d publishes", n)
	}
}

// No more than window messages await their acknowledgement.
func TestDrainWindow(t *testing.T) {
	d, pub, st := startDrain(t, window+10)
	d.link.set(pub)
	waitFor(t, 10*time.Second, "a full window", func() bool { return len(pub.get()) == window })
	if st.Len() != window+10 {
		t.Fatalf("outbox %d", st.Len())
	}
	pub.get()[0].tok.complete(nil)
	waitFor(t, 10*time.Second, "one more", func() bool { return len(pub.get()) == window+1 })
	if n := len(pub.get()); n != window+1 {
		t.Errorf("%d published with %d acknowledged", n, 1)
	}
}

func TestPacer(t *testing.T) {
	p := newPacer(10)
	t0 := time.Unix(1000, 0)
	sent := 0
	// Ten simulated seconds, asking every millisecond.
	for ms := range 10_000 {
		if p.reserve(t0.Add(time.Duration(ms)*time.Millisecond)) == 0 {
			sent++
		}
	}
	// A burst of one second's worth, then 10 a second.
	if sent < 100 || sent > 111 {
		t.Errorf("%d messages in 10 s at 10/s", sent)
	}
	p.reserve(t0.Add(10 * time.Second))
	if w := p.reserve(t0.Add(10 * time.Second)); w <= 0 || w > 100*time.Millisecond {
		t.Errorf("wait %v", w)
	}
}

// blockingPub is a paho client whose connection died under a Publish call:
// the call hangs until released.
type blockingPub struct {
	called  chan struct{}
	once    *sync.Once
	release chan struct{}
}

func (p blockingPub) Publish(string, byte, bool, any) paho.Token {
	p.once.Do(func() { close(p.called) })
	<-p.release
	return &fakeToken{done: make(chan struct{}), err: errors.New("publish was broken by timeout")}
}

// A Publish stuck on a dead connection holds up neither the drain nor the
// next connection, which gets everything from the oldest message on.
func TestDrainNotHeldByAStuckPublish(t *testing.T) {
	d, pub, st := startDrain(t, 3)
	stuck := blockingPub{called: make(chan struct{}), once: new(sync.Once), release: make(chan struct{})}
	dead := newSender(stuck)
	d.link.set(dead)
	<-stuck.called
	d.link.set(nil)
	dead.close()
	d.link.set(newSender(pub))
	waitFor(t, 10*time.Second, "the next connection", func() bool { return len(pub.get()) == 3 })
	if got := pub.topics(0); !equal(got, []string{"t0", "t1", "t2"}) {
		t.Fatalf("published %v", got)
	}
	for _, p := range pub.get() {
		p.tok.complete(nil)
	}
	waitFor(t, 10*time.Second, "outbox empty", func() bool { return st.Len() == 0 })
	close(stuck.release)
}
