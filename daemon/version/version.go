// Package version holds sightd's version, set at link time by the Makefile.
package version

// Version is sightd's version ("dev" in an unstamped build).
var Version = "dev"
