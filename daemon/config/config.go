// Package config reads sightd's YAML configuration: one file with the
// device, the model, the cameras, the rules, the store, the local HTTP server
// and logging. Each part's own package owns its settings, defaults and
// validation; this package puts them together, expands ${ENV} references and
// reports every problem at once with its field path.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sightd/sightd/camera"
	"github.com/sightd/sightd/daemon/api"
	"github.com/sightd/sightd/daemon/mqtt"
	"github.com/sightd/sightd/daemon/rules"
	"github.com/sightd/sightd/ota"
	"github.com/sightd/sightd/store"
)

// MaxFileSize bounds the config file; a larger one is surely a mistake.
const MaxFileSize = 1 << 20

// ErrInvalid wraps every configuration problem.
var ErrInvalid = errors.New("invalid configuration")

// Config is the whole configuration.
type Config struct {
	Device      Device       `yaml:"device"`
	Model       Model        `yaml:"model"`
	Cameras     Cameras      `yaml:"cameras"`
	Rules       Rules        `yaml:"rules"`
	Calibration Calibration  `yaml:"calibration"`
	Store       store.Config `yaml:"store"`
	// MQTT is the broker connection; an empty broker turns MQTT off.
	MQTT mqtt.Config `yaml:"mqtt"`
	// OTA is signed model updates; no trusted keys turns them off.
	OTA  ota.Config `yaml:"ota"`
	HTTP HTTP       `yaml:"http"`
	Log  Log        `yaml:"log"`
}

// Device names this sightd instance.
type Device struct {
	// ID is used in MQTT topics and Home Assistant unique ids: keep it stable.
	ID   string `yaml:"id"`
	Name string `yaml:"name"`
}

// Model says which bundle to run and how.
type Model struct {
	// Bundle is a bundle directory or tar.
	Bundle string `yaml:"bundle"`
	// Threads for inference; 0 is the number of CPUs, at most 4.
	Threads int  `yaml:"threads"`
	XNNPACK bool `yaml:"xnnpack"`
	// EdgeTPU: "off", "auto" (use one when present) or "require".
	EdgeTPU string `yaml:"edgetpu"`
}

// Calibration holds settings shared by all rules.
type Calibration struct {
	// Backgrounds are scene descriptions every rule is calibrated against.
	Backgrounds []string `yaml:"backgrounds"`
}

// HTTP is the local API (health, metrics, snapshots, rules); the api
// package owns its settings, defaults and validation.
type HTTP = api.Settings

// Log sets logging.
type Log struct {
	Level  string `yaml:"level"`  // trace, debug, info, warn, error
	Format string `yaml:"format"` // auto (console on a terminal, JSON otherwise), json, console
	// Levels overrides Level for single components, e.g. {camera: debug}.
	Levels map[string]string `yaml:"levels"`
}

// LogComponents are the parts whose level log.levels can set.
var LogComponents = []string{"api", "camera", "model", "mqtt", "store", "watchdog"}

// Defaults is a configuration that works once a camera is added.
func Defaults() Config {
	return Config{
		Device:      Device{ID: "sightd", Name: "sightd"},
		Model:       Model{Threads: 0, XNNPACK: true, EdgeTPU: "auto"},
		Calibration: Calibration{Backgrounds: append([]string(nil), rules.DefaultBackgrounds...)},
		Store:       store.Defaults(),
		MQTT:        mqtt.Defaults(),
		OTA:         ota.Defaults(),
		HTTP:        api.DefaultSettings(),
		Log:         Log{Level: "info", Format: "auto"},
	}
}

// Cameras is the list of cameras; each starts from camera.Defaults.
type Cameras []camera.Config

// UnmarshalYAML decodes each camera over the defaults, strictly.
func (cs *Cameras) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("line %d: cameras: want a list", n.Line)
	}
	out := make(Cameras, 0, len(n.Content))
	for i, item := range n.Content {
		c := camera.Defaults()
		if err := strictDecode(item, &c); err != nil {
			return fmt.Errorf("cameras[%d]: %w", i, err)
		}
		out = append(out, c)
	}
	*cs = out
	return nil
}

// Rules is the list of rules, parsed with the rules package's own strict
// parser, so a rule in the file and one sent over MQTT are checked alike.
type Rules []*rules.Rule

// UnmarshalYAML turns each rule into JSON and parses it.
func (rs *Rules) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("line %d: rules: want a list", n.Line)
	}
	out := make(Rules, 0, len(n.Content))
	var errs []error
	for i, item := range n.Content {
		var v any
		if err := item.Decode(&v); err != nil {
			errs = append(errs, fmt.Errorf("rules[%d]: %w", i, err))
			continue
		}
		data, err := json.Marshal(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("rules[%d] (line %d): %w", i, item.Line, err))
			continue
		}
		r, err := rules.Parse(data, nil) // cameras are checked in Validate
		if err != nil {
			errs = append(errs, fmt.Errorf("rules[%d] (line %d): %w", i, item.Line, err))
			continue
		}
		out = append(out, r)
	}
	*rs = out
	return errors.Join(errs...)
}

// strictDecode decodes n into v refusing unknown keys (yaml.v3 applies
// KnownFields only to a Decoder, so the node goes through one).
func strictDecode(n *yaml.Node, v any) error {
	data, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(v)
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces ${NAME} in every scalar value under n with the
// environment variable NAME; a variable that is not set is an error rather
// than a silent empty string. Only values are expanded (not comments or
// keys, and never into YAML structure), and only the braced form, so a "$"
// in a password stays as it is.
func expandEnv(n *yaml.Node, missing map[string]bool) {
	if n.Kind == yaml.ScalarNode {
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			name := envRef.FindStringSubmatch(m)[1]
			v, ok := os.LookupEnv(name)
			if !ok {
				missing[name] = true
				return m
			}
			return v
		})
		return
	}
	for _, c := range n.Content {
		expandEnv(c, missing)
	}
}

// Parse reads a configuration from YAML over Defaults and validates it.
func Parse(data []byte) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrInvalid, len(data), MaxFileSize)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	c := Defaults()
	if root.Kind != 0 { // an empty file is all defaults
		missing := map[string]bool{}
		expandEnv(&root, missing)
		if len(missing) > 0 {
			names := make([]string, 0, len(missing))
			for n := range missing {
				names = append(names, n)
			}
			slices.Sort(names)
			return nil, fmt.Errorf("%w: environment variable(s) not set: %s", ErrInvalid, strings.Join(names, ", "))
		}
		if err := strictDecode(&root, &c); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Load reads and parses the file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Validate reports every problem at once, each with its field path.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if !deviceID.MatchString(c.Device.ID) {
		bad("device.id", "%q: want 1 to 63 of a-z, 0-9, _ and -, starting with a letter or digit", c.Device.ID)
	}
	if c.Model.Bundle == "" {
		bad("model.bundle", "required: a bundle directory or tar (make demo-bundle makes one)")
	}
	if c.Model.Threads < 0 || c.Model.Threads > 64 {
		bad("model.threads", "%d: want 1..64, or 0 for the number of CPUs (at most 4)", c.Model.Threads)
	}
	switch c.Model.EdgeTPU {
	case "off", "auto", "require":
	default:
		bad("model.edgetpu", "%q: want off, auto or require", c.Model.EdgeTPU)
	}
	names := map[string]bool{}
	for i, cam := range c.Cameras {
		if err := cam.Validate(); err != nil {
			errs = append(errs, err)
		}
		if names[cam.Name] {
			bad(fmt.Sprintf("cameras[%d].name", i), "%q is used twice", cam.Name)
		}
		names[cam.Name] = true
	}
	ids := map[string]bool{}
	for i, r := range c.Rules {
		if err := r.Validate(names); err != nil {
			bad(fmt.Sprintf("rules[%d]", i), "%v", err)
		}
		if ids[r.ID] {
			bad(fmt.Sprintf("rules[%d].id", i), "%q is used twice", r.ID)
		}
		ids[r.ID] = true
	}
	for i, b := range c.Calibration.Backgrounds {
		if strings.TrimSpace(b) == "" || len(b) > rules.MaxPromptLen {
			bad(fmt.Sprintf("calibration.backgrounds[%d]", i), "want 1 to %d characters", rules.MaxPromptLen)
		}
	}
	if err := c.Store.Validate(); err != nil {
		bad("store", "%v", err)
	}
	if c.MQTT.Broker != "" {
		if err := c.MQTT.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.OTA.Validate(); err != nil {
		errs = append(errs, err)
	}
	keysOK := true
	for i, k := range c.OTA.TrustedKeys {
		if _, err := ota.LoadKey(k); err != nil {
			bad(fmt.Sprintf("ota.trusted_keys[%d]", i), "%v", err)
			keysOK = false
		}
	}
	if keysOK && len(c.OTA.TrustedKeys) > 1 {
		if _, err := ota.LoadKeyring(c.OTA.TrustedKeys); err != nil { // the same key twice
			bad("ota.trusted_keys", "%v", err)
		}
	}
	if c.HTTP.Listen != "" {
		if err := c.HTTP.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	switch c.Log.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q: want trace, debug, info, warn or error", c.Log.Level)
	}
	for comp, lvl := range c.Log.Levels {
		if !slices.Contains(LogComponents, comp) {
			bad("log.levels."+comp, "unknown component (want one of %s)", strings.Join(LogComponents, ", "))
		}
		switch lvl {
		case "trace", "debug", "info", "warn", "error":
		default:
			bad("log.levels."+comp, "%q: want trace, debug, info, warn or error", lvl)
		}
	}
	switch c.Log.Format {
	case "auto", "json", "console":
	default:
		bad("log.format", "%q: want auto, json or console", c.Log.Format)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w:\n%w", ErrInvalid, errors.Join(errs...))
}

// Warnings are settings that work but that the user should know about:
// `config check` prints them and `sightd run` logs them.
func (c *Config) Warnings() []string {
	return c.HTTP.Warnings()
}

// CheckFiles reads what `sightd run` reads at start besides the model:
// the MQTT password and TLS files (when MQTT is on) and the API's token
// file (when the API is on), and checks that model.bundle exists. It
// returns every problem joined, each naming its field, without ErrInvalid
// (the caller says what failed). The bundle's content is checked by
// loading it, which is the daemon's part.
func (c *Config) CheckFiles() error {
	var errs []error
	if _, err := os.Stat(c.Model.Bundle); err != nil {
		errs = append(errs, fmt.Errorf("model.bundle: %w", err))
	}
	if c.MQTT.Broker != "" {
		if err := c.MQTT.CheckFiles(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.HTTP.Listen != "" {
		if _, err := c.HTTP.Token(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

var deviceID = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// CameraNames is the set of configured camera names.
func (c *Config) CameraNames() map[string]bool {
	m := make(map[string]bool, len(c.Cameras))
	for _, cam := range c.Cameras {
		m[cam.Name] = true
	}
	return m
}
