// Package jsonl encodes telemetry items as newline-delimited JSON (NDJSON):
// one object per item, terminated by '\n'.
//
// The encoders are pure append functions: no reflection, no goroutines, no
// package state, and no allocations beyond growing dst. They never keep dst
// or the item after returning.
//
// Objects have these fields, in this order (absent fields are omitted):
//
//	all:           type ("metric"|"distribution"|"log"|"span"),
//	               record, item, items (only when Options.RecordID is set)
//	metric:        name, value, kind, window (only if not "none"), timestamp, source, tags
//	distribution:  name, timestamp, window, source, tags, count, sum, min, max,
//	               avg, percentiles, centroids, correction
//	log:           timestamp, source, request_id, level, message, attrs
//	span:          name, trace_id, span_id, parent_id, timestamp, start,
//	               duration_ms, source, tags, and only for spans with a
//	               kind, status, events or links (model.Span.Extended):
//	               kind, status_code, status_message, events, links
//
// Timestamps are RFC 3339 in UTC with up to nine fractional digits
// (time.RFC3339Nano, trailing zeros trimmed). Non-finite floats are null.
// Strings are escaped per RFC 8259; invalid UTF-8 becomes U+FFFD, and U+2028
// and U+2029 are escaped so the output is also valid JavaScript. Tags become
// an object in list order (a repeated key appears twice).
package jsonl

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/les-streams/les/internal/model"
)

// Options add optional fields to every object.
type Options struct {
	// RecordID, when not empty, adds "record":RecordID and, as the position
	// of the item within its record, "item":Item and "items":Items right
	// after "type". A reader can tell that a record is complete when it has
	// seen the line whose item is items-1.
	RecordID string
	Item     int
	Items    int
}

// AppendMetric appends m as one JSON object and '\n' to dst and returns the
// extended slice.
func AppendMetric(dst []byte, m *model.Metric, o Options) []byte {
	dst = appendHead(dst, "metric", o)
	dst = appendKey(dst, "name")
	dst = AppendString(dst, m.Name)
	dst = appendKey(dst, "value")
	dst = AppendFloat(dst, m.Value)
	dst = appendKey(dst, "kind")
	dst = AppendString(dst, m.Kind.String())
	if m.Window != model.WindowNone {
		dst = appendKey(dst, "window")
		dst = AppendString(dst, m.Window.String())
	}
	dst = appendKey(dst, "timestamp")
	dst = AppendTime(dst, m.Timestamp)
	dst = appendKey(dst, "source")
	dst = AppendString(dst, m.Source)
	dst = appendKey(dst, "tags")
	dst = appendTags(dst, m.Tags)
	return append(dst, '}', '\n')
}

// AppendDistribution appends d as one JSON object and '\n' to dst and
// returns the extended slice. avg is sum/count (null when count is 0);
// percentiles maps "p"+100·Q (e.g. "p50", "p99.9") to the value of each
// Quantile; centroids is [[value,count],...].
func AppendDistribution(dst []byte, d *model.Distribution, o Options) []byte {
	dst = appendHead(dst, "distribution", o)
	dst = appendKey(dst, "name")
	dst = AppendString(dst, d.Name)
	dst = appendKey(dst, "timestamp")
	dst = AppendTime(dst, d.Timestamp)
	dst = appendKey(dst, "window")
	dst = AppendString(dst, d.Window.String())
	dst = appendKey(dst, "source")
	dst = AppendString(dst, d.Source)
	dst = appendKey(dst, "tags")
	dst = appendTags(dst, d.Tags)
	dst = appendKey(dst, "count")
	dst = AppendFloat(dst, d.Count)
	dst = appendKey(dst, "sum")
	dst = AppendFloat(dst, d.Sum)
	dst = appendKey(dst, "min")
	dst = AppendFloat(dst, d.Min)
	dst = appendKey(dst, "max")
	dst = AppendFloat(dst, d.Max)
	dst = appendKey(dst, "avg")
	if d.Count != 0 {
		dst = AppendFloat(dst, d.Sum/d.Count)
	} else {
		dst = append(dst, "null"...)
	}
	dst = appendKey(dst, "percentiles")
	dst = append(dst, '{')
	for i, q := range d.Quantiles {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"', 'p')
		dst = appendPercent(dst, q.Q)
		dst = append(dst, '"', ':')
		dst = AppendFloat(dst, q.Value)
	}
	dst = append(dst, '}')
	dst = appendKey(dst, "centroids")
	dst = append(dst, '[')
	for i, c := range d.Centroids {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '[')
		dst = AppendFloat(dst, c.Value)
		dst = append(dst, ',')
		dst = AppendFloat(dst, c.Count)
		dst = append(dst, ']')
	}
	dst = append(dst, ']')
	dst = appendKey(dst, "correction")
	dst = strconv.AppendUint(dst, uint64(d.Correction), 10)
	return append(dst, '}', '\n')
}

// AppendLog appends l as one JSON object and '\n' to dst and returns the
// extended slice. The message is a JSON string (invalid UTF-8 replaced).
func AppendLog(dst []byte, l *model.Log, o Options) []byte {
	dst = appendHead(dst, "log", o)
	dst = appendKey(dst, "timestamp")
	dst = AppendTime(dst, l.Timestamp)
	dst = appendKey(dst, "source")
	dst = AppendString(dst, l.Source)
	dst = appendKey(dst, "request_id")
	dst = AppendString(dst, l.RequestID)
	dst = appendKey(dst, "level")
	dst = AppendString(dst, l.Level)
	dst = appendKey(dst, "message")
	// The string view only lives for this call and is never stored.
	dst = AppendString(dst, unsafe.String(unsafe.SliceData(l.Message), len(l.Message)))
	dst = appendKey(dst, "attrs")
	dst = appendTags(dst, l.Attrs)
	return append(dst, '}', '\n')
}

// AppendSpan appends s as one JSON object and '\n' to dst and returns the
// extended slice. timestamp and start are both the span's start;
// duration_ms is Duration in milliseconds (fractional). A span with a kind,
// status, events or links also gets kind and status_code (names such as
// "server" and "error"), status_message, events
// ([{"name","timestamp","attrs"}]) and links ([{"trace_id","span_id","attrs"}]).
func AppendSpan(dst []byte, s *model.Span, o Options) []byte {
	dst = appendHead(dst, "span", o)
	dst = appendKey(dst, "name")
	dst = AppendString(dst, s.Name)
	dst = appendKey(dst, "trace_id")
	dst = AppendString(dst, s.TraceID)
	dst = appendKey(dst, "span_id")
	dst = AppendString(dst, s.SpanID)
	dst = appendKey(dst, "parent_id")
	dst = AppendString(dst, s.ParentID)
	dst = appendKey(dst, "timestamp")
	dst = AppendTime(dst, s.Start)
	dst = appendKey(dst, "start")
	dst = AppendTime(dst, s.Start)
	dst = appendKey(dst, "duration_ms")
	dst = AppendFloat(dst, float64(s.Duration)/1e6)
	dst = appendKey(dst, "source")
	dst = AppendString(dst, s.Source)
	dst = appendKey(dst, "tags")
	dst = appendTags(dst, s.Tags)
	if s.Extended() {
		dst = appendKey(dst, "kind")
		dst = AppendString(dst, s.Kind.String())
		dst = appendKey(dst, "status_code")
		dst = AppendString(dst, s.StatusCode.String())
		dst = appendKey(dst, "status_message")
		dst = AppendString(dst, s.StatusMessage)
		dst = appendKey(dst, "events")
		dst = append(dst, '[')
		for i := range s.Events {
			if i > 0 {
				dst = append(dst, ',')
			}
			ev := &s.Events[i]
			dst = append(dst, `{"name":`...)
			dst = AppendString(dst, ev.Name)
			dst = appendKey(dst, "timestamp")
			dst = AppendTime(dst, ev.Timestamp)
			dst = appendKey(dst, "attrs")
			dst = appendTags(dst, ev.Attrs)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
		dst = appendKey(dst, "links")
		dst = append(dst, '[')
		for i := range s.Links {
			if i > 0 {
				dst = append(dst, ',')
			}
			l := &s.Links[i]
			dst = append(dst, `{"trace_id":`...)
			dst = AppendString(dst, l.TraceID)
			dst = appendKey(dst, "span_id")
			dst = AppendString(dst, l.SpanID)
			dst = appendKey(dst, "attrs")
			dst = appendTags(dst, l.Attrs)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	return append(dst, '}', '\n')
}

func appendHead(dst []byte, typ string, o Options) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, typ...)
	dst = append(dst, '"')
	if o.RecordID != "" {
		dst = append(dst, `,"record":`...)
		dst = AppendString(dst, o.RecordID)
		dst = append(dst, `,"item":`...)
		dst = strconv.AppendInt(dst, int64(o.Item), 10)
		dst = append(dst, `,"items":`...)
		dst = strconv.AppendInt(dst, int64(o.Items), 10)
	}
	return dst
}

// appendKey appends ,"key": — key must not need escaping.
func appendKey(dst []byte, key string) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	return append(dst, '"', ':')
}

func appendTags(dst []byte, tags model.Tags) []byte {
	dst = append(dst, '{')
	for i := range tags {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, tags[i].Key)
		dst = append(dst, ':')
		dst = AppendString(dst, tags[i].Value)
	}
	return append(dst, '}')
}

// AppendTime appends the Unix-nanosecond timestamp ts as a quoted RFC 3339
// UTC time with up to nine fractional digits.
func AppendTime(dst []byte, ts int64) []byte {
	dst = append(dst, '"')
	dst = time.Unix(0, ts).UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// AppendFloat appends v as a JSON number, or null when v is NaN or ±Inf.
// It formats like encoding/json: shortest representation, exponent only
// below 1e-6 or from 1e21 on.
func AppendFloat(dst []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(dst, "null"...)
	}
	abs := math.Abs(v)
	fmt := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		fmt = 'e'
	}
	dst = strconv.AppendFloat(dst, v, fmt, -1, 64)
	if fmt == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// appendPercent appends 100·q with at most six decimals and no trailing
// zeros ("50", "99.9").
func appendPercent(dst []byte, q float64) []byte {
	p := q * 100
	if !model.IsFinite(p) {
		return append(dst, "NaN"...)
	}
	p = math.Round(p*1e6) / 1e6
	return strconv.AppendFloat(dst, p, 'f', -1, 64)
}

const hex = "0123456789abcdef"

// safe[b] reports whether ASCII byte b can appear unescaped in a JSON string.
var safe = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

// AppendString appends s as a quoted JSON string: '"', '\\' and control
// characters are escaped, invalid UTF-8 bytes become \ufffd, and U+2028 and
// U+2029 are escaped.
func AppendString(dst []byte, s string) []byte {
	return append(AppendStringContent(append(dst, '"'), s), '"')
}

// AppendStringContent appends s escaped as AppendString does, without the
// quotes (for building one JSON string from several parts).
func AppendStringContent(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if safe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}
