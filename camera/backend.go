package camera

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"gocv.io/x/gocv"
)

// backend returns how to open spec, and what it turned out to be (a plain
// path that names a folder is a folder of images). The only error is bad
// configuration that retrying cannot mend: a device path that is not a
// video device.
func backend(cfg Config, spec Spec) (func() (grabber, error), Kind, error) {
	switch spec.Kind {
	case Device:
		if err := checkDevice(spec.Path); err != nil {
			return nil, 0, err
		}
		return func() (grabber, error) { return openDevice(spec, cfg) }, Device, nil
	case Stream:
		return func() (grabber, error) { return openNetStreamIsolated(spec, cfg) }, Stream, nil
	case Video:
		if st, err := os.Stat(spec.Path); err == nil && st.IsDir() {
			return func() (grabber, error) { return openImages(spec.Path, cfg.FPS) }, Images, nil
		}
		return func() (grabber, error) { return openVideoFile(spec.Path, cfg.FPS) }, Video, nil
	case Images:
		return func() (grabber, error) { return openImages(spec.Path, cfg.FPS) }, Images, nil
	}
	return nil, 0, badSource("unknown source kind %v", spec.Kind)
}

// v4lMajor is the character device major number of every V4L2 device.
const v4lMajor = 81

// checkDevice refuses a path that exists but is not a V4L2 device (a typo
// such as /dev/sda1 or /dev/null). A path that does not exist is fine: the
// camera may be plugged in later.
func checkDevice(path string) error {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	rdev := uint64(st.Rdev)
	major := (rdev>>8)&0xfff | (rdev>>32)&^0xfff
	if st.Mode&syscall.S_IFMT != syscall.S_IFCHR || major != v4lMajor {
		return badSource("%s is not a video device", path)
	}
	return nil
}

// videoGrabber reads a gocv.VideoCapture.
type videoGrabber struct {
	vc     *gocv.VideoCapture
	what   string // "file", "device" or "stream", for errors
	fps    float64
	fourcc string
}

func newVideoGrabber(vc *gocv.VideoCapture, what string, fallbackFPS float64) *videoGrabber {
	fps := vc.Get(gocv.VideoCaptureFPS)
	if !(fps >= 0.1 && fps <= 1000) { // absent, NaN or absurd in some containers and streams
		fps = fallbackFPS
	}
	return &videoGrabber{vc: vc, what: what, fps: fps, fourcc: fourccString(vc.Get(gocv.VideoCaptureFOURCC))}
}

func (g *videoGrabber) grab(dst *gocv.Mat) error {
	if g.vc.Read(dst) && !dst.Empty() {
		return nil
	}
	switch g.what {
	case "file":
		return io.EOF
	case "device":
		return errors.New("no frame from the device (unplugged?)")
	}
	return errors.New("the stream ended or timed out")
}

func (g *videoGrabber) info() (float64, string) { return g.fps, g.fourcc }
func (g *videoGrabber) close()                  { g.vc.Close() }

// fourccString decodes OpenCV's FOURCC property; "" when it is none.
func fourccString(v float64) string {
	if !(v > 0 && v < math.MaxUint32) {
		return ""
	}
	n := uint32(v)
	b := []byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)}
	for _, c := range b {
		if c < ' ' || c > '~' {
			return ""
		}
	}
	return strings.TrimSpace(string(b))
}

func openVideoFile(path string, fallbackFPS float64) (grabber, error) {
	// Stat first: a clear "no such file" beats OpenCV's silent failure.
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	// FFmpeg alone: with CAP_ANY a file FFmpeg refuses goes on to GStreamer
	// and the image-sequence reader, which fail loudly on stderr.
	vc, err := gocv.VideoCaptureFileWithAPI(path, gocv.VideoCaptureFFmpeg)
	if err != nil || !vc.IsOpened() {
		vc.Close()
		return nil, fmt.Errorf("open %s: OpenCV cannot read it as a video", path)
	}
	return newVideoGrabber(vc, "file", fallbackFPS), nil
}

// Stream decoders: "auto" reads MJPEG over HTTP in Go (openMJPEG) and
// everything else through FFmpeg; "ffmpeg" sends HTTP to FFmpeg too.
const (
	decoderAuto   = "auto"
	decoderFFmpeg = "ffmpeg"
)

// streamDecoder is the decoder streams use; tests set "ffmpeg" to reproduce
// what FFmpeg does with a stream.
var streamDecoder = decoderAuto

// openNetStream opens a network stream with the decoder that suits it.
func openNetStream(spec Spec, idle time.Duration, decoder string) (grabber, error) {
	if decoder != decoderFFmpeg && isHTTP(spec.URL) {
		g, err := openMJPEG(spec, idle)
		if !errors.Is(err, errNotMultipart) {
			if err != nil {
				return nil, err
			}
			return g, nil
		}
		// Not MJPEG (or digest authentication): FFmpeg may read it.
	}
	return openStream(spec)
}

// mjpegInProcess: an MJPEG-over-HTTP stream is read in this process even
// when FFmpeg-backed streams go to a worker (tests turn it off to run the Go
// reader in a worker).
var mjpegInProcess = true

// openNetStreamIsolated is openNetStream with FFmpeg in a capture worker
// process when UseWorker set one. MJPEG over HTTP stays in this process:
// each frame is a JPEG decoded on its own by libjpeg after its header's size
// was checked, no decoder state carries from frame to frame, and a worker
// would cost a frame copy and about 45 MB of private memory per camera.
func openNetStreamIsolated(spec Spec, cfg Config) (grabber, error) {
	w := captureWorker.Load()
	if w == nil {
		return openNetStream(spec, cfg.Stall, streamDecoder)
	}
	if !mjpegInProcess {
		return openWorker(*w, spec, cfg, streamDecoder)
	}
	if streamDecoder != decoderFFmpeg && isHTTP(spec.URL) {
		g, err := openMJPEG(spec, cfg.Stall)
		if !errors.Is(err, errNotMultipart) {
			if err != nil {
				return nil, err
			}
			return g, nil
		}
	}
	return openWorker(*w, spec, cfg, decoderFFmpeg)
}

func isHTTP(u string) bool {
	scheme, _, _ := strings.Cut(u, "://")
	scheme = strings.ToLower(scheme)
	return scheme == "http" || scheme == "https"
}

func openStream(spec Spec) (grabber, error) {
	vc, err := gocv.VideoCaptureFileWithAPI(spec.URL, gocv.VideoCaptureFFmpeg)
	if err != nil || !vc.IsOpened() {
		vc.Close()
		return nil, fmt.Errorf("open %s: no stream (FFmpeg could not connect or read it)", spec)
	}
	return newVideoGrabber(vc, "stream", 0), nil
}

func openDevice(spec Spec, cfg Config) (grabber, error) {
	if _, err := os.Stat(spec.Path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no such device (unplugged?)", spec.Path)
	} else if err != nil {
		return nil, err
	}
	var vc *gocv.VideoCapture
	var err error
	if spec.Index >= 0 {
		vc, err = gocv.VideoCaptureDeviceWithAPI(spec.Index, gocv.VideoCaptureV4L2)
	} else {
		vc, err = gocv.VideoCaptureFileWithAPI(spec.Path, gocv.VideoCaptureV4L2)
	}
	if err != nil || !vc.IsOpened() {
		vc.Close()
		return nil, fmt.Errorf("open %s: V4L2 could not open it (busy, or not a capture device?)", spec.Path)
	}
	// The pixel format goes first: V4L2 drivers list sizes and rates per
	// format. A camera that does not offer one keeps its own, read back below.
	if cfg.FourCC != "" {
		vc.Set(gocv.VideoCaptureFOURCC, vc.ToCodec(cfg.FourCC))
	}
	vc.Set(gocv.VideoCaptureFrameWidth, float64(cfg.Width))
	vc.Set(gocv.VideoCaptureFrameHeight, float64(cfg.Height))
	vc.Set(gocv.VideoCaptureFPS, cfg.FPS)
	return newVideoGrabber(vc, "device", cfg.FPS), nil
}

// imageGrabber replays still images, each once per pass.
type imageGrabber struct {
	paths []string
	next  int
	fps   float64
}

func openImages(pattern string, fps float64) (grabber, error) {
	paths, err := listImages(pattern)
	if err != nil {
		return nil, err
	}
	return &imageGrabber{paths: paths, fps: fps}, nil
}

// listImages resolves a file, a folder or a glob to image files, sorted.
func listImages(pattern string) ([]string, error) {
	var paths []string
	switch st, err := os.Stat(pattern); {
	case err == nil && st.IsDir():
		entries, err := os.ReadDir(pattern)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			paths = append(paths, filepath.Join(pattern, e.Name()))
		}
	case err == nil:
		return []string{pattern}, nil
	case strings.ContainsAny(pattern, "*?["):
		if paths, err = filepath.Glob(pattern); err != nil {
			return nil, err
		}
	default:
		return nil, err
	}
	paths = slices.DeleteFunc(paths, func(p string) bool {
		return !imageExts[strings.ToLower(filepath.Ext(p))]
	})
	if len(paths) == 0 {
		return nil, fmt.Errorf("no images in %s", pattern)
	}
	slices.Sort(paths)
	return paths, nil
}

func (g *imageGrabber) grab(dst *gocv.Mat) error {
	if g.next == len(g.paths) {
		return io.EOF
	}
	p := g.paths[g.next]
	g.next++
	img := gocv.IMRead(p, gocv.IMReadColor)
	defer img.Close()
	if img.Empty() {
		if _, err := os.Stat(p); err != nil {
			return err
		}
		return fmt.Errorf("%s: not a readable image", p)
	}
	img.CopyTo(dst)
	return nil
}

func (g *imageGrabber) info() (float64, string) { return g.fps, "" }
func (g *imageGrabber) close()                  {}
