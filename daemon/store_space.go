package main

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sightd/sightd/daemon/api"
	"github.com/sightd/sightd/daemon/mqtt"
	"github.com/sightd/sightd/store"
)

// The store's disk space, reported: /healthz (check "store"), /metrics
// (sightd_store_*), MQTT (store/state, on every change of level) and the
// log (by the store itself).

// watchSpace exports the store's space metrics and publishes store/state on
// every change of level. Call it once, after openMQTT.
func (d *daemon) watchSpace() {
	m := d.metrics
	m.AddGauge("sightd_store_free_bytes", "Free space on the store's filesystem.", func() float64 { return float64(d.st.Space().Free) })
	m.AddGauge("sightd_store_reserve_bytes", "Free space kept (store.reserve_mb): below it snapshots and detections are refused and shed.", func() float64 {
		return float64(d.st.Space().Reserve)
	})
	m.AddGauge("sightd_store_floor_bytes", "Free space Badger needs to flush: below it every write but deletes is refused.", func() float64 {
		return float64(d.st.Space().Floor)
	})
	m.AddGauge("sightd_store_space_level", "0 ok, 1 below the reserve (low), 2 below the floor (full).", func() float64 {
		return float64(d.st.Space().Level)
	})
	shed := func(what string, f func(store.Space) uint64) {
		m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sightd_store_shed_total", Help: "Items shed to free disk space, since start.", ConstLabels: prometheus.Labels{"what": what}},
			func() float64 { return float64(f(d.st.Space())) }))
	}
	shed("snapshots", func(s store.Space) uint64 { return s.ShedSnapshots })
	shed("detections", func(s store.Space) uint64 { return s.ShedDetections })
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "sightd_store_refused_writes_total", Help: "Writes refused for lack of disk space, since start."},
		func() float64 { return float64(d.st.Space().Refused) }))
	if d.mqtt != nil {
		d.st.OnSpace(func(store.SpaceLevel) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			d.publishStoreState(ctx)
		})
	}
}

// storeCheck is /healthz's store check: the store answers, and its disk
// has room above the reserve.
func (d *daemon) storeCheck(ctx context.Context) api.Check {
	if _, _, err := d.st.ModelVersions(ctx); err != nil {
		return api.Check{Name: "store", Detail: err.Error()}
	}
	sp := d.st.Space()
	return api.Check{Name: "store", OK: sp.Level == store.SpaceOK, Detail: sp.Reason()}
}

// publishStoreState queues store/state, or when the store refuses even that
// (below the floor), publishes it directly if connected.
func (d *daemon) publishStoreState(ctx context.Context) {
	if d.mqtt == nil {
		return
	}
	sp := d.st.Space()
	m, err := mqtt.StoreStateMessage(d.cfg.Device.ID, mqtt.StoreState{Space: sp.Level.String(), FreeBytes: sp.Free,
		ReserveBytes: sp.Reserve, ShedSnapshots: sp.ShedSnapshots, ShedDetections: sp.ShedDetections,
		RefusedWrites: sp.Refused, Reason: sp.Reason()})
	if err != nil {
		return
	}
	if err := d.mqtt.Push(ctx, m); errors.Is(err, store.ErrDiskFull) {
		d.mqtt.PublishNow(m)
	}
}
