package camera

import (
	"errors"
	"image"
	"math"
)

// RegionKind says why a region is encoded.
type RegionKind uint8

const (
	// Full is the whole frame.
	Full RegionKind = iota + 1
	// Grid is one cell of the grid.
	Grid
	// MotionCrop is a padded square around moving things (at most as large
	// as the frame is tall).
	MotionCrop
)

func (k RegionKind) String() string {
	switch k {
	case Full:
		return "full"
	case Grid:
		return "grid"
	case MotionCrop:
		return "motion"
	}
	return "?"
}

// Region is a part of a frame to encode, in frame coordinates, so that a
// detection can say where it is.
type Region struct {
	Rect image.Rectangle
	Kind RegionKind
}

// GridConfig cuts the frame into Rows x Cols cells that overlap by a share of
// a cell, so that small objects in a wide view are seen at a useful size and
// one on a border is whole in at least one cell. Zero rows and columns: no
// grid.
type GridConfig struct {
	Rows    int     `yaml:"rows"`
	Cols    int     `yaml:"cols"`
	Overlap float64 `yaml:"overlap"`
}

// MotionConfig shapes the crops around motion boxes.
type MotionConfig struct {
	// Max crops per frame, largest first (0: none).
	Max int `yaml:"max"`
	// Pad grows a box by this share of its size on each side, for context.
	Pad float64 `yaml:"pad"`
	// MinSize is the smallest crop side in frame pixels: a tiny crop blown
	// up to the model's input is mostly blur.
	MinSize int `yaml:"min_size"`
}

// RegionsConfig says which regions of a passed frame are encoded.
type RegionsConfig struct {
	Full   bool         `yaml:"full"`
	Grid   GridConfig   `yaml:"grid"`
	Motion MotionConfig `yaml:"motion"`
}

// RegionsDefaults: the full frame and up to two motion crops, no grid.
func RegionsDefaults() RegionsConfig {
	return RegionsConfig{
		Full:   true,
		Grid:   GridConfig{Overlap: 0.25},
		Motion: MotionConfig{Max: 2, Pad: 0.25, MinSize: 96},
	}
}

// Validate names each bad field (grid.rows, motion.max, ...).
func (c RegionsConfig) Validate() error {
	var errs []error
	g := c.Grid
	if g.Rows < 0 || g.Rows > 8 {
		errs = append(errs, fieldErr("grid.rows", "%d: want 0..8", g.Rows))
	}
	if g.Cols < 0 || g.Cols > 8 {
		errs = append(errs, fieldErr("grid.cols", "%d: want 0..8", g.Cols))
	}
	if (g.Rows == 0) != (g.Cols == 0) {
		errs = append(errs, fieldErr("grid", "%dx%d: set both rows and cols, or neither", g.Rows, g.Cols))
	}
	if !(g.Overlap >= 0 && g.Overlap <= 0.75) {
		errs = append(errs, fieldErr("grid.overlap", "%v: want 0..0.75", g.Overlap))
	}
	m := c.Motion
	if m.Max < 0 || m.Max > 16 {
		errs = append(errs, fieldErr("motion.max", "%d: want 0..16", m.Max))
	}
	if !(m.Pad >= 0 && m.Pad <= 2) {
		errs = append(errs, fieldErr("motion.pad", "%v: want 0..2", m.Pad))
	}
	if m.MinSize < 0 || m.MinSize > 4096 {
		errs = append(errs, fieldErr("motion.min_size", "%d: want 0..4096", m.MinSize))
	}
	if !c.Full && g.Rows == 0 && m.Max == 0 {
		errs = append(errs, fieldErr("full", "no regions: enable full, a grid or motion crops"))
	}
	return errors.Join(errs...)
}

// Regions builds the regions of a frame. It keeps its scratch space, so
// steady-state calls do not allocate. Not safe for concurrent use.
type Regions struct {
	cfg   RegionsConfig
	crops []image.Rectangle
}

// NewRegions validates cfg.
func NewRegions(cfg RegionsConfig) (*Regions, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Regions{cfg: cfg, crops: make([]image.Rectangle, 0, maxBoxes)}, nil
}

// Build appends to dst[:0] the regions of a frame of size: the full frame,
// the grid cells, then the motion crops around boxes (from Gate.Check).
func (r *Regions) Build(dst []Region, size image.Point, boxes []image.Rectangle) []Region {
	dst = dst[:0]
	frame := image.Rectangle{Max: size}
	if frame.Empty() {
		return dst
	}
	if r.cfg.Full {
		dst = append(dst, Region{Rect: frame, Kind: Full})
	}
	dst = appendGrid(dst, size, r.cfg.Grid)
	if r.cfg.Motion.Max == 0 {
		return dst
	}
	r.crops = r.crops[:0]
	for _, b := range boxes {
		if b = b.Intersect(frame); !b.Empty() {
			r.crops = append(r.crops, squareAround(b, r.cfg.Motion.Pad, r.cfg.Motion.MinSize, size))
		}
		if len(r.crops) == cap(r.crops) {
			break
		}
	}
	r.crops = mergeOverlapping(r.crops, size)
	sortByArea(r.crops)
	for _, c := range r.crops[:min(len(r.crops), r.cfg.Motion.Max)] {
		dst = append(dst, Region{Rect: c, Kind: MotionCrop})
	}
	return dst
}

// appendGrid tiles the frame exactly: cells of equal size, the first at the
// top-left corner, the last at the bottom-right, neighbours sharing
// Overlap of a cell.
func appendGrid(dst []Region, size image.Point, g GridConfig) []Region {
	if g.Rows == 0 || g.Cols == 0 {
		return dst
	}
	cw := cellSize(size.X, g.Cols, g.Overlap)
	ch := cellSize(size.Y, g.Rows, g.Overlap)
	for i := range g.Rows {
		y := cellStart(size.Y, ch, g.Rows, i)
		for j := range g.Cols {
			x := cellStart(size.X, cw, g.Cols, j)
			dst = append(dst, Region{Rect: image.Rect(x, y, x+cw, y+ch), Kind: Grid})
		}
	}
	return dst
}

// cellSize solves n*c - (n-1)*overlap*c = total for the cell side c.
func cellSize(total, n int, overlap float64) int {
	return min(total, int(math.Ceil(float64(total)/(float64(n)-float64(n-1)*overlap))))
}

func cellStart(total, cell, n, i int) int {
	if n == 1 {
		return 0
	}
	return int(math.Round(float64(i) * float64(total-cell) / float64(n-1)))
}

// squareAround pads b by pad of its size on each side and makes it a square
// of at least minSize, centred on b and moved inside the frame. It stays
// square even when b is larger than the frame is tall: the model's centre
// crop would cut a wider region to a square anyway, and a square region is
// exactly what the model sees, so a detection's rectangle is true.
func squareAround(b image.Rectangle, pad float64, minSize int, size image.Point) image.Rectangle {
	side := int(math.Ceil(float64(max(b.Dx(), b.Dy())) * (1 + 2*pad)))
	side = min(max(side, minSize), size.X, size.Y)
	cx, cy := (b.Min.X+b.Max.X)/2, (b.Min.Y+b.Max.Y)/2
	x := clamp(cx-side/2, 0, size.X-side)
	y := clamp(cy-side/2, 0, size.Y-side)
	return image.Rect(x, y, x+side, y+side)
}

// mergeOverlapping replaces overlapping crops by the square around their
// union until none overlap, in place.
func mergeOverlapping(crops []image.Rectangle, size image.Point) []image.Rectangle {
	for merged := true; merged; {
		merged = false
		for i := 0; i < len(crops) && !merged; i++ {
			for j := i + 1; j < len(crops); j++ {
				if crops[i].Overlaps(crops[j]) {
					crops[i] = squareAround(crops[i].Union(crops[j]), 0, 0, size)
					crops[j] = crops[len(crops)-1]
					crops = crops[:len(crops)-1]
					merged = true
					break
				}
			}
		}
	}
	return crops
}

func clamp(v, lo, hi int) int { return max(lo, min(v, hi)) }

// Rects appends the rectangles of regions to dst[:0], as
// encoder.Image.Encode takes them.
func Rects(dst []image.Rectangle, regions []Region) []image.Rectangle {
	dst = dst[:0]
	for _, r := range regions {
		dst = append(dst, r.Rect)
	}
	return dst
}
