package influxdb

import (
	"math"
	"strconv"

	"github.com/les-streams/les/internal/model"
)

// Drop reasons, the reason label of les_sink_dropped_items_total.
const (
	ReasonEmptyName      = "empty_name"      // a metric, distribution or span without a name
	ReasonNonFinite      = "non_finite"      // a metric value or distribution count that is NaN or ±Inf
	ReasonLineBreak      = "line_break"      // a name, tag key or tag value with \n or \r
	ReasonBackslash      = "backslash"       // version 1: a name, key or tag value with '\' at its end or before an escaped character
	ReasonBackendRefused = "backend_refused" // the server's "partial write … dropped=N"
)

// Drops counts the items an Encoder left out, by reason.
type Drops struct {
	EmptyName, NonFinite, LineBreak, Backslash int
}

// Total is the sum of every count.
func (d Drops) Total() int { return d.EmptyName + d.NonFinite + d.LineBreak + d.Backslash }

// Encoder appends items as InfluxDB line protocol
// (https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/),
// one line per item, timestamps in nanoseconds.
//
// Escaping: in measurements ',' and ' ' are backslash-escaped; in tag
// keys, tag values and field keys ',', '=' and ' '; in string field values
// '"' and '\'. Backslashes elsewhere follow the server's parser: Version 1
// (InfluxDB 1.x, which has no escape for a backslash outside strings)
// writes them as they are, so a name, key or tag value with a backslash at
// its end or right before a character that is escaped cannot be written
// and the item is dropped; Version 2 (InfluxDB 2.x/3.x and
// VictoriaMetrics, where "\\" is one backslash) doubles them. Line breaks
// cannot appear outside string fields: such an item is dropped. In string
// fields InfluxDB 1.x keeps line breaks as they are; Version 2 writes them
// as the two characters `\n` (`\r`), since its grammar has no line breaks
// in values.
//
// Tags with an empty key or value are left out (line protocol has no
// empty tag values), and so are tags named like one the encoder sets itself
// (source, window, correction; level for logs; name for spans) or that
// servers reserve (time, _measurement, _field).
//
// The Append methods never allocate beyond growing dst (and, in
// AppendBatch, the per-series heads it keeps for reuse) and keep nothing
// of the item after returning. An Encoder is not safe for concurrent use.
type Encoder struct {
	// Version is 1 or 2 (see above).
	Version int
	// LogMeasurement and SpanMeasurement name the measurements of logs and
	// spans (default "logs" and "spans").
	LogMeasurement, SpanMeasurement string
	// LogAttrs is "fields" (default: a log's attributes become string
	// fields) or "tags".
	LogAttrs string
	// Drops counts what the Append methods left out; the caller resets it.
	Drops Drops

	start int    // where the current line began in dst
	bad   *int   // the Drops counter of the current line's first problem
	prev  logKey // the previous log line, to spread equal timestamps
	// memo holds each series' line head (measurement and tag set) within
	// one AppendBatch (model.SeriesMemo): the wire series encoding gives
	// the points of a series one memory, so a head is escaped once per
	// batch instead of once per point.
	memo model.SeriesMemo[lineHead]
}

// lineHead is a series' escaped `name,source=…[,window=…],tags` and the
// first problem found in it (headOK, headBackslash, headLineBreak).
type lineHead struct {
	b   []byte
	bad uint8
}

const (
	headOK = iota
	headBackslash
	headLineBreak
)

type logKey struct {
	source, level string
	ts, written   int64
	ok            bool
}

// fieldSep etc. say which bytes a string kind escapes.
const (
	kMeasurement = iota
	kKey         // tag keys, tag values, field keys
)

// escape[k][b] is true when byte b is backslash-escaped in kind k.
var escape = func() (t [2][256]bool) {
	t[kMeasurement][','], t[kMeasurement][' '] = true, true
	t[kKey][','], t[kKey]['='], t[kKey][' '] = true, true, true
	return t
}()

func (e *Encoder) fail(c *int) {
	if e.bad == nil {
		e.bad = c
	}
}

// begin starts a line at the end of dst.
func (e *Encoder) begin(dst []byte) {
	e.start, e.bad = len(dst), nil
}

// end finishes the line: '\n' is appended, or, if a problem was found,
// the line is cut off and counted. It reports whether the line was kept.
func (e *Encoder) end(dst []byte) ([]byte, bool) {
	if e.bad != nil {
		*e.bad++
		return dst[:e.start], false
	}
	return append(dst, '\n'), true
}

// appendName appends s escaped for kind k.
func (e *Encoder) appendName(dst []byte, s string, k int) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escape[k][c]:
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', c)
			start = i + 1
		case c == '\\' && e.Version == 2:
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', '\\')
			start = i + 1
		case c == '\\' && (i == len(s)-1 || escape[k][s[i+1]]):
			e.fail(&e.Drops.Backslash)
		case c == '\n' || c == '\r':
			e.fail(&e.Drops.LineBreak)
		}
	}
	return append(dst, s[start:]...)
}

// appendString appends s as a quoted string field value.
func (e *Encoder) appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', c)
			start = i + 1
		case (c == '\n' || c == '\r') && e.Version == 2:
			dst = append(dst, s[start:i]...)
			if c == '\n' {
				dst = append(dst, '\\', '\\', 'n')
			} else {
				dst = append(dst, '\\', '\\', 'r')
			}
			start = i + 1
		}
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func (e *Encoder) appendTag(dst []byte, k, v string) []byte {
	if k == "" || v == "" {
		return dst
	}
	dst = append(dst, ',')
	dst = e.appendName(dst, k, kKey)
	dst = append(dst, '=')
	return e.appendName(dst, v, kKey)
}

// reserved reports whether a user tag key must be left out.
func reserved(k string, own ...string) bool {
	switch k {
	case "time", "_measurement", "_field", "source":
		return true
	}
	for _, o := range own {
		if k == o {
			return true
		}
	}
	return false
}

func (e *Encoder) appendTags(dst []byte, tags model.Tags, own ...string) []byte {
	for i := range tags {
		if !reserved(tags[i].Key, own...) {
			dst = e.appendTag(dst, tags[i].Key, tags[i].Value)
		}
	}
	return dst
}

// appendField appends [,]key=value for a float; non-finite values are
// left out. first says whether no field was written yet; it returns the
// new first.
func (e *Encoder) appendFloatField(dst []byte, first bool, key string, v float64) ([]byte, bool) {
	if !model.IsFinite(v) {
		return dst, first
	}
	if first {
		dst = append(dst, ' ')
	} else {
		dst = append(dst, ',')
	}
	dst = append(dst, key...) // keys of float fields are the encoder's own: no escaping needed
	dst = append(dst, '=')
	return strconv.AppendFloat(dst, v, 'g', -1, 64), false
}

func appendTime(dst []byte, ts int64) []byte {
	dst = append(dst, ' ')
	return strconv.AppendInt(dst, ts, 10)
}

func appendWindow(dst []byte, w model.Window) []byte {
	if w == model.WindowNone {
		return dst
	}
	dst = append(dst, ",window="...)
	return append(dst, w.String()...)
}

// AppendMetric appends m as `name,source=…[,window=…],tags value=… ts`.
// The value is written as the item carries it: a gauge's value, a
// counter's delta (the rollup's per-window increase), a sample as one
// observation. The kind is not written. It reports whether the line was
// kept (else the reason is counted in Drops).
func (e *Encoder) AppendMetric(dst []byte, m *model.Metric) ([]byte, bool) {
	return e.appendMetric(dst, m, false)
}

// appendMetric is AppendMetric; with memo the line head comes from e.memo
// (only within AppendBatch, which starts its batch).
func (e *Encoder) appendMetric(dst []byte, m *model.Metric, memo bool) ([]byte, bool) {
	e.begin(dst)
	if m.Name == "" {
		e.fail(&e.Drops.EmptyName)
	}
	if !model.IsFinite(m.Value) {
		e.fail(&e.Drops.NonFinite)
	}
	if memo {
		dst = e.memoHead(dst, m)
	} else {
		dst = e.appendHead(dst, m)
	}
	dst = append(dst, " value="...)
	dst = strconv.AppendFloat(dst, m.Value, 'g', -1, 64)
	dst = appendTime(dst, m.Timestamp)
	return e.end(dst)
}

// appendHead appends m's `name,source=…[,window=…],tags`.
func (e *Encoder) appendHead(dst []byte, m *model.Metric) []byte {
	dst = e.appendName(dst, m.Name, kMeasurement)
	dst = e.appendTag(dst, "source", m.Source)
	dst = appendWindow(dst, m.Window)
	return e.appendTags(dst, m.Tags, "window")
}

// memoHead is appendHead with the head of m's series remembered for the
// batch: on a miss it is escaped into dst and copied into the memo with
// the first problem found in it, on a hit copied from there and its
// problem failed again. Either way e.bad ends as appendHead leaves it.
func (e *Encoder) memoHead(dst []byte, m *model.Metric) []byte {
	h, hit := e.memo.Slot(m.Series, m.Name, m.Source, m.Tags, uint8(m.Window))
	if !hit {
		before, start := e.bad, len(dst)
		e.bad = nil
		dst = e.appendHead(dst, m)
		h.b, h.bad = append(h.b[:0], dst[start:]...), headOK
		switch e.bad {
		case &e.Drops.Backslash:
			h.bad = headBackslash
		case &e.Drops.LineBreak:
			h.bad = headLineBreak
		}
		if before != nil {
			e.bad = before
		}
		return dst
	}
	switch h.bad {
	case headBackslash:
		e.fail(&e.Drops.Backslash)
	case headLineBreak:
		e.fail(&e.Drops.LineBreak)
	}
	return append(dst, h.b...)
}

// AppendDistribution appends d as `name,source=…,window=…[,correction=N],tags
// count=…,sum=…,min=…,max=…,avg=…,p50=…,… ts` (window start). pNN is
// "p" + 100·Q (p50, p99, p99.9) for each of d.Quantiles; avg is sum/count
// (left out when count is 0); non-finite fields are left out. Corrections
// (late samples of a closed window) carry a correction tag so they do not
// overwrite the window's first emission, which has the same timestamp.
func (e *Encoder) AppendDistribution(dst []byte, d *model.Distribution) ([]byte, bool) {
	e.begin(dst)
	if d.Name == "" {
		e.fail(&e.Drops.EmptyName)
	}
	if !model.IsFinite(d.Count) {
		e.fail(&e.Drops.NonFinite)
	}
	dst = e.appendName(dst, d.Name, kMeasurement)
	dst = e.appendTag(dst, "source", d.Source)
	dst = appendWindow(dst, d.Window)
	if d.Correction > 0 {
		dst = append(dst, ",correction="...)
		dst = strconv.AppendUint(dst, uint64(d.Correction), 10)
	}
	dst = e.appendTags(dst, d.Tags, "window", "correction")
	dst, first := e.appendFloatField(dst, true, "count", d.Count)
	dst, first = e.appendFloatField(dst, first, "sum", d.Sum)
	dst, first = e.appendFloatField(dst, first, "min", d.Min)
	dst, first = e.appendFloatField(dst, first, "max", d.Max)
	if d.Count != 0 {
		dst, first = e.appendFloatField(dst, first, "avg", d.Sum/d.Count)
	}
	for _, q := range d.Quantiles {
		if !model.IsFinite(q.Value) || !model.IsFinite(q.Q) {
			continue
		}
		dst = append(dst, ",p"...)
		dst = strconv.AppendFloat(dst, math.Round(q.Q*100*1e6)/1e6, 'f', -1, 64)
		dst = append(dst, '=')
		dst = strconv.AppendFloat(dst, q.Value, 'g', -1, 64)
	}
	_ = first // count is always written when the line is kept
	dst = appendTime(dst, d.Timestamp)
	return e.end(dst)
}

// AppendLog appends l as `logs,source=…,level=…[,attrs] message="…"
// [,request_id="…"][,attrs] ts`. The request id is a field, never a tag
// (one series per request would explode the index). Attributes are string
// fields (LogAttrs "fields"; attributes named message or request_id are
// left out) or tags (LogAttrs "tags").
//
// InfluxDB keeps one point per series and timestamp, so two logs of the
// same source and level with the same timestamp would overwrite each
// other: when a log directly follows one with the same source, level and
// timestamp, it is written 1 ns after the previous one.
func (e *Encoder) AppendLog(dst []byte, l *model.Log) ([]byte, bool) {
	e.begin(dst)
	meas := e.LogMeasurement
	if meas == "" {
		meas = "logs"
	}
	dst = e.appendName(dst, meas, kMeasurement)
	dst = e.appendTag(dst, "source", l.Source)
	dst = e.appendTag(dst, "level", l.Level)
	attrTags := e.LogAttrs == "tags"
	if attrTags {
		dst = e.appendTags(dst, l.Attrs, "level")
	}
	dst = append(dst, " message="...)
	dst = e.appendBytesString(dst, l.Message)
	if l.RequestID != "" {
		dst = append(dst, ",request_id="...)
		dst = e.appendString(dst, l.RequestID)
	}
	if !attrTags {
		for i := range l.Attrs {
			k := l.Attrs[i].Key
			if k == "" || k == "message" || k == "request_id" || k == "time" || k == "_measurement" || k == "_field" {
				continue
			}
			dst = append(dst, ',')
			dst = e.appendName(dst, k, kKey)
			dst = append(dst, '=')
			dst = e.appendString(dst, l.Attrs[i].Value)
		}
	}
	ts := l.Timestamp
	p := &e.prev
	if p.ok && p.ts == ts && p.source == l.Source && p.level == l.Level {
		ts = p.written + 1
	}
	dst = appendTime(dst, ts)
	dst, ok := e.end(dst)
	if ok {
		*p = logKey{source: l.Source, level: l.Level, ts: l.Timestamp, written: ts, ok: true}
	}
	return dst, ok
}

// appendBytesString is appendString for a []byte without converting it.
func (e *Encoder) appendBytesString(dst []byte, b []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, b[start:i]...)
			dst = append(dst, '\\', c)
			start = i + 1
		case (c == '\n' || c == '\r') && e.Version == 2:
			dst = append(dst, b[start:i]...)
			if c == '\n' {
				dst = append(dst, '\\', '\\', 'n')
			} else {
				dst = append(dst, '\\', '\\', 'r')
			}
			start = i + 1
		}
	}
	dst = append(dst, b[start:]...)
	return append(dst, '"')
}

// AppendSpan appends s as `spans,source=…,name=…,tags trace_id="…",
// span_id="…"[,parent_id="…"],duration_ns=…i ts` (start time).
func (e *Encoder) AppendSpan(dst []byte, s *model.Span) ([]byte, bool) {
	e.begin(dst)
	if s.Name == "" {
		e.fail(&e.Drops.EmptyName)
	}
	meas := e.SpanMeasurement
	if meas == "" {
		meas = "spans"
	}
	dst = e.appendName(dst, meas, kMeasurement)
	dst = e.appendTag(dst, "source", s.Source)
	dst = e.appendTag(dst, "name", s.Name)
	dst = e.appendTags(dst, s.Tags, "name")
	dst = append(dst, " trace_id="...)
	dst = e.appendString(dst, s.TraceID)
	dst = append(dst, ",span_id="...)
	dst = e.appendString(dst, s.SpanID)
	if s.ParentID != "" {
		dst = append(dst, ",parent_id="...)
		dst = e.appendString(dst, s.ParentID)
	}
	dst = append(dst, ",duration_ns="...)
	dst = strconv.AppendInt(dst, s.Duration, 10)
	dst = append(dst, 'i')
	dst = appendTime(dst, s.Start)
	return e.end(dst)
}

// AppendBatch appends every item of b, metrics first, then distributions,
// logs and spans, and returns dst and the number of lines appended. Items
// left out are counted in e.Drops. It does not keep b. A metric series'
// head is escaped once per call when its points share memory (as the wire
// series encoding decodes them; model.SeriesMemo).
func (e *Encoder) AppendBatch(dst []byte, b *model.Batch) ([]byte, int) {
	n := 0
	var ok bool
	// Points of a series share memory only when the batch was decoded
	// from the series encoding; other batches, and those of fewer than
	// two points per series, where a head is mostly escaped once anyway,
	// skip the memo (docs/performance.md).
	memo := b.SeriesRepeat(2)
	if memo {
		e.memo.Next()
	}
	for i := range b.Metrics {
		if dst, ok = e.appendMetric(dst, &b.Metrics[i], memo); ok {
			n++
		}
	}
	for i := range b.Dists {
		if dst, ok = e.AppendDistribution(dst, &b.Dists[i]); ok {
			n++
		}
	}
	e.prev = logKey{}
	for i := range b.Logs {
		if dst, ok = e.AppendLog(dst, &b.Logs[i]); ok {
			n++
		}
	}
	e.prev = logKey{} // do not keep the batch's strings
	for i := range b.Spans {
		if dst, ok = e.AppendSpan(dst, &b.Spans[i]); ok {
			n++
		}
	}
	return dst, n
}
