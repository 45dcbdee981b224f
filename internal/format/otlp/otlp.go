// Package otlp maps OpenTelemetry OTLP export requests (metrics, logs and
// traces, as go.opentelemetry.io/collector/pdata holds them) to les items:
// metric points, distributions, log records and spans. README.md has the
// mapping table, its accuracy and its limits.
//
// A Decoder appends into a model.Batch. Every OTLP data point, log record
// or span that cannot be mapped appends one model.Reject with its reason
// (so the number of rejects is the count OTLP's partial_success wants);
// the rest of the request still maps. Cumulative sums and histograms become
// deltas through a Deltas, which is shared by all decoders of an agent and
// is the only state kept between requests.
//
// The package has no goroutines, logging or package state.
package otlp

import (
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"unsafe"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/les-streams/les/internal/model"
)

// Reject reasons (the reason label of les_ingest_rejected_total).
const (
	ReasonNonFinite        = "non_finite_value"       // NaN or ±Inf value, sum, min, max, quantile or bound
	ReasonMissingValue     = "missing_value"          // number point with neither int nor double
	ReasonNoRecordedValue  = "no_recorded_value"      // point flagged NO_RECORDED_VALUE (a staleness marker)
	ReasonNegativeCounter  = "negative_counter"       // monotonic delta sum below 0
	ReasonOutOfOrder       = "out_of_order"           // cumulative point not newer than the last one of its series
	ReasonBucketMismatch   = "bucket_count_mismatch"  // len(bucket_counts) != len(explicit_bounds)+1
	ReasonCountMismatch    = "count_mismatch"         // count != sum of bucket counts (+ zero_count)
	ReasonInvalidBounds    = "invalid_bounds"         // explicit bounds not finite and strictly increasing
	ReasonInvalidMinMax    = "invalid_min_max"        // min > max
	ReasonInvalidScale     = "invalid_scale"          // exponential scale outside [-10, 20], or bucket bounds overflow
	ReasonTooManyBuckets   = "too_many_buckets"       // more than Options.MaxBuckets buckets in a point
	ReasonInvalidQuantile  = "invalid_quantile"       // summary quantile outside [0, 1]
	ReasonUnknownType      = "unknown_metric_type"    // metric with no data (type empty)
	ReasonTooManyTags      = "too_many_tags"          // more than Options.MaxTags tags after merging
	ReasonMissingName      = "missing_name"           // metric without a name
	ReasonInvalidTraceID   = "invalid_trace_id"       // span or link trace id all zero
	ReasonInvalidSpanID    = "invalid_span_id"        // span id all zero
	ReasonInvalidDuration  = "invalid_duration"       // span end before its start
	ReasonTemporality      = "unknown_temporality"    // sum or histogram with temporality unspecified
	ReasonPayloadInvalid   = "invalid_payload"        // the request does not parse (whole request)
	ReasonUnsupportedMedia = "unsupported_media_type" // content type neither protobuf nor JSON (whole request)
)

// Tag keys les adds.
const (
	TagScopeName      = "otel.scope.name"
	TagScopeVersion   = "otel.scope.version"
	TagUnit           = "unit"
	TagQuantile       = "quantile"
	AttrTraceID       = "trace_id"
	AttrSpanID        = "span_id"
	AttrSeverityNum   = "severity_number"
	AttrEventName     = "event.name"
	AttrInvocationID  = "faas.invocation_id"
	DefaultMaxTags    = 100
	DefaultMaxBuckets = 4096
)

// Options configure a Decoder. Zero values select the defaults.
type Options struct {
	// DefaultSource is the Source of items whose resource has none of
	// faas.name, service.name and host.name.
	DefaultSource string
	// MaxTags bounds the tags of one item after merging resource, scope
	// and item attributes (default 100).
	MaxTags int
	// MaxBuckets bounds the buckets of one histogram point (default 4096).
	MaxBuckets int
}

// Decoder maps OTLP requests. It keeps scratch space between calls and is
// not safe for concurrent use; use one per goroutine (they may share one
// Deltas).
//
// Ownership: strings of appended items alias the pdata request (which must
// not be modified while the items are in use) or a string buffer the
// Decoder allocates per call and never writes again, so items stay valid
// as long as the request is not modified. Log messages alias the body
// string's bytes: they must not be modified. Rejects' Line is the metric
// name, span name or "" and aliases the request the same way.
type Decoder struct {
	o      Options
	deltas *Deltas

	strs   []byte // string buffer of the current call; never rewritten
	strCap int    // capacity to allocate for the next call's buffer
	res    []model.Tag
	scope  []model.Tag
	source string
	key    []byte

	// histogram scratch
	h histPoint
}

// NewDecoder returns a decoder with defaults filled in; d converts
// cumulative points to deltas (nil: NewDeltas with its defaults).
func NewDecoder(o Options, d *Deltas) *Decoder {
	if o.MaxTags <= 0 {
		o.MaxTags = DefaultMaxTags
	}
	if o.MaxBuckets <= 0 {
		o.MaxBuckets = DefaultMaxBuckets
	}
	if d == nil {
		d = NewDeltas(DeltasConfig{})
	}
	return &Decoder{o: o, deltas: d, strCap: 1024}
}

// begin starts a call: the previous call's string buffer is left to the
// items that use it.
func (d *Decoder) begin() {
	if len(d.strs) > 0 {
		d.strCap = max(1024, min(2*len(d.strs), 1<<20))
	}
	d.strs = nil
}

// str returns the bytes appended to d.strs since start as a string.
func (d *Decoder) str(start int) string {
	if len(d.strs) == start {
		return ""
	}
	return unsafe.String(&d.strs[start], len(d.strs)-start)
}

// grow makes room for n more bytes without moving what callers may still
// be building (they append after calling grow).
func (d *Decoder) grow(n int) {
	if d.strs == nil {
		d.strs = make([]byte, 0, max(d.strCap, n))
		return
	}
	if cap(d.strs)-len(d.strs) < n {
		// A new buffer: strings already handed out keep the old one alive.
		d.strs = make([]byte, 0, max(2*cap(d.strs), n))
	}
}

// valueString renders an attribute value: strings as they are (aliased),
// numbers and booleans in Go syntax, bytes as base64, arrays and maps as
// JSON (pdata's AsString, which allocates).
func (d *Decoder) valueString(v pcommon.Value) string {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return v.Str()
	case pcommon.ValueTypeBool:
		if v.Bool() {
			return "true"
		}
		return "false"
	case pcommon.ValueTypeInt:
		d.grow(20)
		start := len(d.strs)
		d.strs = strconv.AppendInt(d.strs, v.Int(), 10)
		return d.str(start)
	case pcommon.ValueTypeDouble:
		d.grow(24)
		start := len(d.strs)
		d.strs = strconv.AppendFloat(d.strs, v.Double(), 'g', -1, 64)
		return d.str(start)
	case pcommon.ValueTypeBytes:
		b := v.Bytes().AsRaw()
		n := base64.StdEncoding.EncodedLen(len(b))
		d.grow(n)
		start := len(d.strs)
		d.strs = base64.StdEncoding.AppendEncode(d.strs, b)
		return d.str(start)
	case pcommon.ValueTypeEmpty:
		return ""
	}
	return v.AsString()
}

// hexID renders a trace or span id in lower-case hex, "" when all zero.
func (d *Decoder) hexID(id []byte) string {
	zero := true
	for _, c := range id {
		if c != 0 {
			zero = false
			break
		}
	}
	if zero {
		return ""
	}
	d.grow(2 * len(id))
	start := len(d.strs)
	d.strs = hex.AppendEncode(d.strs, id)
	return d.str(start)
}

func (d *Decoder) formatFloat(f float64) string {
	d.grow(24)
	start := len(d.strs)
	d.strs = strconv.AppendFloat(d.strs, f, 'g', -1, 64)
	return d.str(start)
}

// appendAttrs appends the attributes of m to dst.
func (d *Decoder) appendAttrs(dst []model.Tag, m pcommon.Map) []model.Tag {
	for k, v := range m.All() {
		dst = append(dst, model.Tag{Key: k, Value: d.valueString(v)})
	}
	return dst
}

// Source precedence: the first of these resource attributes that is set
// (and, for service.name, is not an SDK's "unknown_service" default).
var sourceKeys = [...]string{"faas.name", "service.name", "host.name"}

// setResource renders the resource's attributes and picks the source.
func (d *Decoder) setResource(r pcommon.Resource) {
	d.res = d.appendAttrs(d.res[:0], r.Attributes())
	d.source = ""
	pick := -1
	fallback := -1
	for _, key := range sourceKeys {
		for i := range d.res {
			if d.res[i].Key != key || d.res[i].Value == "" {
				continue
			}
			if key == "service.name" && strings.HasPrefix(d.res[i].Value, "unknown_service") {
				if fallback < 0 {
					fallback = i
				}
				continue
			}
			pick = i
			break
		}
		if pick >= 0 {
			break
		}
	}
	if pick < 0 {
		pick = fallback
	}
	if pick < 0 {
		d.source = d.o.DefaultSource
		return
	}
	d.source = d.res[pick].Value
	// The attribute that became Source is not repeated as a tag.
	d.res = append(d.res[:pick], d.res[pick+1:]...)
}

// setScope renders the scope's name, version and attributes.
func (d *Decoder) setScope(s pcommon.InstrumentationScope) {
	d.scope = d.scope[:0]
	if n := s.Name(); n != "" {
		d.scope = append(d.scope, model.Tag{Key: TagScopeName, Value: n})
	}
	if v := s.Version(); v != "" {
		d.scope = append(d.scope, model.Tag{Key: TagScopeVersion, Value: v})
	}
	d.scope = d.appendAttrs(d.scope, s.Attributes())
}

// itemTags appends resource, scope, extra and item attributes to dst.Arena,
// sorts them by key and keeps, of a repeated key, the most specific one
// (item over extra over scope over resource). ok is false when more than
// MaxTags remain; the arena is then truncated back.
func (d *Decoder) itemTags(dst *model.Batch, attrs pcommon.Map, extra ...model.Tag) (model.Tags, bool) {
	mark := dst.TagMark()
	dst.Arena = append(dst.Arena, d.res...)
	dst.Arena = append(dst.Arena, d.scope...)
	dst.Arena = append(dst.Arena, extra...)
	dst.Arena = d.appendAttrs(dst.Arena, attrs)
	n := sortUnique(dst.Arena[mark:])
	dst.TruncateTags(mark + n)
	if n > d.o.MaxTags {
		dst.TruncateTags(mark)
		return nil, false
	}
	return dst.TagsSince(mark), true
}

// sortUnique sorts t by key, stably, and removes all but the last tag of
// each key; it returns the new length.
func sortUnique(t []model.Tag) int {
	for i := 1; i < len(t); i++ {
		for j := i; j > 0 && t[j].Key < t[j-1].Key; j-- {
			t[j], t[j-1] = t[j-1], t[j]
		}
	}
	w := 0
	for i := range t {
		if i+1 < len(t) && t[i+1].Key == t[i].Key {
			continue
		}
		t[w] = t[i]
		w++
	}
	return w
}

func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// RejectMessage summarises rejects for OTLP's partial_success
// error_message: the count, then each reason with its count and the first
// item name it hit, e.g. `2 rejected: non_finite_value ×1 ("cpu"), …`.
// It returns "" for no rejects.
func RejectMessage(rejects []model.Reject) string {
	if len(rejects) == 0 {
		return ""
	}
	type entry struct {
		reason string
		n      int
		first  []byte
	}
	var es []entry
outer:
	for _, r := range rejects {
		for i := range es {
			if es[i].reason == r.Reason {
				es[i].n++
				continue outer
			}
		}
		es = append(es, entry{reason: r.Reason, n: 1, first: r.Line})
	}
	var b strings.Builder
	b.WriteString(strconv.Itoa(len(rejects)))
	b.WriteString(" rejected by les:")
	for i, e := range es {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte(' ')
		b.WriteString(e.reason)
		b.WriteString(" ×")
		b.WriteString(strconv.Itoa(e.n))
		if len(e.first) > 0 {
			b.WriteString(" (")
			first := e.first
			if len(first) > 64 {
				first = first[:64]
			}
			b.WriteString(strconv.Quote(string(first)))
			b.WriteByte(')')
		}
	}
	return b.String()
}
