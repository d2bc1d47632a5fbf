package systemd

import (
	"fmt"
	"strings"
	"sync"

	"github.com/coreos/go-systemd/v22/daemon"
)

// status is what `systemctl status` shows on its Status: line. While a
// component is stuck the watchdog's report takes the place of the daemon's
// own status, which comes back once all is well again.
var status struct {
	sync.Mutex
	app   string // the daemon's last Status
	stuck string // the watchdog's report; empty when nothing is stuck
}

// notify sends one state to systemd. Without NOTIFY_SOCKET it does nothing.
// The variable stays set: sightd notifies many times over its life, and with
// NotifyAccess=main systemd ignores any child that inherits it.
func notify(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		name, _, _ := strings.Cut(state, "=")
		return fmt.Errorf("systemd: notify %s: %w", name, err)
	}
	return nil
}

// Ready tells systemd that sightd has started (Type=notify): until then
// `systemctl start` waits. Call it again after a reload.
func Ready() error { return notify(daemon.SdNotifyReady) }

// Reloading tells systemd that sightd is rereading its configuration; call
// Ready when done.
func Reloading() error {
	// MONOTONIC_USEC lets systemd 253 and later tell this reload from an
	// earlier one; older versions ignore it.
	return notify(daemon.SdNotifyReloading + "\n" + strings.TrimSuffix(daemon.SdNotifyMonotonicUsec(), "\n"))
}

// Stopping tells systemd that sightd is shutting down.
func Stopping() error { return notify(daemon.SdNotifyStopping) }

// Status sets the one line that `systemctl status` shows for the service.
// While the watchdog reports a stuck component, the status is kept and shown
// once the component recovers.
func Status(format string, args ...any) error {
	s := oneLine(fmt.Sprintf(format, args...))
	status.Lock()
	defer status.Unlock()
	status.app = s
	if status.stuck != "" {
		return nil
	}
	return notify("STATUS=" + s)
}

// setStuck shows (or, with "", withdraws) the watchdog's report.
func setStuck(report string) error {
	status.Lock()
	defer status.Unlock()
	if report == status.stuck {
		return nil
	}
	status.stuck = report
	if report == "" {
		return notify("STATUS=" + status.app)
	}
	return notify("STATUS=" + report)
}

// oneLine keeps a status to one line: the protocol is one assignment per
// line, so a newline would start another (READY=1, say).
func oneLine(s string) string { return newlines.Replace(s) }

var newlines = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ")
