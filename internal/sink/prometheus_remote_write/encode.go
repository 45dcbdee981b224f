package promrw

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"
	"strconv"

	"github.com/les-streams/les/internal/model"
)

// Protobuf tags (field number << 3 | wire type) of remote write 1.0
// (prompb/remote.proto and types.proto of Prometheus).
const (
	tagTimeSeries = 0x0a // WriteRequest.timeseries = 1, message

	tagLabel     = 0x0a // TimeSeries.labels = 1
	tagSample    = 0x12 // TimeSeries.samples = 2
	tagHistogram = 0x22 // TimeSeries.histograms = 4

	tagLabelName  = 0x0a // Label.name = 1
	tagLabelValue = 0x12 // Label.value = 2

	tagSampleValue = 0x09 // Sample.value = 1, double
	tagSampleTime  = 0x10 // Sample.timestamp = 2, int64

	tagHCountInt      = 0x08 // Histogram.count_int = 1
	tagHSum           = 0x19 // Histogram.sum = 3, double
	tagHSchema        = 0x20 // Histogram.schema = 4, sint32
	tagHZeroThreshold = 0x29 // Histogram.zero_threshold = 5, double
	tagHZeroCountInt  = 0x30 // Histogram.zero_count_int = 6
	tagHNegSpans      = 0x42 // Histogram.negative_spans = 8
	tagHNegDeltas     = 0x4a // Histogram.negative_deltas = 9, packed sint64
	tagHPosSpans      = 0x5a // Histogram.positive_spans = 11
	tagHPosDeltas     = 0x62 // Histogram.positive_deltas = 12, packed sint64
	tagHResetHint     = 0x70 // Histogram.reset_hint = 14
	tagHTime          = 0x78 // Histogram.timestamp = 15

	tagSpanOffset = 0x08 // BucketSpan.offset = 1, sint32
	tagSpanLength = 0x10 // BucketSpan.length = 2

	resetHintGauge = 3 // Histogram.ResetHint.GAUGE
)

// normalNaN is Prometheus' value.NormalNaN: every NaN is sent with these
// bits, because one other NaN (value.StaleNaN, 0x7ff0000000000002) is
// Prometheus' staleness marker and would end the series.
const normalNaN = 0x7ff8000000000001

// ZeroThreshold is the width of the zero bucket of native histograms
// (client_golang's default, 2^-128): centroids within ±ZeroThreshold
// count as zero.
const ZeroThreshold = 2.938735877055719e-39

// Drop reasons (les_sink_dropped_items_total{reason}).
const (
	reasonEmptyName        = "empty_name"
	reasonValueTooLong     = "label_value_too_long"
	reasonNonFiniteCounter = "non_finite_counter"
	reasonGaugeDelta       = "unaggregated_gauge_delta"
	reasonSet              = "unaggregated_set"
	reasonUnknownKind      = "unknown_kind"
	reasonEmptyDist        = "empty_distribution"
	reasonNoCentroids      = "no_centroids"
	reasonBadCentroid      = "invalid_centroid"
	reasonCounterLimit     = "counter_series_limit"
)

type label struct{ name, value string }

// encOptions are the encoder's share of Config.
type encOptions struct {
	sourceLabel          string
	extra                []label // sorted by name, valid
	summary, minMax      bool
	native               bool
	schema               int32
	maxSamples, maxBytes int
	maxValueLen          int
}

// request is one WriteRequest: the uncompressed message and, for each of
// its TimeSeries, the ordinal of the item it came from (metrics first,
// then distributions).
type request struct {
	raw   []byte
	items []int32
}

// encoder turns batches into WriteRequests. It is not safe for
// concurrent use.
type encoder struct {
	opt encOptions
	// reqs[:nreq] are the requests of the current batch; the last one is
	// being appended to. Their buffers are reused from batch to batch.
	reqs []request
	nreq int

	ar     arena
	lbls   []label
	lbuf   []byte
	hbuf   []byte
	pos    []bucket
	neg    []bucket
	deltas []int64

	counters *counters
	// memo holds the encoded labels of the batch's series.
	memo model.SeriesMemo[seriesLabels]
	// drops are the items left out by design in this batch, by reason.
	drops map[string]int
	// order is the batch's metrics or distributions in time order, when
	// they are not in it already (timeOrder).
	order []int32
}

// seriesLabels is a series' encoded Label fields, or why it is dropped.
type seriesLabels struct {
	lb   []byte
	drop string
}

func newEncoder(opt encOptions, c *counters) *encoder {
	return &encoder{opt: opt, counters: c, drops: map[string]int{}}
}

// encode turns b into e.requests(). Counter totals are staged in
// e.counters (commit or discard them when the requests are done). It does
// not keep b: every string it takes is copied into the requests.
func (e *encoder) encode(b *model.Batch) {
	e.nreq = 0
	e.memo.Next()
	clear(e.drops)
	e.next()
	// Time order: Prometheus refuses a series' sample older than the one
	// before it, also within a request. Records of one partition come in
	// stream order, so this is mostly one pass that finds them sorted.
	if e.timeOrder(len(b.Metrics), func(i int) int64 { return b.Metrics[i].Timestamp }) {
		for _, i := range e.order {
			e.metric(&b.Metrics[i], i)
		}
	} else {
		for i := range b.Metrics {
			e.metric(&b.Metrics[i], int32(i))
		}
	}
	distMs := func(i int) int64 { return millis(b.Dists[i].Timestamp) + int64(b.Dists[i].Correction) }
	if e.timeOrder(len(b.Dists), distMs) {
		for _, i := range e.order {
			e.dist(&b.Dists[i], int32(len(b.Metrics))+i)
		}
	} else {
		for i := range b.Dists {
			e.dist(&b.Dists[i], int32(len(b.Metrics)+i))
		}
	}
	if len(e.cur().items) == 0 {
		e.nreq--
	}
}

// timeOrder reports whether the n items whose times ts returns are out of
// time order, and then leaves their indexes in time order in e.order (a
// stable sort: items of equal time keep their order).
func (e *encoder) timeOrder(n int, ts func(int) int64) bool {
	sorted := true
	for i := 1; i < n; i++ {
		if ts(i) < ts(i-1) {
			sorted = false
			break
		}
	}
	if sorted {
		return false
	}
	e.order = e.order[:0]
	for i := range n {
		e.order = append(e.order, int32(i))
	}
	slices.SortStableFunc(e.order, func(a, b int32) int { return cmp.Compare(ts(int(a)), ts(int(b))) })
	return true
}

// requests returns the requests of the last encode; they are valid until
// the next one.
func (e *encoder) requests() []request { return e.reqs[:e.nreq] }

func (e *encoder) cur() *request { return &e.reqs[e.nreq-1] }

// next starts a new request.
func (e *encoder) next() {
	if e.nreq == len(e.reqs) {
		e.reqs = append(e.reqs, request{})
	}
	r := &e.reqs[e.nreq]
	e.nreq++
	if cap(r.raw) > 4*e.opt.maxBytes {
		r.raw = nil // do not pin one huge batch's buffer
	}
	r.raw, r.items = r.raw[:0], r.items[:0]
}

// added accounts for one TimeSeries appended to the current request and
// starts the next request when this one is full.
func (e *encoder) added(item int32) {
	r := e.cur()
	r.items = append(r.items, item)
	if len(r.items) >= e.opt.maxSamples || len(r.raw) >= e.opt.maxBytes {
		e.next()
	}
}

func (e *encoder) drop(reason string) { e.drops[reason]++ }

func millis(ns int64) int64 {
	ms := ns / 1e6
	if ns%1e6 < 0 {
		ms--
	}
	return ms
}

func (e *encoder) metric(m *model.Metric, item int32) {
	switch m.Kind {
	case model.Gauge, model.Sample, model.Counter:
	case model.GaugeDelta:
		e.drop(reasonGaugeDelta)
		return
	case model.Set:
		e.drop(reasonSet)
		return
	default:
		e.drop(reasonUnknownKind)
		return
	}
	if m.Kind == model.Counter && !model.IsFinite(m.Value) {
		e.drop(reasonNonFiniteCounter)
		return
	}
	// The labels of a series are sanitised, sorted and encoded once per
	// batch when its points share the series' memory (model.SeriesMemo).
	sl, hit := e.memo.Slot(m.Series, m.Name, m.Source, m.Tags, 0)
	if !hit {
		e.ar.reset()
		var name string
		name, sl.drop = e.labels(m.Name, m.Source, m.Tags, false)
		if sl.drop == "" {
			sl.lb = e.appendLabels(sl.lb[:0], name, label{})
		}
	}
	if sl.drop != "" {
		e.drop(sl.drop)
		return
	}
	lb := sl.lb
	ms := millis(m.Timestamp)
	if m.Kind != model.Counter {
		e.sample(lb, m.Value, ms, item)
		return
	}
	st := e.counters.get(lb, ms)
	if st == nil {
		e.drop(reasonCounterLimit)
		return
	}
	total := st.pTotal + m.Value
	if st.pSet && ms <= st.pMs {
		if st.req == e.nreq-1 { // its last sample is in this request: update it
			binary.LittleEndian.PutUint64(e.cur().raw[st.off:], math.Float64bits(total))
			st.pTotal = total
			return
		}
		ms = st.pMs + 1 // keep the series' timestamps increasing
	}
	st.pTotal, st.pMs, st.pSet = total, ms, true
	st.req, st.off = e.nreq-1, e.sample(lb, total, ms, item)
}

// sample appends a TimeSeries with labels lb (encoded Label fields) and
// one sample, and returns the offset of the value's 8 bytes in the
// request it went into.
func (e *encoder) sample(lb []byte, v float64, ms int64, item int32) int {
	bits := math.Float64bits(v)
	if v != v {
		bits = normalNaN
	}
	sl := 1 + 8 + 1 + uvlen(uint64(ms))
	size := len(lb) + 1 + uvlen(uint64(sl)) + sl
	r := e.cur()
	buf := append(r.raw, tagTimeSeries)
	buf = binary.AppendUvarint(buf, uint64(size))
	buf = append(buf, lb...)
	buf = append(buf, tagSample)
	buf = binary.AppendUvarint(buf, uint64(sl))
	buf = append(buf, tagSampleValue)
	off := len(buf)
	buf = binary.LittleEndian.AppendUint64(buf, bits)
	buf = append(buf, tagSampleTime)
	buf = binary.AppendUvarint(buf, uint64(ms))
	r.raw = buf
	e.added(item)
	return off
}

// labels sanitises an item's name, source and tags into e.lbls (sorted by
// name, without __name__) and returns the metric name. With dist, a tag
// named "quantile" is renamed "_quantile" (the summary series use the
// label). If the item cannot be sent it returns the reason to drop it.
func (e *encoder) labels(name, source string, tags model.Tags, dist bool) (string, string) {
	max := e.opt.maxValueLen
	if name == "" {
		return "", reasonEmptyName
	}
	name = e.ar.metricName(name)
	if len(name) > max {
		return "", reasonValueTooLong
	}
	l := e.lbls[:0]
	if source != "" {
		l = append(l, label{e.opt.sourceLabel, e.ar.labelValue(source)})
	}
	for _, t := range tags {
		if t.Value == "" {
			continue // an empty label is no label in Prometheus
		}
		k := e.ar.labelName(t.Key)
		if dist && k == "quantile" {
			k = "_quantile"
		}
		l = append(l, label{k, e.ar.labelValue(t.Value)})
	}
	// insertion sort: tags arrive sorted, so this is usually one pass
	for i := 1; i < len(l); i++ {
		for j := i; j > 0 && l[j].name < l[j-1].name; j-- {
			l[j], l[j-1] = l[j-1], l[j]
		}
	}
	// keys that sanitise to the same name: join their values with ';'
	out := l[:0]
	for _, x := range l {
		if n := len(out); n > 0 && out[n-1].name == x.name {
			out[n-1].value = e.ar.joined(out[n-1].value, x.value)
			continue
		}
		out = append(out, x)
	}
	l = out
	for _, x := range l {
		if len(x.value) > max {
			e.lbls = l
			return "", reasonValueTooLong
		}
	}
	// configured labels, unless the item has a label of that name
	if n := len(l); len(e.opt.extra) > 0 {
		for _, x := range e.opt.extra {
			if !hasLabel(l[:n], x.name) {
				l = append(l, x)
			}
		}
		if len(l) > n {
			for i := n; i < len(l); i++ {
				for j := i; j > 0 && l[j].name < l[j-1].name; j-- {
					l[j], l[j-1] = l[j-1], l[j]
				}
			}
		}
	}
	e.lbls = l
	return name, ""
}

func hasLabel(l []label, name string) bool {
	for _, x := range l {
		if x.name == name {
			return true
		}
	}
	return false
}

// appendLabels appends the Label fields of a TimeSeries: __name__=name,
// e.lbls and, if extra.name is set, extra, in label name order.
func (e *encoder) appendLabels(dst []byte, name string, extra label) []byte {
	nameDone, extraDone := false, extra.name == ""
	for _, x := range e.lbls {
		if !nameDone && "__name__" < x.name {
			dst, nameDone = appendLabel(dst, "__name__", name), true
		}
		if !extraDone && extra.name < x.name {
			dst, extraDone = appendLabel(dst, extra.name, extra.value), true
		}
		dst = appendLabel(dst, x.name, x.value)
	}
	if !nameDone {
		dst = appendLabel(dst, "__name__", name)
	}
	if !extraDone {
		dst = appendLabel(dst, extra.name, extra.value)
	}
	return dst
}

func appendLabel(dst []byte, name, value string) []byte {
	size := 1 + uvlen(uint64(len(name))) + len(name) + 1 + uvlen(uint64(len(value))) + len(value)
	dst = append(dst, tagLabel)
	dst = binary.AppendUvarint(dst, uint64(size))
	dst = append(dst, tagLabelName)
	dst = binary.AppendUvarint(dst, uint64(len(name)))
	dst = append(dst, name...)
	dst = append(dst, tagLabelValue)
	dst = binary.AppendUvarint(dst, uint64(len(value)))
	return append(dst, value...)
}

func (e *encoder) dist(d *model.Distribution, item int32) {
	if !(d.Count > 0) {
		e.drop(reasonEmptyDist)
		return
	}
	e.ar.reset()
	name, reason := e.labels(d.Name, d.Source, d.Tags, true)
	if reason != "" {
		e.drop(reason)
		return
	}
	// A correction (late samples of a closed window) is written 1 ms per
	// correction after the window start, so it does not replace the first
	// emission: sum_over_time adds them.
	ms := millis(d.Timestamp) + int64(d.Correction)
	if e.opt.native {
		h, reason := e.appendHistogram(e.hbuf[:0], d, ms)
		e.hbuf = h
		if reason != "" {
			e.drop(reason)
		} else {
			e.lbuf = e.appendLabels(e.lbuf[:0], name, label{})
			e.histogram(e.lbuf, h, item)
		}
	}
	if e.opt.summary {
		e.lbuf = e.appendLabels(e.lbuf[:0], e.ar.suffixed(name, "_count"), label{})
		e.sample(e.lbuf, d.Count, ms, item)
		e.lbuf = e.appendLabels(e.lbuf[:0], e.ar.suffixed(name, "_sum"), label{})
		e.sample(e.lbuf, d.Sum, ms, item)
		for _, q := range d.Quantiles {
			start := len(e.ar.b)
			e.ar.b = strconv.AppendFloat(e.ar.b, q.Q, 'g', -1, 64)
			e.lbuf = e.appendLabels(e.lbuf[:0], name, label{"quantile", e.ar.str(start)})
			e.sample(e.lbuf, q.Value, ms, item)
		}
	}
	if e.opt.minMax {
		e.lbuf = e.appendLabels(e.lbuf[:0], e.ar.suffixed(name, "_min"), label{})
		e.sample(e.lbuf, d.Min, ms, item)
		e.lbuf = e.appendLabels(e.lbuf[:0], e.ar.suffixed(name, "_max"), label{})
		e.sample(e.lbuf, d.Max, ms, item)
	}
}

// histogram appends a TimeSeries with labels lb and the Histogram
// message h.
func (e *encoder) histogram(lb, h []byte, item int32) {
	size := len(lb) + 1 + uvlen(uint64(len(h))) + len(h)
	r := e.cur()
	buf := append(r.raw, tagTimeSeries)
	buf = binary.AppendUvarint(buf, uint64(size))
	buf = append(buf, lb...)
	buf = append(buf, tagHistogram)
	buf = binary.AppendUvarint(buf, uint64(len(h)))
	r.raw = append(buf, h...)
	e.added(item)
}

type bucket struct {
	idx   int32
	count uint64
}

// BucketIndex returns the index of the native histogram bucket of schema
// that holds v > 0: bucket i holds (base^(i-1), base^i] with base =
// 2^(2^-schema).
func BucketIndex(v float64, schema int32) int32 {
	return int32(math.Ceil(math.Log2(v) * math.Ldexp(1, int(schema))))
}

// appendHistogram appends the Histogram message of d (a gauge histogram:
// each window stands alone) to dst. Each centroid's count goes into the
// bucket holding its value. It returns a drop reason instead when d
// cannot be one: no centroids, or a centroid with a non-finite value or a
// count that is not a positive integer.
func (e *encoder) appendHistogram(dst []byte, d *model.Distribution, ms int64) ([]byte, string) {
	if len(d.Centroids) == 0 {
		return dst, reasonNoCentroids
	}
	pos, neg := e.pos[:0], e.neg[:0]
	var zero, total uint64
	for _, c := range d.Centroids {
		if !model.IsFinite(c.Value) || !(c.Count > 0) || c.Count > 1<<53 || c.Count != math.Trunc(c.Count) {
			return dst, reasonBadCentroid
		}
		n := uint64(c.Count)
		total += n
		switch {
		case c.Value > ZeroThreshold:
			pos = addBucket(pos, BucketIndex(c.Value, e.opt.schema), n)
		case c.Value < -ZeroThreshold:
			neg = append(neg, bucket{BucketIndex(-c.Value, e.opt.schema), n})
		default:
			zero += n
		}
	}
	// centroids come sorted by value: negatives in descending magnitude
	for i, j := 0, len(neg)-1; i < j; i, j = i+1, j-1 {
		neg[i], neg[j] = neg[j], neg[i]
	}
	merged := neg[:0]
	for _, b := range neg {
		merged = addBucket(merged, b.idx, b.count)
	}
	neg = merged
	e.pos, e.neg = pos, neg

	dst = append(dst, tagHCountInt)
	dst = binary.AppendUvarint(dst, total)
	dst = append(dst, tagHSum)
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(d.Sum))
	dst = append(dst, tagHSchema)
	dst = binary.AppendUvarint(dst, zigzag(int64(e.opt.schema)))
	dst = append(dst, tagHZeroThreshold)
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(ZeroThreshold))
	dst = append(dst, tagHZeroCountInt)
	dst = binary.AppendUvarint(dst, zero)
	dst = e.appendBuckets(dst, tagHNegSpans, tagHNegDeltas, neg)
	dst = e.appendBuckets(dst, tagHPosSpans, tagHPosDeltas, pos)
	dst = append(dst, tagHResetHint, resetHintGauge)
	dst = append(dst, tagHTime)
	dst = binary.AppendUvarint(dst, uint64(ms))
	return dst, ""
}

// addBucket adds n to the last bucket if it has index idx, else appends
// a bucket; indices must arrive in ascending order.
func addBucket(bs []bucket, idx int32, n uint64) []bucket {
	if k := len(bs); k > 0 && bs[k-1].idx == idx {
		bs[k-1].count += n
		return bs
	}
	return append(bs, bucket{idx, n})
}

// appendBuckets appends the spans and the delta-encoded counts of bs
// (ascending indices). Gaps of up to two empty buckets are filled with
// zero counts inside a span (cheaper than a new span, as client_golang
// does).
func (e *encoder) appendBuckets(dst []byte, tagSpans, tagDeltas byte, bs []bucket) []byte {
	if len(bs) == 0 {
		return dst
	}
	deltas := e.deltas[:0]
	var prev int64
	spanLen := uint32(0)
	offset := bs[0].idx
	writeSpan := func(off int32, n uint32) {
		size := 1 + uvlen(zigzag(int64(off))) + 1 + uvlen(uint64(n))
		dst = append(dst, tagSpans)
		dst = binary.AppendUvarint(dst, uint64(size))
		dst = append(dst, tagSpanOffset)
		dst = binary.AppendUvarint(dst, zigzag(int64(off)))
		dst = append(dst, tagSpanLength)
		dst = binary.AppendUvarint(dst, uint64(n))
	}
	for i, b := range bs {
		if i > 0 {
			gap := b.idx - bs[i-1].idx - 1
			if gap > 2 {
				writeSpan(offset, spanLen)
				offset, spanLen = gap, 0
			} else {
				for range gap {
					deltas = append(deltas, -prev)
					prev = 0
					spanLen++
				}
			}
		}
		deltas = append(deltas, int64(b.count)-prev)
		prev = int64(b.count)
		spanLen++
	}
	writeSpan(offset, spanLen)
	n := 0
	for _, d := range deltas {
		n += uvlen(zigzag(d))
	}
	dst = append(dst, tagDeltas)
	dst = binary.AppendUvarint(dst, uint64(n))
	for _, d := range deltas {
		dst = binary.AppendUvarint(dst, zigzag(d))
	}
	e.deltas = deltas
	return dst
}

func zigzag(v int64) uint64 { return uint64(v<<1) ^ uint64(v>>63) }

func uvlen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
