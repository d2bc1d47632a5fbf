package camera

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// The seed corpus is in testdata/fuzz/<FuzzName>/; run with
//
//	go test -run '^$' -fuzz FuzzParseSource ./camera

func FuzzParseSource(f *testing.F) {
	f.Add("/dev/video0")
	f.Add("rtsp://u:p@h/x")
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSource(s)
		if err != nil {
			if !errors.Is(err, ErrBadSource) {
				t.Fatalf("ParseSource(%q): %v does not wrap ErrBadSource", s, err)
			}
			return
		}
		if again, err2 := ParseSource(s); err2 != nil || again != sp {
			t.Fatalf("ParseSource(%q) is not deterministic", s)
		}
		switch sp.Kind {
		case Device:
			if !strings.HasPrefix(sp.Path, "/dev/") || sp.Index < -1 || sp.Index > 9999 {
				t.Fatalf("ParseSource(%q) = %+v", s, sp)
			}
		case Stream:
			u, err := url.Parse(sp.URL)
			if err != nil || u.Host == "" || sp.URL != s {
				t.Fatalf("ParseSource(%q) = %+v, a stream without a host", s, sp)
			}
			if pw, ok := u.User.Password(); ok && len(pw) > 5 && strings.Contains(sp.String(), pw) {
				t.Fatalf("String() of %q shows the password", s)
			}
		case Video, Images:
			if sp.Path == "" {
				t.Fatalf("ParseSource(%q) = %+v, no path", s, sp)
			}
		default:
			t.Fatalf("ParseSource(%q) = kind %v", s, sp.Kind)
		}
	})
}

func FuzzParsePolygon(f *testing.F) {
	f.Add("0,0 640,0 640,120 0,200")
	f.Fuzz(func(t *testing.T, s string) {
		pts, err := ParsePolygon(s)
		if err != nil {
			if !errors.Is(err, ErrBadPolygon) {
				t.Fatalf("ParsePolygon(%q): %v does not wrap ErrBadPolygon", s, err)
			}
			return
		}
		if len(pts) < 3 || len(pts) > maxPolygonPoints || area2(pts) == 0 {
			t.Fatalf("ParsePolygon(%q) = %v", s, pts)
		}
		parts := make([]string, len(pts))
		for i, p := range pts {
			if p.X < 0 || p.Y < 0 || p.X > maxCoordinate || p.Y > maxCoordinate {
				t.Fatalf("ParsePolygon(%q): point %v out of range", s, p)
			}
			parts[i] = fmt.Sprintf("%d,%d", p.X, p.Y)
		}
		again, err := ParsePolygon(strings.Join(parts, " "))
		if err != nil || !slices.Equal(again, pts) {
			t.Fatalf("ParsePolygon(%q) = %v does not round-trip: %v, %v", s, pts, again, err)
		}
	})
}
