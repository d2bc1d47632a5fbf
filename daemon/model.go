package main

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/rs/zerolog"

	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/quant/bundle"
	"github.com/sightd/sightd/quant/encoder"
	"github.com/sightd/sightd/quant/tflite"
)

// model is one loaded bundle: its towers and the text encoder the rules are
// embedded with. A model swap replaces it as a whole.
type model struct {
	bundle *bundle.Bundle
	towers *encoder.Towers
	text   *encoder.Text
}

// loadModel opens the bundle at path and runs its self-test: the manifest
// and files, the towers' tensors against the manifest, and the probe
// vectors. Only a model that passed is returned.
func loadModel(path string, rt tflite.Options, log zerolog.Logger) (_ *model, err error) {
	m := &model{}
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	if m.bundle, err = bundle.Open(path); err != nil {
		return nil, err
	}
	if err := m.bundle.CheckModels(); err != nil {
		return nil, err
	}
	if m.towers, err = encoder.Load(m.bundle); err != nil {
		return nil, err
	}
	cos, err := m.towers.CheckProbes(rt)
	if err != nil {
		return nil, fmt.Errorf("model self-test: %w", err)
	}
	if m.text, err = m.towers.NewText(rt); err != nil {
		return nil, err
	}
	man := m.towers.Manifest()
	log.Info().Str("model", man.Name).Int64("version", man.Version).Floats64("probe_cosines", cos).Msg("model passed its self-test")
	return m, nil
}

func (m *model) manifest() *bundle.Manifest { return m.towers.Manifest() }

// rulesModel is m as the rules see it, with the configured backgrounds.
func (d *daemon) rulesModel(m *model) rules.Model {
	man := m.manifest()
	return rules.Model{Version: man.Version, LogitScale: man.LogitScale, Text: m.text,
		Backgrounds: d.cfg.Calibration.Backgrounds}
}

// close frees the model; it fails (and keeps what is still used) while an
// image encoder made from it is open somewhere.
func (m *model) close() error {
	var errs []error
	if m.text != nil {
		errs = append(errs, m.text.Close())
		m.text = nil
	}
	if m.towers != nil {
		if err := m.towers.Close(); err != nil {
			return err
		}
		m.towers = nil
	}
	if m.bundle != nil {
		errs = append(errs, m.bundle.Close())
		m.bundle = nil
	}
	return errors.Join(errs...)
}

// probeAccelerators tries the Edge TPU once: when "auto" finds none, every
// later interpreter goes straight to the CPU instead of trying (and
// logging) again.
func (d *daemon) probeAccelerators(towers *encoder.Towers) {
	if d.rt.EdgeTPU != tflite.EdgeTPUAuto {
		return
	}
	probe, err := towers.NewImage(d.rt)
	if err != nil {
		return // the self-test reports it
	}
	accels := probe.Accelerators()
	probe.Close()
	if !slices.Contains(accels, "edgetpu") {
		d.rt.EdgeTPU = tflite.EdgeTPUOff
	}
	d.log.Info().Strs("accelerators", accels).Msg("inference")
}

// swapModel replaces the running model with the bundle at path. The old
// model keeps serving until the new one has passed its self-test, every rule
// is embedded with it and every camera has its new encoder; a failure at any
// step leaves the old model as it was.
func (d *daemon) swapModel(ctx context.Context, path string) error {
	p, err := otaTarget{d}.Prepare(ctx, path, nil)
	if err == nil {
		err = p.Activate(ctx)
	}
	if err != nil {
		return fmt.Errorf("model swap refused, the running model stays: %w", err)
	}
	return nil
}

// closeRetired frees replaced models no pipeline uses any more.
func (d *daemon) closeRetired() {
	kept := d.retired[:0]
	for _, m := range d.retired {
		if m.close() != nil {
			kept = append(kept, m)
		}
	}
	d.retired = kept
}
