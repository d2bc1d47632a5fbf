package main

import (
	"context"
	"fmt"
	"time"

	"github.com/sightd/sightd/daemon/mqtt"
	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/daemon/version"
)

// openMQTT starts the embedded broker when configured and makes the client;
// Run connects it later. MQTT is off when mqtt.broker is empty.
func (d *daemon) openMQTT() error {
	cfg := d.cfg.MQTT
	if cfg.Broker == "" {
		return nil
	}
	log := d.logFor("mqtt") // the mqtt package names its component
	if cfg.EmbeddedBroker.Listen != "" {
		b, err := mqtt.StartBroker(cfg, log)
		if err != nil {
			return err
		}
		d.broker = b
	}
	cams := make([]string, len(d.pipes))
	snaps := snapshots{}
	for i, p := range d.pipes {
		cams[i] = p.Name
		snaps[p.Name] = p
	}
	opts := mqtt.Options{
		Device: mqtt.Device{ID: d.cfg.Device.ID, Name: d.cfg.Device.Name, Model: d.model.manifest().Name,
			Version: version.Version},
		Outbox: d.st, Rules: mqttRules{d}, Cameras: cams, Snapshots: snaps, Switches: switches{d},
		Last: d.last.rule,
	}
	if d.updater != nil {
		opts.Installer = installer{d}
	}
	c, err := mqtt.New(cfg, opts, log)
	if err != nil {
		return err
	}
	d.mqtt = c
	return nil
}

// announce queues what subscribers should know from the start: the model,
// each rule's attributes.
func (d *daemon) announce(ctx context.Context) {
	dev := d.cfg.Device.ID
	man := d.model.manifest()
	if m, err := mqtt.ModelStateMessage(dev, mqtt.ModelState{Title: man.Name, Installed: man.Version}); err == nil {
		d.mqtt.Push(ctx, m)
	}
	d.publishStoreState(ctx)
	list, err := mqttRules{d}.List(ctx)
	if err != nil {
		return
	}
	for _, r := range list {
		if m, err := mqtt.AttributesMessage(dev, r, d.last.rule(r.ID)); err == nil {
			d.mqtt.Push(ctx, m)
		}
	}
}

// flushOutbox gives the drain until ctx ends to publish what is queued.
func (d *daemon) flushOutbox(ctx context.Context) {
	if d.mqtt == nil {
		return
	}
	for d.st.Len() > 0 && d.mqtt.Health().Connected {
		select {
		case <-ctx.Done():
			d.log.Warn().Int("outbox", d.st.Len()).Msg("stopping with messages still queued; they go out at the next start")
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// mqttRules is the MQTT commands' view of the rules: serialised with every
// other change, and the pipelines told afterwards.
type mqttRules struct{ d *daemon }

func (m mqttRules) List(ctx context.Context) ([]*rules.Rule, error) { return lockedRules(m).List(ctx) }

func (m mqttRules) Put(ctx context.Context, r *rules.Rule) error {
	if err := lockedRules(m).Put(ctx, r); err != nil {
		return err
	}
	m.d.rulesChanged(ctx)
	return nil
}

func (m mqttRules) Delete(ctx context.Context, id string) error {
	if err := lockedRules(m).Delete(ctx, id); err != nil {
		return err
	}
	m.d.rulesChanged(ctx)
	return nil
}

// snapshots answers MQTT snapshot requests from the pipelines' last frames.
type snapshots map[string]interface {
	Snapshot() ([]byte, time.Time, error)
}

func (s snapshots) Snapshot(_ context.Context, camera string) ([]byte, error) {
	p, ok := s[camera]
	if !ok {
		return nil, fmt.Errorf("no camera %q", camera)
	}
	jpeg, _, err := p.Snapshot()
	return jpeg, err
}
