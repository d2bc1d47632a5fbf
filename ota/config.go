package ota

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Config is the over-the-air update settings (the config file's ota:
// section).
type Config struct {
	// Dir holds the installed model versions, the current link, the trial
	// marker and downloads. It must be on the same file system throughout
	// (renames are the commit points).
	Dir string `yaml:"dir"`
	// TrustedKeys are the public keys a bundle may be signed with: each an
	// inline key line or a path to a .pub file. List two to rotate keys.
	// None turns OTA off.
	TrustedKeys []string `yaml:"trusted_keys"`
	// IndexURL, when set, is polled for {"version": N, "url": "..."}; the
	// newest version there is installed when it is above the installed one.
	IndexURL string `yaml:"index_url"`
	// PollInterval is how often IndexURL is read.
	PollInterval time.Duration `yaml:"poll_interval"`
	// AutoInstall installs what the index offers without waiting for a
	// model/install command; off, the index only sets latest_version.
	AutoInstall bool `yaml:"auto_install"`
	// TrialFrames is how many frames a new model must encode before the
	// update is committed; as many failures roll it back.
	TrialFrames int `yaml:"trial_frames"`
	// TrialRestarts is how many restarts during a trial are tolerated; one
	// more rolls the update back.
	TrialRestarts int `yaml:"trial_restarts"`
	// MaxDownload caps any download, whatever a manifest says.
	MaxDownload int64 `yaml:"max_download"`
}

// Defaults is OTA off (no keys) with settings that work once keys are
// listed.
func Defaults() Config {
	return Config{
		Dir:           "/var/lib/sightd/models",
		PollInterval:  6 * time.Hour,
		TrialFrames:   50,
		TrialRestarts: 2,
		MaxDownload:   1 << 30,
	}
}

// Enabled reports whether updates can be installed at all.
func (c Config) Enabled() bool { return len(c.TrustedKeys) > 0 }

// Validate reports every bad field by its name. The keys themselves are
// checked by LoadKeyring.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("ota.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Dir == "" {
		bad("dir", "must not be empty")
	}
	if c.IndexURL != "" {
		u, err := url.Parse(c.IndexURL)
		switch {
		case err != nil:
			bad("index_url", "%v", err)
		case u.Scheme != "http" && u.Scheme != "https":
			bad("index_url", "unsupported scheme %q: want http or https", u.Scheme)
		case u.Host == "":
			bad("index_url", "%q has no host", c.IndexURL)
		}
		if !c.Enabled() {
			bad("index_url", "set, but trusted_keys is empty: nothing could be installed")
		}
		if c.PollInterval < time.Minute {
			bad("poll_interval", "%v is below 1m", c.PollInterval)
		}
	}
	if c.TrialFrames < 1 || c.TrialFrames > 100_000 {
		bad("trial_frames", "%d: want 1..100000", c.TrialFrames)
	}
	if c.TrialRestarts < 0 || c.TrialRestarts > 100 {
		bad("trial_restarts", "%d: want 0..100", c.TrialRestarts)
	}
	if c.MaxDownload < 1<<20 {
		bad("max_download", "%d is below 1 MiB", c.MaxDownload)
	}
	return errors.Join(errs...)
}
