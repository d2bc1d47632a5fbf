// Package systemd holds sightd.service and the sd_notify / watchdog glue.
package systemd
