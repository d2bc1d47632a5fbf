package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sightd/sightd/daemon/mqtt"
	"github.com/sightd/sightd/daemon/pipeline"
	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/store"
)

// Events, Frigate-style: an event rule's firing is one message; a state
// rule's ON starts an event (new), a clearly better view of it updates it
// (update, with a better snapshot), and its OFF ends it (end). Each event's
// last message is kept in the store under its id, with its best snapshot,
// for /api/events/<id> and /api/events/<id>/snapshot.jpg.

// episode is a state rule's event under way on one camera.
type episode struct {
	id       string
	start    time.Time
	best     rules.Detection
	snapshot string
}

// episodes are the events under way, by rule and camera.
type episodes struct {
	mu   sync.Mutex
	open map[[2]string]*episode
}

// next turns a state rule's detection into its event's next message;
// snapshot is the id the detection's snapshot was kept under, or "".
func (e *episodes) next(det rules.Detection, update bool, snapshot string) mqtt.Lifecycle {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.open == nil {
		e.open = map[[2]string]*episode{}
	}
	key := [2]string{det.Rule, det.Camera}
	ep := e.open[key]
	l := mqtt.Lifecycle{Rule: det.Rule, Name: det.Name, Camera: det.Camera, After: det}
	switch {
	case det.State == "ON" && (!update || ep == nil):
		// a new event (an update with none under way: sightd restarted)
		ep = &episode{id: det.ID, start: det.Time, best: det, snapshot: snapshot}
		e.open[key] = ep
		l.Type = mqtt.LifecycleNew
	case det.State == "ON":
		before := ep.best
		l.Type, l.Before = mqtt.LifecycleUpdate, &before
		ep.best = det
		if snapshot != "" {
			ep.snapshot = snapshot
		}
	default:
		l.Type = mqtt.LifecycleEnd
		end := det.Time
		l.EndTime = &end
		if ep == nil {
			// an OFF with no event under way: a zero-length event
			ep = &episode{id: det.ID, start: det.Time, snapshot: snapshot}
		} else {
			before := ep.best
			l.Before = &before
		}
		delete(e.open, key)
	}
	l.ID, l.StartTime, l.Snapshot = ep.id, ep.start, ep.snapshot
	l.Duration = det.Time.Sub(ep.start).Seconds()
	return l
}

// endWhere ends every event under way whose rule and camera match, at t
// (a camera's detection switched off, a rule disabled). Each end's after is
// the event's best detection turned OFF.
func (e *episodes) endWhere(match func(rule, camera string) bool, t time.Time) []mqtt.Lifecycle {
	e.mu.Lock()
	var off []rules.Detection
	for key, ep := range e.open {
		if match(key[0], key[1]) {
			d := ep.best
			d.State, d.Time = "OFF", t
			off = append(off, d)
		}
	}
	e.mu.Unlock()
	out := make([]mqtt.Lifecycle, len(off))
	for i, d := range off {
		out[i] = e.next(d, false, "")
	}
	return out
}

// keepSnapshot saves a detection's snapshot under its id; "" when there is
// none or the store refused it (a full disk: counted and logged there).
func (d *daemon) keepSnapshot(ctx context.Context, det rules.Detection, jpeg []byte) string {
	if len(jpeg) == 0 {
		return ""
	}
	if err := d.st.PutEventSnapshot(ctx, det.ID, jpeg); err != nil {
		if !errors.Is(err, store.ErrDiskFull) {
			d.log.Warn().Err(err).Str("event", det.ID).Msg("event snapshot not kept")
		}
		return ""
	}
	return det.ID
}

// eventMessage is the message an event's detection publishes on the
// events topic, kept in the store under the event's id as well.
func (d *daemon) eventMessage(ctx context.Context, e pipeline.Event) (store.Message, error) {
	det := e.Detection
	snap := d.keepSnapshot(ctx, det, e.Snapshot)
	var m store.Message
	var err error
	id := det.ID
	if det.Kind == rules.State {
		l := d.episodes.next(det, e.Update, snap)
		id = l.ID
		m, err = mqtt.LifecycleMessage(d.cfg.Device.ID, l)
	} else {
		m, err = mqtt.EventMessage(d.cfg.Device.ID, det, snap)
	}
	if err != nil {
		return m, err
	}
	d.keepEvent(ctx, id, m.Payload)
	return m, nil
}

// endEvents ends the events under way whose rule and camera match (a
// camera's detection switched off, a rule disabled or deleted): their
// state rules go OFF.
func (d *daemon) endEvents(ctx context.Context, match func(rule, camera string) bool) {
	dev := d.cfg.Device.ID
	for _, l := range d.episodes.endWhere(match, time.Now().UTC()) {
		m, err := mqtt.LifecycleMessage(dev, l)
		if err == nil {
			d.keepEvent(ctx, l.ID, m.Payload)
			err = d.push(ctx, m)
		}
		if err == nil {
			m, err = mqtt.StateMessage(dev, l.Rule, false)
		}
		if err == nil {
			err = d.push(ctx, m)
		}
		if err != nil {
			d.log.Warn().Err(err).Str("rule", l.Rule).Str("camera", l.Camera).Msg("event end not published")
		}
	}
}

// keepEvent saves an event's last message for the HTTP API.
func (d *daemon) keepEvent(ctx context.Context, id string, payload []byte) {
	if err := d.st.PutEvent(ctx, id, payload); err != nil && !errors.Is(err, store.ErrDiskFull) {
		d.log.Warn().Err(err).Str("event", id).Msg("event not kept for the HTTP API")
	}
}

// push queues m for MQTT, when MQTT is on.
func (d *daemon) push(ctx context.Context, m store.Message) error {
	if d.mqtt == nil {
		return nil
	}
	return d.mqtt.Push(ctx, m)
}
