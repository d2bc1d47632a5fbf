package api

import (
	"testing"
)

func TestMemoryMetrics(t *testing.T) {
	m := NewMetrics()
	m.AddMemory(func() int64 { return 3_629_504 })
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if len(f.GetMetric()) == 1 && f.GetMetric()[0].GetGauge() != nil {
			got[f.GetName()] = f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	rss, pss, private := got["sightd_memory_rss_bytes"], got["sightd_memory_pss_bytes"], got["sightd_memory_private_bytes"]
	if !(0 < private && private <= pss && pss <= rss) || got["sightd_memory_anonymous_bytes"] <= 0 {
		t.Errorf("want 0 < private <= PSS <= RSS: %v", got)
	}
	// The Go and process collectors' figure for the same thing, read apart.
	if proc := got["process_resident_memory_bytes"]; proc < rss/2 || proc > rss*2 {
		t.Errorf("RSS %v, process_resident_memory_bytes %v", rss, proc)
	}
	if got["sightd_model_files_bytes"] != 3_629_504 {
		t.Errorf("sightd_model_files_bytes = %v", got["sightd_model_files_bytes"])
	}
	if got["sightd_memory_shared_libraries"] < 0 {
		t.Errorf("sightd_memory_shared_libraries = %v", got["sightd_memory_shared_libraries"])
	}
}
