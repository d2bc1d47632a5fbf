package camera

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kind is what a source string names.
type Kind int

const (
	// Device is a V4L2 device: an index ("0") or a path under /dev.
	Device Kind = iota + 1
	// Stream is a network stream read through OpenCV's FFmpeg backend.
	Stream
	// Video is a video file.
	Video
	// Images is a still image, a folder of images or a glob, replayed.
	Images
)

func (k Kind) String() string {
	switch k {
	case Device:
		return "device"
	case Stream:
		return "stream"
	case Video:
		return "video file"
	case Images:
		return "images"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Spec is a parsed source string.
type Spec struct {
	Kind Kind
	// Index is the device number for "N" and "/dev/videoN"; -1 for other
	// device paths (such as /dev/v4l/by-id/...).
	Index int
	// Path is the device path, the file, the folder or the glob.
	Path string
	// URL is the stream address, credentials included (String hides them).
	URL string
}

// ErrBadSource is wrapped by every source string error (and by a device path
// that is not a video device).
var ErrBadSource = errors.New("bad source")

// sourceError is an ErrBadSource whose message does not repeat "bad source",
// so that a config error reads cameras[porch].source: unsupported scheme "rtmp".
type sourceError struct{ err error }

func (e *sourceError) Error() string        { return e.err.Error() }
func (e *sourceError) Unwrap() error        { return e.err }
func (e *sourceError) Is(target error) bool { return target == ErrBadSource }

func badSource(format string, args ...any) error {
	return &sourceError{fmt.Errorf(format, args...)}
}

// streamSchemes are what OpenCV's FFmpeg backend reads for us. Others that
// FFmpeg knows (rtmp, udp, ...) are refused until someone needs and tests them.
var streamSchemes = map[string]bool{"rtsp": true, "rtsps": true, "http": true, "https": true}

var imageExts = map[string]bool{
	".jpg": true, ".jpeg": true, ".png": true, ".bmp": true, ".webp": true,
	".tif": true, ".tiff": true, ".pgm": true, ".ppm": true, ".pnm": true,
}

// ParseSource reads a source string:
//
//	0, 1, ...                    V4L2 device by index
//	/dev/video0, /dev/v4l/...    V4L2 device by path
//	rtsp://, rtsps://            RTSP stream
//	http://, https://            MJPEG (or any FFmpeg-readable) HTTP stream
//	file.avi, file:///x.mp4      video file
//	a.jpg, dir/, dir/*.jpg       still image, folder of images, glob
//
// A path that is neither an image nor a glob is a video file, or a folder
// of images when it names a folder: Open decides, as only the file system
// can tell.
func ParseSource(s string) (Spec, error) {
	switch {
	case s == "":
		return Spec{}, badSource("empty")
	case !utf8.ValidString(s) || strings.ContainsAny(s, "\x00\n\r"):
		return Spec{}, badSource("%q has control characters or invalid UTF-8", s)
	case s != strings.TrimSpace(s):
		return Spec{}, badSource("%q has surrounding spaces", s)
	}
	if isDigits(s) {
		n, err := strconv.Atoi(s)
		if err != nil || n > 1023 {
			return Spec{}, badSource("device index %s out of range 0..1023", s)
		}
		return Spec{Kind: Device, Index: n, Path: "/dev/video" + strconv.Itoa(n)}, nil
	}
	if scheme, rest, ok := strings.Cut(s, "://"); ok && isScheme(scheme) {
		scheme = strings.ToLower(scheme)
		switch {
		case scheme == "file":
			if !strings.HasPrefix(rest, "/") {
				return Spec{}, badSource("%q: file URLs need an absolute path (file:///...)", s)
			}
			return parsePath(rest)
		case streamSchemes[scheme]:
			u, err := url.Parse(s)
			if err != nil {
				// Not the URL itself: it may carry a password.
				if ue := (*url.Error)(nil); errors.As(err, &ue) {
					err = ue.Err
				}
				return Spec{}, badSource("bad %s URL: %w", scheme, err)
			}
			if u.Host == "" {
				return Spec{}, badSource("%q has no host", redact(s))
			}
			return Spec{Kind: Stream, Index: -1, URL: s}, nil
		}
		return Spec{}, badSource("unsupported scheme %q", scheme)
	}
	return parsePath(s)
}

func parsePath(p string) (Spec, error) {
	if p == "" {
		return Spec{}, badSource("empty path")
	}
	if strings.HasPrefix(p, "/dev/") {
		sp := Spec{Kind: Device, Index: -1, Path: p}
		if rest, ok := strings.CutPrefix(p, "/dev/video"); ok && isDigits(rest) && len(rest) <= 4 {
			sp.Index, _ = strconv.Atoi(rest)
		}
		return sp, nil
	}
	if strings.ContainsAny(p, "*?[") {
		if _, err := filepath.Match(p, ""); err != nil {
			return Spec{}, badSource("glob %q: %w", p, err)
		}
		return Spec{Kind: Images, Index: -1, Path: p}, nil
	}
	if imageExts[strings.ToLower(filepath.Ext(p))] || strings.HasSuffix(p, "/") {
		return Spec{Kind: Images, Index: -1, Path: p}, nil
	}
	return Spec{Kind: Video, Index: -1, Path: p}, nil
}

// String is the source for logs and errors: a stream's password is hidden.
func (s Spec) String() string {
	if s.Kind == Stream {
		return redact(s.URL)
	}
	return s.Path
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// isScheme follows RFC 3986: a letter, then letters, digits, "+", "-", ".".
func isScheme(s string) bool {
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.'):
		default:
			return false
		}
	}
	return s != ""
}
