package camera

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"
)

// MJPEG over HTTP, read in Go: each part of the multipart/x-mixed-replace
// body is one JPEG, decoded on its own with gocv.IMDecode (libjpeg). There is
// no scaler and no decoder state carried from one frame to the next, so a
// camera that changes its frame size mid-stream just delivers frames of the
// new size. (Through OpenCV's FFmpeg backend the same stream made FFmpeg's
// scaler crash the process, or keep returning the old frame.)

const (
	// maxPartBytes bounds one part (a 4K JPEG is 1 to 3 MB).
	maxPartBytes = 16 << 20
	// maxFrameSide and maxFramePixels bound a frame's declared size, checked
	// in the JPEG header before anything is decoded: a 64k x 64k header would
	// otherwise make the decoder allocate 12 GB.
	maxFrameSide   = 8192
	maxFramePixels = 8192 * 4608
	// maxHeaderLines and maxSkipBytes bound what is read between parts.
	maxHeaderLines = 64
	maxSkipBytes   = 1 << 20
)

var (
	// ErrBadStream: the stream is not multipart, or a part is malformed.
	ErrBadStream = errors.New("bad MJPEG stream")
	// ErrBadFrame: a part is not a JPEG this reader decodes (or its size is
	// out of bounds).
	ErrBadFrame = errors.New("bad JPEG frame")
)

// multipartBoundary returns the boundary of a multipart/* Content-Type, and
// whether the type is multipart at all. Cameras disagree on whether the
// parameter carries the leading "--"; the reader accepts both.
func multipartBoundary(contentType string) (string, bool) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		// Some cameras send `multipart/x-mixed-replace;boundary=--my boundary`
		// unquoted; take what follows boundary= up to a ';'.
		low := strings.ToLower(contentType)
		if !strings.HasPrefix(low, "multipart/") {
			return "", false
		}
		if i := strings.Index(low, "boundary="); i >= 0 {
			b, _, _ := strings.Cut(contentType[i+len("boundary="):], ";")
			return strings.Trim(strings.TrimSpace(b), `"`), true
		}
		return "", true
	}
	if !strings.HasPrefix(mt, "multipart/") {
		return "", false
	}
	return params["boundary"], true
}

// partReader reads the parts of a multipart/x-mixed-replace stream. With a
// Content-Length header a part is read by its length; without one, up to
// the next boundary line.
type partReader struct {
	r        *bufio.Reader
	boundary string // without the leading "--"; "" until learnt
	buf      []byte
	// atPart: the boundary line of the next part was already read (the
	// previous part was delimited by it).
	atPart bool
}

func newPartReader(r io.Reader, boundary string) *partReader {
	return &partReader{r: bufio.NewReaderSize(r, 64<<10), boundary: strings.TrimPrefix(boundary, "--")}
}

// isBoundary says whether line (CRLF trimmed) is a delimiter: "--b" or the
// final "--b--"; with no boundary known, any line starting with "--" is, and
// teaches the reader the boundary.
func (p *partReader) isBoundary(line []byte) (ok, final bool) {
	line = bytes.TrimRight(line, " \t")
	if !bytes.HasPrefix(line, []byte("--")) {
		return false, false
	}
	rest := line[2:]
	if p.boundary == "" {
		if len(rest) == 0 || len(rest) > 200 {
			return false, false
		}
		p.boundary = string(bytes.TrimSuffix(rest, []byte("--")))
		return true, bytes.HasSuffix(rest, []byte("--")) && len(rest) > 2
	}
	b := []byte(p.boundary)
	switch {
	case bytes.Equal(rest, b):
		return true, false
	case len(rest) == len(b)+2 && bytes.HasPrefix(rest, b) && bytes.HasSuffix(rest, []byte("--")):
		return true, true
	}
	return false, false
}

// readLine reads one line (at most the buffer's size; a longer one comes
// back in pieces, flagged by more) without its line ending.
func (p *partReader) readLine() (line []byte, more bool, err error) {
	line, err = p.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return line, true, nil
	}
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, false, err
	}
	return bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r")), false, nil
}

// next returns the body of the next part with an image type (or no type).
// The slice is valid until the next call. io.EOF at the end of the stream.
func (p *partReader) next() ([]byte, error) {
	for {
		body, jpeg, err := p.part()
		if err != nil || jpeg {
			return body, err
		}
	}
}

func (p *partReader) part() (body []byte, image bool, err error) {
	if !p.atPart {
		skipped := 0
		for {
			line, more, err := p.readLine()
			if err != nil {
				return nil, false, err
			}
			skipped += len(line)
			if skipped > maxSkipBytes {
				return nil, false, fmt.Errorf("%w: no boundary in %d bytes", ErrBadStream, skipped)
			}
			if more {
				continue
			}
			if ok, final := p.isBoundary(line); ok {
				if final {
					return nil, false, io.EOF
				}
				break
			}
		}
	}
	p.atPart = false

	length, image := -1, true
	for n := 0; ; n++ {
		line, more, err := p.readLine()
		if err != nil {
			return nil, false, err
		}
		if more || n == maxHeaderLines {
			return nil, false, fmt.Errorf("%w: part header too long", ErrBadStream)
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return nil, false, fmt.Errorf("%w: part header line %q", ErrBadStream, truncate(line))
		}
		value = bytes.TrimSpace(value)
		switch strings.ToLower(string(bytes.TrimSpace(name))) {
		case "content-length":
			v, err := strconv.Atoi(string(value))
			if err != nil || v < 0 {
				return nil, false, fmt.Errorf("%w: Content-Length %q", ErrBadStream, truncate(value))
			}
			if v > maxPartBytes {
				return nil, false, fmt.Errorf("%w: a part of %d bytes (at most %d)", ErrBadFrame, v, maxPartBytes)
			}
			length = v
		case "content-type":
			t := strings.ToLower(string(value))
			image = t == "" || strings.HasPrefix(t, "image/")
		}
	}

	if length >= 0 {
		p.buf = growTo(p.buf, length)
		if _, err := io.ReadFull(p.r, p.buf); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, false, err
		}
		return p.buf, image, nil
	}
	// No length: the body runs to the next boundary line; the line break
	// before the boundary belongs to the delimiter.
	p.buf = p.buf[:0]
	for {
		line, err := p.r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, false, err
		}
		if err == nil { // a whole line: is it the boundary?
			trimmed := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
			if ok, final := p.isBoundary(trimmed); ok && (len(p.buf) == 0 || p.buf[len(p.buf)-1] == '\n') {
				p.buf = bytes.TrimSuffix(bytes.TrimSuffix(p.buf, []byte("\n")), []byte("\r"))
				p.atPart = !final
				return p.buf, image, nil
			}
		}
		if len(p.buf)+len(line) > maxPartBytes {
			return nil, false, fmt.Errorf("%w: a part of more than %d bytes", ErrBadFrame, maxPartBytes)
		}
		p.buf = append(p.buf, line...)
	}
}

func growTo(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n, n+n/4)
	}
	return b[:n]
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// jpegSize reads a JPEG's frame size from its SOF header without decoding
// it. It refuses data that is not a JPEG, a header that ends early, and a
// size outside 1..maxFrameSide per side or above maxFramePixels.
func jpegSize(b []byte) (w, h int, err error) {
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return 0, 0, fmt.Errorf("%w: no JPEG start marker", ErrBadFrame)
	}
	i := 2
	for {
		// Markers may be padded with any number of 0xFF.
		for i < len(b) && b[i] == 0xFF {
			i++
		}
		if i >= len(b) {
			return 0, 0, fmt.Errorf("%w: no frame header", ErrBadFrame)
		}
		if b[i-1] != 0xFF {
			return 0, 0, fmt.Errorf("%w: bad marker at byte %d", ErrBadFrame, i)
		}
		m := b[i]
		i++
		switch {
		case m == 0xD8 || m == 0x01 || m >= 0xD0 && m <= 0xD7: // no length
			continue
		case m == 0xD9 || m == 0xDA: // end, or scan data before any frame header
			return 0, 0, fmt.Errorf("%w: no frame header", ErrBadFrame)
		}
		if i+2 > len(b) {
			return 0, 0, fmt.Errorf("%w: truncated header", ErrBadFrame)
		}
		n := int(b[i])<<8 | int(b[i+1])
		if n < 2 || i+n > len(b) {
			return 0, 0, fmt.Errorf("%w: truncated header", ErrBadFrame)
		}
		// SOF0..SOF15 but DHT (C4), JPG (C8) and DAC (CC).
		if m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC {
			if n < 8 {
				return 0, 0, fmt.Errorf("%w: short frame header", ErrBadFrame)
			}
			h = int(b[i+3])<<8 | int(b[i+4])
			w = int(b[i+5])<<8 | int(b[i+6])
			if w < 1 || h < 1 || w > maxFrameSide || h > maxFrameSide || w*h > maxFramePixels {
				return 0, 0, fmt.Errorf("%w: %dx%d (at most %d per side, %d pixels)", ErrBadFrame, w, h, maxFrameSide, maxFramePixels)
			}
			return w, h, nil
		}
		i += n
	}
}
