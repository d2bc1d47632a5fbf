package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"strings"
	"sync"
	"time"

	"github.com/sightd/sightd/camera"
	"github.com/sightd/sightd/daemon/mqtt"
	"github.com/sightd/sightd/daemon/pipeline"
	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/store"
)

// Switches (Home Assistant's rule and camera switches) are kept in the
// store's meta table. A camera's key holds "off" while its switch is off. A
// rule's switch also sets the stored rule's enabled field; for a rule of the
// configuration file, whose stored copy the file's replaces at each start
// and SIGHUP, the key holds the switch against what the file said when it
// was set ("on file=off", "off file=on"), so that whichever changed last
// wins: the switch while the file still says the same, the file once it was
// edited. The key is absent when the switch agrees with the file. (A bare
// "off" is a key written by an older sightd: off, whatever the file says.)
func ruleSwitchKey(id string) string     { return "switch/rule/" + id }
func cameraSwitchKey(cam string) string  { return "switch/camera/" + cam }
func switchOff(v []byte, err error) bool { return err == nil && string(v) == "off" }

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// parseRuleSwitch reads a rule switch's key: the switch, and the file's
// enabled when it was set ("" for a bare "off").
func parseRuleSwitch(v []byte) (on bool, file string, err error) {
	state, file, withFile := strings.Cut(string(v), " file=")
	if (state != "on" && state != "off") || (withFile && file != "on" && file != "off") {
		return false, "", fmt.Errorf("switch value %q: want on or off, then file=on or file=off", v)
	}
	return state == "on", file, nil
}

// applyRuleSwitch sets a rule of the configuration file (r, as the file has
// it) as its switch was set at run time, unless the file changed the rule's
// enabled since: then the file's holds and the switch's key goes.
func (d *daemon) applyRuleSwitch(ctx context.Context, r *rules.Rule) {
	key := ruleSwitchKey(r.ID)
	v, err := d.st.Meta(ctx, key)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			d.log.Warn().Err(err).Str("rule", r.ID).Msg("rule switch not read; the file's enabled holds")
		}
		return
	}
	on, file, err := parseRuleSwitch(v)
	if err != nil {
		d.log.Warn().Err(err).Str("rule", r.ID).Msg("rule switch unreadable; the file's enabled holds")
		return
	}
	if file != "" && file != onOff(r.IsEnabled()) {
		if err := d.st.DeleteMeta(ctx, key); err != nil {
			d.log.Warn().Err(err).Str("rule", r.ID).Msg("rule switch not cleared")
		}
		d.log.Info().Str("rule", r.ID).Bool("enabled", r.IsEnabled()).
			Msg("the configuration file changed the rule's enabled since its switch was set: the file's holds")
		return
	}
	if on == r.IsEnabled() {
		return
	}
	r.Enabled = &on
	d.log.Info().Str("rule", r.ID).Bool("enabled", on).
		Msg("rule switched at run time: it stays so until its switch or the file's enabled changes")
}

// applyCameraSwitches sets each pipeline's detection from the store.
func (d *daemon) applyCameraSwitches(ctx context.Context) {
	for _, p := range d.pipes {
		if switchOff(d.st.Meta(ctx, cameraSwitchKey(p.Name))) {
			p.SetDetection(false)
		}
	}
}

func (d *daemon) putSwitch(ctx context.Context, key string, on bool) error {
	if on {
		return d.st.DeleteMeta(ctx, key)
	}
	return d.st.PutMeta(ctx, key, []byte("off"))
}

// putRuleSwitch keeps rule id's switch; called with rulesMu held.
func (d *daemon) putRuleSwitch(ctx context.Context, id string, on bool) error {
	file, inFile := d.fileEnabled[id]
	switch {
	case !inFile:
		// a rule added at run time: its stored copy, which the switch
		// sets, is the only one
		return d.putSwitch(ctx, ruleSwitchKey(id), on)
	case on == file:
		return d.st.DeleteMeta(ctx, ruleSwitchKey(id))
	}
	return d.st.PutMeta(ctx, ruleSwitchKey(id), []byte(onOff(on)+" file="+onOff(file)))
}

// forgetRuleSwitch clears a deleted rule's switch, so that a rule added
// later under the same id starts as it says.
func (d *daemon) forgetRuleSwitch(ctx context.Context, id string) {
	if err := d.st.DeleteMeta(ctx, ruleSwitchKey(id)); err != nil {
		d.log.Warn().Err(err).Str("rule", id).Msg("deleted rule's switch not cleared")
	}
}

// switches are the daemon as the MQTT switch commands see it.
type switches struct{ d *daemon }

func (s switches) SetRuleEnabled(ctx context.Context, id string, on bool) error {
	d := s.d
	d.rulesMu.Lock()
	r, err := d.mgr.Get(ctx, id)
	if err == nil {
		r.Enabled = &on
		err = d.mgr.Put(ctx, r)
	}
	if err == nil {
		err = d.putRuleSwitch(ctx, id, on)
	}
	d.rulesMu.Unlock()
	if err != nil {
		return fmt.Errorf("rule %s: %w", id, err)
	}
	d.rulesChanged(ctx)
	return nil
}

func (s switches) SetDetection(ctx context.Context, camera string, on bool) error {
	p := s.d.pipe(camera)
	if p == nil {
		return fmt.Errorf("no camera %q", camera)
	}
	if err := s.d.putSwitch(ctx, cameraSwitchKey(camera), on); err != nil {
		return fmt.Errorf("camera %s: %w", camera, err)
	}
	p.SetDetection(on)
	if !on {
		s.d.endEvents(ctx, func(_, cam string) bool { return cam == camera })
	}
	return nil
}

func (s switches) Detection(camera string) bool {
	p := s.d.pipe(camera)
	return p != nil && p.Detection()
}

func (d *daemon) pipe(name string) *pipeline.Pipeline {
	for _, p := range d.pipes {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// lastSeen is each rule's and camera's latest detection, for the rules'
// attributes and the stats.
type lastSeen struct {
	mu    sync.Mutex
	rules map[string]rules.Detection
	// matchedRules: the rules that have matched (not only turned OFF)
	matchedRules map[string]bool
	cameras      map[string]time.Time
}

func (l *lastSeen) record(det rules.Detection) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rules == nil {
		l.rules, l.matchedRules, l.cameras = map[string]rules.Detection{}, map[string]bool{}, map[string]time.Time{}
	}
	if old, ok := l.rules[det.Rule]; !ok || !det.Time.Before(old.Time) {
		l.rules[det.Rule] = det
	}
	if det.State != "OFF" {
		l.matchedRules[det.Rule] = true
	}
	if det.Time.After(l.cameras[det.Camera]) {
		l.cameras[det.Camera] = det.Time
	}
}

func (l *lastSeen) rule(id string) *rules.Detection {
	l.mu.Lock()
	defer l.mu.Unlock()
	if det, ok := l.rules[id]; ok {
		return &det
	}
	return nil
}

// matched says whether rule id has matched (fired, or turned ON) in the
// history read at the start or since.
func (l *lastSeen) matched(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.matchedRules[id]
}

func (l *lastSeen) camera(name string) *time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.cameras[name]; ok {
		return &t
	}
	return nil
}

// recentDetections is how much of the history the start reads to find
// each rule's last detection.
const recentDetections = 1000

// loadLast seeds the last detections from the store's history, so that a
// restart does not lose the rules' "last" attribute.
func (d *daemon) loadLast(ctx context.Context) {
	hist, err := d.st.RecentDetections(ctx, recentDetections)
	if err != nil {
		d.log.Warn().Err(err).Msg("reading the detection history")
		return
	}
	for _, h := range hist {
		var det rules.Detection
		if json.Unmarshal(h.JSON, &det) == nil && det.Rule != "" {
			d.last.record(det)
		}
	}
}

// motion publishes a camera's motion.
func (d *daemon) motion(camera string) func(on bool) {
	return func(on bool) {
		if d.mqtt == nil {
			return
		}
		if m, err := mqtt.MotionMessage(d.cfg.Device.ID, camera, on); err == nil {
			d.mqtt.Push(d.runCtx, m)
		}
	}
}

// startRules queues, before the cameras start, OFF for every state rule
// (their deciders start OFF, whatever the retained state of the last run
// says: a stop while a rule was ON leaves it ON) and every rule's picture.
func (d *daemon) startRules(ctx context.Context) {
	if d.mqtt == nil {
		return
	}
	list, err := lockedRules{d}.List(ctx)
	if err != nil {
		d.log.Warn().Err(err).Msg("listing the rules")
		return
	}
	for _, r := range list {
		if r.Kind != rules.State {
			continue
		}
		m, err := mqtt.StateMessage(d.cfg.Device.ID, r.ID, false)
		if err == nil {
			err = d.mqtt.Push(ctx, m)
		}
		if err != nil {
			d.log.Warn().Err(err).Str("rule", r.ID).Msg("initial OFF not queued")
		}
	}
	d.rulePictures(ctx, list)
}

// rulePictures queues a picture for each rule's image entity that has none
// in this run yet, before the rule can fire (at the start, before the
// cameras run; at run time, before the pipelines get the rules): a
// placeholder when the rule never matched, so that Home Assistant shows no
// broken picture, else the newest snapshot of its that the store keeps
// (the one the broker retains, unless the store refused or shed it), else
// nothing: the broker's retained snapshot stays.
func (d *daemon) rulePictures(ctx context.Context, list []*rules.Rule) {
	if d.mqtt == nil {
		return
	}
	d.picturedMu.Lock()
	defer d.picturedMu.Unlock()
	history := sync.OnceValue(func() []rules.Detection {
		var hist []rules.Detection
		recs, err := d.st.RecentDetections(ctx, recentDetections)
		if err != nil {
			d.log.Warn().Err(err).Msg("reading the detection history")
		}
		for _, h := range recs {
			var det rules.Detection
			if json.Unmarshal(h.JSON, &det) == nil && det.State != "OFF" {
				hist = append(hist, det)
			}
		}
		return hist
	})
	now := make(map[string]bool, len(list))
	for _, r := range list {
		if d.pictured[r.ID] {
			now[r.ID] = true
			continue
		}
		jpeg, err := d.rulePicture(ctx, r, history)
		if err == nil && len(jpeg) > 0 {
			var m store.Message
			if m, err = mqtt.RuleSnapshotMessage(d.cfg.Device.ID, r.ID, jpeg); err == nil {
				err = d.mqtt.Push(ctx, m)
			}
		}
		if err != nil {
			d.log.Warn().Err(err).Str("rule", r.ID).Msg("rule picture not queued")
			continue // tried again at the next change of the rules
		}
		now[r.ID] = true
	}
	// a rule deleted (its retained snapshot cleared) gets one again if it
	// comes back
	d.pictured = now
}

// placeholderSize is the size of a rule's picture before it first fires.
var placeholderSize = image.Pt(640, 360)

// rulePicture is r's picture for rulePictures; history gives the recent
// detections that matched, newest first.
func (d *daemon) rulePicture(ctx context.Context, r *rules.Rule, history func() []rules.Detection) ([]byte, error) {
	if !d.last.matched(r.ID) {
		name := r.Name
		if name == "" {
			name = r.ID
		}
		return camera.Placeholder(placeholderSize.X, placeholderSize.Y, name, "no detection yet")
	}
	for _, det := range history() {
		if det.Rule != r.ID {
			continue
		}
		jpeg, err := d.st.EventSnapshot(ctx, det.ID)
		if !errors.Is(err, store.ErrNotFound) {
			return jpeg, err
		}
	}
	return nil, nil
}

// camerasOffline says every camera is offline after a clean stop, so that
// no subscriber sees a camera of a stopped sightd as online.
func (d *daemon) camerasOffline(ctx context.Context) {
	if d.mqtt == nil {
		return
	}
	for _, p := range d.pipes {
		for _, build := range []func() (store.Message, error){
			func() (store.Message, error) { return mqtt.CameraStatusMessage(d.cfg.Device.ID, p.Name, false) },
			func() (store.Message, error) { return mqtt.MotionMessage(d.cfg.Device.ID, p.Name, false) },
		} {
			m, err := build()
			if err == nil {
				err = d.mqtt.Push(ctx, m)
			}
			if err != nil && !errors.Is(err, context.Canceled) {
				d.log.Warn().Err(err).Str("camera", p.Name).Msg("offline status not queued")
			}
		}
	}
}

// publishStats sends the stats every interval, directly rather than
// through the outbox: stale figures are worth nothing after an outage. The
// first go out a second after start (and every second until one is
// delivered), so that Home Assistant's sensors do not wait an interval.
func (d *daemon) publishStats(ctx context.Context, every time.Duration) {
	prev := make([]frameCounts, len(d.pipes))
	at := time.Now()
	for i, p := range d.pipes {
		prev[i] = countsOf(p)
	}
	first := min(time.Second, every)
	t := time.NewTicker(first)
	defer t.Stop()
	sent := false
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s := d.stats(prev, now.Sub(at))
			at = now
			m, err := mqtt.StatsMessage(d.cfg.Device.ID, s)
			if err != nil {
				d.log.Warn().Err(err).Msg("stats")
				continue
			}
			if d.mqtt.PublishNow(m) && !sent {
				sent = true
				t.Reset(every)
			}
		}
	}
}

type frameCounts struct {
	frames, encoded uint64
	encodeNanos     int64
}

func countsOf(p *pipeline.Pipeline) frameCounts {
	return frameCounts{frames: p.Stats.Frames.Load(), encoded: p.Stats.Encoded.Load(), encodeNanos: p.Stats.EncodeNanos.Load()}
}

// stats are the figures since prev (updated in place), over elapsed.
func (d *daemon) stats(prev []frameCounts, elapsed time.Duration) mqtt.Stats {
	man := d.model.manifest()
	s := mqtt.Stats{Time: time.Now().UTC(), Model: man.Name, ModelVersion: d.running.Load(), Outbox: d.st.Len(),
		Cameras: map[string]mqtt.CameraStats{}}
	for i, p := range d.pipes {
		now := countsOf(p)
		cs := mqtt.CameraStats{Online: p.SourceStats().Available, Detection: p.Detection(), Motion: p.Motion()}
		if t := d.last.camera(p.Name); t != nil {
			// whole seconds: every timestamp parser reads them
			sec := t.Truncate(time.Second)
			cs.LastDetection = &sec
		}
		if elapsed > 0 {
			cs.FPS = round2(float64(now.frames-prev[i].frames) / elapsed.Seconds())
		}
		if n := now.encoded - prev[i].encoded; n > 0 {
			ms := round2(float64(now.encodeNanos-prev[i].encodeNanos) / float64(n) / 1e6)
			cs.EncoderMS = &ms
		}
		prev[i] = now
		s.Cameras[p.Name] = cs
	}
	return s
}

func round2(v float64) float64 { return float64(int64(v*100+0.5)) / 100 }
