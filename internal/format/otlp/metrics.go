package otlp

import (
	"encoding/binary"
	"math"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/les-streams/les/internal/model"
)

// Metrics appends the points of md to dst: gauges and sums as
// model.Metric, histograms and exponential histograms as
// model.Distribution, summaries as points (see README.md). Each data point
// that cannot be mapped appends one model.Reject; a point that only sets
// the baseline of a cumulative series appends nothing. now (Unix ns)
// stands in for missing timestamps. Ownership: see Decoder.
func (d *Decoder) Metrics(dst *model.Batch, md pmetric.Metrics, now int64) {
	d.begin()
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		rm := rms.At(i)
		d.setResource(rm.Resource())
		sms := rm.ScopeMetrics()
		for j := range sms.Len() {
			sm := sms.At(j)
			d.setScope(sm.Scope())
			ms := sm.Metrics()
			for k := range ms.Len() {
				d.metric(dst, ms.At(k), now)
			}
		}
	}
}

// PointCount is the number of OTLP data points in md (what partial
// success counts), with a metric of no data counting as one.
func PointCount(md pmetric.Metrics) int {
	n := 0
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		sms := rms.At(i).ScopeMetrics()
		for j := range sms.Len() {
			ms := sms.At(j).Metrics()
			for k := range ms.Len() {
				n += max(1, points(ms.At(k)))
			}
		}
	}
	return n
}

func points(m pmetric.Metric) int {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		return m.Gauge().DataPoints().Len()
	case pmetric.MetricTypeSum:
		return m.Sum().DataPoints().Len()
	case pmetric.MetricTypeHistogram:
		return m.Histogram().DataPoints().Len()
	case pmetric.MetricTypeExponentialHistogram:
		return m.ExponentialHistogram().DataPoints().Len()
	case pmetric.MetricTypeSummary:
		return m.Summary().DataPoints().Len()
	}
	return 0
}

func timestamp(t pcommon.Timestamp, now int64) int64 {
	if t == 0 {
		return now
	}
	return int64(t)
}

func (d *Decoder) reject(dst *model.Batch, reason, name string, n int) {
	for range n {
		dst.Reject(reason, bytesOf(name))
	}
}

func (d *Decoder) metric(dst *model.Batch, m pmetric.Metric, now int64) {
	name := m.Name()
	if name == "" {
		d.reject(dst, ReasonMissingName, "", max(1, points(m)))
		return
	}
	var unit []model.Tag
	if u := m.Unit(); u != "" {
		unit = []model.Tag{{Key: TagUnit, Value: u}}
	}
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		dps := m.Gauge().DataPoints()
		for i := range dps.Len() {
			d.number(dst, name, unit, dps.At(i), now, pmetric.AggregationTemporalityUnspecified, false)
		}
	case pmetric.MetricTypeSum:
		s := m.Sum()
		dps := s.DataPoints()
		temp := s.AggregationTemporality()
		if temp == pmetric.AggregationTemporalityUnspecified {
			d.reject(dst, ReasonTemporality, name, dps.Len())
			return
		}
		for i := range dps.Len() {
			d.number(dst, name, unit, dps.At(i), now, temp, s.IsMonotonic())
		}
	case pmetric.MetricTypeHistogram:
		h := m.Histogram()
		dps := h.DataPoints()
		for i := range dps.Len() {
			dp := dps.At(i)
			if reason := d.h.loadExplicit(dp, d.o.MaxBuckets); reason != "" {
				d.reject(dst, reason, name, 1)
				continue
			}
			d.histogram(dst, name, unit, dp.Attributes(), h.AggregationTemporality(), now)
		}
	case pmetric.MetricTypeExponentialHistogram:
		h := m.ExponentialHistogram()
		dps := h.DataPoints()
		for i := range dps.Len() {
			dp := dps.At(i)
			if reason := d.h.loadExponential(dp, d.o.MaxBuckets); reason != "" {
				d.reject(dst, reason, name, 1)
				continue
			}
			d.histogram(dst, name, unit, dp.Attributes(), h.AggregationTemporality(), now)
		}
	case pmetric.MetricTypeSummary:
		dps := m.Summary().DataPoints()
		for i := range dps.Len() {
			d.summary(dst, name, unit, dps.At(i), now)
		}
	default:
		d.reject(dst, ReasonUnknownType, name, 1)
	}
}

func numberValue(dp pmetric.NumberDataPoint) (float64, string) {
	if dp.Flags().NoRecordedValue() {
		return 0, ReasonNoRecordedValue
	}
	switch dp.ValueType() {
	case pmetric.NumberDataPointValueTypeInt:
		return float64(dp.IntValue()), ""
	case pmetric.NumberDataPointValueTypeDouble:
		v := dp.DoubleValue()
		if !model.IsFinite(v) {
			return 0, ReasonNonFinite
		}
		return v, ""
	}
	return 0, ReasonMissingValue
}

// number maps a gauge point (temp unspecified) or a sum point.
func (d *Decoder) number(dst *model.Batch, name string, unit []model.Tag, dp pmetric.NumberDataPoint, now int64,
	temp pmetric.AggregationTemporality, monotonic bool) {
	v, reason := numberValue(dp)
	if reason == "" && monotonic && v < 0 {
		reason = ReasonNegativeCounter
	}
	if reason != "" {
		d.reject(dst, reason, name, 1)
		return
	}
	mark := dst.TagMark()
	tags, ok := d.itemTags(dst, dp.Attributes(), unit...)
	if !ok {
		d.reject(dst, ReasonTooManyTags, name, 1)
		return
	}
	m := model.Metric{Name: name, Value: v, Timestamp: timestamp(dp.Timestamp(), now), Source: d.source, Tags: tags}
	switch {
	case temp == pmetric.AggregationTemporalityUnspecified: // gauge
		m.Kind = model.Gauge
	case temp == pmetric.AggregationTemporalityDelta:
		// Non-monotonic deltas (up-down counters) are counters too: their
		// deltas sum to the current value, a gauge of a delta would not.
		m.Kind = model.Counter
	case !monotonic: // cumulative up-down counter: the value is the level
		m.Kind = model.Gauge
	default:
		delta, emit, reason := d.deltas.sumDelta(d.seriesKey('s', name, tags, dp.StartTimestamp()),
			int64(dp.StartTimestamp()), m.Timestamp, v)
		if reason != "" || !emit {
			dst.TruncateTags(mark)
			if reason != "" {
				d.reject(dst, reason, name, 1)
			}
			return
		}
		m.Kind, m.Value = model.Counter, delta
	}
	dst.Metrics = append(dst.Metrics, m)
}

// seriesKey builds the Deltas key of a cumulative series in d.key.
func (d *Decoder) seriesKey(typ byte, name string, tags model.Tags, start pcommon.Timestamp) []byte {
	k := append(d.key[:0], typ)
	k = append(k, name...)
	k = append(k, 0)
	k = append(k, d.source...)
	k = append(k, 0)
	for _, t := range tags {
		k = append(k, t.Key...)
		k = append(k, 0)
		k = append(k, t.Value...)
		k = append(k, 0)
	}
	k = binary.LittleEndian.AppendUint64(k, uint64(start))
	d.key = k
	return k
}

// histogram maps the point loaded in d.h.
func (d *Decoder) histogram(dst *model.Batch, name string, unit []model.Tag, attrs pcommon.Map,
	temp pmetric.AggregationTemporality, now int64) {
	h := &d.h
	h.ts = timestamp(pcommon.Timestamp(h.ts), now)
	mark := dst.TagMark()
	tags, ok := d.itemTags(dst, attrs, unit...)
	if !ok {
		d.reject(dst, ReasonTooManyTags, name, 1)
		return
	}
	switch temp {
	case pmetric.AggregationTemporalityDelta:
	case pmetric.AggregationTemporalityCumulative:
		typ := byte('h')
		if h.exp {
			typ = 'e'
		}
		emit, reason := d.deltas.histDelta(d.seriesKey(typ, name, tags, pcommon.Timestamp(h.start)), h)
		if reason != "" || !emit {
			dst.TruncateTags(mark)
			if reason != "" {
				d.reject(dst, reason, name, 1)
			}
			return
		}
	default:
		dst.TruncateTags(mark)
		d.reject(dst, ReasonTemporality, name, 1)
		return
	}
	if h.count == 0 { // no observations in this interval
		dst.TruncateTags(mark)
		return
	}
	dist := model.Distribution{Name: name, Timestamp: h.ts, Source: d.source, Tags: tags}
	if reason := h.appendTo(dst, &dist); reason != "" {
		dst.TruncateTags(mark)
		d.reject(dst, reason, name, 1)
		return
	}
	dst.Dists = append(dst.Dists, dist)
}

func (d *Decoder) summary(dst *model.Batch, name string, unit []model.Tag, dp pmetric.SummaryDataPoint, now int64) {
	if dp.Flags().NoRecordedValue() {
		d.reject(dst, ReasonNoRecordedValue, name, 1)
		return
	}
	if !model.IsFinite(dp.Sum()) {
		d.reject(dst, ReasonNonFinite, name, 1)
		return
	}
	qs := dp.QuantileValues()
	for i := range qs.Len() {
		q := qs.At(i)
		if !(q.Quantile() >= 0 && q.Quantile() <= 1) {
			d.reject(dst, ReasonInvalidQuantile, name, 1)
			return
		}
		if !model.IsFinite(q.Value()) {
			d.reject(dst, ReasonNonFinite, name, 1)
			return
		}
	}
	ts := timestamp(dp.Timestamp(), now)
	mark := dst.TagMark()
	tags, ok := d.itemTags(dst, dp.Attributes(), unit...)
	if !ok {
		d.reject(dst, ReasonTooManyTags, name, 1)
		return
	}
	start := dp.StartTimestamp()
	count, emitCount, reason := d.deltas.sumDelta(d.seriesKey('c', name, tags, start), int64(start), ts, float64(dp.Count()))
	if reason != "" {
		dst.TruncateTags(mark)
		d.reject(dst, reason, name, 1)
		return
	}
	sum, emitSum, _ := d.deltas.sumDelta(d.seriesKey('u', name, tags, start), int64(start), ts, dp.Sum())
	if emitCount {
		dst.Metrics = append(dst.Metrics, model.Metric{Name: d.concat(name, ".count"), Value: count, Timestamp: ts,
			Source: d.source, Tags: tags, Kind: model.Counter})
	}
	if emitSum {
		dst.Metrics = append(dst.Metrics, model.Metric{Name: d.concat(name, ".sum"), Value: sum, Timestamp: ts,
			Source: d.source, Tags: tags, Kind: model.Counter})
	}
	for i := range qs.Len() {
		q := qs.At(i)
		qt, ok := d.itemTags(dst, dp.Attributes(), append(unit[:len(unit):len(unit)],
			model.Tag{Key: TagQuantile, Value: d.formatFloat(q.Quantile())})...)
		if !ok {
			continue // unreachable: one more tag than the point, which fit
		}
		dst.Metrics = append(dst.Metrics, model.Metric{Name: name, Value: q.Value(), Timestamp: ts,
			Source: d.source, Tags: qt, Kind: model.Gauge})
	}
	if !emitCount && !emitSum && qs.Len() == 0 {
		dst.TruncateTags(mark)
	}
}

func (d *Decoder) concat(a, b string) string {
	d.grow(len(a) + len(b))
	start := len(d.strs)
	d.strs = append(d.strs, a...)
	d.strs = append(d.strs, b...)
	return d.str(start)
}

// histPoint is one histogram point in a form both kinds share. For a
// cumulative point, Deltas.histDelta turns the counts into deltas and
// keeps the cumulative values in the cum fields.
type histPoint struct {
	start, ts int64
	exp       bool

	bounds []float64 // explicit: upper bounds; counts has len(bounds)+1
	counts []uint64

	scale          int32 // exponential
	zeroThreshold  float64
	zero           uint64
	posOff, negOff int32
	pos, neg       []uint64

	count  uint64
	hasSum bool
	sum    float64
	hasMin bool
	min    float64
	hasMax bool
	max    float64

	// exactMin/Max say whether min/max are the distribution's own; when
	// not, clampMin/Max still bound its values (cumulative min and max).
	exactMin, exactMax bool
	clampMin, clampMax float64

	// cumulative copies, for a reset after subtract
	cumCounts, cumPos, cumNeg []uint64
	cumZero, cumCount         uint64
	cumSum                    float64
}

func (h *histPoint) loadCommon(count uint64, hasSum bool, sum float64, hasMin bool, min float64, hasMax bool, max float64) string {
	h.count, h.hasSum, h.sum, h.hasMin, h.min, h.hasMax, h.max = count, hasSum, sum, hasMin, min, hasMax, max
	if hasSum && !model.IsFinite(sum) || hasMin && !model.IsFinite(min) || hasMax && !model.IsFinite(max) {
		return ReasonNonFinite
	}
	if hasMin && hasMax && min > max {
		return ReasonInvalidMinMax
	}
	h.exactMin, h.exactMax = hasMin, hasMax
	h.clampMin, h.clampMax = math.Inf(-1), math.Inf(1)
	if hasMin {
		h.clampMin = min
	}
	if hasMax {
		h.clampMax = max
	}
	h.cumCount, h.cumSum = count, sum
	return ""
}

func (h *histPoint) loadExplicit(dp pmetric.HistogramDataPoint, maxBuckets int) string {
	if dp.Flags().NoRecordedValue() {
		return ReasonNoRecordedValue
	}
	h.exp = false
	h.start, h.ts = int64(dp.StartTimestamp()), int64(dp.Timestamp())
	if r := h.loadCommon(dp.Count(), dp.HasSum(), dp.Sum(), dp.HasMin(), dp.Min(), dp.HasMax(), dp.Max()); r != "" {
		return r
	}
	bounds, counts := dp.ExplicitBounds(), dp.BucketCounts()
	if counts.Len() > maxBuckets || bounds.Len() >= maxBuckets {
		return ReasonTooManyBuckets
	}
	h.bounds = h.bounds[:0]
	for i := range bounds.Len() {
		b := bounds.At(i)
		if !model.IsFinite(b) || i > 0 && !(b > h.bounds[i-1]) {
			return ReasonInvalidBounds
		}
		h.bounds = append(h.bounds, b)
	}
	h.counts = h.counts[:0]
	switch {
	case counts.Len() == 0 && bounds.Len() == 0:
		// No buckets: one bucket holding everything.
		h.counts = append(h.counts, h.count)
	case counts.Len() != bounds.Len()+1:
		return ReasonBucketMismatch
	default:
		var total uint64
		for i := range counts.Len() {
			c := counts.At(i)
			h.counts = append(h.counts, c)
			total += c
			if total < c {
				return ReasonCountMismatch // overflow
			}
		}
		if total != h.count {
			return ReasonCountMismatch
		}
	}
	h.cumCounts = append(h.cumCounts[:0], h.counts...)
	return ""
}

func (h *histPoint) loadExponential(dp pmetric.ExponentialHistogramDataPoint, maxBuckets int) string {
	if dp.Flags().NoRecordedValue() {
		return ReasonNoRecordedValue
	}
	h.exp = true
	h.start, h.ts = int64(dp.StartTimestamp()), int64(dp.Timestamp())
	if r := h.loadCommon(dp.Count(), dp.HasSum(), dp.Sum(), dp.HasMin(), dp.Min(), dp.HasMax(), dp.Max()); r != "" {
		return r
	}
	h.scale = dp.Scale()
	if h.scale < -10 || h.scale > 20 {
		return ReasonInvalidScale
	}
	h.zeroThreshold = dp.ZeroThreshold()
	if !model.IsFinite(h.zeroThreshold) || h.zeroThreshold < 0 {
		return ReasonNonFinite
	}
	pos, neg := dp.Positive(), dp.Negative()
	if pos.BucketCounts().Len()+neg.BucketCounts().Len() > maxBuckets {
		return ReasonTooManyBuckets
	}
	h.zero = dp.ZeroCount()
	total := h.zero
	var ok bool
	h.posOff = pos.Offset()
	if h.pos, ok = appendCounts(h.pos[:0], pos.BucketCounts(), &total); !ok {
		return ReasonCountMismatch
	}
	h.negOff = neg.Offset()
	if h.neg, ok = appendCounts(h.neg[:0], neg.BucketCounts(), &total); !ok {
		return ReasonCountMismatch
	}
	if int64(h.posOff)+int64(len(h.pos)) > math.MaxInt32 || int64(h.negOff)+int64(len(h.neg)) > math.MaxInt32 {
		return ReasonInvalidScale
	}
	if total != h.count {
		return ReasonCountMismatch
	}
	h.cumPos = append(h.cumPos[:0], h.pos...)
	h.cumNeg = append(h.cumNeg[:0], h.neg...)
	h.cumZero = h.zero
	return ""
}

func appendCounts(dst []uint64, s pcommon.UInt64Slice, total *uint64) ([]uint64, bool) {
	for i := range s.Len() {
		c := s.At(i)
		dst = append(dst, c)
		*total += c
		if *total < c {
			return dst, false
		}
	}
	return dst, true
}

// restoreCumulative undoes subtract: the point's own values are the delta.
func (h *histPoint) restoreCumulative() {
	h.counts = append(h.counts[:0], h.cumCounts...)
	h.pos = append(h.pos[:0], h.cumPos...)
	h.neg = append(h.neg[:0], h.cumNeg...)
	h.zero, h.count, h.sum = h.cumZero, h.cumCount, h.cumSum
	h.clampMin, h.clampMax = math.Inf(-1), math.Inf(1)
	if h.hasMin {
		h.clampMin = h.min
	}
	if h.hasMax {
		h.clampMax = h.max
	}
}

// histState is the last cumulative point of a series.
type histState struct {
	exp            bool
	bounds         []float64
	counts         []uint64
	scale          int32
	zero           uint64
	posOff, negOff int32
	pos, neg       []uint64
	count          uint64
	hasSum         bool
	sum            float64
	hasMin, hasMax bool
	min, max       float64
}

func (s *histState) save(h *histPoint) {
	s.exp = h.exp
	s.bounds = append(s.bounds[:0], h.bounds...)
	s.counts = append(s.counts[:0], h.cumCounts...)
	s.scale, s.zero, s.posOff, s.negOff = h.scale, h.cumZero, h.posOff, h.negOff
	s.pos = append(s.pos[:0], h.cumPos...)
	s.neg = append(s.neg[:0], h.cumNeg...)
	s.count, s.hasSum, s.sum = h.cumCount, h.hasSum, h.cumSum
	s.hasMin, s.min, s.hasMax, s.max = h.hasMin, h.min, h.hasMax, h.max
}

// subtract turns h into h − prev. It reports false for a reset: a count
// that went down, a bucket layout that changed (other bounds, a finer
// scale) or a bucket of prev that h no longer covers.
func (h *histPoint) subtract(prev *histState) bool {
	if h.exp != prev.exp || h.count < prev.count {
		return false
	}
	if !h.exp {
		if len(h.bounds) != len(prev.bounds) || len(h.counts) != len(prev.counts) {
			return false
		}
		for i := range h.bounds {
			if h.bounds[i] != prev.bounds[i] {
				return false
			}
		}
		for i := range h.counts {
			if h.counts[i] < prev.counts[i] {
				return false
			}
			h.counts[i] -= prev.counts[i]
		}
	} else {
		if h.scale > prev.scale || h.zero < prev.zero {
			return false
		}
		shift := uint(prev.scale - h.scale)
		if !subtractBuckets(h.pos, h.posOff, prev.pos, prev.posOff, shift) ||
			!subtractBuckets(h.neg, h.negOff, prev.neg, prev.negOff, shift) {
			return false
		}
		h.zero -= prev.zero
	}
	h.count -= prev.count
	if h.hasSum && prev.hasSum {
		h.sum -= prev.sum
	} else {
		h.hasSum = false
	}
	// The cumulative min (max) is this interval's own only if it moved.
	h.exactMin = h.hasMin && (!prev.hasMin || h.min < prev.min)
	h.exactMax = h.hasMax && (!prev.hasMax || h.max > prev.max)
	return true
}

// subtractBuckets subtracts prev's buckets (at a scale finer by shift)
// from cur's.
func subtractBuckets(cur []uint64, curOff int32, prev []uint64, prevOff int32, shift uint) bool {
	for j, c := range prev {
		if c == 0 {
			continue
		}
		idx := (int64(prevOff) + int64(j)) >> shift
		i := idx - int64(curOff)
		if i < 0 || i >= int64(len(cur)) || cur[i] < c {
			return false
		}
		cur[i] -= c
	}
	return true
}

// appendTo fills dist's count, sum, min, max and centroids (appended to
// dst.CentroidArena) from h. It returns a reject reason when a bucket's
// bounds are not representable.
func (h *histPoint) appendTo(dst *model.Batch, dist *model.Distribution) string {
	cmark := len(dst.CentroidArena)
	lo, hi := math.Inf(1), math.Inf(-1) // bounds of the lowest and highest non-empty bucket
	add := func(a, b, rep float64, c uint64) {
		dst.CentroidArena = append(dst.CentroidArena, model.Centroid{Value: rep, Count: float64(c)})
		lo, hi = math.Min(lo, a), math.Max(hi, b)
	}
	mean := 0.0
	if h.hasSum && h.count > 0 {
		mean = h.sum / float64(h.count)
	}
	if !h.exp {
		for i, c := range h.counts {
			if c == 0 {
				continue
			}
			a, b := math.Inf(-1), math.Inf(1)
			if i > 0 {
				a = h.bounds[i-1]
			}
			if i < len(h.bounds) {
				b = h.bounds[i]
			}
			a, b = math.Max(a, h.clampMin), math.Min(b, h.clampMax)
			var rep float64
			switch fa, fb := !math.IsInf(a, 0), !math.IsInf(b, 0); {
			case fa && fb:
				rep = a + (b-a)/2
			case fb:
				rep = b
			case fa:
				rep = a
			default:
				rep = mean
			}
			add(a, b, rep, c)
		}
	} else {
		// Negative buckets from the most negative value up, then zero, then
		// positive ones.
		for j := len(h.neg) - 1; j >= 0; j-- {
			if c := h.neg[j]; c > 0 {
				l, u, ok := expBounds(h.scale, int64(h.negOff)+int64(j))
				if !ok {
					dst.CentroidArena = dst.CentroidArena[:cmark]
					return ReasonInvalidScale
				}
				a, b := math.Max(-u, h.clampMin), math.Min(-l, h.clampMax)
				add(a, b, -harmonic(-b, -a), c)
			}
		}
		if h.zero > 0 {
			a, b := math.Max(-h.zeroThreshold, h.clampMin), math.Min(h.zeroThreshold, h.clampMax)
			add(a, b, math.Min(math.Max(0, a), b), h.zero)
		}
		for j, c := range h.pos {
			if c > 0 {
				l, u, ok := expBounds(h.scale, int64(h.posOff)+int64(j))
				if !ok {
					dst.CentroidArena = dst.CentroidArena[:cmark]
					return ReasonInvalidScale
				}
				a, b := math.Max(l, h.clampMin), math.Min(u, h.clampMax)
				add(a, b, harmonic(a, b), c)
			}
		}
	}
	end := len(dst.CentroidArena)
	if end > cmark {
		dist.Centroids = dst.CentroidArena[cmark:end:end]
	}
	dist.Count = float64(h.count)
	if h.hasSum {
		dist.Sum = h.sum
	} else {
		for _, c := range dist.Centroids {
			dist.Sum += c.Value * c.Count
		}
	}
	dist.Min, dist.Max = h.min, h.max
	if !h.exactMin {
		dist.Min = lo
		if math.IsInf(lo, 0) && len(dist.Centroids) > 0 {
			dist.Min = dist.Centroids[0].Value
		}
	}
	if !h.exactMax {
		dist.Max = hi
		if math.IsInf(hi, 0) && len(dist.Centroids) > 0 {
			dist.Max = dist.Centroids[len(dist.Centroids)-1].Value
		}
	}
	return ""
}

// expBounds returns the bounds (base^i, base^(i+1)] of bucket i at scale,
// base = 2^(2^-scale); ok is false when they are not finite and non-zero.
func expBounds(scale int32, i int64) (lower, upper float64, ok bool) {
	f := math.Ldexp(1, -int(scale)) // 2^-scale
	lower, upper = math.Exp2(float64(i)*f), math.Exp2(float64(i+1)*f)
	return lower, upper, lower > 0 && !math.IsInf(upper, 0)
}

// harmonic is the representative of [a, b] (0 < a ≤ b) with the least
// relative error: 2ab/(a+b), off by at most (b−a)/(b+a) from any value in
// the bucket.
func harmonic(a, b float64) float64 {
	if a <= 0 || a == b {
		return b
	}
	return 2 * a * b / (a + b)
}
