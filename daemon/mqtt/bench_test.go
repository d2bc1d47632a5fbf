package mqtt

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sightd/sightd/store"
)

// events returns n detection messages (about 300 bytes each).
func events(b *testing.B, n int) []store.Message {
	t0 := time.Now()
	out := make([]store.Message, n)
	for i := range out {
		m, err := EventMessage("test", detection("package", "porch", t0.Add(time.Duration(i)*time.Millisecond)), "")
		if err != nil {
			b.Fatal(err)
		}
		out[i] = m
	}
	return out
}

// waitEmpty polls the outbox finely: the benchmark times it.
func waitEmpty(b *testing.B, st *store.Store) {
	deadline := time.Now().Add(5 * time.Minute)
	for st.Len() > 0 {
		if time.Now().After(deadline) {
			b.Fatalf("outbox still holds %d", st.Len())
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// BenchmarkDetectionToAck: a detection pushed to the outbox (fsynced),
// published with QoS 1 to a local Mosquitto, acknowledged and deleted
// (fsynced), with producers and drain running together.
func BenchmarkDetectionToAck(b *testing.B) {
	m := startMosquitto(b, mosqOptions{})
	st := openStore(b, nil)
	cfg := testConfig(m.url())
	cfg.DrainRate = 1e6
	c := runClient(b, cfg, Options{Outbox: st})
	waitFor(b, 30*time.Second, "connected", func() bool { return c.Health().Connected })
	msgs := events(b, b.N)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for _, msg := range msgs {
		if err := c.Push(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
	waitEmpty(b, st)
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "detections/s")
}

// BenchmarkDrainBacklog: the time to drain 10,000 messages queued during an
// outage, unbounded and at drain_rate 1000/s. Run with -benchtime=1x.
func BenchmarkDrainBacklog(b *testing.B) {
	const backlog = 10_000
	for _, rate := range []float64{1e6, 1000} {
		name := "unbounded"
		if rate < 1e6 {
			name = fmt.Sprintf("rate=%g", rate)
		}
		b.Run(name, func(b *testing.B) {
			m := startMosquitto(b, mosqOptions{})
			msgs := events(b, backlog)
			var total time.Duration
			for range b.N {
				b.StopTimer()
				st := openStore(b, nil)
				for _, msg := range msgs {
					if _, err := st.Push(context.Background(), msg); err != nil {
						b.Fatal(err)
					}
				}
				cfg := testConfig(m.url())
				cfg.DrainRate = rate
				b.StartTimer()
				start := time.Now()
				c := runClient(b, cfg, Options{Outbox: st})
				waitEmpty(b, st)
				total += time.Since(start)
				b.StopTimer()
				c.stop()
			}
			b.ReportMetric(float64(backlog*b.N)/total.Seconds(), "msgs/s")
		})
	}
}

// BenchmarkOutage: detections pushed while the broker is down. The outbox
// bound (10,000 messages by default) keeps disk and memory flat: heap-max-MB
// is the largest live heap seen after each tenth of the pushes (it is
// Badger's memtables and flush buffers), rss-MB the process at the end.
func BenchmarkOutage(b *testing.B) {
	st := openStore(b, nil)
	c := runClient(b, testConfig(fmt.Sprintf("tcp://127.0.0.1:%d", freePort(b))), Options{Outbox: st})
	msgs := events(b, 1000)
	ctx := context.Background()
	var heapMax uint64
	b.ResetTimer()
	for i := range b.N {
		if err := c.Push(ctx, msgs[i%len(msgs)]); err != nil {
			b.Fatal(err)
		}
		if (i+1)%max(b.N/10, 1) == 0 {
			b.StopTimer()
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			heapMax = max(heapMax, ms.HeapAlloc)
			b.StartTimer()
		}
	}
	b.StopTimer()
	h := c.Health()
	b.ReportMetric(float64(h.Outbox), "outbox-msgs")
	b.ReportMetric(float64(h.OutboxBytes)/(1<<20), "outbox-MB")
	b.ReportMetric(float64(heapMax)/(1<<20), "heap-max-MB")
	b.ReportMetric(rssMB(), "rss-MB")
}

func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseFloat(f[1], 64)
	return pages * float64(os.Getpagesize()) / (1 << 20)
}
