package sinktest

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"unsafe"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/wire"
)

// RawPoints is what a sink of raw metrics gets from the agent: 20 points
// of each of 200 series (gauges, counters, samples, gauge deltas), and
// series every sink drops or rewrites by design: no name (and a tag value
// with a line break), a name with a
// line break, a name starting with a digit, a tag value ending in a
// backslash, a tag value with a comma, space and quote, a reserved tag
// key, an empty tag value, a long tag value, and non-finite values on some
// points. Sinks' series-memo tests and benchmarks (docs/performance.md,
// "Series encoding and the per-batch series memo") run on it.
func RawPoints() []model.Metric {
	const t0 = 1763780400000000000
	var ms []model.Metric
	kinds := []model.Kind{model.Gauge, model.Counter, model.Sample, model.GaugeDelta}
	for p := range 20 {
		for s := range 200 {
			m := model.Metric{Name: fmt.Sprint("app.metric_", s%13), Source: fmt.Sprint("fn-", s%7),
				Kind: kinds[s%len(kinds)], Value: float64(p*s%97) + 0.5, Timestamp: t0 + int64(p)*1e9 + int64(s),
				Tags: model.Tags{{Key: "env", Value: "prod"}, {Key: "series", Value: fmt.Sprint(s)}}}
			switch s {
			case 5:
				m.Name = ""
				m.Tags = model.Tags{{Key: "k", Value: "line\nbreak"}}
			case 6:
				m.Tags = model.Tags{{Key: "long", Value: strings.Repeat("x", 300)}}
			case 9:
				m.Name = "app.line\nbreak"
			case 10:
				m.Name = "9lives"
			case 11:
				m.Tags = model.Tags{{Key: "path", Value: `c:\`}}
			case 13:
				m.Tags = model.Tags{{Key: "a b", Value: `x,y "z"=1`}, {Key: "empty", Value: ""}, {Key: "source", Value: "own"}}
			case 14:
				m.Window = model.WindowMinute
			case 15:
				m.Source = ""
			case 17:
				m.Name = "app.ünïcode métric"
			}
			if s == 18 && p%5 == 0 {
				m.Value = math.NaN()
			}
			ms = append(ms, m)
		}
	}
	return ms
}

// Decoded returns ms as a consumer gets them: encoded in a metrics record
// of wire encoding enc and decoded by a wire.Decoder. With
// wire.EncodingSeries the points of a series share its strings and tags
// (and carry Metric.Series); with wire.EncodingLES nothing is shared.
func Decoded(tb testing.TB, ms []model.Metric, enc wire.Encoding) *model.Batch {
	tb.Helper()
	e := wire.NewEncoding(wire.SignalMetrics, enc)
	for i := range ms {
		e.AppendMetric(&ms[i])
	}
	rec, err := e.Finish(nil, 1, 1, wire.CompressionNone)
	if err != nil {
		tb.Fatal(err)
	}
	var d wire.Decoder
	b := &model.Batch{}
	if _, err := d.Decode(b, rec); err != nil {
		tb.Fatal(err)
	}
	return b
}

// DistinctSeries returns a copy of ms where every point is a series of its
// own (a tag zpoint=<index> added), so that a series-encoded batch of it
// shares nothing: the worst case for a per-series memo.
func DistinctSeries(ms []model.Metric) []model.Metric {
	out := make([]model.Metric, len(ms))
	for i, m := range ms {
		m.Tags = append(m.Tags[:len(m.Tags):len(m.Tags)], model.Tag{Key: "zpoint", Value: fmt.Sprint(i)})
		out[i] = m
	}
	return out
}

// RawPointsCases are the benchmark cases of RawPoints: as decoded from
// each wire encoding, and series-encoded with every point its own series.
func RawPointsCases() []struct {
	Name   string
	Points []model.Metric
	Enc    wire.Encoding
} {
	ms := RawPoints()
	return []struct {
		Name   string
		Points []model.Metric
		Enc    wire.Encoding
	}{{"les", ms, wire.EncodingLES}, {"series", ms, wire.EncodingSeries}, {"series-distinct", DistinctSeries(ms), wire.EncodingSeries}}
}

// ReusedSeries is a batch of one gauge point (value 1 at 1e18 ns, series
// number 1) whose name, source and tag value live in memory that set
// rewrites: after set("bbbb") the same memory holds the series bbbb with
// source fn-b and tag k=bbbb, as a wire decoder's reused buffer holds
// another record's series. A sink's memo must not carry anything from one
// batch to the next over it.
func ReusedSeries() (b *model.Batch, set func(name string)) {
	name, src := []byte("aaaa"), []byte("fn-a")
	tags := model.Tags{{Key: "k", Value: "aaaa"}}
	b = &model.Batch{Metrics: []model.Metric{{Name: unsafe.String(&name[0], len(name)), Source: unsafe.String(&src[0], len(src)),
		Tags: tags, Value: 1, Timestamp: 1e18, Series: 1}}}
	return b, func(n string) {
		copy(name, n)
		copy(src, "fn-"+n[:1])
		tags[0].Value = n
	}
}
