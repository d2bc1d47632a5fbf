// Package systemd holds sightd.service and the glue between sightd and
// systemd: readiness, status and stopping notifications (sd_notify) and a
// watchdog that keeps systemd's WatchdogSec= satisfied only while every part
// of the daemon makes progress.
//
// Everything here is a no-op when sightd does not run under systemd
// (NOTIFY_SOCKET and WATCHDOG_USEC unset), so callers need no special case.
package systemd
