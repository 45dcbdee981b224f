package otlp

import (
	"math"

	"github.com/les-streams/les/internal/model"
)

// Scale limits of OTLP exponential histograms.
const (
	MinScale = -10
	MaxScale = 20
)

// expoHist is an OTLP exponential histogram built from centroids. Its
// slices are scratch space of the encoder, reused by the next build.
type expoHist struct {
	scale          int32
	zero           uint64
	count          uint64
	posOff, negOff int32
	pos, neg       []uint64

	// scratch
	idx    []int64   // bucket index at maxScale of each valid centroid (0 for zero)
	counts []float64 // per-bucket counts before rounding
}

// bucketIndex returns the index of the bucket holding v > 0 at scale: the
// i with base^i < v <= base^(i+1), base = 2^(2^-scale) (the OTLP
// definition: buckets are upper-inclusive). Exact powers of two land on
// the bucket they close, computed from the exponent, not a logarithm.
func bucketIndex(v float64, scale int) int64 {
	frac, exp := math.Frexp(v) // v = frac * 2^exp, frac in [0.5, 1)
	if frac == 0.5 {
		// v = 2^(exp-1): the upper bound of bucket ((exp-1) << scale) - 1.
		e := int64(exp - 1)
		if scale >= 0 {
			return e<<scale - 1
		}
		return (e - 1) >> -scale
	}
	if scale <= 0 {
		// base-2 exponent e with 2^e < v < 2^(e+1) is exp-1; at scale 0
		// the bucket is e; lower scales merge 2^-scale of them.
		return int64(exp-1) >> -scale
	}
	// ceil(log2(v) * 2^scale) - 1; log2 of a value that is not a power of
	// two is never an integer, so floor is the same.
	return int64(math.Floor(math.Log2(v) * math.Ldexp(1, scale)))
}

// build fills h from the centroids (sorted or not): each centroid's
// count goes to the bucket holding its value, at the highest scale not
// above maxScale at which the positive and the negative buckets each span
// at most maxBuckets indexes. Value 0 goes to the zero bucket (threshold
// 0). Counts are rounded so that each bucket array's running total is the
// rounded running total of the centroid counts (exact for integer counts).
// Centroids with a non-finite value or a count that is not finite and
// positive are skipped. build reports false if no centroid is left.
func (h *expoHist) build(cs []model.Centroid, maxScale, maxBuckets int) bool {
	h.idx = h.idx[:0]
	var zero float64
	loP, hiP := int64(math.MaxInt64), int64(math.MinInt64)
	loN, hiN := loP, hiP
	valid := 0
	for _, c := range cs {
		if !model.IsFinite(c.Value) || !(c.Count > 0) || math.IsInf(c.Count, 1) {
			h.idx = append(h.idx, 0)
			continue
		}
		valid++
		switch {
		case c.Value > 0:
			i := bucketIndex(c.Value, maxScale)
			loP, hiP = min(loP, i), max(hiP, i)
			h.idx = append(h.idx, i)
		case c.Value < 0:
			i := bucketIndex(-c.Value, maxScale)
			loN, hiN = min(loN, i), max(hiN, i)
			h.idx = append(h.idx, i)
		default:
			zero += c.Count
			h.idx = append(h.idx, 0)
		}
	}
	if valid == 0 {
		return false
	}
	// Lower the scale until both spans fit; at MinScale every finite value
	// fits in a handful of buckets.
	d := 0
	fits := func(lo, hi int64) bool { return lo > hi || (hi>>d)-(lo>>d)+1 <= int64(maxBuckets) }
	for maxScale-d > MinScale && !(fits(loP, hiP) && fits(loN, hiN)) {
		d++
	}
	h.scale = int32(maxScale - d)
	h.zero = uint64(math.Round(zero))
	h.pos, h.posOff = h.fill(h.pos, cs, 1, loP, hiP, d)
	h.neg, h.negOff = h.fill(h.neg, cs, -1, loN, hiN, d)
	h.count = h.zero
	for _, n := range h.pos {
		h.count += n
	}
	for _, n := range h.neg {
		h.count += n
	}
	return true
}

// fill returns the bucket counts of the centroids of one sign and the
// offset of the first bucket.
func (h *expoHist) fill(dst []uint64, cs []model.Centroid, sign float64, lo, hi int64, d int) ([]uint64, int32) {
	dst = dst[:0]
	if lo > hi {
		return dst, 0
	}
	off := lo >> d
	n := int((hi >> d) - off + 1)
	if cap(h.counts) < n {
		h.counts = make([]float64, n)
	} else {
		h.counts = h.counts[:n]
		clear(h.counts)
	}
	for i, c := range cs {
		if !model.IsFinite(c.Value) || !(c.Count > 0) || math.IsInf(c.Count, 1) || c.Value*sign <= 0 {
			continue
		}
		h.counts[(h.idx[i]>>d)-off] += c.Count
	}
	var run float64
	var done uint64
	for _, c := range h.counts {
		run += c
		r := uint64(math.Round(run))
		dst = append(dst, r-done)
		done = r
	}
	return dst, int32(off)
}
