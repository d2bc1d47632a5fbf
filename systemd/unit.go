package systemd

import _ "embed"

// UnitName is the name the unit is installed under.
const UnitName = "sightd.service"

//go:embed sightd.service
var unitFile string

// Unit returns the content of sightd.service as installed by `make install`.
func Unit() string { return unitFile }
