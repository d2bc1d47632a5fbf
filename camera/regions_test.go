package camera

import (
	"fmt"
	"image"
	"math"
	"slices"
	"testing"
)

func newTestRegions(t *testing.T, cfg RegionsConfig) *Regions {
	t.Helper()
	r, err := NewRegions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestGridTilesTheFrame(t *testing.T) {
	for _, tc := range []struct {
		size    image.Point
		rows    int
		cols    int
		overlap float64
	}{
		{image.Pt(640, 480), 1, 1, 0},
		{image.Pt(640, 480), 2, 2, 0},
		{image.Pt(1280, 720), 2, 3, 0.25},
		{image.Pt(1280, 720), 3, 4, 0.5},
		{image.Pt(768, 576), 1, 3, 0.2},
		{image.Pt(101, 77), 3, 3, 0.1}, // sizes that do not divide evenly
	} {
		name := fmt.Sprintf("%dx%d_%dx%d_%.2f", tc.size.X, tc.size.Y, tc.rows, tc.cols, tc.overlap)
		t.Run(name, func(t *testing.T) {
			cfg := RegionsDefaults()
			cfg.Full, cfg.Motion.Max = false, 0
			cfg.Grid = GridConfig{Rows: tc.rows, Cols: tc.cols, Overlap: tc.overlap}
			regions := newTestRegions(t, cfg).Build(nil, tc.size, nil)
			if len(regions) != tc.rows*tc.cols {
				t.Fatalf("%d regions, want %d", len(regions), tc.rows*tc.cols)
			}
			frame := image.Rectangle{Max: tc.size}
			cell := regions[0].Rect.Size()
			covered := make([]bool, tc.size.X*tc.size.Y)
			for i, r := range regions {
				if r.Kind != Grid || !r.Rect.In(frame) || r.Rect.Size() != cell {
					t.Fatalf("cell %d: %v %v, want a grid cell of %v inside %v", i, r.Kind, r.Rect, cell, frame)
				}
				// Row-major: rows, then columns.
				row, col := i/tc.cols, i%tc.cols
				if col > 0 {
					left := regions[i-1].Rect
					overlap := float64(left.Max.X-r.Rect.Min.X) / float64(cell.X)
					if math.Abs(overlap-tc.overlap) > 0.02+1/float64(cell.X) {
						t.Fatalf("cells %d and %d overlap by %.3f of a cell, want %.2f", i-1, i, overlap, tc.overlap)
					}
				}
				if row > 0 && regions[i-tc.cols].Rect.Max.Y < r.Rect.Min.Y {
					t.Fatalf("gap between rows above cell %d", i)
				}
				for y := r.Rect.Min.Y; y < r.Rect.Max.Y; y++ {
					for x := r.Rect.Min.X; x < r.Rect.Max.X; x++ {
						covered[y*tc.size.X+x] = true
					}
				}
			}
			if i := slices.Index(covered, false); i >= 0 {
				t.Fatalf("pixel (%d,%d) is in no cell", i%tc.size.X, i/tc.size.X)
			}
		})
	}
}

func TestRegionsOrderAndKinds(t *testing.T) {
	cfg := RegionsDefaults()
	cfg.Grid = GridConfig{Rows: 2, Cols: 2, Overlap: 0.25}
	size := image.Pt(1280, 720)
	boxes := []image.Rectangle{image.Rect(100, 100, 160, 220), image.Rect(900, 400, 960, 440)}
	regions := newTestRegions(t, cfg).Build(nil, size, boxes)
	kinds := ""
	for _, r := range regions {
		kinds += r.Kind.String()[:1]
	}
	if kinds != "fggggmm" {
		t.Fatalf("kinds %q, want full, 4 grid cells, 2 motion crops", kinds)
	}
	if regions[0].Rect != (image.Rectangle{Max: size}) {
		t.Fatalf("full region %v", regions[0].Rect)
	}
	// Padded squares around each box: 120 tall * 1.5 = 180; 60 wide * 1.5 = 90, at least 96.
	if got := regions[5].Rect; got.Dx() != 180 || got.Dy() != 180 || !boxes[0].In(got) {
		t.Fatalf("crop around %v = %v, want a 180-pixel square around it", boxes[0], got)
	}
	if got := regions[6].Rect; got.Dx() != 96 || got.Dy() != 96 || !boxes[1].In(got) {
		t.Fatalf("crop around %v = %v, want a 96-pixel square around it", boxes[1], got)
	}
}

func TestMotionCrops(t *testing.T) {
	size := image.Pt(640, 480)
	frame := image.Rectangle{Max: size}
	for _, tc := range []struct {
		name  string
		boxes []image.Rectangle
		max   int
		want  []image.Rectangle
	}{
		{"none", nil, 2, nil},
		{"in the corner, moved inside the frame", []image.Rectangle{image.Rect(0, 0, 40, 40)}, 2,
			[]image.Rectangle{image.Rect(0, 0, 96, 96)}},
		{"wider than the frame is tall: the largest square, centred", []image.Rectangle{image.Rect(0, 100, 600, 200)}, 2,
			[]image.Rectangle{image.Rect(60, 0, 540, 480)}},
		{"overlapping crops merge", []image.Rectangle{image.Rect(100, 100, 140, 140), image.Rect(150, 120, 190, 160)}, 2,
			[]image.Rectangle{image.Rect(72, 57, 218, 203)}}, // the square around two 96-pixel squares
		{"capped, largest first", []image.Rectangle{image.Rect(10, 10, 30, 30), image.Rect(300, 300, 400, 400), image.Rect(500, 10, 540, 50)}, 1,
			[]image.Rectangle{image.Rect(275, 275, 425, 425)}},
		{"boxes outside the frame are ignored", []image.Rectangle{image.Rect(700, 500, 800, 600)}, 2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := RegionsDefaults()
			cfg.Full, cfg.Motion.Max = false, tc.max
			regions := newTestRegions(t, cfg).Build(nil, size, tc.boxes)
			var got []image.Rectangle
			for _, r := range regions {
				if r.Kind != MotionCrop || !r.Rect.In(frame) {
					t.Fatalf("region %v %v", r.Kind, r.Rect)
				}
				got = append(got, r.Rect)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("crops %v, want %v", got, tc.want)
			}
			for i := range got {
				for j := i + 1; j < len(got); j++ {
					if got[i].Overlaps(got[j]) {
						t.Fatalf("crops %v and %v overlap", got[i], got[j])
					}
				}
			}
		})
	}
}

func TestRegionsDoNotAllocate(t *testing.T) {
	cfg := RegionsDefaults()
	cfg.Grid = GridConfig{Rows: 2, Cols: 3, Overlap: 0.2}
	rb := newTestRegions(t, cfg)
	boxes := []image.Rectangle{image.Rect(10, 10, 50, 90), image.Rect(40, 40, 100, 100), image.Rect(500, 300, 560, 400)}
	dst := rb.Build(nil, image.Pt(1280, 720), boxes)
	rects := Rects(nil, dst)
	if allocs := testing.AllocsPerRun(100, func() {
		dst = rb.Build(dst, image.Pt(1280, 720), boxes)
		rects = Rects(rects, dst)
	}); allocs != 0 {
		t.Fatalf("%v allocations per Build", allocs)
	}
	if len(rects) != len(dst) || rects[0] != dst[0].Rect {
		t.Fatalf("Rects = %v for %v", rects, dst)
	}
}
