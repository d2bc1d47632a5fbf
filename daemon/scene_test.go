package main

import (
	"image"
	"image/color"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"
)

// orangeBallVideo writes a synthetic video of our own into dir (the README's
// pictures must show no third-party data): a plain yard (sky, a wall, a
// lawn) that an orange ball rolls across from left to right, then a few
// seconds with nothing moving, at 10 frames/s, 640x360, MJPEG in AVI
// (OpenCV's own writer: no codec library needed).
func orangeBallVideo(t testing.TB, dir string) string {
	t.Helper()
	const w, h, fps = 640, 360, 10
	path := filepath.Join(dir, "orange-ball.avi")
	vw, err := gocv.VideoWriterFile(path, "MJPG", fps, w, h, true)
	if err != nil {
		t.Fatal(err)
	}
	defer vw.Close()
	if !vw.IsOpened() {
		t.Fatalf("%s: OpenCV cannot write MJPEG in AVI", path)
	}
	frame := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
	defer frame.Close()
	sky, wall, lawn := color.RGBA{R: 186, G: 206, B: 222, A: 255}, color.RGBA{R: 150, G: 146, B: 140, A: 255}, color.RGBA{R: 92, G: 128, B: 84, A: 255}
	ball := color.RGBA{R: 255, G: 140, B: 20, A: 255}
	const crossing, still = 8 * fps, 4 * fps // frames
	for i := 0; i < crossing+still; i++ {
		gocv.Rectangle(&frame, image.Rect(0, 0, w, 120), sky, -1)
		gocv.Rectangle(&frame, image.Rect(0, 120, w, 200), wall, -1)
		gocv.Rectangle(&frame, image.Rect(0, 200, w, h), lawn, -1)
		if i < crossing {
			x := -40 + (w+80)*i/crossing
			gocv.Circle(&frame, image.Pt(x, 270), 36, ball, -1)
		}
		if err := vw.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	return path
}
