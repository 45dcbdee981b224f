package otlp

import (
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/les-streams/les/internal/model"
)

// Attribute keys the mapping uses (README: Mapping).
const (
	AttrSource       = "les.source"
	AttrInvocationID = "faas.invocation_id"
	// Log attributes that carry OTLP fields (as internal/format/otlp
	// writes them): they fill the log record's fields and are not
	// repeated as attributes when they are valid.
	AttrLogTraceID     = "trace_id"
	AttrLogSpanID      = "span_id"
	AttrSeverityNumber = "severity_number"
	// ScopeName is the instrumentation scope of everything les exports.
	ScopeName = "les"
)

// Reasons of les_sink_dropped_items_total for items the sink leaves out.
const (
	ReasonNonFinite       = "non_finite_value" // NaN or ±Inf metric value
	ReasonUnsupportedKind = "unsupported_kind" // a raw set member (the rollup counts sets)
	ReasonNoCentroids     = "no_centroids"     // distribution without a centroid of finite value and positive count
	ReasonMissingID       = "missing_id"       // span without a trace or span id
	ReasonPartialSuccess  = "partial_success"  // the backend's partial_success rejected these
)

// drops counts the items the encoder left out, per reason.
type drops [numDrops]int

const (
	dropNonFinite = iota
	dropUnsupportedKind
	dropNoCentroids
	dropMissingID
	numDrops
)

func dropReason(i int) string {
	switch i {
	case dropNonFinite:
		return ReasonNonFinite
	case dropUnsupportedKind:
		return ReasonUnsupportedKind
	case dropNoCentroids:
		return ReasonNoCentroids
	}
	return ReasonMissingID
}

// encOptions are the mapping settings of Config.
type encOptions struct {
	sourceAttr string
	resource   []model.Tag // static resource attributes
	maxScale   int
	maxBuckets int
}

// metric types, as keys of the per-request metric map.
const (
	typGauge   uint8 = iota
	typSum           // counters: delta, monotonic unless a point is negative
	typUpDown        // gauge deltas: delta, not monotonic
	typExpHist       // distributions and raw samples
)

type metricKey struct {
	source, name string
	typ          uint8
}

type metricEntry struct {
	m   pmetric.Metric
	neg bool // a counter point is negative: not monotonic
}

// encoder turns batches into OTLP export requests. It keeps scratch space
// (maps, bucket arrays) between calls and is not safe for concurrent use;
// the sink pools them.
//
// Ownership: the pdata built per call aliases b's strings and message
// bytes; it is marshalled and dropped before the call returns, so the
// returned bytes are the caller's and nothing of b is kept.
type encoder struct {
	o       encOptions
	scopes  map[string]pmetric.MetricSlice
	metrics map[metricKey]int // index into entries
	entries []metricEntry
	logRes  map[string]plog.LogRecordSlice
	spanRes map[string]ptrace.SpanSlice
	h       expoHist
	one     [1]model.Centroid
}

func newEncoder(o encOptions) *encoder {
	return &encoder{o: o, scopes: map[string]pmetric.MetricSlice{}, metrics: map[metricKey]int{},
		logRes: map[string]plog.LogRecordSlice{}, spanRes: map[string]ptrace.SpanSlice{}}
}

// validUTF8 returns s, with invalid UTF-8 sequences replaced by U+FFFD:
// protobuf strings must be valid UTF-8 and receivers built on the Go
// protobuf runtime refuse the whole request otherwise.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func putAttrs(m pcommon.Map, tags model.Tags) {
	m.EnsureCapacity(m.Len() + len(tags))
	for _, t := range tags {
		m.PutStr(validUTF8(t.Key), validUTF8(t.Value))
	}
}

// resource fills the attributes of a resource for source.
func (e *encoder) resource(r pcommon.Resource, source string) {
	a := r.Attributes()
	a.EnsureCapacity(len(e.o.resource) + 2)
	for _, t := range e.o.resource {
		a.PutStr(t.Key, t.Value)
	}
	if source != "" {
		s := validUTF8(source)
		a.PutStr(e.o.sourceAttr, s)
		a.PutStr(AttrSource, s)
	}
}

// metricsRequest encodes the metrics and distributions of b as an
// ExportMetricsServiceRequest. n is the number of data points in it; d
// counts the items left out.
func (e *encoder) metricsRequest(b *model.Batch) (body []byte, n int, d drops, err error) {
	md := pmetric.NewMetrics()
	clear(e.scopes)
	clear(e.metrics)
	e.entries = e.entries[:0]
	get := func(source, name string, typ uint8) *metricEntry {
		k := metricKey{source, name, typ}
		if i, ok := e.metrics[k]; ok {
			return &e.entries[i]
		}
		ms, ok := e.scopes[source]
		if !ok {
			rm := md.ResourceMetrics().AppendEmpty()
			e.resource(rm.Resource(), source)
			sm := rm.ScopeMetrics().AppendEmpty()
			sm.Scope().SetName(ScopeName)
			ms = sm.Metrics()
			e.scopes[source] = ms
		}
		m := ms.AppendEmpty()
		m.SetName(validUTF8(name))
		switch typ {
		case typGauge:
			m.SetEmptyGauge()
		case typSum, typUpDown:
			s := m.SetEmptySum()
			s.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
			s.SetIsMonotonic(typ == typSum)
		case typExpHist:
			m.SetEmptyExponentialHistogram().SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
		}
		e.entries = append(e.entries, metricEntry{m: m})
		e.metrics[k] = len(e.entries) - 1
		return &e.entries[len(e.entries)-1]
	}
	for i := range b.Metrics {
		p := &b.Metrics[i]
		if !model.IsFinite(p.Value) {
			d[dropNonFinite]++
			continue
		}
		start, end := span(p.Timestamp, p.Window)
		switch p.Kind {
		case model.Gauge:
			dp := get(p.Source, p.Name, typGauge).m.Gauge().DataPoints().AppendEmpty()
			dp.SetTimestamp(pcommon.Timestamp(p.Timestamp))
			dp.SetDoubleValue(p.Value)
			putAttrs(dp.Attributes(), p.Tags)
		case model.Counter, model.GaugeDelta:
			typ := typSum
			if p.Kind == model.GaugeDelta {
				typ = typUpDown
			}
			me := get(p.Source, p.Name, typ)
			if p.Value < 0 {
				me.neg = true
			}
			dp := me.m.Sum().DataPoints().AppendEmpty()
			dp.SetStartTimestamp(pcommon.Timestamp(start))
			dp.SetTimestamp(pcommon.Timestamp(end))
			dp.SetDoubleValue(p.Value)
			putAttrs(dp.Attributes(), p.Tags)
		case model.Sample:
			e.one[0] = model.Centroid{Value: p.Value, Count: 1}
			dp := get(p.Source, p.Name, typExpHist).m.ExponentialHistogram().DataPoints().AppendEmpty()
			e.histPoint(dp, e.one[:], p.Value, p.Value, p.Value)
			dp.SetTimestamp(pcommon.Timestamp(p.Timestamp))
			putAttrs(dp.Attributes(), p.Tags)
		default:
			d[dropUnsupportedKind]++
			continue
		}
		n++
	}
	for i := range b.Dists {
		ds := &b.Dists[i]
		if !e.h.build(ds.Centroids, e.o.maxScale, e.o.maxBuckets) {
			d[dropNoCentroids]++
			continue
		}
		dp := get(ds.Source, ds.Name, typExpHist).m.ExponentialHistogram().DataPoints().AppendEmpty()
		e.setHist(dp, ds.Sum, ds.Min, ds.Max)
		start, end := span(ds.Timestamp, ds.Window)
		dp.SetStartTimestamp(pcommon.Timestamp(start))
		dp.SetTimestamp(pcommon.Timestamp(end))
		putAttrs(dp.Attributes(), ds.Tags)
		n++
	}
	if n == 0 {
		return nil, 0, d, nil
	}
	for _, me := range e.entries {
		if me.neg && me.m.Type() == pmetric.MetricTypeSum {
			me.m.Sum().SetIsMonotonic(false)
		}
	}
	body, err = pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	return body, n, d, err
}

// span returns the start and end of a point's interval: [ts, ts+window)
// for a windowed point, (unknown, ts] otherwise.
func span(ts int64, w model.Window) (start, end int64) {
	if l := w.Nanos(); l > 0 {
		return ts, ts + l
	}
	return 0, ts
}

// histPoint fills dp from one or more centroids (raw samples).
func (e *encoder) histPoint(dp pmetric.ExponentialHistogramDataPoint, cs []model.Centroid, sum, mn, mx float64) {
	e.h.build(cs, e.o.maxScale, e.o.maxBuckets)
	e.setHist(dp, sum, mn, mx)
}

// setHist copies e.h into dp with the exact sum, min and max (each left
// out when not finite).
func (e *encoder) setHist(dp pmetric.ExponentialHistogramDataPoint, sum, mn, mx float64) {
	h := &e.h
	dp.SetScale(h.scale)
	dp.SetCount(h.count)
	dp.SetZeroCount(h.zero)
	if model.IsFinite(sum) {
		dp.SetSum(sum)
	}
	if model.IsFinite(mn) {
		dp.SetMin(mn)
	}
	if model.IsFinite(mx) {
		dp.SetMax(mx)
	}
	if len(h.pos) > 0 {
		dp.Positive().SetOffset(h.posOff)
		dp.Positive().BucketCounts().FromRaw(h.pos)
	}
	if len(h.neg) > 0 {
		dp.Negative().SetOffset(h.negOff)
		dp.Negative().BucketCounts().FromRaw(h.neg)
	}
}

// logsRequest encodes the logs of b as an ExportLogsServiceRequest.
func (e *encoder) logsRequest(b *model.Batch) (body []byte, n int, err error) {
	if len(b.Logs) == 0 {
		return nil, 0, nil
	}
	ld := plog.NewLogs()
	clear(e.logRes)
	for i := range b.Logs {
		l := &b.Logs[i]
		recs, ok := e.logRes[l.Source]
		if !ok {
			rl := ld.ResourceLogs().AppendEmpty()
			e.resource(rl.Resource(), l.Source)
			sl := rl.ScopeLogs().AppendEmpty()
			sl.Scope().SetName(ScopeName)
			recs = sl.LogRecords()
			e.logRes[l.Source] = recs
		}
		lr := recs.AppendEmpty()
		lr.SetTimestamp(pcommon.Timestamp(l.Timestamp))
		if l.Level != "" {
			lr.SetSeverityText(validUTF8(l.Level))
		}
		sev := severity(l.Level)
		switch {
		case len(l.Message) == 0:
		case utf8.Valid(l.Message):
			// aliases the batch: marshalled before Send returns
			lr.Body().SetStr(unsafe.String(&l.Message[0], len(l.Message)))
		default:
			lr.Body().SetEmptyBytes().FromRaw(l.Message)
		}
		a := lr.Attributes()
		a.EnsureCapacity(len(l.Attrs) + 1)
		for _, t := range l.Attrs {
			switch t.Key {
			case AttrLogTraceID:
				var id [16]byte
				if len(t.Value) == 32 && decodeHex(id[:], t.Value) && id != ([16]byte{}) {
					lr.SetTraceID(id)
					continue
				}
			case AttrLogSpanID:
				var id [8]byte
				if len(t.Value) == 16 && decodeHex(id[:], t.Value) && id != ([8]byte{}) {
					lr.SetSpanID(id)
					continue
				}
			case AttrSeverityNumber:
				if v, err := strconv.Atoi(t.Value); err == nil && v >= 1 && v <= 24 {
					sev = plog.SeverityNumber(v)
					continue
				}
			}
			a.PutStr(validUTF8(t.Key), validUTF8(t.Value))
		}
		lr.SetSeverityNumber(sev)
		if l.RequestID != "" {
			a.PutStr(AttrInvocationID, validUTF8(l.RequestID))
		}
		n++
	}
	body, err = plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	return body, n, err
}

// severity maps a level's text (any case) to an OTLP severity number
// (README: Logs); unknown text gives UNSPECIFIED.
func severity(level string) plog.SeverityNumber {
	var buf [16]byte
	if len(level) > len(buf) {
		return plog.SeverityNumberUnspecified
	}
	l := buf[:len(level)]
	for i := 0; i < len(level); i++ {
		c := level[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		l[i] = c
	}
	switch string(l) {
	case "trace":
		return plog.SeverityNumberTrace
	case "debug":
		return plog.SeverityNumberDebug
	case "info", "information", "informational":
		return plog.SeverityNumberInfo
	case "notice":
		return plog.SeverityNumberInfo2
	case "warn", "warning":
		return plog.SeverityNumberWarn
	case "error", "err":
		return plog.SeverityNumberError
	case "crit", "critical":
		return plog.SeverityNumberError2
	case "alert":
		return plog.SeverityNumberError3
	case "fatal", "emerg", "emergency", "panic":
		return plog.SeverityNumberFatal
	}
	return plog.SeverityNumberUnspecified
}

// tracesRequest encodes the spans of b as an ExportTraceServiceRequest.
func (e *encoder) tracesRequest(b *model.Batch) (body []byte, n int, d drops, err error) {
	if len(b.Spans) == 0 {
		return nil, 0, d, nil
	}
	td := ptrace.NewTraces()
	clear(e.spanRes)
	for i := range b.Spans {
		s := &b.Spans[i]
		if s.TraceID == "" || s.SpanID == "" {
			d[dropMissingID]++
			continue
		}
		spans, ok := e.spanRes[s.Source]
		if !ok {
			rs := td.ResourceSpans().AppendEmpty()
			e.resource(rs.Resource(), s.Source)
			ss := rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName(ScopeName)
			spans = ss.Spans()
			e.spanRes[s.Source] = spans
		}
		sp := spans.AppendEmpty()
		a := sp.Attributes()
		a.EnsureCapacity(len(s.Tags) + 3)
		putAttrs(a, s.Tags)
		tid, exact := traceID(s.TraceID)
		sp.SetTraceID(tid)
		if !exact {
			a.PutStr(AttrTraceID, validUTF8(s.TraceID))
		}
		sid, exact := spanID(s.SpanID)
		sp.SetSpanID(sid)
		if !exact {
			a.PutStr(AttrSpanID, validUTF8(s.SpanID))
		}
		if s.ParentID != "" {
			pid, exact := spanID(s.ParentID)
			sp.SetParentSpanID(pid)
			if !exact {
				a.PutStr(AttrParentID, validUTF8(s.ParentID))
			}
		}
		sp.SetName(validUTF8(s.Name))
		sp.SetStartTimestamp(pcommon.Timestamp(s.Start))
		sp.SetEndTimestamp(pcommon.Timestamp(s.Start + max(s.Duration, 0)))
		if s.Kind <= model.SpanKindConsumer {
			sp.SetKind(ptrace.SpanKind(s.Kind))
		}
		if s.StatusCode <= model.StatusError {
			sp.Status().SetCode(ptrace.StatusCode(s.StatusCode))
		}
		if s.StatusMessage != "" {
			sp.Status().SetMessage(validUTF8(s.StatusMessage))
		}
		if len(s.Events) > 0 {
			evs := sp.Events()
			evs.EnsureCapacity(len(s.Events))
			for _, ev := range s.Events {
				x := evs.AppendEmpty()
				x.SetName(validUTF8(ev.Name))
				x.SetTimestamp(pcommon.Timestamp(ev.Timestamp))
				putAttrs(x.Attributes(), ev.Attrs)
			}
		}
		if len(s.Links) > 0 {
			ls := sp.Links()
			ls.EnsureCapacity(len(s.Links))
			for _, l := range s.Links {
				x := ls.AppendEmpty()
				la := x.Attributes()
				putAttrs(la, l.Attrs)
				tid, exact := traceID(l.TraceID)
				x.SetTraceID(tid)
				if !exact {
					la.PutStr(AttrTraceID, validUTF8(l.TraceID))
				}
				if l.SpanID != "" {
					sid, exact := spanID(l.SpanID)
					x.SetSpanID(sid)
					if !exact {
						la.PutStr(AttrSpanID, validUTF8(l.SpanID))
					}
				}
			}
		}
		n++
	}
	if n == 0 {
		return nil, 0, d, nil
	}
	body, err = ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	return body, n, d, err
}
