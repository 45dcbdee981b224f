// Package model defines the telemetry items les carries: metric points,
// distributions, log records and spans, and the Batch that groups them.
//
// It depends on the standard library only. Strings in items produced by a
// decoder may alias the decoder's input (see each decoder's doc comment); an
// item that must outlive that input is copied with its Clone method.
package model

import (
	"math"
	"strings"
	"sync/atomic"
)

// Kind says how a metric point combines with others of the same series.
type Kind uint8

const (
	// Gauge is a value at a point in time; the last one wins.
	Gauge Kind = iota
	// Counter is a delta to be summed.
	Counter
	// Sample is one observation to be rolled up into a distribution.
	Sample
	// GaugeDelta adds Value to the current gauge (StatsD "g" with +/-).
	GaugeDelta
	// Set is one member of a set whose distinct members are counted; Value
	// holds a 53-bit hash of the member (an exactly representable integer).
	Set
)

var kindNames = [...]string{Gauge: "gauge", Counter: "counter", Sample: "sample", GaugeDelta: "gauge_delta", Set: "set"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Tag is one key/value pair of a series or item.
type Tag struct {
	Key   string
	Value string
}

// Tags is a list of tags. Series tags are sorted by key (then value) and
// keys are unique; SortTags establishes that order.
type Tags []Tag

// Get returns the value of key and whether it was present.
func (t Tags) Get(key string) (string, bool) {
	for i := range t {
		if t[i].Key == key {
			return t[i].Value, true
		}
	}
	return "", false
}

// SortTags sorts tags by key, then value, in place without allocating.
// Tag lists are short (at most a few dozen), so insertion sort is used.
func SortTags(t Tags) {
	for i := 1; i < len(t); i++ {
		for j := i; j > 0 && tagLess(t[j], t[j-1]); j-- {
			t[j], t[j-1] = t[j-1], t[j]
		}
	}
}

func tagLess(a, b Tag) bool {
	if a.Key != b.Key {
		return a.Key < b.Key
	}
	return a.Value < b.Value
}

// Clone returns a deep copy whose strings share nothing with t.
func (t Tags) Clone() Tags {
	if t == nil {
		return nil
	}
	out := make(Tags, len(t))
	for i, tag := range t {
		out[i] = Tag{Key: strings.Clone(tag.Key), Value: strings.Clone(tag.Value)}
	}
	return out
}

// Window is the length of a distribution's time bin.
type Window uint8

const (
	// WindowNone marks a distribution that has no fixed bin.
	WindowNone Window = iota
	WindowMinute
	WindowHour
	WindowDay
)

var windowNames = [...]string{WindowNone: "none", WindowMinute: "minute", WindowHour: "hour", WindowDay: "day"}

func (w Window) String() string {
	if int(w) < len(windowNames) {
		return windowNames[w]
	}
	return "unknown"
}

// Nanos returns the window length in nanoseconds, 0 for WindowNone.
func (w Window) Nanos() int64 {
	switch w {
	case WindowMinute:
		return 60e9
	case WindowHour:
		return 3600e9
	case WindowDay:
		return 86400e9
	}
	return 0
}

// ParseWindow maps "minute", "hour", "day" (and "m", "h", "d") to a Window.
func ParseWindow(s string) (Window, bool) {
	switch s {
	case "minute", "m", "M":
		return WindowMinute, true
	case "hour", "h", "H":
		return WindowHour, true
	case "day", "d", "D":
		return WindowDay, true
	}
	return WindowNone, false
}

// Metric is one point of a series. Series identity is (Name, Source, Tags).
type Metric struct {
	Name      string
	Value     float64
	Timestamp int64 // Unix nanoseconds
	Source    string
	Tags      Tags
	Kind      Kind
	// Window is the roll-up granularity requested for a Sample (e.g. by the
	// histogram port it arrived on); WindowNone leaves it to the rollup rules.
	Window Window
	// Ref, when not 0, says Name, Source and Tags (the slice and its
	// strings) are a decoder's interned copy of the series (its series
	// cache): memory never written again, shared by every point of the
	// series the cache hands out. The high 32 bits number the cache (a
	// NewInternID, unique in the process), the low 32 the series' entry in
	// it, from 1 up, so an encoder can find the series by an index instead
	// of reading its bytes. The kind and window are not part of it.
	// Whoever points any of the three at other memory must clear it.
	Ref uint64
	// Series, when not 0, numbers the point's series within its batch:
	// the wire decoder sets it for the series encoding (1 + the batch's
	// count of series before the record + the index in the record's
	// table). It is a hint for SeriesMemo, never identity: points copied
	// between batches keep a number that means nothing there.
	Series uint32
}

var internIDs atomic.Uint32

// NewInternID returns a number for a decoder's series cache, for the high
// half of Metric.Ref: unique in the process (it wraps after 2^32 caches).
func NewInternID() uint32 {
	for {
		if id := internIDs.Add(1); id != 0 {
			return id
		}
	}
}

// Aggregated reports whether m is raw input to be aggregated by the rollup
// rather than a point to deliver as is: samples, counters (deltas), gauge
// deltas, set members, and gauges that ask for a window (StatsD gauges).
func (m *Metric) Aggregated() bool {
	switch m.Kind {
	case Sample, Counter, GaugeDelta, Set:
		return true
	case Gauge:
		return m.Window != WindowNone
	}
	return false
}

// Centroid is a value and how many samples it stands for.
type Centroid struct {
	Value float64
	Count float64
}

// Distribution summarises the samples of one series in one window.
// Centroids are sorted by Value. Count is the sum of centroid counts.
type Distribution struct {
	Name      string
	Timestamp int64 // window start, Unix nanoseconds
	Window    Window
	Source    string
	Tags      Tags
	Count     float64
	Sum       float64
	Min       float64
	Max       float64
	Centroids []Centroid
	// Quantiles are optional precomputed percentiles (e.g. set by the rollup
	// consumer for sinks that cannot merge sketches).
	Quantiles []Quantile
	// Correction is the number of this emission for the window: 0 for the
	// first, 1.. for corrections carrying late samples.
	Correction uint32
}

// Quantile is a percentile of a distribution, Q in [0,1].
type Quantile struct {
	Q     float64
	Value float64
}

// Log is one log record or event. Level is the producer's text (e.g.
// "INFO"); Message is the raw line or message bytes.
type Log struct {
	Timestamp int64 // Unix nanoseconds
	Source    string
	RequestID string
	Level     string
	Message   []byte
	Attrs     Tags
}

// Span is one operation of a trace. Times are Unix nanoseconds.
//
// Kind, StatusCode, StatusMessage, Events and Links are optional (zero for
// spans from formats that have no such notion, e.g. Wavefront span lines).
// Decoders put Events in Batch.EventArena and Links in Batch.LinkArena, and
// their Attrs in Batch.Arena, like Tags.
type Span struct {
	Name     string
	TraceID  string
	SpanID   string
	ParentID string
	Start    int64
	Duration int64
	Source   string
	Tags     Tags

	Kind          SpanKind
	StatusCode    StatusCode
	StatusMessage string
	Events        []SpanEvent
	Links         []SpanLink
}

// Extended reports whether s carries any of the optional fields (kind,
// status, events or links).
func (s *Span) Extended() bool {
	return s.Kind != SpanKindUnspecified || s.StatusCode != StatusUnset || s.StatusMessage != "" ||
		len(s.Events) > 0 || len(s.Links) > 0
}

// SpanKind is the OpenTelemetry span kind; the values are OTLP's.
type SpanKind uint8

const (
	SpanKindUnspecified SpanKind = iota
	SpanKindInternal
	SpanKindServer
	SpanKindClient
	SpanKindProducer
	SpanKindConsumer
)

var spanKindNames = [...]string{"unspecified", "internal", "server", "client", "producer", "consumer"}

func (k SpanKind) String() string {
	if int(k) < len(spanKindNames) {
		return spanKindNames[k]
	}
	return "unknown"
}

// StatusCode is the OpenTelemetry span status code; the values are OTLP's.
type StatusCode uint8

const (
	StatusUnset StatusCode = iota
	StatusOK
	StatusError
)

var statusNames = [...]string{"unset", "ok", "error"}

func (c StatusCode) String() string {
	if int(c) < len(statusNames) {
		return statusNames[c]
	}
	return "unknown"
}

// SpanEvent is a timestamped annotation of a span (a span log).
type SpanEvent struct {
	Name      string
	Timestamp int64 // Unix nanoseconds
	Attrs     Tags
}

// SpanLink points from a span to a span of another (or the same) trace.
type SpanLink struct {
	TraceID string
	SpanID  string
	Attrs   Tags
}

// IsFinite reports whether v is neither NaN nor ±Inf.
func IsFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
