package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/sightd/sightd/daemon/mqtt"
	"github.com/sightd/sightd/daemon/pipeline"
	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/ota"
	"github.com/sightd/sightd/quant/encoder"
)

// modelPath opens the OTA models directory (when updates are on), recovers
// it after a crash, and says which bundle to run: the installed version, or
// the configured bundle when none is.
func (d *daemon) modelPath(ctx context.Context) (string, error) {
	if !d.cfg.OTA.Enabled() {
		return d.cfg.Model.Bundle, nil
	}
	log := d.logFor("model").With().Str("component", "ota").Logger()
	models, rec, err := ota.OpenModels(d.cfg.OTA.Dir, d.cfg.OTA.TrialRestarts, log)
	if err != nil {
		return "", err
	}
	d.models = models
	if len(rec.Removed) > 0 {
		log.Info().Strs("removed", rec.Removed).Msg("models directory: leftovers of an interrupted update removed")
	}
	if rec.Reason != "" {
		d.startEvents = append(d.startEvents, ota.Event{Kind: "rolled_back", Version: rec.RolledBack, Err: errors.New(rec.Reason)})
	}
	if err := ota.Reconcile(ctx, models, d.st); err != nil {
		return "", err
	}
	return d.activePath()
}

// activePath is the installed version's directory, or the configured bundle.
func (d *daemon) activePath() (string, error) {
	dir, _, err := d.models.Active()
	if errors.Is(err, ota.ErrNoModel) {
		return d.cfg.Model.Bundle, nil
	}
	return dir, err
}

// loadActiveModel loads the model to run. An installed version that fails
// its self-test at start (a damaged disk, a model that only fails on this
// board) is rolled back, so a bad update never keeps the daemon down.
func (d *daemon) loadActiveModel(ctx context.Context) error {
	mlog := d.logFor("model").With().Str("component", "model").Logger()
	path, err := d.modelPath(ctx)
	for ; err == nil; path, err = d.activePath() {
		m, err := loadModel(path, d.rt, mlog)
		if err == nil {
			d.setModel(m)
			return nil
		}
		if d.models == nil || path == d.cfg.Model.Bundle {
			return fmt.Errorf("model.bundle: %w", err)
		}
		failed, rerr := d.models.Rollback(fmt.Sprintf("model failed its self-test at start: %v", err))
		if rerr != nil {
			return errors.Join(err, rerr)
		}
		mlog.Error().Err(err).Int64("version", failed).Msg("installed model failed at start; rolled back")
		d.startEvents = append(d.startEvents, ota.Event{Kind: "rolled_back", Version: failed, Err: err})
	}
	return err
}

// setModel makes m the running model.
func (d *daemon) setModel(m *model) {
	d.model = m
	man := m.manifest()
	d.running.Store(man.Version)
	d.modelFiles.Store(man.Image.Size + man.Text.Size)
}

// newUpdater wires OTA updates to the daemon; nil when updates are off.
func (d *daemon) newUpdater() (*ota.Updater, error) {
	if d.models == nil {
		return nil, nil
	}
	keys, err := ota.LoadKeyring(d.cfg.OTA.TrustedKeys)
	if err != nil {
		return nil, err
	}
	log := d.logFor("model").With().Str("component", "ota").Logger()
	return &ota.Updater{
		Config: d.cfg.OTA, Models: d.models, Keys: keys, Store: d.st, Target: otaTarget{d}, Log: log,
		Fetcher: &ota.Fetcher{Log: log},
		Report:  d.reportModel,
		Events:  d.modelEvent,
	}, nil
}

// reportModel publishes the update state for Home Assistant's update entity.
func (d *daemon) reportModel(s ota.State) {
	if d.mqtt == nil {
		return
	}
	d.modelMu.Lock()
	title := d.modelTitle
	d.modelMu.Unlock()
	m, err := mqtt.ModelStateMessage(d.cfg.Device.ID, mqtt.ModelState{Title: title, Installed: s.Installed,
		Latest: s.Latest, InProgress: s.InProgress, Progress: s.Percentage})
	if err == nil {
		d.mqtt.Push(context.Background(), m)
	}
}

// pruneVectors deletes the rules' vectors of every model but the running
// one: a rollback or an update embeds the rules anew, so older vectors only
// take space.
func (d *daemon) pruneVectors(ctx context.Context) {
	versions, err := d.st.VectorVersions(ctx)
	if err != nil {
		d.log.Warn().Err(err).Msg("listing stored vectors")
		return
	}
	running := d.running.Load()
	for _, v := range versions {
		if v == running {
			continue
		}
		if err := d.st.DeleteVersion(ctx, v); err != nil {
			d.log.Warn().Err(err).Int64("version", v).Msg("deleting old vectors")
		}
	}
}

// modelEvent logs an update's outcome and publishes it on model/event.
func (d *daemon) modelEvent(e ota.Event) {
	if (e.Kind == "committed" || e.Kind == "rolled_back") && d.runCtx != nil {
		d.pruneVectors(d.runCtx)
	}
	ev := d.log.Info()
	if e.Err != nil {
		ev = d.log.Warn().AnErr("reason", e.Err)
	}
	ev.Str("component", "ota").Str("kind", e.Kind).Int64("version", e.Version).Str("step", string(e.Step)).Msg("model update")
	if d.mqtt == nil {
		return
	}
	me := mqtt.ModelEvent{Kind: e.Kind, Version: e.Version, Step: string(e.Step)}
	if e.Err != nil {
		me.Reason = e.Err.Error()
	}
	if m, err := mqtt.ModelEventMessage(d.cfg.Device.ID, me); err == nil {
		d.mqtt.Push(context.Background(), m)
	}
}

// installer answers MQTT model/install commands.
type installer struct{ d *daemon }

func (i installer) Install(_ context.Context, url string, version int64) error {
	// The update outlives the command: it runs on the daemon's context.
	err := i.d.updater.Start(i.d.runCtx, url, version)
	if errors.Is(err, ota.ErrBusy) {
		if v, step, ok := i.d.updater.Current(); ok {
			return fmt.Errorf("%w (version %d, step %s); send {\"cancel\":true} to model/install to stop it", err, v, step)
		}
	}
	return err
}

func (i installer) Cancel(ctx context.Context) (int64, error) { return i.d.updater.Cancel(ctx) }

// otaTarget is the daemon as a model update sees it.
type otaTarget struct{ d *daemon }

func (t otaTarget) Running() int64 { return t.d.running.Load() }

// Prepare loads and self-tests the bundle, opens an image encoder for every
// camera and re-embeds every rule, all while the running model serves. It
// returns holding the rules lock, so that no rule changes between the
// re-embedding and the swap; Activate or Abort releases it.
func (t otaTarget) Prepare(ctx context.Context, dir string, step func(ota.Step)) (ota.Prepared, error) {
	d := t.d
	if dir == "" {
		dir = d.cfg.Model.Bundle
	}
	tell := func(s ota.Step) {
		if step != nil {
			step(s)
		}
	}
	tell(ota.StepSmoke)
	nm, err := loadModel(dir, d.rt, d.logFor("model").With().Str("component", "model").Logger())
	if err != nil {
		return nil, err
	}
	p := &prepared{d: d, m: nm}
	for range d.pipes {
		e, err := nm.towers.NewImage(d.rt)
		if err != nil {
			p.free()
			return nil, err
		}
		p.encs = append(p.encs, e)
	}
	tell(ota.StepReembed)
	d.rulesMu.Lock()
	if err := d.mgr.Reembed(ctx, d.rulesModel(nm)); err != nil {
		d.rulesMu.Unlock()
		p.free()
		return nil, err
	}
	if p.set, err = d.mgr.Set(ctx); err != nil {
		p.Abort()
		return nil, err
	}
	return p, nil
}

// prepared is a model ready to be swapped in; it holds the rules lock.
type prepared struct {
	d    *daemon
	m    *model
	encs []*encoder.Image
	set  *rules.Set
	done bool
}

func (p *prepared) Activate(ctx context.Context) error {
	d := p.d
	defer d.rulesMu.Unlock()
	p.done = true
	for i, pipe := range d.pipes {
		if err := pipe.SwapModel(&pipeline.Model{Encoder: p.encs[i], Rules: p.set}); err != nil {
			// Only a dimension mismatch, found before any pipeline took it.
			d.mgr.Reembed(ctx, d.rulesModel(d.model))
			p.free()
			return err
		}
	}
	// The old model's interpreters close as each pipeline takes its next
	// frame; its weights are freed once they all have.
	d.retired = append(d.retired, d.model)
	d.setModel(p.m)
	d.closeRetired()
	man := p.m.manifest()
	d.modelMu.Lock()
	d.modelTitle = man.Name
	d.modelMu.Unlock()
	d.log.Info().Str("component", "model").Str("model", man.Name).Int64("version", man.Version).Msg("model swapped in")
	return nil
}

// Abort puts the rules back on the running model and frees the new one.
func (p *prepared) Abort() {
	if p.done {
		return
	}
	p.done = true
	d := p.d
	if err := d.mgr.Reembed(context.Background(), d.rulesModel(d.model)); err != nil {
		d.log.Error().Err(err).Msg("restoring the rules' vectors for the running model")
	}
	d.rulesMu.Unlock()
	p.free()
}

func (p *prepared) free() {
	for _, e := range p.encs {
		e.Close()
	}
	p.encs = nil
	p.m.close()
}
