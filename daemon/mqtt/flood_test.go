package mqtt

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sightd/sightd/daemon/rules"
)

// gatedRules is a RuleStore whose Delete waits until the test opens the
// gate: a command that takes its time.
type gatedRules struct {
	*fakeRules
	gate    chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (g *gatedRules) Delete(ctx context.Context, id string) error {
	g.once.Do(func() { close(g.entered) })
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.fakeRules.Delete(ctx, id)
}

// flood publishes n rule/delete commands (request ids f0..f<n-1>) as fast
// as one client can, at QoS 1, and waits for the broker to take them all.
func flood(t *testing.T, broker string, n int) {
	t.Helper()
	pc := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID("flooder"))
	if tok := pc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer pc.Disconnect(100)
	topic := NewTopics("test").RuleDelete()
	toks := make([]paho.Token, n)
	start := time.Now()
	for i := range n {
		toks[i] = pc.Publish(topic, 1, false, fmt.Sprintf(`{"id":"nope","request_id":"f%d"}`, i))
	}
	for i, tok := range toks {
		if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	t.Logf("%d commands published in %v", n, time.Since(start).Round(time.Millisecond))
}

// answers reads the replies s holds: request id -> reply.
func answers(t *testing.T, s *sub) map[string]reply {
	out := map[string]reply{}
	for _, r := range s.all() {
		var rep reply
		if err := json.Unmarshal(r.payload, &rep); err != nil {
			t.Fatalf("reply %q: %v", r.payload, err)
		}
		out[rep.RequestID] = rep
	}
	return out
}

// 5,000 commands in a burst (66 ms here): every one is answered, carried
// out or refused as busy, and none is left for a reconnect. (Mosquitto
// 2.0.11 sent 2,829 of them without waiting for an acknowledgement: the
// broker's in-flight window does not hold a flood back.)
func TestCommandFloodEveryOneAnswered(t *testing.T) {
	const n = 5000
	m := startMosquitto(t, mosqOptions{})
	s := subscribe(t, m.url(), subOptions{}, Reply(NewTopics("test").RuleDelete()))
	cfg, opts := testConfig(m.url()), Options{Outbox: openStore(t, nil), Rules: newFakeRules()}
	c := runClient(t, cfg, opts)
	waitFor(t, 30*time.Second, "connected", func() bool { return c.Health().Connected })
	flood(t, m.url(), n)
	// Each command is answered, or, on a machine too loaded for even the
	// busy answers to keep up, left unacknowledged (Deferred) for the broker
	// to send again on the next connection.
	waitFor(t, 2*time.Minute, fmt.Sprintf("%d answered or deferred", n), func() bool {
		return len(answers(t, s))+int(c.Health().Deferred) >= n
	})
	reconnected := false
	if d := c.Health().Deferred; d > 0 {
		reconnected = true
		t.Logf("%d commands deferred under load: reconnecting for the broker to send them again", d)
		c.stop()
		c = runClient(t, cfg, opts)
	}
	waitFor(t, 2*time.Minute, fmt.Sprintf("%d answers", n), func() bool { return len(answers(t, s)) == n })
	busy := 0
	for id, rep := range answers(t, s) {
		switch {
		case rep.Busy && !rep.OK && strings.HasPrefix(rep.Error, "busy: "):
			busy++
		case !rep.OK && strings.Contains(rep.Error, `no rule "nope"`):
		default:
			t.Fatalf("%s: %+v", id, rep)
		}
	}
	if !reconnected {
		waitFor(t, 30*time.Second, "the busy count", func() bool { return c.Health().Busy == uint64(busy) })
	}
	t.Logf("%d carried out, %d answered busy", n-busy, busy)
}

// With a broker that sends without a window, a command sightd has no room
// for is answered {"ok":false,"busy":true} with its request id (and
// acknowledged): never dropped.
func TestCommandFloodBusyAnswers(t *testing.T) {
	const n = 5000
	m := startMosquitto(t, mosqOptions{extra: "max_inflight_messages 0\n"})
	s := subscribe(t, m.url(), subOptions{}, Reply(NewTopics("test").RuleDelete()))
	g := &gatedRules{fakeRules: newFakeRules(&rules.Rule{ID: "nope", Prompts: []string{"x"}}),
		gate: make(chan struct{}), entered: make(chan struct{})}
	c := runClient(t, testConfig(m.url()), Options{Outbox: openStore(t, nil), Rules: g})
	waitFor(t, 30*time.Second, "connected", func() bool { return c.Health().Connected })
	go func() {
		// The first command holds the control goroutine until the busy
		// path has answered; then the rest of the inbox runs.
		<-g.entered
		deadline := time.Now().Add(time.Minute)
		for c.Health().Busy == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		close(g.gate)
	}()
	flood(t, m.url(), n)
	waitFor(t, 2*time.Minute, fmt.Sprintf("%d answers", n), func() bool { return len(answers(t, s)) == n })
	busy, ok, done := 0, 0, 0
	for id, rep := range answers(t, s) {
		switch {
		case rep.Busy && !rep.OK && strings.Contains(rep.Error, "busy"):
			busy++
		case rep.OK:
			ok++ // the first delete of "nope"
		case strings.Contains(rep.Error, `no rule "nope"`):
			done++
		default:
			t.Fatalf("%s: %+v", id, rep)
		}
	}
	waitFor(t, 30*time.Second, "the busy count", func() bool { return c.Health().Busy == uint64(busy) })
	if h := c.Health(); busy == 0 || ok != 1 || h.Deferred != 0 {
		t.Errorf("%d busy, %d ok, %d done; health %+v", busy, ok, done, h)
	}
	t.Logf("%d answered busy, %d carried out", busy, ok+done)
}
