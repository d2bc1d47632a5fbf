package api

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sightd/sightd/daemon/pipeline"
)

// Metrics is what /metrics exports, in Prometheus format.
type Metrics struct {
	Registry   *prometheus.Registry
	Detections *prometheus.CounterVec // by rule and camera
	encode     *prometheus.HistogramVec
}

// NewMetrics makes the registry with Go and process metrics.
func NewMetrics() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.Detections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sightd_detections_total", Help: "Rule firings and state changes.",
	}, []string{"rule", "camera"})
	m.encode = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "sightd_encode_seconds", Help: "Time to encode one frame's regions (preprocess, invoke, dequantise).",
		Buckets: prometheus.ExponentialBuckets(0.002, 2, 12), // 2 ms to 4 s
	}, []string{"camera"})
	m.Registry.MustRegister(m.Detections, m.encode)
	return m
}

// AddPipeline exports a camera's counters and hooks its encode latency.
func (m *Metrics) AddPipeline(p *pipeline.Pipeline) {
	cam := prometheus.Labels{"camera": p.Name}
	counter := func(name, help string, f func() float64) {
		m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: name, Help: help, ConstLabels: cam}, f))
	}
	counter("sightd_frames_read_total", "Frames the camera delivered to its reader.", func() float64 { return float64(p.SourceStats().Read) })
	counter("sightd_frames_dropped_total", "Frames replaced by a newer one before the pipeline took them.", func() float64 { return float64(p.SourceStats().Dropped) })
	counter("sightd_frames_handled_total", "Frames the pipeline handled.", func() float64 { return float64(p.Stats.Frames.Load()) })
	counter("sightd_frames_gated_total", "Frames the motion gate passed (motion or keyframe).", func() float64 { return float64(p.Stats.Gated.Load()) })
	counter("sightd_frames_encoded_total", "Frames encoded.", func() float64 { return float64(p.Stats.Encoded.Load()) })
	counter("sightd_encode_errors_total", "Frames the encoder failed on (skipped).", func() float64 { return float64(p.Stats.EncodeErrors.Load()) })
	counter("sightd_regions_encoded_total", "Regions encoded.", func() float64 { return float64(p.Stats.Regions.Load()) })
	counter("sightd_camera_outages_total", "Times the camera became unavailable.", func() float64 { return float64(p.SourceStats().Outages) })
	counter("sightd_camera_size_changes_total", "Frames whose size differed from the frame before.", func() float64 { return float64(p.SourceStats().SizeChanges) })
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sightd_camera_available", Help: "1 while the camera delivers frames.", ConstLabels: cam},
		func() float64 {
			if p.SourceStats().Available {
				return 1
			}
			return 0
		}))
	h := m.encode.WithLabelValues(p.Name)
	p.OnEncode = func(d time.Duration) { h.Observe(d.Seconds()) }
}

// AddGauge exports a value read when scraped (outbox depth, MQTT connected).
func (m *Metrics) AddGauge(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}
