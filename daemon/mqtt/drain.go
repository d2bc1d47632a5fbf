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

// link is the connection's state as the connection loop reports it. Its
// epoch changes whenever the connection comes up or goes down.
type link struct {
	mu      sync.Mutex
	up      bool
	epoch   uint64
	changed chan struct{} // closed and replaced on every change
}

func newLink() *link { return &link{changed: make(chan struct{})} }

func (l *link) set(up bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.up = up
	l.epoch++
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *link) state() (up bool, epoch uint64, changed <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.up, l.epoch, l.changed
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
	pub      publisher
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
		up, ep, changed := d.link.state()
		if ep != epoch {
			// A token of an earlier connection proves nothing: paho
			// completes the tokens of the messages it resends after a
			// reconnect before their new PUBACK arrives. Everything in
			// flight goes out again, from the oldest.
			d.restart()
			epoch = ep
		}
		if !up {
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
					d.publish(d.pending[0], epoch)
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
		// Trust the PUBACK only if the connection it came on is still the
		// current one (the caller checks the epoch again before the next
		// publish; a race here costs a duplicate, never a loss).
		if up, ep, _ := d.link.state(); !up || ep != epoch {
			return false
		}
		if err := d.out.Delete(ctx, f.seq); err != nil {
			// It stays in the outbox and goes out again after a restart.
			d.log.Warn().Err(err).Uint64("seq", f.seq).Msg("outbox: cannot delete an acknowledged message")
		}
		d.acked()
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

func (d *drain) publish(e store.OutboxEntry, epoch uint64) {
	// Never QoS 0: its token completes when the message is written, not
	// acknowledged, and the message would leave the outbox unconfirmed.
	qos := max(e.QoS, 1)
	tok := d.pub.Publish(e.Topic, qos, e.Retained, e.Payload)
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
