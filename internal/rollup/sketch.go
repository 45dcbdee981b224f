package rollup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/store"
	"github.com/les-streams/les/internal/model"
)

// RelativeAccuracy is the relative error bound of Sketch quantiles.
const RelativeAccuracy = 0.01

// MaxBins bounds each of the positive and negative stores of a Sketch; past
// it the lowest-magnitude bins collapse into one. With 1% accuracy, 2048 bins
// span a ratio of about 6e17 between the smallest and largest magnitude, so
// collapsing does not happen for real telemetry.
const MaxBins = 2048

// Sketch is a mergeable quantile sketch: a DDSketch (sketches-go) with a
// logarithmic mapping of 1% relative accuracy, collapsing-lowest dense stores
// bounded to MaxBins bins for positive and negative values, a zero count, and
// exact count, sum, min and max. The zero value is not usable; use NewSketch.
//
// pos and neg are dd's own stores (the same objects, not copies): AddWeighted
// adds to them directly, without DDSketch's interface calls, exactly as
// DDSketch.AddWithCount does (the same mapping method and store method on
// the same values), so the bins, their encoding and every quantile are the
// same. NewSketch allocates the sketch, its DDSketch and both stores as one
// 256-byte object (sketchMem): one allocation instead of five, and a sample
// touches that object's lines and its bins rather than four separately
// allocated structs and a mapping per sketch.
type Sketch struct {
	dd                   *ddsketch.DDSketch
	pos, neg             *store.CollapsingLowestDenseStore
	count, sum, min, max float64
}

// sketchMem is a Sketch and the parts its pointers point to, allocated
// together; hot fields first (the Sketch, then the positive store).
type sketchMem struct {
	s        Sketch
	pos, neg store.CollapsingLowestDenseStore
	dd       ddsketch.DDSketch
}

// sketchMapping is the index mapping of every Sketch. It is immutable
// (sketches-go never changes a mapping), so the sketches share it: one
// mapping in cache instead of one per sketch. minIndexable and maxIndexable
// are its bounds, as DDSketch.AddWithCount reads them.
var (
	sketchMapping = newLogMapping()
	minIndexable  = sketchMapping.MinIndexableValue()
	maxIndexable  = sketchMapping.MaxIndexableValue()
)

func newLogMapping() *mapping.LogarithmicMapping {
	m, _ := mapping.NewLogarithmicMapping(RelativeAccuracy) // cannot fail for 0.01
	return m
}

func newMapping() mapping.IndexMapping { return sketchMapping }

// newSketchMem returns an empty sketch whose pointers point into one
// allocation.
func newSketchMem() *Sketch {
	m := &sketchMem{}
	m.pos = *store.NewCollapsingLowestDenseStore(MaxBins)
	m.neg = *store.NewCollapsingLowestDenseStore(MaxBins)
	m.dd = *ddsketch.NewDDSketch(sketchMapping, &m.pos, &m.neg)
	m.s = Sketch{dd: &m.dd, pos: &m.pos, neg: &m.neg, min: math.Inf(1), max: math.Inf(-1)}
	return &m.s
}

// NewSketch returns an empty sketch.
func NewSketch() *Sketch { return newSketchMem() }

// Add adds one finite value. Non-finite values are ignored: callers check
// model.IsFinite first and count what they refuse.
func (s *Sketch) Add(v float64) { s.AddWeighted(v, 1) }

// AddWeighted adds a finite value with a positive count (a centroid).
// Non-finite values and non-positive or non-finite counts are ignored.
func (s *Sketch) AddWeighted(v, count float64) {
	st, idx := binOf(v)
	s.addBin(v, count, st, idx)
}

// Where binOf puts a value: which of a sketch's stores, or the DDSketch
// itself (the zero bin, and values it refuses: NaN, too small or large a
// magnitude to index).
const (
	binDD int8 = iota
	binPos
	binNeg
)

// binOf returns the store a value is added to and its index there, as
// DDSketch.AddWithCount works them out (the same bounds, the same mapping
// method). It reads no sketch, so a caller can work it out for several
// samples before touching their sketches (Rollup.flushSamples).
func binOf(v float64) (st int8, idx int) {
	switch {
	case v > minIndexable && v <= maxIndexable:
		return binPos, sketchMapping.Index(v)
	case v < -minIndexable && v >= -maxIndexable:
		return binNeg, sketchMapping.Index(-v)
	}
	return binDD, 0
}

// addBin is AddWeighted of v, whose bin is st and idx (binOf(v)):
// DDSketch.AddWithCount (count > 0 here) without its interface calls.
func (s *Sketch) addBin(v, count float64, st int8, idx int) {
	if !(count > 0) || math.IsInf(count, 0) {
		return
	}
	switch st {
	case binPos:
		s.pos.AddWithCount(idx, count)
	case binNeg:
		s.neg.AddWithCount(idx, count)
	default:
		if s.dd.AddWithCount(v, count) != nil {
			return
		}
	}
	s.count += count
	s.sum += v * count
	if v < s.min {
		s.min = v
	}
	if v > s.max {
		s.max = v
	}
}

// Merge adds other's samples to s. other is unchanged.
func (s *Sketch) Merge(other *Sketch) {
	if other.count == 0 {
		return
	}
	_ = s.dd.MergeWith(other.dd) // same mapping by construction
	s.count += other.count
	s.sum += other.sum
	s.min = math.Min(s.min, other.min)
	s.max = math.Max(s.max, other.max)
}

// mergeCentroids adds a distribution's centroids (whose counts must sum to
// count) and takes its exact sum, min and max rather than the ones implied
// by the centroids (non-finite sum, min or max are derived from the
// centroids instead). It reports how many samples were added.
func (s *Sketch) mergeCentroids(cs []model.Centroid, sum, mn, mx float64) float64 {
	var n float64
	cmin, cmax := math.Inf(1), math.Inf(-1)
	for _, c := range cs {
		if c.Count > 0 && model.IsFinite(c.Count) && model.IsFinite(c.Value) && s.dd.AddWithCount(c.Value, c.Count) == nil {
			n += c.Count
			cmin = math.Min(cmin, c.Value)
			cmax = math.Max(cmax, c.Value)
		}
	}
	if n == 0 {
		return 0
	}
	s.count += n
	if !model.IsFinite(sum) {
		sum = 0
		for _, c := range cs {
			if c.Count > 0 && model.IsFinite(c.Count) && model.IsFinite(c.Value) {
				sum += c.Value * c.Count
			}
		}
	}
	s.sum += sum
	if !model.IsFinite(mn) {
		mn = cmin
	}
	if !model.IsFinite(mx) {
		mx = cmax
	}
	s.min = math.Min(s.min, mn)
	s.max = math.Max(s.max, mx)
	return n
}

// Count is the number of samples (sum of weights) added.
func (s *Sketch) Count() float64 { return s.count }

// Sum is the exact sum of the samples added.
func (s *Sketch) Sum() float64 { return s.sum }

// Min is the smallest sample added (+Inf when empty).
func (s *Sketch) Min() float64 { return s.min }

// Max is the largest sample added (-Inf when empty).
func (s *Sketch) Max() float64 { return s.max }

// Quantile returns the value at quantile q in [0,1] within 1% relative error
// of DDSketch's order statistic, clamped to [Min, Max]. With r = q*(n-1) and
// the samples sorted ascending as x[0..n-1], that statistic is x[floor(r)],
// except among negative values (x[ceil(r)] capped to the last negative),
// because DDSketch ranks negative values by descending magnitude. It returns NaN for an empty sketch or q outside [0,1].
func (s *Sketch) Quantile(q float64) float64 {
	v, err := s.dd.GetValueAtQuantile(q)
	if err != nil {
		return math.NaN()
	}
	return math.Max(s.min, math.Min(s.max, v))
}

// Centroids appends the sketch's bins to dst as (representative value,
// count) sorted by value and returns it. Adding them with AddWeighted to an
// empty sketch reproduces identical bins: each representative value maps
// back to its own bin (it lies half a bin inside it), which makes merging
// through the stream exact.
func (s *Sketch) Centroids(dst []model.Centroid) []model.Centroid {
	start := len(dst)
	s.dd.ForEach(func(v, c float64) bool {
		dst = append(dst, model.Centroid{Value: v, Count: c})
		return false
	})
	slices.SortFunc(dst[start:], func(a, b model.Centroid) int {
		switch {
		case a.Value < b.Value:
			return -1
		case a.Value > b.Value:
			return 1
		}
		return 0
	})
	return dst
}

// Reset empties the sketch, keeping its allocated bins.
func (s *Sketch) Reset() {
	s.dd.Clear()
	s.count, s.sum, s.min, s.max = 0, 0, math.Inf(1), math.Inf(-1)
}

const sketchVersion = 1

// MarshalBinary encodes the sketch: a version byte, count, sum, min and max
// as little-endian float64, then the sketches-go encoding of the bins
// (mapping omitted: it is fixed by RelativeAccuracy).
func (s *Sketch) MarshalBinary() ([]byte, error) {
	var body []byte
	return s.appendBinary(nil, &body), nil
}

// appendBinary appends MarshalBinary's encoding to b; *body is scratch
// space for the bins' encoding, kept by the caller for the next call.
func (s *Sketch) appendBinary(b []byte, body *[]byte) []byte {
	b = append(b, sketchVersion)
	for _, f := range [...]float64{s.count, s.sum, s.min, s.max} {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	}
	*body = (*body)[:0]
	s.dd.Encode(body, true)
	b = binary.AppendUvarint(b, uint64(len(*body)))
	return append(b, *body...)
}

var errSketch = errors.New("rollup: corrupt sketch encoding")

// UnmarshalBinary replaces s with the sketch encoded by MarshalBinary.
func (s *Sketch) UnmarshalBinary(b []byte) error {
	n, err := s.decode(b)
	if err != nil {
		return err
	}
	if n != len(b) {
		return fmt.Errorf("%w: %d trailing bytes", errSketch, len(b)-n)
	}
	return nil
}

// decode reads one encoded sketch from the start of b and returns how many
// bytes it used.
func (s *Sketch) decode(b []byte) (int, error) {
	if len(b) < 33 || b[0] != sketchVersion {
		return 0, errSketch
	}
	var f [4]float64
	for i := range f {
		f[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[1+8*i:]))
	}
	l, k := binary.Uvarint(b[33:])
	if k <= 0 || l > uint64(len(b)-33-k) {
		return 0, errSketch
	}
	body := b[33+k : 33+k+int(l)]
	// What ddsketch.DecodeDDSketch does (an empty sketch, then
	// DecodeAndMergeWith), into a sketch laid out as NewSketch's.
	ns := newSketchMem()
	if err := ns.dd.DecodeAndMergeWith(body); err != nil {
		return 0, fmt.Errorf("%w: %v", errSketch, err)
	}
	s.dd, s.pos, s.neg = ns.dd, ns.pos, ns.neg
	s.count, s.sum, s.min, s.max = f[0], f[1], f[2], f[3]
	return 33 + k + int(l), nil
}
