package camera

import (
	"errors"
	"fmt"
	"image"
	"strconv"
	"strings"
)

// ErrBadPolygon is wrapped by every mask polygon error.
var ErrBadPolygon = errors.New("bad polygon")

// Polygon limits: enough for any hand-drawn mask, small enough that a typo
// cannot make the gate draw something absurd.
const (
	maxPolygonPoints = 64
	maxCoordinate    = 16384
)

// ParsePolygon reads a mask polygon in frame coordinates: at least three
// "x,y" points separated by spaces, e.g. "0,0 640,0 640,120 0,200".
func ParsePolygon(s string) ([]image.Point, error) {
	fields := strings.Fields(s)
	if len(fields) < 3 {
		return nil, fmt.Errorf("%w: %q: want at least 3 points \"x,y x,y x,y\"", ErrBadPolygon, s)
	}
	if len(fields) > maxPolygonPoints {
		return nil, fmt.Errorf("%w: %d points, at most %d", ErrBadPolygon, len(fields), maxPolygonPoints)
	}
	pts := make([]image.Point, len(fields))
	for i, f := range fields {
		xs, ys, ok := strings.Cut(f, ",")
		if !ok {
			return nil, fmt.Errorf("%w: point %d %q: want x,y", ErrBadPolygon, i+1, f)
		}
		x, errX := coordinate(xs)
		y, errY := coordinate(ys)
		if err := errors.Join(errX, errY); err != nil {
			return nil, fmt.Errorf("%w: point %d %q: %w", ErrBadPolygon, i+1, f, err)
		}
		pts[i] = image.Pt(x, y)
	}
	if area2(pts) == 0 {
		return nil, fmt.Errorf("%w: %q encloses no area", ErrBadPolygon, s)
	}
	return pts, nil
}

func coordinate(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > maxCoordinate {
		return 0, fmt.Errorf("coordinate %q is not an integer in 0..%d", s, maxCoordinate)
	}
	return n, nil
}

// area2 is twice the polygon's signed area (shoelace formula).
func area2(pts []image.Point) int {
	a := 0
	for i, p := range pts {
		q := pts[(i+1)%len(pts)]
		a += p.X*q.Y - q.X*p.Y
	}
	return a
}
