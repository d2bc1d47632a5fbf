package mqtt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/rs/zerolog"

	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/store"
)

// Device is the sightd instance as MQTT and Home Assistant know it.
type Device struct {
	// ID is in every topic (sightd/<id>/...), the client id (sightd-<id>)
	// and Home Assistant's unique ids: it must stay the same across
	// restarts. a-z, 0-9, _ and -.
	ID string
	// Name is the device's name in Home Assistant ("sightd <id>" when empty).
	Name string
	// Model and Version describe it (Home Assistant's model and sw_version).
	Model   string
	Version string
}

// Options are the parts of sightd the client works with.
type Options struct {
	Device Device
	// Outbox is the durable queue of messages to publish (required).
	Outbox Outbox
	// Rules receives rule/set and rule/delete; nil answers "not available".
	Rules RuleStore
	// Cameras are the configured camera names: one image entity each, and
	// the cameras snapshot requests may name.
	Cameras   []string
	Snapshots Snapshotter // nil answers "not available"
	// Installer runs model updates; nil when they are off (answers "not
	// available", and the update entity offers no install).
	Installer Installer
	Switches  Switches // nil answers "not available"
	// Last is a rule's latest detection, for its attributes; may be nil.
	Last func(rule string) *rules.Detection
}

// ErrNotAuthorized is why a broker refused the connection because of the
// username or password.
var ErrNotAuthorized = errors.New("not authorized")

// ErrClientIDInUse is why the broker keeps closing sightd's connections
// right after they are made: most likely another client (a second sightd
// with the same device.id) connects with the same client id, and each
// connection makes the broker close the other's.
var ErrClientIDInUse = errors.New("client id in use elsewhere")

// Health is the connection's state for /healthz and logs.
type Health struct {
	Connected bool
	// Since is when the current connection, or outage, began.
	Since time.Time
	// Err is why the last attempt failed or the last connection ended;
	// errors.Is(Err, ErrNotAuthorized) for refused credentials.
	Err error
	// Conflict is set (errors.Is(Conflict, ErrClientIDInUse)) while the
	// broker keeps closing connections right after they are made, whether
	// or not one is up at this moment.
	Conflict error
	// Attempts counts connection attempts since Run started.
	Attempts uint64
	// Acked counts outbox messages the broker acknowledged.
	Acked uint64
	// Busy counts commands answered "busy" because too many were waiting;
	// Deferred those neither answered nor acknowledged under a still
	// heavier flood (the broker sends them again on the next connection).
	Busy     uint64
	Deferred uint64
	// The outbox: waiting messages, their size, and those ever dropped
	// because it was full.
	Outbox      int
	OutboxBytes int64
	Dropped     uint64
}

// Client connects sightd to an MQTT broker: it publishes the outbox,
// announces sightd to Home Assistant and carries out commands.
type Client struct {
	cfg     Config
	opts    Options
	log     zerolog.Logger
	topics  Topics
	disc    discovery
	cameras map[string]bool
	paho    *paho.ClientOptions // a new paho client per connection (see sender)
	link    *link
	h       handlers

	nudge     chan struct{} // wakes the drain
	lost      chan error    // from paho: the connection died
	connected chan struct{} // to the control goroutine: subscribe, announce
	resync    chan struct{} // to the control goroutine: rules changed elsewhere
	inbox     chan inbound  // commands and homeassistant/status
	overflow  chan inbound  // what the inbox had no room for: answered busy
	haOnline  chan struct{} // homeassistant/status online, seen on the overflow path
	configs   chan inbound  // our retained discovery configs, to find stale ones

	started  atomic.Bool
	attempts atomic.Uint64
	acked    atomic.Uint64
	busy     atomic.Uint64
	deferred atomic.Uint64

	mu       sync.Mutex  // guards the three below
	pc       paho.Client // of the current connection; nil while down
	since    time.Time
	lastErr  error
	conflict error // see Health.Conflict

	published map[string][]byte // discovery configs in force (control goroutine only)
	// seen is each rule's kind and switch as last published (control
	// goroutine only); nil until the first sync of this run.
	seen map[string]ruleSeen
}

type ruleSeen struct {
	kind    rules.Kind
	enabled bool
}

type inbound struct {
	topic    string
	payload  []byte
	retained bool
	ack      func() // acknowledges the message to the broker (QoS 1)
}

// done acknowledges the message: the broker will not send it again. A
// command is acknowledged only once it was answered, so that one sightd
// could not carry out is delivered again on the next connection.
func (in inbound) done() {
	if in.ack == nil {
		return
	}
	// paho hands the PUBACK to its connection's goroutines; if they are
	// gone with the connection it is dropped (and the broker redelivers).
	// The wait only guards against a stuck connection.
	fin := make(chan struct{})
	go func() { in.ack(); close(fin) }()
	t := time.NewTimer(ackTimeout)
	defer t.Stop()
	select {
	case <-fin:
	case <-t.C:
	}
}

// Time limits of the client's own steps.
const (
	commandTimeout  = 30 * time.Second
	stoppedTimeout  = 2 * time.Second
	disconnectQuiet = 250 // ms paho waits for the DISCONNECT to go out
	ackTimeout      = 5 * time.Second
	// inboxSize commands wait for the control goroutine; with manual
	// acknowledgements the broker's own in-flight window (Mosquitto: 20)
	// normally keeps the inbox from filling. overflowSize more are answered
	// "busy"; beyond that paho's reading waits up to overflowWait for room.
	inboxSize    = 64
	overflowSize = 1024
	overflowWait = 10 * time.Second
)

// New prepares a client; Run connects it. It reads the password file and
// the TLS files now, so that a bad path fails at start-up.
func New(cfg Config, opts Options, log zerolog.Logger) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Outbox == nil {
		return nil, errors.New("mqtt: no outbox")
	}
	if !idRE.MatchString(opts.Device.ID) {
		return nil, fmt.Errorf("mqtt: device id %q: want 1 to 64 of a-z, 0-9, _ and -, starting with a letter or digit", opts.Device.ID)
	}
	for _, cam := range opts.Cameras {
		if err := checkIDs(cam); err != nil {
			return nil, err
		}
	}
	password, err := cfg.password()
	if err != nil {
		return nil, err
	}
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg: cfg, opts: opts, topics: NewTopics(opts.Device.ID),
		log:       log.With().Str("component", "mqtt").Logger(),
		disc:      newDiscovery(cfg.DiscoveryPrefix, opts.Device, opts.Cameras, opts.Installer != nil),
		cameras:   map[string]bool{},
		link:      newLink(),
		nudge:     make(chan struct{}, 1),
		lost:      make(chan error, 1),
		connected: make(chan struct{}, 1),
		resync:    make(chan struct{}, 1),
		inbox:     make(chan inbound, inboxSize),
		overflow:  make(chan inbound, overflowSize),
		haOnline:  make(chan struct{}, 1),
		configs:   make(chan inbound, 1024),
		since:     time.Now(),
	}
	for _, cam := range opts.Cameras {
		c.cameras[cam] = true
	}
	c.h = handlers{device: opts.Device.ID, push: c.Push, rules: opts.Rules, snapshots: opts.Snapshots,
		installer: opts.Installer, switches: opts.Switches, refused: c.refused, last: opts.Last,
		changed: func(ctx context.Context) { c.syncDiscovery(ctx, false) }}

	c.paho = paho.NewClientOptions().AddBroker(cfg.Broker).
		SetClientID(c.clientID()).
		SetUsername(cfg.Username).SetPassword(password).
		SetProtocolVersion(4). // no silent fall-back to 3.1 after a refusal
		// A persistent session: the broker keeps our subscriptions and
		// queues commands sent while we are away.
		SetCleanSession(false).
		// Reconnecting is ours (back-off, health); paho only connects.
		SetAutoReconnect(false).SetConnectRetry(false).
		SetKeepAlive(cfg.KeepAlive).SetPingTimeout(min(cfg.KeepAlive, 10*time.Second)).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetWill(c.topics.Status(), Offline, 1, true).
		SetDefaultPublishHandler(c.onMessage).
		// A command is acknowledged once it is answered (see inbound.done):
		// under a flood the broker holds back the rest instead of sightd
		// dropping what it already acknowledged.
		SetAutoAckDisabled(true).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case c.lost <- err:
			default:
			}
		})
	if tlsCfg != nil {
		c.paho.SetTLSConfig(tlsCfg)
	}
	return c, nil
}

// Push queues a message in the outbox and wakes the drain. Producers use
// it (or push to the store themselves; the drain then finds the message
// within a few seconds).
func (c *Client) Push(ctx context.Context, m store.Message) error {
	if _, err := c.opts.Outbox.Push(ctx, m); err != nil {
		return err
	}
	c.Nudge()
	return nil
}

// PublishNow sends m at once, bypassing the outbox, if connected, and
// reports whether it went out (QoS 1, acknowledged within connect_timeout).
// For a small state that cannot wait in the outbox: the store's own "disk
// full" when the store refuses to queue it.
func (c *Client) PublishNow(m store.Message) bool {
	pc := c.client()
	if pc == nil {
		return false
	}
	tok := pc.Publish(m.Topic, m.QoS, m.Retained, m.Payload)
	return tok.WaitTimeout(c.cfg.ConnectTimeout) && tok.Error() == nil
}

// Nudge wakes the drain: something was pushed to the outbox.
func (c *Client) Nudge() {
	select {
	case c.nudge <- struct{}{}:
	default:
	}
}

// Resync re-announces the rules to Home Assistant after they changed other
// than by an MQTT command (the CLI, the HTTP API).
func (c *Client) Resync() {
	select {
	case c.resync <- struct{}{}:
	default:
	}
}

// Health reports the connection's state.
func (c *Client) Health() Health {
	c.mu.Lock()
	h := Health{Connected: c.pc != nil, Since: c.since, Err: c.lastErr, Conflict: c.conflict}
	c.mu.Unlock()
	h.Attempts, h.Acked = c.attempts.Load(), c.acked.Load()
	h.Busy, h.Deferred = c.busy.Load(), c.deferred.Load()
	h.Outbox, h.OutboxBytes, h.Dropped = c.opts.Outbox.Len(), c.opts.Outbox.Bytes(), c.opts.Outbox.Dropped()
	return h
}

// setState records a connection coming up (pc set) or going down.
func (c *Client) setState(pc paho.Client, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pc, c.since, c.lastErr = pc, time.Now(), err
}

func (c *Client) setConflict(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conflict = err
}

func (c *Client) clientID() string { return "sightd-" + c.opts.Device.ID }

// Telling a client id in use elsewhere: this many connections in a row that
// the broker closed within shortLived of their start.
const kickedInARow = 3

// shortLived is how young a connection must die to count as one the broker
// closed at once: longer than the other client's back-off, which grows to
// retry_max.
func (c *Client) shortLived() time.Duration { return max(2*c.cfg.RetryMax, 10*time.Second) }

// closedByPeer reports an end of the connection that came from the other
// side (the broker closing it), not from a timeout on ours.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.EPIPE)
}

// client is the paho client of the current connection, or nil.
func (c *Client) client() paho.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pc
}

// Run connects, and keeps reconnecting, until ctx ends; then it publishes
// "stopped" and disconnects. It returns once everything has stopped (after
// at most connect_timeout plus two seconds). Call it once.
func (c *Client) Run(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("mqtt: Run called twice")
	}
	c.log.Info().Str("broker", redact(c.cfg.Broker)).Str("client_id", c.clientID()).Msg("starting")
	d := &drain{out: c.opts.Outbox, link: c.link, nudge: c.nudge, pace: newPacer(c.cfg.DrainRate),
		retry: c.cfg.RetryMin, log: c.log, acked: func() { c.acked.Add(1) }}
	var wg sync.WaitGroup
	wg.Go(func() { d.run(ctx) })
	wg.Go(func() { c.control(ctx) })
	wg.Go(func() { c.answerBusy(ctx) })
	snd := c.connectLoop(ctx)
	wg.Wait()
	if pc := c.client(); pc != nil {
		tok := pc.Publish(c.topics.Status(), 1, true, Stopped)
		if !tok.WaitTimeout(stoppedTimeout) || tok.Error() != nil {
			c.log.Warn().Err(tok.Error()).Msg("could not publish the stopped status")
		}
		c.link.set(nil)
		snd.close()
		pc.Disconnect(disconnectQuiet)
	}
	c.setState(nil, nil)
	c.log.Info().Int("outbox", c.opts.Outbox.Len()).Msg("stopped")
	return nil
}

// connectLoop connects, waits for the connection to die, and reconnects
// with exponential back-off and jitter, until ctx ends. It returns the
// sender of the connection still up then, if any.
func (c *Client) connectLoop(ctx context.Context) *sender {
	backoff := c.cfg.RetryMin
	var lastErr string
	kicked := 0 // connections in a row the broker closed at once
	for ctx.Err() == nil {
		select {
		case <-c.lost: // a stale report of an earlier connection
		default:
		}
		c.attempts.Add(1)
		pc := paho.NewClient(c.paho)
		tok := pc.Connect()
		<-tok.Done() // bounded by connect_timeout
		if err := tok.Error(); err != nil {
			err = connectError(c.cfg, err)
			c.setState(nil, err)
			// A failure is logged once until it changes: an outage is
			// no reason to fill the journal.
			wait := jitter(backoff)
			if msg := err.Error(); msg != lastErr {
				lastErr = msg
				c.log.Warn().Err(err).Dur("retry_in", wait).Msg("cannot connect; retrying with back-off")
			} else {
				c.log.Debug().Err(err).Dur("retry_in", wait).Msg("cannot connect")
			}
			sleep(ctx, wait)
			backoff = min(2*backoff, c.cfg.RetryMax)
			continue
		}
		up := time.Now()
		lastErr = ""
		c.setState(pc, nil)
		snd := newSender(pc)
		c.link.set(snd)
		if tok := pc.Publish(c.topics.Status(), 1, true, Online); !tok.WaitTimeout(c.cfg.ConnectTimeout) || tok.Error() != nil {
			c.log.Warn().Err(tok.Error()).Msg("could not publish the online status")
		}
		select {
		case c.connected <- struct{}{}:
		default:
		}
		c.log.Info().Str("broker", redact(c.cfg.Broker)).Msg("connected")
		// A connection that outlives shortLived ends a conflict.
		held := time.NewTimer(c.shortLived())
		var err error
	wait:
		for {
			select {
			case <-ctx.Done():
				held.Stop()
				return snd
			case <-held.C:
				if kicked > 0 {
					kicked = 0
					c.setConflict(nil)
					c.log.Info().Msg("the connection holds: no other client uses our client id now")
				}
			case err = <-c.lost:
				held.Stop()
				break wait
			}
		}
		c.link.set(nil)
		snd.close()
		lived := time.Since(up)
		lostErr := fmt.Errorf("mqtt: connection to %s lost: %w", redact(c.cfg.Broker), err)
		if lived < c.shortLived() && closedByPeer(err) {
			kicked++
		} else {
			kicked = 0
			c.setConflict(nil)
		}
		if kicked >= kickedInARow {
			lostErr = fmt.Errorf("mqtt: %w: the broker %s closed %d connections in a row within %v of their start (%v): "+
				"another client is probably connected as %q; is device.id %q used by a second sightd? "+
				"Each connection makes the broker drop the other",
				ErrClientIDInUse, redact(c.cfg.Broker), kicked, lived.Round(time.Millisecond), err, c.clientID(), c.opts.Device.ID)
			c.setConflict(lostErr)
			if kicked == kickedInARow || kicked%100 == 0 {
				c.log.Error().Err(lostErr).Msg("connection lost; the device id looks taken")
			} else {
				c.log.Debug().Err(lostErr).Msg("connection lost")
			}
		} else {
			c.log.Warn().Err(err).Dur("lived", lived).Msg("connection lost; reconnecting")
		}
		c.setState(nil, lostErr)
		// A connection that held for a while resets the back-off; one that
		// dies at once (a broker that kicks us out) keeps growing it.
		if time.Since(up) > c.cfg.RetryMax {
			backoff = c.cfg.RetryMin
		}
		sleep(ctx, jitter(backoff))
		backoff = min(2*backoff, c.cfg.RetryMax)
	}
	return nil
}

// jitter spreads d by ±25% so that a fleet does not reconnect in step.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.75 + 0.5*rand.Float64()))
}

// connectError says why a connection attempt failed in words a user acts on.
func connectError(cfg Config, err error) error {
	if errors.Is(err, packets.ErrorRefusedNotAuthorised) || errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
		return fmt.Errorf("mqtt: connect to %s: %w: the broker refused user %q (%v); check mqtt.username and mqtt.password_file",
			redact(cfg.Broker), ErrNotAuthorized, cfg.Username, err)
	}
	return fmt.Errorf("mqtt: connect to %s: %w", redact(cfg.Broker), err)
}

// onMessage runs inside paho: it hands the message to the control
// goroutine, or, when that one is behind, to the goroutine that answers
// "busy". Nothing is dropped silently: a command is answered (and then
// acknowledged), or left unacknowledged for the broker to send again.
func (c *Client) onMessage(_ paho.Client, m paho.Message) {
	in := inbound{topic: m.Topic(), payload: m.Payload(), retained: m.Retained(), ack: m.Ack}
	_, isCameraStatus := c.cameraOfStatus(in.topic)
	if isCameraStatus || c.cfg.Discovery && strings.HasPrefix(in.topic, c.cfg.DiscoveryPrefix+"/") && in.topic != c.haStatus() {
		// Our own retained configs (QoS 0): a missed one is found again
		// on the next connection.
		select {
		case c.configs <- in:
		default:
			c.log.Debug().Str("topic", in.topic).Msg("busy: discovery config not checked")
		}
		return
	}
	select {
	case c.inbox <- in:
		return
	default:
	}
	// The control goroutine is behind. Blocking here holds up only paho's
	// reading of this connection; the busy answers and acknowledgements
	// go out on its writing side, so the wait always ends.
	t := time.NewTimer(overflowWait)
	defer t.Stop()
	select {
	case c.overflow <- in:
	case <-t.C:
		c.deferred.Add(1)
		c.log.Error().Str("topic", in.topic).
			Msg("overloaded: message neither answered nor acknowledged; the broker sends it again on the next connection")
	}
}

// answerBusy answers what the inbox had no room for: a command gets
// {"ok":false,"busy":true,...} on its reply topic and is acknowledged (its
// sender knows to send it again); Home Assistant's online is passed on.
func (c *Client) answerBusy(ctx context.Context) {
	for {
		var in inbound
		select {
		case <-ctx.Done():
			return
		case in = <-c.overflow:
		}
		if in.topic == c.haStatus() {
			if string(in.payload) == Online {
				select {
				case c.haOnline <- struct{}{}:
				default:
				}
			}
			in.done()
			continue
		}
		if _, ok, _ := parseCommandTopic(c.topics, in.topic); !ok {
			in.done()
			continue
		}
		rep := reply{RequestID: requestIDOf(in.payload, c.cfg.MaxCommandBytes), Busy: true,
			Error: fmt.Sprintf("busy: %d commands are waiting; nothing was done, send it again", len(c.inbox))}
		n := c.busy.Add(1)
		if n == 1 || n%1000 == 0 {
			c.log.Warn().Str("command", in.topic).Uint64("busy_total", n).Msg("command answered busy: too many waiting")
		}
		c.publishReply(in, rep)
	}
}

// publishReply answers a command, then acknowledges it. Without a
// connection it stays unacknowledged, and the broker sends it again.
func (c *Client) publishReply(in inbound, rep reply) {
	b, _ := json.Marshal(rep) // strings, bools and numbers: cannot fail
	pc := c.client()
	if pc == nil {
		return
	}
	pc.Publish(Reply(in.topic), 1, false, b)
	in.done()
}

func (c *Client) haStatus() string { return c.cfg.DiscoveryPrefix + "/status" }

// control is the client's own goroutine for everything that may take time:
// subscribing, discovery, commands.
func (c *Client) control(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.connected:
			c.onConnect(ctx)
		case <-c.resync:
			c.syncDiscovery(ctx, false)
		case <-c.haOnline:
			c.log.Info().Msg("Home Assistant is online: publishing discovery")
			c.syncDiscovery(ctx, true)
		case in := <-c.inbox:
			c.handle(ctx, in)
		case in := <-c.configs:
			c.removeStale(ctx, in)
			in.done()
		}
	}
}

func (c *Client) onConnect(ctx context.Context) {
	t := c.topics
	subs := map[string]byte{t.RuleSet(): 1, t.RuleDelete(): 1, t.ModelInstall(): 1, t.SnapshotRequest("+"): 1,
		t.RuleEnabledSet("+"): 1, t.CameraDetectionSet("+"): 1,
		// Retained statuses of cameras no longer configured are cleared
		// (see removeStale); QoS 0 like the configs below.
		t.CameraStatus("+"): 0}
	if c.cfg.Discovery {
		subs[c.haStatus()] = 1
	}
	c.subscribe(subs)
	c.syncDiscovery(ctx, true)
	if !c.cfg.Discovery {
		return
	}
	// Our retained configs come back on this subscription; those of rules
	// deleted while we were away are removed (see removeStale). QoS 0: they
	// need not queue while we are offline.
	c.subscribe(map[string]byte{c.disc.filter(): 0})
}

func (c *Client) subscribe(filters map[string]byte) {
	pc := c.client()
	if pc == nil {
		return
	}
	tok := pc.SubscribeMultiple(filters, nil)
	if !tok.WaitTimeout(c.cfg.ConnectTimeout) || tok.Error() != nil {
		c.log.Warn().Err(tok.Error()).Strs("topics", slices.Sorted(maps.Keys(filters))).Msg("subscribe failed")
	}
}

// syncDiscovery publishes the rules' switch states and the Home Assistant
// configs that changed (all of them when force), and removes those no
// longer wanted.
func (c *Client) syncDiscovery(ctx context.Context, force bool) {
	list, err := c.listRules(ctx)
	if err != nil {
		c.log.Error().Err(err).Msg("discovery: cannot list the rules")
		return
	}
	c.syncStates(ctx, list)
	if !c.cfg.Discovery {
		return
	}
	want, err := c.disc.configs(list)
	if err != nil {
		c.log.Error().Err(err).Msg("discovery")
		return
	}
	pc := c.client()
	if pc == nil {
		// Not connected: the next connection publishes everything.
		return
	}
	var toks []paho.Token
	for _, topic := range slices.Sorted(maps.Keys(want)) {
		if force || !bytes.Equal(c.published[topic], want[topic]) {
			toks = append(toks, pc.Publish(topic, 1, true, want[topic]))
		}
	}
	for _, topic := range slices.Sorted(maps.Keys(c.published)) {
		if _, ok := want[topic]; !ok {
			toks = append(toks, pc.Publish(topic, 1, true, []byte{}))
		}
	}
	c.published = want
	deadline := time.Now().Add(c.cfg.ConnectTimeout)
	for _, tok := range toks {
		if !tok.WaitTimeout(time.Until(deadline)) || tok.Error() != nil {
			// The next connection publishes everything again.
			c.log.Warn().Err(tok.Error()).Msg("discovery: publish failed")
			return
		}
	}
	c.log.Debug().Int("configs", len(want)).Int("sent", len(toks)).Msg("discovery published")
}

func (c *Client) listRules(ctx context.Context) ([]*rules.Rule, error) {
	if c.opts.Rules == nil {
		return nil, nil
	}
	return c.opts.Rules.List(ctx)
}

// syncStates publishes what the rules' entities need beside the rules
// themselves, through the outbox (so that it comes after any state still
// waiting there): each rule's switch (enabled or not), OFF for a disabled
// state rule, no retained state for a rule that is not a state rule (one
// changed from state to event), and nothing at all for a deleted rule.
// At the first sync of a run every rule and camera switch is published.
func (c *Client) syncStates(ctx context.Context, list []*rules.Rule) {
	first := c.seen == nil
	now := make(map[string]ruleSeen, len(list))
	var msgs []store.Message
	add := func(m store.Message, err error) {
		if err == nil {
			msgs = append(msgs, m)
		}
	}
	dev := c.opts.Device.ID
	for _, r := range list {
		cur := ruleSeen{kind: r.Kind, enabled: r.IsEnabled()}
		now[r.ID] = cur
		prev, ok := c.seen[r.ID]
		if !ok || prev.enabled != cur.enabled {
			add(RuleEnabledMessage(dev, r.ID, cur.enabled))
			if !cur.enabled && r.Kind == rules.State {
				add(StateMessage(dev, r.ID, false))
			}
		}
		if r.Kind != rules.State && (!ok || prev.kind == rules.State) {
			msgs = append(msgs, clearMessage(c.topics.RuleState(r.ID)))
		}
	}
	for id := range c.seen {
		if _, ok := now[id]; !ok {
			msgs = append(msgs, c.ruleClears(id)...)
		}
	}
	if first && c.opts.Switches != nil {
		for _, cam := range c.disc.cameras {
			add(CameraDetectionMessage(dev, cam, c.opts.Switches.Detection(cam)))
		}
	}
	c.seen = now
	for _, m := range msgs {
		if err := c.Push(ctx, m); err != nil {
			c.log.Warn().Err(err).Str("topic", m.Topic).Msg("rule state not queued")
		}
	}
}

// ruleClears empties every retained topic of a deleted rule.
func (c *Client) ruleClears(id string) []store.Message {
	t := c.topics
	return []store.Message{clearMessage(t.RuleState(id)), clearMessage(t.RuleAttributes(id)),
		clearMessage(t.RuleEnabled(id)), clearMessage(t.RuleSnapshot(id))}
}

// cameraOfStatus says whether topic is a camera's status topic, and whose.
func (c *Client) cameraOfStatus(topic string) (string, bool) {
	prefix, suffix := c.topics.Base+"/camera/", "/status"
	if !strings.HasPrefix(topic, prefix) || !strings.HasSuffix(topic, suffix) || len(topic) <= len(prefix)+len(suffix) {
		return "", false
	}
	cam := topic[len(prefix) : len(topic)-len(suffix)]
	return cam, !strings.Contains(cam, "/")
}

// removeStale removes a retained discovery config of this device that sightd
// no longer wants (a rule deleted while it was away, a camera removed from
// the configuration), with a deleted rule's retained topics, and the
// retained topics of a camera no longer configured.
func (c *Client) removeStale(ctx context.Context, in inbound) {
	if len(in.payload) == 0 {
		return
	}
	pc := c.client()
	if pc == nil {
		return
	}
	if cam, ok := c.cameraOfStatus(in.topic); ok {
		if c.cameras[cam] {
			return
		}
		c.log.Info().Str("camera", cam).Msg("clearing the retained topics of a camera no longer configured")
		t := c.topics
		for _, topic := range []string{t.CameraStatus(cam), t.Snapshot(cam), t.CameraMotion(cam), t.CameraDetection(cam)} {
			pc.Publish(topic, 1, true, []byte{})
		}
		return
	}
	if c.published == nil {
		return
	}
	if _, ok := c.published[in.topic]; ok {
		return
	}
	c.log.Info().Str("topic", in.topic).Msg("discovery: removing a stale entity")
	pc.Publish(in.topic, 1, true, []byte{})
	// A rule deleted while sightd was away: its own topics go too.
	if id, ok := c.disc.staleRule(in.topic); ok {
		if _, known := c.seen[id]; !known {
			for _, m := range c.ruleClears(id) {
				if err := c.Push(ctx, m); err != nil {
					c.log.Warn().Err(err).Str("topic", m.Topic).Msg("rule state not queued")
				}
			}
		}
	}
}

// refused tells Home Assistant's update entity why an install was refused
// (its attributes come from model/event).
func (c *Client) refused(ctx context.Context, reason string) {
	m, err := ModelEventMessage(c.opts.Device.ID, ModelEvent{Kind: "refused", Reason: reason})
	if err == nil {
		err = c.Push(ctx, m)
	}
	if err != nil {
		c.log.Warn().Err(err).Msg("model install refusal not queued")
	}
}

// handle carries out a command, or re-announces sightd when Home Assistant
// comes online.
func (c *Client) handle(ctx context.Context, in inbound) {
	if in.topic == c.haStatus() {
		if string(in.payload) == Online {
			c.log.Info().Msg("Home Assistant is online: publishing discovery")
			c.syncDiscovery(ctx, true)
		}
		in.done()
		return
	}
	cmd, ok, err := parseCommand(c.topics, in.topic, in.payload, c.cfg.MaxCommandBytes, c.cameras)
	if !ok {
		in.done()
		return
	}
	var rep reply
	switch {
	case err != nil:
		rep = reply{RequestID: cmd.requestID, Error: err.Error()}
	case in.retained:
		// It would run again on every reconnect.
		rep = reply{RequestID: cmd.requestID, Error: "retained commands are refused: publish without the retain flag"}
	default:
		cctx, cancel := context.WithTimeout(ctx, commandTimeout)
		rep = c.h.run(cctx, cmd)
		cancel()
	}
	ev := c.log.Info()
	if !rep.OK {
		ev = c.log.Warn().Str("error", rep.Error)
	}
	ev.Str("command", in.topic).Str("request_id", rep.RequestID).Msg("command")
	c.publishReply(in, rep)
}
