package wavefront

import (
	"math"
	"strconv"
	"strings"

	"github.com/les-streams/les/internal/model"
)

// The encoders write the proxy's outbound form: names, sources, tag keys and
// values always double-quoted with only '"' escaped (as \"), timestamps in
// whole seconds (spans: milliseconds), one line ending in '\n'. They append
// to dst and return it; they keep no reference to the item.
//
// Limits of the form, which the encoders do not check: a string ending in a
// backslash or containing '\n' cannot be decoded again, and an empty Source
// is omitted (the decoder then uses its default source).

// AppendMetric appends m as `"name" value seconds source="s" "k"="v"\n`.
func AppendMetric(dst []byte, m *model.Metric) []byte {
	dst = appendQuoted(dst, m.Name)
	dst = append(dst, ' ')
	dst = strconv.AppendFloat(dst, m.Value, 'g', -1, 64)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, floorDiv(m.Timestamp, 1e9), 10)
	dst = appendSourceTags(dst, m.Source, m.Tags)
	return append(dst, '\n')
}

// AppendDistribution appends d as
// `!M seconds #count value ... "name" source="s" "k"="v"\n` (!H, !D for hour
// and day windows; !M for minute and none). Adjacent centroids with equal
// values are merged; counts are rounded to integers and centroids whose count
// rounds to ≤ 0, or whose value or count is not finite, are left out.
func AppendDistribution(dst []byte, d *model.Distribution) []byte {
	switch d.Window {
	case model.WindowHour:
		dst = append(dst, "!H "...)
	case model.WindowDay:
		dst = append(dst, "!D "...)
	default:
		dst = append(dst, "!M "...)
	}
	dst = strconv.AppendInt(dst, floorDiv(d.Timestamp, 1e9), 10)
	cs := d.Centroids
	for i := 0; i < len(cs); {
		v, c := cs[i].Value, cs[i].Count
		j := i + 1
		for ; j < len(cs) && cs[j].Value == v; j++ {
			c += cs[j].Count
		}
		i = j
		c = math.Round(c)
		if !(c > 0) || math.IsInf(c, 0) || !model.IsFinite(v) {
			continue
		}
		dst = append(dst, " #"...)
		dst = strconv.AppendFloat(dst, c, 'f', 0, 64)
		dst = append(dst, ' ')
		dst = strconv.AppendFloat(dst, v, 'g', -1, 64)
	}
	dst = append(dst, ' ')
	dst = appendQuoted(dst, d.Name)
	dst = appendSourceTags(dst, d.Source, d.Tags)
	return append(dst, '\n')
}

// AppendSpan appends s as `"name" source="s" spanId="id" traceId="id"
// [parent="id"] "k"="v" startMillis durationMillis\n`.
func AppendSpan(dst []byte, s *model.Span) []byte {
	dst = appendQuoted(dst, s.Name)
	if s.Source != "" {
		dst = append(dst, " source="...)
		dst = appendQuoted(dst, s.Source)
	}
	dst = append(dst, " spanId="...)
	dst = appendQuoted(dst, s.SpanID)
	dst = append(dst, " traceId="...)
	dst = appendQuoted(dst, s.TraceID)
	if s.ParentID != "" {
		dst = append(dst, " parent="...)
		dst = appendQuoted(dst, s.ParentID)
	}
	for _, t := range s.Tags {
		dst = append(dst, ' ')
		dst = appendQuoted(dst, t.Key)
		dst = append(dst, '=')
		dst = appendQuoted(dst, t.Value)
	}
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, floorDiv(s.Start, 1e6), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, floorDiv(s.Duration, 1e6), 10)
	return append(dst, '\n')
}

func appendSourceTags(dst []byte, source string, tags model.Tags) []byte {
	if source != "" {
		dst = append(dst, " source="...)
		dst = appendQuoted(dst, source)
	}
	for _, t := range tags {
		dst = append(dst, ' ')
		dst = appendQuoted(dst, t.Key)
		dst = append(dst, '=')
		dst = appendQuoted(dst, t.Value)
	}
	return dst
}

// appendQuoted appends s in double quotes with '"' escaped as \".
func appendQuoted(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			break
		}
		dst = append(dst, s[:i]...)
		dst = append(dst, '\\', '"')
		s = s[i+1:]
	}
	dst = append(dst, s...)
	return append(dst, '"')
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}
