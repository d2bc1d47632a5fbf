package mqtt

import (
	"context"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/sightd/sightd/store"
)

// Outbox is the durable queue producers push to and the drain empties.
// *store.Store is one.
type Outbox interface {
	Push(ctx context.Context, m store.Message) (uint64, error)
	Peek(ctx context.Context, n int) ([]store.OutboxEntry, error)
	Delete(ctx context.Context, seq uint64) error
	Len() int
	Bytes() int64
	Dropped() uint64
}

// publisher is the part of paho the drain uses.
type publisher interface {
	Publish(topic string, qos byte, retained bool, payload any) paho.Token
}

// link is the connection as the connection loop reports it: the publisher
// of the current connection, nil while there is none. Its epoch changes
// whenever the connection comes up or goes down.
type link struct {
	mu      sync.Mutex
	pub     publisher
	epoch   uint64
	changed chan struct{} // closed and replaced on every change
}

func newLink() *link { return &link{changed: make(chan struct{})} }

func (l *link) set(pub publisher) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pub = pub
	l.epoch++
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *link) state() (pub publisher, epoch uint64, changed <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pub, l.epoch, l.changed
}

// sender feeds one connection's paho client, in order, from a goroutine of
// its own. paho's Publish blocks when the connection dies under it, and
// such a call, left waiting, would be the first thing written on the next
// connection: ahead of the messages it should follow. Each connection
// therefore gets a new paho client and a new sender, and a stuck call holds
// up neither the drain nor the next connection.
type sender struct {
	reqs chan sendReq
	stop chan struct{}
}

type sendReq struct {
	topic    string
	qos      byte
	retained bool
	payload  []byte
	tok      *lateToken
}

func newSender(pub publisher) *sender {
	s := &sender{reqs: make(chan sendReq, window), stop: make(chan struct{})}
	go func() {
		for {
			select {
			case <-s.stop:
				return
			case r := <-s.reqs:
				t := pub.Publish(r.topic, r.qos, r.retained, r.payload)
				go func() {
					// paho never completes the tokens of a connection
					// that died (the session is persistent): give up
					// with the sender.
					select {
					case <-t.Done():
						r.tok.complete(t.Error())
					case <-s.stop:
					}
				}()
			}
		}
	}()
	return s
}

// Publish queues a message; the drain keeps at most window in flight, so
// the queue never blocks.
func (s *sender) Publish(topic string, qos byte, retained bool, payload any) paho.Token {
	b, _ := payload.([]byte)
	tok := &lateToken{done: make(chan struct{})}
	s.reqs <- sendReq{topic, qos, retained, b, tok}
	return tok
}

// close abandons what is queued or in flight (its tokens never complete):
// it goes out again on the next connection, from the outbox.
func (s *sender) close() { close(s.stop) }

// lateToken completes when the paho token it stands for does.
type lateToken struct {
	done chan struct{}
	err  error
}

func (t *lateToken) complete(err error)    { t.err = err; close(t.done) }
func (t *lateToken) Wait() bool            { <-t.done; return true }
func (t *lateToken) Done() <-chan struct{} { return t.done }
func (t *lateToken) Error() error          { return t.err }
func (t *lateToken) WaitTimeout(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-t.done:
		return true
	case <-timer.C:
		return false
	}
}

const (
	// window is how many outbox messages may await their PUBACK at once.
	window = 32
	// peekBatch is how many messages past those in flight are read at once.
	peekBatch = 64
	// idlePoll catches messages pushed to the store without a nudge.
	idlePoll = 5 * time.Second
)

// flight is a message published and not yet acknowledged.
type flight struct {
	seq   uint64
	epoch uint64 // of the connection it went out on
	tok   paho.Token
}

// drain publishes the outbox in order with QoS 1 and deletes each message
// once its PUBACK arrives. Only the drain deletes from the outbox.
type drain struct {
	out      Outbox
	link     *link
	nudge    <-chan struct{}
	pace     pacer
	retry    time.Duration // pause after a failed publish on a live connection
	log      zerolog.Logger
	acked    func() // counts acknowledged messages
	inflight []flight
	pending  []store.OutboxEntry // read from the outbox, not yet published
	next     uint64              // the lowest seq not yet published
}

// run drains until ctx ends. Messages in flight then stay in the outbox and
// go out again on the next start: subscribers see a duplicate, never a gap.
func (d *drain) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var epoch uint64
	for ctx.Err() == nil {
		pub, ep, changed := d.link.state()
		if ep != epoch {
			// What was in flight on an earlier connection may or may not
			// have arrived: it all goes out again, from the oldest.
			// (Subscribers drop duplicates by id.)
			d.restart()
			epoch = ep
		}
		if pub == nil {
			select {
			case <-ctx.Done():
			case <-changed:
			}
			continue
		}
		if failed := d.retire(ctx, epoch); failed {
			sleep(ctx, d.retry)
			continue
		}
		if _, ep, _ := d.link.state(); ep != epoch {
			continue
		}
		wait := idlePoll
		if len(d.inflight) < window {
			if len(d.pending) == 0 {
				d.refill(ctx)
			}
			if len(d.pending) > 0 {
				if w := d.pace.reserve(time.Now()); w > 0 {
					wait = w
				} else {
					d.publish(pub, d.pending[0], epoch)
					d.pending = d.pending[1:]
					continue
				}
			}
		}
		var acked <-chan struct{}
		if len(d.inflight) > 0 {
			acked = d.inflight[0].tok.Done()
		}
		timer.Reset(wait) // no stale tick survives Reset since Go 1.23
		select {
		case <-ctx.Done():
		case <-changed:
		case <-acked:
		case <-d.nudge:
		case <-timer.C:
		}
	}
}

// restart forgets what is in flight: it is published again.
func (d *drain) restart() {
	if len(d.inflight) > 0 {
		d.next = d.inflight[0].seq
	}
	d.inflight, d.pending = d.inflight[:0], nil
}

// retire deletes acknowledged messages from the head of the window, in
// order. It reports a failed publish (after which the rest is resent).
func (d *drain) retire(ctx context.Context, epoch uint64) (failed bool) {
	for len(d.inflight) > 0 {
		f := d.inflight[0]
		select {
		case <-f.tok.Done():
		default:
			return false
		}
		if err := f.tok.Error(); err != nil {
			d.log.Debug().Err(err).Uint64("seq", f.seq).Msg("publish failed; resending from here")
			d.restart()
			return true
		}
		// Trust the PUBACK only while its connection is the current one
		// (a token of an abandoned connection proves nothing; a race here
		// costs a duplicate, never a loss).
		if _, ep, _ := d.link.state(); ep != epoch {
			return false
		}
		// Counted before the deletion: whoever sees the outbox empty sees
		// the count complete.
		d.acked()
		if err := d.out.Delete(ctx, f.seq); err != nil {
			// It stays in the outbox and goes out again after a restart.
			d.log.Warn().Err(err).Uint64("seq", f.seq).Msg("outbox: cannot delete an acknowledged message")
		}
		d.inflight = d.inflight[1:]
	}
	return false
}

func (d *drain) refill(ctx context.Context) {
	entries, err := d.out.Peek(ctx, len(d.inflight)+peekBatch)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Error().Err(err).Msg("outbox: cannot read")
		}
		return
	}
	for i, e := range entries {
		if e.Seq >= d.next {
			d.pending = entries[i:]
			return
		}
	}
}

func (d *drain) publish(pub publisher, e store.OutboxEntry, epoch uint64) {
	// Never QoS 0: its token completes when the message is written, not
	// acknowledged, and the message would leave the outbox unconfirmed.
	qos := max(e.QoS, 1)
	tok := pub.Publish(e.Topic, qos, e.Retained, e.Payload)
	d.inflight = append(d.inflight, flight{seq: e.Seq, epoch: epoch, tok: tok})
	d.next = e.Seq + 1
}

// pacer spaces messages to a rate, allowing a burst of up to one second's
// worth after a quiet spell (GCRA).
type pacer struct {
	interval time.Duration
	burst    time.Duration
	tat      time.Time // theoretical arrival time of the next message
}

func newPacer(perSecond float64) pacer {
	return pacer{interval: time.Duration(float64(time.Second) / perSecond), burst: time.Second}
}

// reserve takes a slot now and returns 0, or says how long until one is free.
func (p *pacer) reserve(now time.Time) time.Duration {
	if earliest := now.Add(-p.burst); p.tat.Before(earliest) {
		p.tat = earliest
	}
	if w := p.tat.Sub(now); w > 0 {
		return w
	}
	p.tat = p.tat.Add(p.interval)
	return 0
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
