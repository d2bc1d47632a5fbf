package api

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sightd/sightd/daemon/procstat"
)

// memoryCollector reads /proc/self/smaps_rollup and /proc/self/maps once a
// scrape and exports memory as a user counts it.
type memoryCollector struct {
	modelFiles                              func() int64
	rss, pss, private, anonymous, libraries *prometheus.Desc
	models                                  *prometheus.Desc
}

// AddMemory exports sightd's memory (RSS, PSS, private, anonymous), the
// shared libraries it maps and the size of the running model's files
// (modelFiles, read at each scrape: a model update changes it).
func (m *Metrics) AddMemory(modelFiles func() int64) {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	m.Registry.MustRegister(&memoryCollector{
		modelFiles: modelFiles,
		rss:        d("sightd_memory_rss_bytes", "Resident memory: every page mapped and present, shared library pages whole (smaps_rollup Rss)."),
		pss:        d("sightd_memory_pss_bytes", "Proportional memory: each resident page divided by the processes that map it (smaps_rollup Pss)."),
		private:    d("sightd_memory_private_bytes", "Memory that is sightd's own: anonymous and private dirty pages (the larger of smaps_rollup Anonymous and Private_Dirty)."),
		anonymous:  d("sightd_memory_anonymous_bytes", "Anonymous memory: heap, stacks, Go and C allocations, relocated library data (smaps_rollup Anonymous)."),
		libraries:  d("sightd_memory_shared_libraries", "Shared libraries mapped (/proc/self/maps)."),
		models:     d("sightd_model_files_bytes", "Size of the running model bundle's tower files."),
	})
}

func (c *memoryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rss, c.pss, c.private, c.anonymous, c.libraries, c.models} {
		ch <- d
	}
}

func (c *memoryCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	if mem, err := procstat.Self(); err == nil {
		gauge(c.rss, mem.Rss)
		gauge(c.pss, mem.Pss)
		gauge(c.private, mem.Private())
		gauge(c.anonymous, mem.Anonymous)
	} else {
		ch <- prometheus.NewInvalidMetric(c.rss, err)
	}
	if libs, err := procstat.LibrariesOf(0); err == nil {
		gauge(c.libraries, int64(len(libs)))
	} else {
		ch <- prometheus.NewInvalidMetric(c.libraries, err)
	}
	gauge(c.models, c.modelFiles())
}
