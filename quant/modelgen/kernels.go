package modelgen

import "math"

// geom describes CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED alike: a
// fully connected layer is a 1x1 convolution over a 1x1 image with batch N.
type geom struct {
	depthwise            bool
	n, h, w, c           int // input
	kh, kw               int // filter
	oh, ow, oc           int // output
	strideH, strideW     int
	padTop, padLeft      int
	filterStride, window int // elements per output channel of the filter; kh*kw
}

func newGeom(op *Op) geom {
	in, w, out := op.Inputs[0].Shape, op.Inputs[1].Shape, op.Outputs[0].Shape
	var g geom
	if op.Kind == OpFullyConnected {
		g = geom{n: in[0], h: 1, w: 1, c: in[1], kh: 1, kw: 1, oh: 1, ow: 1, oc: w[0], strideH: 1, strideW: 1}
	} else {
		g = geom{
			depthwise: op.Kind == OpDepthwiseConv2D,
			n:         in[0], h: in[1], w: in[2], c: in[3],
			kh: w[1], kw: w[2],
			oh: out[1], ow: out[2], oc: out[3],
			strideH: op.StrideH, strideW: op.StrideW,
		}
		g.padTop = convPadBefore(g.h, g.kh, g.strideH, g.oh, op.Padding)
		g.padLeft = convPadBefore(g.w, g.kw, g.strideW, g.ow, op.Padding)
	}
	g.window = g.kh * g.kw
	g.filterStride = g.window * g.c
	return g
}

// tap is one filter position inside the image: the offset of its input pixel
// and the filter position ky*kw+kx. Positions in the padding contribute
// nothing (zero in float, the zero point in int8) and are skipped.
type tap struct{ in, k int }

// forEachPixel calls f for every output pixel with the offset of its first
// channel and the filter taps that fall inside the image.
func (g geom) forEachPixel(f func(out int, taps []tap)) {
	taps := make([]tap, 0, g.window)
	out := 0
	for n := 0; n < g.n; n++ {
		for oy := 0; oy < g.oh; oy++ {
			for ox := 0; ox < g.ow; ox++ {
				taps = taps[:0]
				for ky := 0; ky < g.kh; ky++ {
					iy := oy*g.strideH - g.padTop + ky
					if iy < 0 || iy >= g.h {
						continue
					}
					for kx := 0; kx < g.kw; kx++ {
						ix := ox*g.strideW - g.padLeft + kx
						if ix < 0 || ix >= g.w {
							continue
						}
						taps = append(taps, tap{((n*g.h+iy)*g.w + ix) * g.c, ky*g.kw + kx})
					}
				}
				f(out, taps)
				out += g.oc
			}
		}
	}
}

func (g geom) runFloat(x, w, bias []float32, act Activation) []float32 {
	out := make([]float32, g.n*g.oh*g.ow*g.oc)
	acc := make([]float32, g.oc)
	g.forEachPixel(func(o int, taps []tap) {
		clear(acc)
		for _, t := range taps {
			xs := x[t.in : t.in+g.c]
			if g.depthwise {
				ws := w[t.k*g.c : (t.k+1)*g.c]
				for ch := range acc {
					acc[ch] += xs[ch] * ws[ch]
				}
				continue
			}
			for oc := range acc {
				off := oc*g.filterStride + t.k*g.c
				acc[oc] += dot(xs, w[off:off+g.c])
			}
		}
		for oc, a := range acc {
			out[o+oc] = actFloat(a+bias[oc], act)
		}
	})
	return out
}

// runInt8 accumulates (x - input_zero_point) * w in int32 on top of the bias,
// requantizes per channel and clamps to the activation range.
func (g geom) runInt8(op *Op, xq, wq []int8, bias []int32) []int8 {
	in, w, outT := op.Inputs[0], op.Inputs[1], op.Outputs[0]
	zpIn := in.Quant.zp0()
	x := make([]int32, len(xq))
	for i, v := range xq {
		x[i] = int32(v) - zpIn
	}
	wt := convertInts[int32](wq)
	rq := make([]requant, g.oc)
	for c := range rq {
		ws := w.Quant.Scale[0]
		if len(w.Quant.Scale) > 1 {
			ws = w.Quant.Scale[c]
		}
		rq[c] = newRequant(float64(in.Quant.scale0()) * float64(ws) / float64(outT.Quant.scale0()))
	}
	zpOut := outT.Quant.zp0()
	lo, hi := actRange(op.Act, Int8, outT.Quant.scale0(), zpOut)

	out := make([]int8, g.n*g.oh*g.ow*g.oc)
	acc := make([]int32, g.oc)
	g.forEachPixel(func(o int, taps []tap) {
		copy(acc, bias)
		for _, t := range taps {
			xs := x[t.in : t.in+g.c]
			if g.depthwise {
				ws := wt[t.k*g.c : (t.k+1)*g.c]
				for ch := range acc {
					acc[ch] += xs[ch] * ws[ch]
				}
				continue
			}
			for oc := range acc {
				off := oc*g.filterStride + t.k*g.c
				acc[oc] += dot(xs, wt[off:off+g.c])
			}
		}
		for oc, a := range acc {
			out[o+oc] = int8(clamp32(rq[oc].apply(a)+zpOut, lo, hi))
		}
	})
	return out
}

// dot is unrolled by four: the reference evaluates 300 M MACs models and
// this keeps it well under a second. The summation order differs from
// TFLite's anyway, so float results agree to rounding, not bit for bit.
func dot[T float32 | int32](a, b []T) T {
	b = b[:len(a)]
	var s0, s1, s2, s3 T
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func addFloat(a, b []float32, act Activation) []float32 {
	out := make([]float32, len(a))
	for i := range a {
		out[i] = actFloat(a[i]+b[i], act)
	}
	return out
}

// addInt8 is TFLite's int8 ADD: both inputs are rescaled to a common scale
// (twice the larger input scale) with 20 bits of headroom, added, and
// rescaled to the output.
func addInt8(op *Op, a, b []int8) []int8 {
	const leftShift = 20
	qa, qb, qo := op.Inputs[0].Quant, op.Inputs[1].Quant, op.Outputs[0].Quant
	twiceMax := 2 * float64(max(qa.scale0(), qb.scale0()))
	ra := newRequant(float64(qa.scale0()) / twiceMax)
	rb := newRequant(float64(qb.scale0()) / twiceMax)
	ro := newRequant(twiceMax / (float64(int64(1)<<leftShift) * float64(qo.scale0())))
	lo, hi := actRange(op.Act, Int8, qo.scale0(), qo.zp0())
	out := make([]int8, len(a))
	for i := range a {
		sa := ra.apply((int32(a[i]) - qa.zp0()) << leftShift)
		sb := rb.apply((int32(b[i]) - qb.zp0()) << leftShift)
		out[i] = int8(clamp32(ro.apply(sa+sb)+qo.zp0(), lo, hi))
	}
	return out
}

// mean averages over op's axes. int8 follows TFLite's QuantizedMeanOrSum:
// an int32 sum of the raw values, then a float rescale and rounding.
func mean(op *Op, v any) any {
	in, out := op.Inputs[0], op.Outputs[0]
	idx := reducedIndex(in.Shape, op.Inputs[1].Data.([]int32))
	count := in.Len() / out.Len()
	switch x := v.(type) {
	case []float32:
		sum := make([]float32, out.Len())
		for i, o := range idx {
			sum[o] += x[i]
		}
		for o := range sum {
			sum[o] /= float32(count)
		}
		return sum
	case []int8:
		sum := make([]int32, out.Len())
		for i, o := range idx {
			sum[o] += int32(x[i])
		}
		scale := in.Quant.scale0() / out.Quant.scale0()
		bias := float32(-in.Quant.zp0()) * scale
		zp := float32(out.Quant.zp0())
		res := make([]int8, len(sum))
		for o, s := range sum {
			m := float32(s) / float32(count)
			// The float32 conversions stop the compiler from fusing a*b+c.
			r := roundAway(float32(m*scale)+bias) + zp
			res[o] = int8(min(max(r, math.MinInt8), math.MaxInt8))
		}
		return res
	}
	panic("modelgen: mean of unsupported data") // Validate rules this out
}

// reducedIndex maps each input element (row-major) to its output element
// once the axes are dropped.
func reducedIndex(shape []int, axes []int32) []int {
	keep := make([]bool, len(shape))
	for i := range keep {
		keep[i] = true
	}
	for _, a := range axes {
		keep[a] = false
	}
	idx := make([]int, numElements(shape))
	coord := make([]int, len(shape))
	for i := range idx {
		o := 0
		for d, c := range coord {
			if keep[d] {
				o = o*shape[d] + c
			}
		}
		idx[i] = o
		for d := len(coord) - 1; d >= 0; d-- { // next coordinate, row-major
			if coord[d]++; coord[d] < shape[d] {
				break
			}
			coord[d] = 0
		}
	}
	return idx
}

// l2NormFloat divides each row by its L2 norm (at least 1e-6, as TFLite).
func l2NormFloat(x []float32, depth int) []float32 {
	out := make([]float32, len(x))
	for r := 0; r < len(x); r += depth {
		var sq float32
		for _, v := range x[r : r+depth] {
			sq += v * v
		}
		norm := max(float32(math.Sqrt(float64(sq))), 1e-6)
		for i := r; i < r+depth; i++ {
			out[i] = x[i] / norm
		}
	}
	return out
}

// l2NormInt8 writes round(128 * d / |d|) with d = q - zero point: the output
// scale is 1/128 with zero point 0.
func l2NormInt8(x []int8, depth int, zp int32) []int8 {
	out := make([]int8, len(x))
	for r := 0; r < len(x); r += depth {
		var sq int64
		for _, v := range x[r : r+depth] {
			d := int64(v) - int64(zp)
			sq += d * d
		}
		if sq == 0 {
			continue
		}
		norm := math.Sqrt(float64(sq))
		for i := r; i < r+depth; i++ {
			q := math.Round(128 * float64(int32(x[i])-zp) / norm)
			out[i] = int8(min(max(q, math.MinInt8), math.MaxInt8))
		}
	}
	return out
}
