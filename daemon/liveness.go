package main

import (
	"context"
	"time"

	"github.com/sightd/sightd/systemd"
)

// watchParts registers the store and the MQTT drain with the watchdog and
// ticks them while they make progress: the store while a small read
// returns, the drain while its outbox is empty, it is disconnected (and
// retrying on its own schedule), or acknowledgements keep arriving. A hung
// database or a drain stuck on a live connection stops the ticks, and
// systemd restarts sightd.
func (d *daemon) watchParts(ctx context.Context, wd *systemd.Watchdog) {
	period := min(wd.Interval()/4, 5*time.Second)
	if period <= 0 {
		return // no watchdog: nothing to prove
	}
	storeBeat := wd.Register("store")
	var mqttBeat *systemd.Beat
	if d.mqtt != nil {
		mqttBeat = wd.Register("mqtt")
	}
	var acked uint64
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			storeBeat.Done()
			if mqttBeat != nil {
				mqttBeat.Done()
			}
			return
		case <-tick.C:
		}
		if _, _, err := d.st.ModelVersions(ctx); err == nil {
			storeBeat.Tick()
		}
		if mqttBeat != nil {
			h := d.mqtt.Health()
			if h.Outbox == 0 || !h.Connected || h.Acked != acked {
				mqttBeat.Tick()
			}
			acked = h.Acked
		}
	}
}
