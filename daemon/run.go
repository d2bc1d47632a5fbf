package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/sightd/sightd/camera"
	"github.com/sightd/sightd/daemon/api"
	"github.com/sightd/sightd/daemon/config"
	"github.com/sightd/sightd/daemon/mqtt"
	"github.com/sightd/sightd/daemon/pipeline"
	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/ota"
	"github.com/sightd/sightd/quant/tflite"
	"github.com/sightd/sightd/store"
	"github.com/sightd/sightd/systemd"
)

func newRunCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "run [-c FILE]",
		Short: "Run the daemon: watch the cameras and raise alerts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), cfg.Log)
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			reload := make(chan *config.Config)
			go func() {
				for range hup {
					c, err := config.Load(path)
					if err != nil {
						log.Error().Err(err).Msg("SIGHUP: configuration not reloaded")
						continue
					}
					reload <- c
				}
			}()
			return runDaemon(cmd.Context(), cfg, log, controls{reload: reload})
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", DefaultConfig, "configuration file")
	return cmd
}

// daemon is the running sightd: one store, one model, one pipeline per
// camera, the local API, and what they share.
type daemon struct {
	cfg     *config.Config
	log     zerolog.Logger
	st      *store.Store
	model   *model   // the running model
	retired []*model // replaced models whose interpreters may still be open
	rt      tflite.Options
	metrics *api.Metrics

	rulesMu sync.Mutex // serialises rule and model changes (API, MQTT, SIGHUP, swaps)
	// fileRules are the ids of the rules the configuration file holds (at
	// start, then as of the last SIGHUP), and fileEnabled whether the file
	// enables each (before any switch); guarded by rulesMu.
	fileRules   []string
	fileEnabled map[string]bool
	mgr         *rules.Manager
	running     atomic.Int64 // the running model's version, read without the lock

	// OTA: nil models and updater when updates are off.
	models      *ota.Models
	updater     *ota.Updater
	startEvents []ota.Event     // found while starting, published once MQTT runs
	runCtx      context.Context // lives until shutdown begins
	modelMu     sync.Mutex
	modelTitle  string // the running bundle's name, for model/state
	// The running bundle's tower files, bytes (/metrics).
	modelFiles atomic.Int64

	pipes    []*pipeline.Pipeline
	last     lastSeen // each rule's and camera's latest detection
	episodes episodes // state rules' events under way
	// pictured: the rules whose image has a picture queued in this run
	// (see rulePictures)
	picturedMu sync.Mutex
	pictured   map[string]bool
	mqtt       *mqtt.Client // nil when MQTT is off
	broker     *mqtt.Broker // the embedded broker, when configured
}

func runtimeOptions(m config.Model, log *zerolog.Logger) tflite.Options {
	o := tflite.Options{Threads: inferenceThreads(m.Threads), XNNPACK: m.XNNPACK, Log: log}
	switch m.EdgeTPU {
	case "auto":
		o.EdgeTPU = tflite.EdgeTPUAuto
	case "require":
		o.EdgeTPU = tflite.EdgeTPURequire
	}
	return o
}

// inferenceThreads is n, or for 0 the CPUs sightd may use, at most 4
// (XNNPACK gains little beyond that on these boards). Measured on a 2-core
// machine: two threads slow the camera's decoder and the decoder slows them,
// and yet 2 threads give 35 frames/s where 1 gives 30.
func inferenceThreads(n int) int {
	if n > 0 {
		return n
	}
	return min(4, max(1, runtime.NumCPU()))
}

// runDaemon starts everything, runs until ctx ends, and shuts down in order
// within a deadline.
// controls are requests to a running daemon from its surroundings.
type controls struct {
	reload <-chan *config.Config // SIGHUP: a re-read configuration
	swap   <-chan swapRequest    // a model update (OTA, tests)
}

// swapRequest asks for the bundle at path; the outcome goes to done.
type swapRequest struct {
	path string
	done chan<- error
}

func runDaemon(ctx context.Context, cfg *config.Config, log zerolog.Logger, ctl controls) (err error) {
	d := &daemon{cfg: cfg, log: log, metrics: api.NewMetrics()}
	mlog := componentLogger(log, cfg.Log, "model").With().Str("component", "model").Logger()
	d.rt = runtimeOptions(cfg.Model, &mlog)
	defer d.close()
	if err := d.open(ctx); err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	d.runCtx = runCtx
	wd, err := systemd.NewWatchdog(d.logFor("watchdog").With().Str("component", "watchdog").Logger())
	if err != nil {
		return err
	}
	for _, p := range d.pipes {
		p.Heartbeat = wd.Register("camera/" + p.Name)
		if d.updater != nil {
			p.OnResult = func(ok bool) { d.updater.Frame(runCtx, ok) }
		}
	}
	// The API first: a port in use fails the start before any camera runs.
	srv, err := d.serveHTTP(runCtx)
	if err != nil {
		return err
	}
	go d.watchParts(runCtx, wd)
	go wd.Run(runCtx)
	var wg sync.WaitGroup
	errs := make(chan error, len(d.pipes)+1)
	d.startRules(runCtx) // queued before any camera can change them
	for _, p := range d.pipes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Run(runCtx); err != nil {
				errs <- err
			}
		}()
	}
	// MQTT outlives the cameras on the way down, so that the last events and
	// "stopped" still go out.
	mqttCtx, stopMQTT := context.WithCancel(context.Background())
	defer stopMQTT()
	mqttDone := make(chan struct{})
	if d.mqtt != nil {
		go func() { defer close(mqttDone); d.mqtt.Run(mqttCtx) }()
		d.announce(runCtx)
		go d.publishStats(runCtx, cfg.MQTT.StatsInterval)
	} else {
		close(mqttDone)
	}
	for _, e := range d.startEvents {
		d.modelEvent(e)
	}
	if d.updater != nil {
		go d.updater.Poll(runCtx)
	}
	man := d.model.manifest()
	log.Info().Int("cameras", len(d.pipes)).Str("model", man.Name).Int64("version", man.Version).Msg("sightd running")
	systemd.Ready()
	systemd.Status("%d cameras, %d rules, model %s v%d", len(d.pipes), len(d.cfg.Rules), man.Name, man.Version)
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case err = <-errs:
			log.Error().Err(err).Msg("a camera pipeline failed; stopping")
			break wait
		case c := <-ctl.reload:
			systemd.Reloading()
			d.reload(ctx, c)
			systemd.Ready()
		case req := <-ctl.swap:
			err := d.swapModel(ctx, req.path)
			if err != nil {
				log.Error().Err(err).Msg("model update")
			}
			req.done <- err
		}
	}
	systemd.Stopping()
	stop()
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if srv != nil {
		srv.Shutdown(shutdown)
	}
	waitOrDeadline(shutdown, &wg, log)
	// The events under way end with the cameras: a subscriber (and the
	// HTTP API) sees no event that never ends after a clean stop.
	d.endEvents(shutdown, func(string, string) bool { return true })
	d.camerasOffline(shutdown)
	d.flushOutbox(shutdown)
	stopMQTT()
	<-mqttDone
	log.Info().Msg("sightd stopped")
	return err
}

func waitOrDeadline(ctx context.Context, wg *sync.WaitGroup, log zerolog.Logger) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		log.Warn().Msg("cameras did not stop within the deadline")
	}
}

// openModel opens the store, loads the active model (recovering the OTA
// models directory first) and saves the file's rules: what the daemon and
// offline model commands share.
func (d *daemon) openModel(ctx context.Context) error {
	var err error
	d.st, err = store.Open(ctx, d.cfg.Store, d.logFor("store").With().Str("component", "store").Logger())
	if err != nil {
		return err
	}
	if err := d.loadActiveModel(ctx); err != nil {
		return err
	}
	d.modelTitle = d.model.manifest().Name
	if d.mgr, err = rules.NewManager(d.st, d.rulesModel(d.model), d.cfg.CameraNames()); err != nil {
		return err
	}
	// Rules in the file are saved (replacing their stored version); rules
	// added at run time stay.
	d.fileEnabled = map[string]bool{}
	for _, r := range d.cfg.Rules {
		d.fileRules = append(d.fileRules, r.ID)
		d.fileEnabled[r.ID] = r.IsEnabled()
		d.applyRuleSwitch(ctx, r)
		err := d.mgr.Put(ctx, r)
		if errors.Is(err, store.ErrDiskFull) {
			// A start on a full disk runs degraded: the rule's stored
			// version, if any, serves.
			d.log.Warn().Err(err).Str("rule", r.ID).Msg("rule from the file not saved: the disk is full; its stored version serves")
			continue
		}
		if err != nil {
			return fmt.Errorf("rule %s: %w", r.ID, err)
		}
	}
	return nil
}

// open loads the store, the model (with its self-test), the rules and the
// cameras. A camera that cannot be opened now is retried by its pipeline;
// only bad configuration, the store and the model are fatal.
func (d *daemon) open(ctx context.Context) error {
	if err := d.openModel(ctx); err != nil {
		return err
	}
	d.probeAccelerators(d.model.towers)
	set, err := d.mgr.Set(ctx)
	if err != nil {
		return err
	}
	for _, cc := range d.cfg.Cameras {
		p, err := d.openCamera(ctx, cc, set)
		if err != nil {
			return err
		}
		p.OnMotion = d.motion(p.Name)
		d.pipes = append(d.pipes, p)
		d.metrics.AddPipeline(p)
	}
	d.applyCameraSwitches(ctx)
	d.loadLast(ctx)
	if d.updater, err = d.newUpdater(); err != nil {
		return err
	}
	if err := d.openMQTT(); err != nil {
		return err
	}
	d.watchSpace()
	d.metrics.AddGauge("sightd_outbox_messages", "Messages waiting for MQTT.", func() float64 { return float64(d.st.Len()) })
	d.metrics.AddGauge("sightd_mqtt_connected", "1 while connected to the MQTT broker.", func() float64 {
		if d.mqtt != nil && d.mqtt.Health().Connected {
			return 1
		}
		return 0
	})
	d.metrics.AddGauge("sightd_outbox_dropped", "Messages dropped from a full outbox.", func() float64 { return float64(d.st.Dropped()) })
	d.metrics.AddMemory(d.modelFiles.Load)
	return nil
}

func (d *daemon) openCamera(ctx context.Context, cc camera.Config, set *rules.Set) (*pipeline.Pipeline, error) {
	log := d.logFor("camera") // camera.Open and the pipeline name their component and camera
	// The reader gates each frame on its own core while the pipeline
	// encodes the one before.
	src, err := camera.OpenGated(ctx, cc, log)
	if err != nil {
		return nil, err
	}
	enc, err := d.model.towers.NewImage(d.rt)
	if err != nil {
		src.Close()
		return nil, err
	}
	p, err := pipeline.New(cc, src, enc, set, &sink{d: d}, log)
	if err != nil {
		src.Close()
		enc.Close()
		return nil, err
	}
	return p, nil
}

// rulesChanged rebuilds the rule set and hands it to every pipeline.
func (d *daemon) rulesChanged(ctx context.Context) {
	set, err := d.mgr.Set(ctx)
	if err != nil {
		d.log.Error().Err(err).Msg("rules not reloaded")
		return
	}
	list := make([]*rules.Rule, len(set.Rules))
	for i, c := range set.Rules {
		list[i] = c.Rule
	}
	d.rulePictures(ctx, list) // before any pipeline can fire a new rule
	for _, p := range d.pipes {
		p.SetRules(set)
	}
	// Events of rules disabled or deleted end: their pipelines forget them.
	live := map[string]bool{}
	for _, c := range set.Rules {
		live[c.Rule.ID] = c.Rule.IsEnabled()
	}
	d.endEvents(ctx, func(rule, _ string) bool { return !live[rule] })
	if d.mqtt != nil {
		d.mqtt.Resync()
	}
}

// reload applies a re-read configuration: its rules are saved and take
// effect at the next frame, and rules the file held before and holds no
// more are deleted (rules added at run time, by MQTT, the API or the CLI,
// stay). Cameras, the model and the rest need a restart.
func (d *daemon) reload(ctx context.Context, c *config.Config) {
	d.rulesMu.Lock()
	var failed, removed int
	now := map[string]bool{}
	for _, r := range c.Rules {
		now[r.ID] = true
	}
	for _, id := range d.fileRules {
		if now[id] {
			continue
		}
		if err := d.mgr.Delete(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			d.log.Error().Err(err).Str("rule", id).Msg("SIGHUP: rule removed from the file but not deleted")
			failed++
			continue
		}
		d.forgetRuleSwitch(ctx, id)
		removed++
		d.log.Info().Str("rule", id).Msg("SIGHUP: rule removed from the file: deleted")
	}
	d.fileRules = d.fileRules[:0]
	d.fileEnabled = map[string]bool{}
	for _, r := range c.Rules {
		d.fileRules = append(d.fileRules, r.ID)
		d.fileEnabled[r.ID] = r.IsEnabled()
	}
	for _, r := range c.Rules {
		if !camerasKnown(d.cfg.CameraNames(), r) {
			d.log.Error().Str("rule", r.ID).Msg("SIGHUP: rule names a camera that needs a restart; skipped")
			failed++
			continue
		}
		d.applyRuleSwitch(ctx, r)
		if err := d.mgr.Put(ctx, r); err != nil {
			d.log.Error().Err(err).Str("rule", r.ID).Msg("SIGHUP: rule not saved")
			failed++
		}
	}
	d.rulesMu.Unlock()
	d.rulesChanged(ctx)
	d.log.Info().Int("rules", len(c.Rules)-failed).Int("removed", removed).Int("failed", failed).Msg("SIGHUP: rules reloaded; cameras and model changes need a restart")
}

// camerasKnown reports whether rule r names only cameras in known.
func camerasKnown(known map[string]bool, r *rules.Rule) bool {
	for _, name := range r.Cameras {
		if !known[name] {
			return false
		}
	}
	return true
}

// logFor is the daemon's logger at the level log.levels sets for component.
func (d *daemon) logFor(component string) zerolog.Logger {
	return componentLogger(d.log, d.cfg.Log, component)
}

// health is every component's state for /healthz.
func (d *daemon) health(ctx context.Context) []api.Check {
	var checks []api.Check
	for _, p := range d.pipes {
		st := p.SourceStats()
		c := api.Check{Name: "camera/" + p.Name, OK: st.Available}
		if st.Err != nil {
			c.Detail = st.Err.Error()
		}
		checks = append(checks, c)
	}
	d.rulesMu.Lock()
	man := d.model.manifest()
	d.rulesMu.Unlock()
	checks = append(checks, api.Check{Name: "encoder", OK: true, Detail: fmt.Sprintf("%s v%d (passed its self-test)", man.Name, man.Version)})
	checks = append(checks, d.storeCheck(ctx))
	if d.mqtt != nil {
		h := d.mqtt.Health()
		mc := api.Check{Name: "mqtt", OK: h.Connected, Detail: fmt.Sprintf("%d queued", h.Outbox)}
		if h.Err != nil && !h.Connected {
			mc.Detail = h.Err.Error()
		}
		if h.Conflict != nil {
			mc.OK, mc.Detail = false, h.Conflict.Error()
		}
		checks = append(checks, mc)
	}
	return checks
}

// lockedRules serialises the API's rule changes with everyone else's.
type lockedRules struct{ d *daemon }

func (l lockedRules) List(ctx context.Context) ([]*rules.Rule, error) {
	l.d.rulesMu.Lock()
	defer l.d.rulesMu.Unlock()
	return l.d.mgr.List(ctx)
}

func (l lockedRules) Put(ctx context.Context, r *rules.Rule) error {
	l.d.rulesMu.Lock()
	defer l.d.rulesMu.Unlock()
	return l.d.mgr.Put(ctx, r)
}

func (l lockedRules) Delete(ctx context.Context, id string) error {
	l.d.rulesMu.Lock()
	defer l.d.rulesMu.Unlock()
	if err := l.d.mgr.Delete(ctx, id); err != nil {
		return err
	}
	l.d.forgetRuleSwitch(ctx, id)
	return nil
}

func (d *daemon) serveHTTP(ctx context.Context) (*api.Server, error) {
	set := d.cfg.HTTP
	if set.Listen == "" {
		return nil, nil
	}
	token, err := set.Token()
	if err != nil {
		return nil, err
	}
	cams := map[string]api.Snapshotter{}
	for _, p := range d.pipes {
		cams[p.Name] = p
	}
	log := d.logFor("api").With().Str("component", "api").Logger()
	h := api.Handler(api.Config{Health: d.health, Cameras: cams, Rules: lockedRules{d}, CameraNames: d.cfg.CameraNames(), Events: d.st,
		OnRulesChanged: d.rulesChanged, Metrics: d.metrics.Registry, AllowedHosts: set.AllowedHosts, Token: token, Log: log})
	srv, err := api.Listen(ctx, set, h, log)
	if err != nil {
		return nil, err
	}
	d.metrics.AddGauge("sightd_http_connections", "Open connections to the local API.", func() float64 {
		open, _ := srv.Connections()
		return float64(open)
	})
	d.metrics.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "sightd_http_connections_refused_total", Help: "Connections to the local API closed on arrival: max_connections were open."},
		func() float64 { _, refused := srv.Connections(); return float64(refused) }))
	go func() {
		if err := srv.Serve(); err != nil {
			d.log.Error().Err(err).Msg("http server stopped")
		}
	}()
	for _, w := range set.Warnings() {
		log.Warn().Msg(w)
	}
	log.Info().Str("listen", srv.Addr().String()).Bool("token", token != "").Strs("allowed_hosts", set.AllowedHosts).Msg("local API serving")
	return srv, nil
}

// close releases what open acquired, in reverse order.
func (d *daemon) close() {
	for _, m := range append(d.retired, d.model) {
		if m != nil {
			m.close()
		}
	}
	if d.broker != nil {
		// The embedded broker forwards "stopped" to its subscribers
		// asynchronously; a moment lets it reach them before the listener goes.
		time.Sleep(250 * time.Millisecond)
		d.broker.Close()
	}
	if d.st != nil {
		d.st.Close()
	}
}

// detectionMessages are what a pipeline's event publishes besides event
// (its message on the events topic): a state rule's state, the rule's
// attributes, and its snapshot as the camera's and the rule's image.
func detectionMessages(dev string, e pipeline.Event, event store.Message) ([]store.Message, error) {
	det := e.Detection
	builds := []func() (store.Message, error){func() (store.Message, error) { return event, nil }}
	if det.Kind == rules.State && !e.Update {
		builds = append(builds, func() (store.Message, error) { return mqtt.StateMessage(dev, det.Rule, det.State == "ON") })
	}
	if e.Rule != nil {
		builds = append(builds, func() (store.Message, error) { return mqtt.AttributesMessage(dev, e.Rule, &det) })
	}
	// The images show what a rule saw, not the scene it turned OFF on (whose
	// box would outline a region that does not match).
	if len(e.Snapshot) > 0 && det.State != "OFF" {
		builds = append(builds,
			func() (store.Message, error) { return mqtt.SnapshotMessage(dev, det.Camera, e.Snapshot) },
			func() (store.Message, error) { return mqtt.RuleSnapshotMessage(dev, det.Rule, e.Snapshot) })
	}
	msgs := make([]store.Message, 0, len(builds))
	for _, build := range builds {
		m, err := build()
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// sink records what the pipelines decide and queues it for MQTT.
type sink struct{ d *daemon }

func (s *sink) Event(ctx context.Context, e pipeline.Event) error {
	d := s.d
	det := e.Detection
	d.metrics.Detections.WithLabelValues(det.Rule, det.Camera).Inc()
	d.last.record(det)
	// The detection history is the first thing a full disk refuses: the
	// event still goes out (the store logs and counts the refusal).
	if err := rules.Record(ctx, d.st, det); err != nil && !errors.Is(err, store.ErrDiskFull) {
		return err
	}
	// The event is kept for the HTTP API with MQTT on or off.
	event, err := d.eventMessage(ctx, e)
	if err != nil {
		return err
	}
	if d.mqtt == nil {
		return nil
	}
	msgs, err := detectionMessages(d.cfg.Device.ID, e, event)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := d.mqtt.Push(ctx, m); err != nil {
			if m.Sheddable && errors.Is(err, store.ErrDiskFull) {
				continue // a snapshot refused for lack of space: counted and logged by the store
			}
			return err
		}
	}
	return nil
}

func (s *sink) CameraStatus(ctx context.Context, name string, online bool, reason error) {
	d := s.d
	ev := d.log.Info()
	if !online {
		ev = d.log.Warn().AnErr("reason", reason)
	}
	ev.Str("camera", name).Bool("online", online).Msg("camera status")
	if d.mqtt == nil {
		return
	}
	if m, err := mqtt.CameraStatusMessage(d.cfg.Device.ID, name, online); err == nil {
		d.mqtt.Push(ctx, m)
	}
}
