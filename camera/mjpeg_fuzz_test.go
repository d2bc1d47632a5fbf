package camera

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"gocv.io/x/gocv"
)

// The seed corpora are in testdata/fuzz/<FuzzName>/; run with
//
//	go test -run '^$' -fuzz FuzzMJPEGParts ./camera
//	go test -run '^$' -fuzz FuzzJPEGDecode ./camera
//	go test -run '^$' -fuzz FuzzWorkerMessage ./camera

// FuzzMJPEGParts reads arbitrary bytes as a multipart/x-mixed-replace body:
// no panic, no part above maxPartBytes, only the reader's own errors, and a
// part written with or without Content-Length reads back unchanged.
func FuzzMJPEGParts(f *testing.F) {
	f.Add([]byte("--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 4\r\n\r\n\xff\xd8\xff\xd9\r\n--frame--\r\n"), "frame")
	f.Add([]byte("--frame\r\nContent-Type: image/jpeg\r\n\r\nabc\r\n--frame\r\n\r\nxyz\r\n--frame--"), "--frame")
	f.Add([]byte("--myboundary\nContent-Length: 3\n\nabc\n--myboundary\n"), "")
	f.Fuzz(func(t *testing.T, stream []byte, boundary string) {
		p := newPartReader(bytes.NewReader(stream), boundary)
		for range 1000 {
			b, err := p.next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) &&
					!errors.Is(err, ErrBadStream) && !errors.Is(err, ErrBadFrame) {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			if len(b) > maxPartBytes {
				t.Fatalf("a part of %d bytes", len(b))
			}
		}

		// Round trip: the fuzzed bytes as one part's body.
		body := stream
		for _, withLength := range []bool{true, false} {
			if !withLength && bytes.Contains(append([]byte("\n"), body...), []byte("\n--frame")) {
				continue // without a length, the boundary may not occur in the body
			}
			var s bytes.Buffer
			fmt.Fprintf(&s, "--frame\r\nContent-Type: image/jpeg\r\n")
			if withLength {
				fmt.Fprintf(&s, "Content-Length: %d\r\n", len(body))
			}
			fmt.Fprintf(&s, "\r\n%s\r\n--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 2\r\n\r\nok\r\n--frame--\r\n", body)
			p := newPartReader(&s, "frame")
			got, err := p.next()
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("length=%v: part %q, %v; want %q", withLength, got, err, body)
			}
			if got, err := p.next(); err != nil || string(got) != "ok" {
				t.Fatalf("length=%v: second part %q, %v", withLength, got, err)
			}
			if _, err := p.next(); !errors.Is(err, io.EOF) {
				t.Fatalf("length=%v: after the last part: %v, want io.EOF", withLength, err)
			}
		}
	})
}

// FuzzJPEGDecode: jpegSize never panics and bounds the size; what it lets
// through, OpenCV's decoder (libjpeg, in this process) decodes or refuses
// without crashing, and a decoded frame has the size the header said.
func FuzzJPEGDecode(f *testing.F) {
	m := gocv.NewMatWithSize(24, 40, gocv.MatTypeCV8UC3)
	m.SetTo(gocv.NewScalar(10, 200, 90, 0))
	buf, err := gocv.IMEncode(gocv.JPEGFileExt, m)
	m.Close()
	if err != nil {
		f.Fatal(err)
	}
	jpg := append([]byte(nil), buf.GetBytes()...)
	buf.Close()
	f.Add(jpg)
	f.Add(jpg[:len(jpg)/2])
	f.Add([]byte("\xff\xd8\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		w, h, err := jpegSize(b)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("jpegSize: %v does not wrap ErrBadFrame", err)
			}
			return
		}
		if w < 1 || h < 1 || w > maxFrameSide || h > maxFrameSide || w*h > maxFramePixels {
			t.Fatalf("jpegSize let %dx%d through", w, h)
		}
		if w*h > 1<<20 {
			return // decoding a large frame takes long; the bound is what matters
		}
		dst := gocv.NewMat()
		defer dst.Close()
		if err := decodeJPEG(b, &dst); err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("decodeJPEG: %v", err)
			}
			return
		}
		if dst.Cols() != w || dst.Rows() != h || dst.Type() != gocv.MatTypeCV8UC3 {
			t.Fatalf("decoded %dx%d type %v, header %dx%d", dst.Cols(), dst.Rows(), dst.Type(), w, h)
		}
	})
}

// FuzzWorkerMessage reads arbitrary bytes as a capture worker's output: no
// panic, frames only of the size their header gives, within the bounds.
func FuzzWorkerMessage(f *testing.F) {
	var s bytes.Buffer
	writeMsg(&s, msgInfo, 0, 0, []byte(`{"fps":5,"fourcc":"MJPG"}`))
	writeMsg(&s, msgFrame, 2, 1, []byte{1, 2, 3, 4, 5, 6})
	writeMsg(&s, msgError, 0, 0, []byte("the stream ended"))
	f.Add(s.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		dst := gocv.NewMat()
		defer func() { dst.Close() }()
		var info workerInfo
		for range 100 {
			kind, err := readMsg(r, &dst, &info)
			if err != nil {
				return
			}
			if kind == msgFrame {
				if dst.Cols() < 1 || dst.Rows() < 1 || dst.Cols()*dst.Rows() > maxFramePixels || dst.Type() != gocv.MatTypeCV8UC3 {
					t.Fatalf("a frame of %dx%d type %v", dst.Cols(), dst.Rows(), dst.Type())
				}
			}
		}
	})
}
