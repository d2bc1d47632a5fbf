package camera

import (
	"fmt"
	"image"
	"io"
	"os"
	"testing"
	"time"

	"gocv.io/x/gocv"
)

// benchFrame is a real photo scaled to size.
func benchFrame(b *testing.B, size image.Point) gocv.Mat {
	img := gocv.IMRead(opencvData(b, "fruits.jpg"), gocv.IMReadColor)
	defer img.Close()
	m := gocv.NewMat()
	gocv.Resize(img, &m, size, 0, 0, gocv.InterpolationLinear)
	b.Cleanup(func() { m.Close() })
	return m
}

// BenchmarkWorkerPipe is what a capture worker costs per frame: writing a
// raw BGR frame into a pipe (1 MiB, as openWorker sizes it) and reading it
// into the daemon's Mat, on two goroutines as on two processes.
func BenchmarkWorkerPipe(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dx%d", size.X, size.Y), func(b *testing.B) {
			frame := benchFrame(b, size)
			pr, pw, err := os.Pipe()
			if err != nil {
				b.Fatal(err)
			}
			defer pr.Close()
			setPipeSize(pw)
			done := make(chan error, 1)
			go func() {
				for range b.N {
					if err := writeFrame(pw, frame); err != nil {
						done <- err
						return
					}
				}
				done <- pw.Close()
			}()
			dst := gocv.NewMat()
			defer dst.Close()
			var info workerInfo
			b.SetBytes(int64(size.X * size.Y * 3))
			b.ResetTimer()
			for range b.N {
				if _, err := readMsg(pr, &dst, &info); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			if _, err := readMsg(pr, &dst, &info); err != io.EOF {
				b.Fatalf("after the last frame: %v", err)
			}
		})
	}
}

// BenchmarkStuckCheck is the stuck detector's cost per frame: a hash of
// the whole frame.
func BenchmarkStuckCheck(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dx%d", size.X, size.Y), func(b *testing.B) {
			frame := benchFrame(b, size)
			s := stuckDetector{after: time.Hour}
			t := time.Now()
			b.SetBytes(int64(size.X * size.Y * 3))
			for i := range b.N {
				if err := s.check(frame, t.Add(time.Duration(i))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeJPEG is the Go MJPEG path's decode of one frame: the SOF
// check and libjpeg through IMDecode, on real photos.
func BenchmarkDecodeJPEG(b *testing.B) {
	for _, name := range []string{"aero1.jpg", "aloeL.jpg"} {
		jpg, err := os.ReadFile(opencvData(b, name))
		if err != nil {
			b.Fatal(err)
		}
		w, h, err := jpegSize(jpg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%dx%d", w, h), func(b *testing.B) {
			dst := gocv.NewMat()
			defer func() { dst.Close() }()
			for range b.N {
				if err := decodeJPEG(jpg, &dst); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
