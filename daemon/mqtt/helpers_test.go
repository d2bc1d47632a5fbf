package mqtt

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/store"
)

// A real Mosquitto, started by the test on a free port with a generated
// configuration, and killed in Cleanup.

type mosqOptions struct {
	users      map[string]string // user -> password: password_file, no anonymous access
	tls        *certs            // TLS listener instead of plain TCP
	clientCert bool              // require a client certificate
	websockets bool              // an extra websockets listener (wsPort)
	extra      string            // more configuration lines
}

type mosquitto struct {
	t      testing.TB
	dir    string
	conf   string
	port   int
	wsPort int
	tls    bool
	cmd    *exec.Cmd
	done   chan struct{}
}

func startMosquitto(t testing.TB, o mosqOptions) *mosquitto {
	t.Helper()
	if _, err := exec.LookPath("mosquitto"); err != nil {
		if _, err := os.Stat("/usr/sbin/mosquitto"); err != nil {
			t.Fatal("mosquitto is not installed (make deps installs it)")
		}
	}
	m := &mosquitto{t: t, dir: t.TempDir(), port: freePort(t), tls: o.tls != nil}
	var conf strings.Builder
	if u, err := user.Current(); err == nil {
		// As root, Mosquitto would switch to user "mosquitto", who cannot
		// read the test's files.
		fmt.Fprintf(&conf, "user %s\n", u.Username)
	}
	fmt.Fprintf(&conf, "persistence true\npersistence_location %s/\nautosave_interval 0\n", m.dir)
	fmt.Fprintf(&conf, "log_dest file %s\nlog_type all\n", filepath.Join(m.dir, "mosquitto.log"))
	// The outage test queues thousands of messages for an offline subscriber.
	conf.WriteString("max_queued_messages 0\nper_listener_settings false\n")
	conf.WriteString(o.extra)
	if len(o.users) > 0 {
		pw := filepath.Join(m.dir, "passwd")
		for u, p := range o.users {
			args := []string{"-b", pw, u, p}
			if _, err := os.Stat(pw); err != nil {
				args = append([]string{"-c"}, args...)
			}
			if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_passwd: %v: %s", err, out)
			}
		}
		fmt.Fprintf(&conf, "allow_anonymous false\npassword_file %s\n", pw)
	} else {
		conf.WriteString("allow_anonymous true\n")
	}
	fmt.Fprintf(&conf, "listener %d 127.0.0.1\n", m.port)
	if o.tls != nil {
		fmt.Fprintf(&conf, "cafile %s\ncertfile %s\nkeyfile %s\n", o.tls.ca, o.tls.serverCert, o.tls.serverKey)
		if o.clientCert {
			conf.WriteString("require_certificate true\n")
		}
	}
	if o.websockets {
		m.wsPort = freePort(t)
		fmt.Fprintf(&conf, "listener %d 127.0.0.1\nprotocol websockets\n", m.wsPort)
	}
	m.conf = filepath.Join(m.dir, "mosquitto.conf")
	if err := os.WriteFile(m.conf, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	m.start()
	t.Cleanup(func() {
		m.stop()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(m.dir, "mosquitto.log"))
			t.Logf("mosquitto log (last 4 KB):\n%s", tail(b, 4096))
		}
	})
	return m
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (m *mosquitto) url() string {
	scheme := "tcp"
	if m.tls {
		scheme = "ssl"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, m.port)
}

// start runs Mosquitto and waits until it accepts connections.
func (m *mosquitto) start() {
	m.t.Helper()
	m.cmd = exec.Command("mosquitto", "-c", m.conf)
	if _, err := exec.LookPath("mosquitto"); err != nil {
		m.cmd = exec.Command("/usr/sbin/mosquitto", "-c", m.conf)
	}
	m.cmd.Stdout, m.cmd.Stderr = io.Discard, io.Discard
	if err := m.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	m.done = make(chan struct{})
	go func() { m.cmd.Wait(); close(m.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", m.port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-m.done:
			b, _ := os.ReadFile(filepath.Join(m.dir, "mosquitto.log"))
			m.t.Fatalf("mosquitto exited at start: %s", tail(b, 2048))
		default:
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("mosquitto does not listen on %d: %v", m.port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends Mosquitto cleanly (it saves its persistence file on SIGTERM).
func (m *mosquitto) stop() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
}

// certs are a test CA, a server certificate for 127.0.0.1 and a client
// certificate, as PEM files.
type certs struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func makeCerts(t testing.TB) *certs {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		b, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sightd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	srvDER, srvKey := issue(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	cliDER, cliKey := issue(3, "sightd", x509.ExtKeyUsageClientAuth, nil)
	return &certs{
		ca:         write("ca.pem", "CERTIFICATE", caDER),
		serverCert: write("server.pem", "CERTIFICATE", srvDER),
		serverKey:  write("server-key.pem", "PRIVATE KEY", keyDER(srvKey)),
		clientCert: write("client.pem", "CERTIFICATE", cliDER),
		clientKey:  write("client-key.pem", "PRIVATE KEY", keyDER(cliKey)),
	}
}

func openStore(t testing.TB, tweak func(*store.Config)) *store.Store {
	t.Helper()
	cfg := store.Defaults()
	cfg.Dir = t.TempDir()
	if tweak != nil {
		tweak(&cfg)
	}
	st, err := store.Open(context.Background(), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// testConfig connects to broker with short retries.
func testConfig(broker string) Config {
	cfg := Defaults()
	cfg.Broker = broker
	cfg.RetryMin, cfg.RetryMax = 50*time.Millisecond, 500*time.Millisecond
	cfg.ConnectTimeout = 5 * time.Second
	cfg.DrainRate = 10000
	return cfg
}

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel).With().Timestamp().Logger()
}

// running is a Client whose Run goroutine the test stops.
type running struct {
	*Client
	stop func()
}

// runClient runs a client, as device "test" unless opts say otherwise.
func runClient(t testing.TB, cfg Config, opts Options) *running {
	t.Helper()
	if opts.Device.ID == "" {
		opts.Device.ID = "test"
	}
	c, err := New(cfg, opts, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	var once sync.Once
	r := &running{Client: c, stop: func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Error("Run did not return 30s after its context ended")
			}
		})
	}}
	t.Cleanup(r.stop)
	return r
}

// sub is a paho subscriber that records everything it receives.
type sub struct {
	mu   sync.Mutex
	msgs []received
	last map[string]received // latest per topic
	pc   paho.Client
}

type received struct {
	topic    string
	payload  []byte
	retained bool
}

type subOptions struct {
	id         string // a persistent session when set
	user, pass string
	tls        *certs
}

func subscribe(t testing.TB, broker string, o subOptions, filters ...string) *sub {
	t.Helper()
	s := &sub{last: map[string]received{}}
	opts := paho.NewClientOptions().AddBroker(broker).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(100 * time.Millisecond).SetMaxReconnectInterval(200 * time.Millisecond).
		SetUsername(o.user).SetPassword(o.pass).SetOrderMatters(true)
	if o.id != "" {
		opts.SetClientID(o.id).SetCleanSession(false)
	}
	if o.tls != nil {
		cfg := Config{Broker: broker, TLS: TLS{CAFile: o.tls.ca, CertFile: o.tls.clientCert, KeyFile: o.tls.clientKey}}
		tc, err := cfg.tlsConfig()
		if err != nil {
			t.Fatal(err)
		}
		opts.SetTLSConfig(tc)
	}
	filterMap := map[string]byte{}
	for _, f := range filters {
		filterMap[f] = 1
	}
	handler := func(_ paho.Client, m paho.Message) {
		r := received{topic: m.Topic(), payload: slices.Clone(m.Payload()), retained: m.Retained()}
		s.mu.Lock()
		s.msgs = append(s.msgs, r)
		s.last[r.topic] = r
		s.mu.Unlock()
	}
	s.pc = paho.NewClient(opts)
	if tok := s.pc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	// Subscribed once: a persistent session keeps the subscription across
	// reconnects (and broker restarts, with persistence on).
	if tok := s.pc.SubscribeMultiple(filterMap, handler); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { s.pc.Disconnect(100) })
	return s
}

func (s *sub) get(topic string) (received, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.last[topic]
	return r, ok
}

func (s *sub) all() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// waitFor polls cond; the deadline only guards against hangs.
func (s *sub) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitFor(t, 30*time.Second, what, cond)
}

func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// publish sends one message from a fresh client.
func publish(t testing.TB, broker, topic string, payload []byte, retained bool) {
	t.Helper()
	pc := paho.NewClient(paho.NewClientOptions().AddBroker(broker))
	if tok := pc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer pc.Disconnect(100)
	if tok := pc.Publish(topic, 1, retained, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

// testJPEG is a real JPEG (encoded here, not a fixture).
func testJPEG(t testing.TB) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for y := range 48 {
		for x := range 64 {
			img.Set(x, y, color.RGBA{uint8(4 * x), uint8(5 * y), 128, 255})
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// detection is a detection of rule at t (ids sort by time in ms).
func detection(rule, camera string, at time.Time) rules.Detection {
	r := &rules.Rule{ID: rule, Name: rule, Kind: rules.Event}
	res := rules.Result{Rule: r, Score: rules.Score{Raw: 0.31, Calibrated: 0.93, Margin: 0.07, Z: 2.5}}
	return rules.NewDetection(camera, at, res, image.Rect(10, 20, 110, 140), "motion", 3)
}

// fakeRules is an in-memory RuleStore.
type fakeRules struct {
	mu sync.Mutex
	m  map[string]*rules.Rule
}

func newFakeRules(rs ...*rules.Rule) *fakeRules {
	f := &fakeRules{m: map[string]*rules.Rule{}}
	for _, r := range rs {
		r.Defaults()
		f.m[r.ID] = r
	}
	return f
}

func (f *fakeRules) Put(_ context.Context, r *rules.Rule) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[r.ID] = r
	return nil
}

func (f *fakeRules) Delete(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.m[id]; !ok {
		return store.ErrNotFound
	}
	delete(f.m, id)
	return nil
}

func (f *fakeRules) List(context.Context) ([]*rules.Rule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*rules.Rule
	for _, id := range slices.Sorted(func(yield func(string) bool) {
		for id := range f.m {
			if !yield(id) {
				return
			}
		}
	}) {
		out = append(out, f.m[id])
	}
	return out, nil
}

var _ RuleStore = (*fakeRules)(nil)
var _ RuleStore = (*rules.Manager)(nil)
var _ Outbox = (*store.Store)(nil)
