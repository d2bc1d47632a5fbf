package camera

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Config is one camera: where its frames come from and how they are gated,
// cut into regions and snapshot. Start from Defaults and override.
type Config struct {
	// Name identifies the camera in errors, logs and MQTT topics.
	Name string `yaml:"name"`
	// Source is parsed by ParseSource.
	Source string `yaml:"source"`
	// Width, Height and FPS are requested from a device; still images are
	// replayed at FPS. Video files play at their own rate and streams
	// deliver what they send.
	Width  int     `yaml:"width"`
	Height int     `yaml:"height"`
	FPS    float64 `yaml:"fps"`
	// FourCC is the pixel format requested from a device. MJPG lets a USB
	// camera send large frames at full rate; a camera that does not offer
	// it falls back to its own format. Empty keeps the device's choice.
	FourCC string `yaml:"fourcc"`
	// Loop replays a video file or a set of images from the start when it
	// ends; without it the source ends with io.EOF.
	Loop bool `yaml:"loop"`
	// Fast reads files as fast as the consumer takes frames (no pacing, no
	// dropped frames), for tests and benchmarks.
	Fast bool `yaml:"fast"`
	// RetryMin and RetryMax bound the exponential back-off between attempts
	// to reopen a source that failed.
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`
	// Stall is how long Next waits for a frame before it reports the
	// source unavailable (again, while it stays so).
	Stall time.Duration `yaml:"stall"`
	// Stuck: a device or stream whose frames changed and then stay
	// bit-identical this long is taken as a stuck decoder and reopened
	// (an outage); 0 turns the check off. Files are never checked.
	Stuck time.Duration `yaml:"stuck"`

	Gate     GateConfig     `yaml:"gate"`
	Regions  RegionsConfig  `yaml:"regions"`
	Snapshot SnapshotConfig `yaml:"snapshot"`
}

// Defaults is a camera that suits a Raspberry Pi: 640x480 MJPG at 15 fps.
func Defaults() Config {
	return Config{
		Width: 640, Height: 480, FPS: 15, FourCC: "MJPG",
		RetryMin: 500 * time.Millisecond, RetryMax: 30 * time.Second,
		Stall:    10 * time.Second,
		Stuck:    30 * time.Second,
		Gate:     GateDefaults(),
		Regions:  RegionsDefaults(),
		Snapshot: SnapshotDefaults(),
	}
}

// FieldError is a configuration error in one field, such as
// "cameras[porch].source".
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// prefix moves every FieldError in err (a single error or an errors.Join)
// under p.
func prefix(p string, err error) []error {
	if err == nil {
		return nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		var fe *FieldError
		if errors.As(e, &fe) {
			out = append(out, &FieldError{Field: p + "." + fe.Field, Err: fe.Err})
		} else {
			out = append(out, &FieldError{Field: p, Err: e})
		}
	}
	return out
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	fourccRE = regexp.MustCompile(`^[A-Z0-9 ]{4}$`)
)

// Field is where this camera's fields sit in the daemon's configuration.
func (c Config) Field() string { return fmt.Sprintf("cameras[%s]", c.Name) }

// Validate reports every bad field, each named like
// cameras[porch].source: unsupported scheme "rtmp".
func (c Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fieldErr(c.Field()+"."+field, format, args...))
	}
	if !nameRE.MatchString(c.Name) {
		add("name", "%q: want 1 to 63 of a-z, 0-9, _ and -, starting with a letter or digit", c.Name)
	}
	if _, err := ParseSource(c.Source); err != nil {
		add("source", "%w", err)
	}
	if c.Width <= 0 || c.Width > 8192 {
		add("width", "%d: want 1..8192", c.Width)
	}
	if c.Height <= 0 || c.Height > 8192 {
		add("height", "%d: want 1..8192", c.Height)
	}
	if !(c.FPS > 0 && c.FPS <= 240) {
		add("fps", "%v: want more than 0 and at most 240", c.FPS)
	}
	if c.FourCC != "" && !fourccRE.MatchString(c.FourCC) {
		add("fourcc", "%q: want four upper-case letters or digits, such as MJPG or YUYV", c.FourCC)
	}
	if c.RetryMin < 10*time.Millisecond {
		add("retry_min", "%v: want at least 10ms", c.RetryMin)
	}
	if c.RetryMax < c.RetryMin {
		add("retry_max", "%v: want at least retry_min (%v)", c.RetryMax, c.RetryMin)
	}
	if c.Stall < 100*time.Millisecond {
		add("stall", "%v: want at least 100ms", c.Stall)
	}
	if c.Stuck != 0 && c.Stuck < time.Second {
		add("stuck", "%v: want 0 (off) or at least 1s", c.Stuck)
	}
	errs = append(errs, prefix(c.Field()+".gate", c.Gate.Validate())...)
	errs = append(errs, prefix(c.Field()+".regions", c.Regions.Validate())...)
	errs = append(errs, prefix(c.Field()+".snapshot", c.Snapshot.Validate())...)
	return errors.Join(errs...)
}
