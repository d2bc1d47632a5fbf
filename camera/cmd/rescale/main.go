// Command rescale re-encodes a video at another size as MJPG, the format USB
// cameras send: `make bench-video` makes a 1280x720 street scene from
// opencv-doc's vtest.avi for `sightd bench`.
package main

import (
	"flag"
	"fmt"
	"image"
	"os"

	"gocv.io/x/gocv"
)

func main() {
	in := flag.String("i", "", "input video")
	out := flag.String("o", "", "output .avi (MJPG)")
	w := flag.Int("width", 1280, "width")
	h := flag.Int("height", 720, "height")
	flag.Parse()
	if err := rescale(*in, *out, image.Pt(*w, *h)); err != nil {
		fmt.Fprintln(os.Stderr, "rescale:", err)
		os.Exit(1)
	}
}

func rescale(in, out string, size image.Point) error {
	src, err := gocv.VideoCaptureFile(in)
	if err != nil {
		return err
	}
	defer src.Close()
	fps := src.Get(gocv.VideoCaptureFPS)
	if fps <= 0 {
		fps = 10
	}
	dst, err := gocv.VideoWriterFile(out, "MJPG", fps, size.X, size.Y, true)
	if err != nil {
		return err
	}
	defer dst.Close()
	frame, scaled := gocv.NewMat(), gocv.NewMat()
	defer frame.Close()
	defer scaled.Close()
	n := 0
	for src.Read(&frame) && !frame.Empty() {
		gocv.Resize(frame, &scaled, size, 0, 0, gocv.InterpolationLinear)
		if err := dst.Write(scaled); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no frame read from %s", in)
	}
	fmt.Printf("wrote %s: %d frames, %dx%d MJPG at %.0f fps\n", out, n, size.X, size.Y, fps)
	return nil
}
