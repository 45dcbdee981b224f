package otlp

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/les-streams/les/internal/model"
)

const (
	since = int64(1_700_000_000e9) // the agent's start
	sec   = int64(1e9)
)

// newMetrics returns metrics with one resource (service.name svc) and
// one scope, and the scope's metric slice.
func newMetrics() (pmetric.Metrics, pmetric.MetricSlice) {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "svc")
	return md, rm.ScopeMetrics().AppendEmpty().Metrics()
}

func cumulativeSum(ms pmetric.MetricSlice, name string, start, ts int64, v float64) {
	m := ms.AppendEmpty()
	m.SetName(name)
	s := m.SetEmptySum()
	s.SetIsMonotonic(true)
	s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	dp := s.DataPoints().AppendEmpty()
	dp.SetStartTimestamp(pcommon.Timestamp(start))
	dp.SetTimestamp(pcommon.Timestamp(ts))
	dp.SetDoubleValue(v)
}

func TestCumulativeToDelta(t *testing.T) {
	d := NewDecoder(Options{}, NewDeltas(DeltasConfig{Since: since}))
	type step struct {
		start, ts int64
		v         float64
		want      []float64 // deltas emitted
		reject    string
	}
	s1, s2 := since+sec, since+100*sec
	steps := []step{
		{s1, s1 + sec, 5, []float64{5}, ""},        // started after les: counts in full
		{s1, s1 + 2*sec, 8, []float64{3}, ""},      // 8 - 5
		{s1, s1 + 3*sec, 8, []float64{0}, ""},      // no change
		{s1, s1 + 3*sec, 9, nil, ReasonOutOfOrder}, // not newer: a retry must not count twice
		{s1, s1 + 4*sec, 2, []float64{2}, ""},      // decrease: reset, the value is the delta
		{s1, s1 + 5*sec, 6, []float64{4}, ""},      // 6 - 2
		{s2, s2 + sec, 1, []float64{1}, ""},        // new start time: a new series from 0
		{s1, s1 + 6*sec, 7, []float64{1}, ""},      // the old start time is still tracked
		{since - sec, since + sec, 100, nil, ""},   // started before les: baseline only
		{since - sec, since + 2*sec, 130, []float64{30}, ""},
		{0, since + sec, 50, nil, ""}, // no start time: baseline only
		{0, since + 2*sec, 51, []float64{1}, ""},
	}
	for i, st := range steps {
		md, ms := newMetrics()
		cumulativeSum(ms, "req", st.start, st.ts, st.v)
		var b model.Batch
		d.Metrics(&b, md, 0)
		var got []float64
		for _, m := range b.Metrics {
			if m.Kind != model.Counter || m.Name != "req" || m.Source != "svc" {
				t.Fatalf("step %d: point %+v", i, m)
			}
			got = append(got, m.Value)
		}
		var reject string
		if len(b.Rejects) > 0 {
			reject = b.Rejects[0].Reason
		}
		if !cmp.Equal(got, st.want) || reject != st.reject {
			t.Errorf("step %d (start %d, v %v): deltas %v reject %q, want %v %q", i, st.start-since, st.v, got, reject, st.want, st.reject)
		}
	}
	if s := d.deltas.Stats(); s.Resets != 1 || s.Baselines != 2 || s.Series != 4 {
		t.Errorf("stats %+v", s)
	}
}

func TestDeltasBounded(t *testing.T) {
	tr := NewDeltas(DeltasConfig{MaxSeries: 10, Since: since})
	for i := range 100 {
		key := []byte{byte(i)}
		if _, emit, _ := tr.sumDelta(key, since+sec, since+2*sec+int64(i), 1); !emit && i < 5 {
			t.Fatalf("series %d: first point of a new series not counted", i)
		}
	}
	if s := tr.Stats(); s.Series > 10 || s.Forgotten == 0 {
		t.Fatalf("stats %+v: want at most 10 series kept", s)
	}
	// A forgotten series that started before the rotation only sets a
	// baseline when it returns: it may have been counted already.
	if _, emit, _ := tr.sumDelta([]byte{0}, since+sec, since+1000*sec, 5); emit {
		t.Fatal("a forgotten series counted its cumulative value again")
	}
}

func histogramMetric(ms pmetric.MetricSlice, temp pmetric.AggregationTemporality, start, ts int64, bounds []float64, counts []uint64,
	sum float64, minMax ...float64) pmetric.HistogramDataPoint {
	m := ms.AppendEmpty()
	m.SetName("lat")
	h := m.SetEmptyHistogram()
	h.SetAggregationTemporality(temp)
	dp := h.DataPoints().AppendEmpty()
	dp.SetStartTimestamp(pcommon.Timestamp(start))
	dp.SetTimestamp(pcommon.Timestamp(ts))
	dp.ExplicitBounds().FromRaw(bounds)
	dp.BucketCounts().FromRaw(counts)
	var n uint64
	for _, c := range counts {
		n += c
	}
	dp.SetCount(n)
	dp.SetSum(sum)
	if len(minMax) == 2 {
		dp.SetMin(minMax[0])
		dp.SetMax(minMax[1])
	}
	return dp
}

func TestExplicitHistogram(t *testing.T) {
	d := NewDecoder(Options{}, NewDeltas(DeltasConfig{Since: since}))
	bounds := []float64{0, 10, 100}
	cases := []struct {
		name   string
		counts []uint64
		sum    float64
		minMax []float64
		want   model.Distribution
	}{
		{"min and max clip the outer buckets", []uint64{1, 2, 0, 1}, 4 + 5 + 7 + 250, []float64{-4, 250},
			model.Distribution{Count: 4, Sum: 266, Min: -4, Max: 250,
				Centroids: []model.Centroid{{Value: -2, Count: 1}, {Value: 5, Count: 2}, {Value: 175, Count: 1}}}},
		{"min and max also clip inner buckets", []uint64{0, 2, 0, 0}, 7, []float64{3, 4},
			model.Distribution{Count: 2, Sum: 7, Min: 3, Max: 4, Centroids: []model.Centroid{{Value: 3.5, Count: 2}}}},
		{"no min/max: the bounds", []uint64{0, 1, 3, 0}, 100, nil,
			model.Distribution{Count: 4, Sum: 100, Min: 0, Max: 100,
				Centroids: []model.Centroid{{Value: 5, Count: 1}, {Value: 55, Count: 3}}}},
		{"no min/max, open buckets: the finite bound", []uint64{2, 0, 0, 1}, -1, nil,
			model.Distribution{Count: 3, Sum: -1, Min: 0, Max: 100,
				Centroids: []model.Centroid{{Value: 0, Count: 2}, {Value: 100, Count: 1}}}},
	}
	for _, c := range cases {
		md, ms := newMetrics()
		histogramMetric(ms, pmetric.AggregationTemporalityDelta, since, since+sec, bounds, c.counts, c.sum, c.minMax...)
		var b model.Batch
		d.Metrics(&b, md, 0)
		if len(b.Dists) != 1 || len(b.Rejects) != 0 {
			t.Fatalf("%s: %d dists, rejects %v", c.name, len(b.Dists), b.Rejects)
		}
		c.want.Name, c.want.Timestamp, c.want.Source = "lat", since+sec, "svc"
		got := b.Dists[0]
		got.Tags = nil
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
}

func TestCumulativeHistogram(t *testing.T) {
	d := NewDecoder(Options{}, NewDeltas(DeltasConfig{Since: since}))
	bounds := []float64{10}
	start := since + sec
	run := func(ts int64, counts []uint64, sum float64, minMax ...float64) []model.Distribution {
		md, ms := newMetrics()
		histogramMetric(ms, pmetric.AggregationTemporalityCumulative, start, ts, bounds, counts, sum, minMax...)
		var b model.Batch
		d.Metrics(&b, md, 0)
		if len(b.Rejects) > 0 {
			t.Fatalf("rejects %v", b.Rejects)
		}
		for i := range b.Dists {
			b.Dists[i].Tags = nil
		}
		return b.Dists
	}
	dist := func(ts int64, count, sum, min, max float64, cs ...model.Centroid) []model.Distribution {
		return []model.Distribution{{Name: "lat", Source: "svc", Timestamp: ts, Count: count, Sum: sum, Min: min, Max: max, Centroids: cs}}
	}
	// 2, 4 and 30: in full (started after les).
	if diff := cmp.Diff(dist(start+sec, 3, 36, 2, 30, model.Centroid{Value: 6, Count: 2}, model.Centroid{Value: 20, Count: 1}),
		run(start+sec, []uint64{2, 1}, 36, 2, 30)); diff != "" {
		t.Errorf("first (-want +got):\n%s", diff)
	}
	// + 1 and 5: the min moved (exact), the max did not (bounded by the
	// bucket, 10).
	if diff := cmp.Diff(dist(start+2*sec, 2, 6, 1, 10, model.Centroid{Value: 5.5, Count: 2}),
		run(start+2*sec, []uint64{4, 1}, 42, 1, 30)); diff != "" {
		t.Errorf("second (-want +got):\n%s", diff)
	}
	// No new samples: nothing.
	if got := run(start+3*sec, []uint64{4, 1}, 42, 1, 30); len(got) != 0 {
		t.Errorf("unchanged: %v", got)
	}
	// A bucket went down: reset; the point is the delta, min/max exact.
	if diff := cmp.Diff(dist(start+4*sec, 1, 3, 3, 3, model.Centroid{Value: 3, Count: 1}),
		run(start+4*sec, []uint64{1, 0}, 3, 3, 3)); diff != "" {
		t.Errorf("reset (-want +got):\n%s", diff)
	}
}

func TestExponentialHistogram(t *testing.T) {
	d := NewDecoder(Options{}, NewDeltas(DeltasConfig{Since: since}))
	md, ms := newMetrics()
	m := ms.AppendEmpty()
	m.SetName("exp")
	eh := m.SetEmptyExponentialHistogram()
	eh.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	dp := eh.DataPoints().AppendEmpty()
	dp.SetTimestamp(pcommon.Timestamp(since))
	dp.SetScale(1) // base √2
	dp.SetZeroCount(1)
	dp.Positive().SetOffset(2) // bucket 2: (2, 2√2], bucket 3: (2√2, 4]
	dp.Positive().BucketCounts().FromRaw([]uint64{3, 1})
	dp.Negative().SetOffset(0) // bucket 0: [-√2, -1)
	dp.Negative().BucketCounts().FromRaw([]uint64{2})
	dp.SetCount(7)
	dp.SetSum(12)
	var b model.Batch
	d.Metrics(&b, md, 0)
	if len(b.Dists) != 1 {
		t.Fatalf("dists %v rejects %v", b.Dists, b.Rejects)
	}
	r2 := math.Sqrt2
	h := func(a, b float64) float64 { return 2 * a * b / (a + b) }
	want := []model.Centroid{{Value: -h(1, r2), Count: 2}, {Value: 0, Count: 1}, {Value: h(2, 2*r2), Count: 3}, {Value: h(2*r2, 4), Count: 1}}
	if diff := cmp.Diff(want, b.Dists[0].Centroids, cmp.Comparer(func(x, y float64) bool { return math.Abs(x-y) < 1e-12 })); diff != "" {
		t.Errorf("centroids (-want +got):\n%s", diff)
	}
	got := b.Dists[0]
	if got.Count != 7 || got.Sum != 12 || math.Abs(got.Min+r2) > 1e-12 || got.Max != 4 {
		t.Errorf("count %v sum %v min %v max %v", got.Count, got.Sum, got.Min, got.Max)
	}
	// The relative error of a centroid is at most (base-1)/(base+1).
	bound := (r2 - 1) / (r2 + 1)
	for _, v := range []float64{2.0000001, 2.5, 2 * r2} {
		if e := math.Abs(want[2].Value-v) / v; e > bound+1e-12 {
			t.Errorf("value %v: relative error %v over the bound %v", v, e, bound)
		}
	}
}

func TestBadPoints(t *testing.T) {
	d := NewDecoder(Options{MaxTags: 3}, nil)
	md, ms := newMetrics()
	gauge := func(name string, set func(pmetric.NumberDataPoint)) {
		m := ms.AppendEmpty()
		m.SetName(name)
		set(m.SetEmptyGauge().DataPoints().AppendEmpty())
	}
	gauge("nan", func(dp pmetric.NumberDataPoint) { dp.SetDoubleValue(math.NaN()) })
	gauge("inf", func(dp pmetric.NumberDataPoint) { dp.SetDoubleValue(math.Inf(-1)) })
	gauge("empty", func(pmetric.NumberDataPoint) {})
	gauge("ok", func(dp pmetric.NumberDataPoint) { dp.SetIntValue(3) })
	gauge("tags", func(dp pmetric.NumberDataPoint) {
		dp.SetIntValue(1)
		for _, k := range []string{"a", "b", "c", "d"} {
			dp.Attributes().PutStr(k, "v")
		}
	})
	neg := ms.AppendEmpty()
	neg.SetName("neg")
	s := neg.SetEmptySum()
	s.SetIsMonotonic(true)
	s.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	s.DataPoints().AppendEmpty().SetDoubleValue(-1)
	histogramMetric(ms, pmetric.AggregationTemporalityDelta, 0, since, []float64{1, 2}, []uint64{1, 1}, 2) // 2 counts for 3 buckets
	histogramMetric(ms, pmetric.AggregationTemporalityDelta, 0, since, []float64{2, 1}, []uint64{1, 1, 1}, 2)
	histogramMetric(ms, pmetric.AggregationTemporalityDelta, 0, since, []float64{1}, []uint64{1, 1}, math.NaN())
	histogramMetric(ms, pmetric.AggregationTemporalityDelta, 0, since, []float64{1}, []uint64{1, 1}, 1, 5, 2)
	mm := histogramMetric(ms, pmetric.AggregationTemporalityDelta, 0, since, []float64{1}, []uint64{1, 1}, 1)
	mm.SetCount(5)
	ms.AppendEmpty().SetName("nodata")
	var b model.Batch
	d.Metrics(&b, md, since)
	var reasons []string
	for _, r := range b.Rejects {
		reasons = append(reasons, r.Reason+":"+string(r.Line))
	}
	want := []string{"non_finite_value:nan", "non_finite_value:inf", "missing_value:empty", "too_many_tags:tags",
		"negative_counter:neg", "bucket_count_mismatch:lat", "invalid_bounds:lat", "non_finite_value:lat",
		"invalid_min_max:lat", "count_mismatch:lat", "unknown_metric_type:nodata"}
	if diff := cmp.Diff(want, reasons); diff != "" {
		t.Errorf("rejects (-want +got):\n%s", diff)
	}
	if len(b.Metrics) != 1 || b.Metrics[0].Name != "ok" || b.Metrics[0].Value != 3 || len(b.Dists) != 0 {
		t.Errorf("accepted: %+v %+v", b.Metrics, b.Dists)
	}
	if PointCount(md) != len(want)+1 {
		t.Errorf("PointCount %d", PointCount(md))
	}
	msg := RejectMessage(b.Rejects)
	for _, s := range []string{"11 rejected", `non_finite_value ×3 ("nan")`, `count_mismatch ×1 ("lat")`} {
		if !strings.Contains(msg, s) {
			t.Errorf("message %q lacks %q", msg, s)
		}
	}
}

func TestSourceAndTags(t *testing.T) {
	d := NewDecoder(Options{DefaultSource: "dflt"}, nil)
	cases := []struct {
		attrs map[string]any
		want  string
		tags  []string
	}{
		{map[string]any{"service.name": "svc", "faas.name": "fn", "host.name": "h"}, "fn", []string{"host.name", "service.name"}},
		{map[string]any{"service.name": "svc", "host.name": "h"}, "svc", []string{"host.name"}},
		{map[string]any{"service.name": "unknown_service:app", "host.name": "h"}, "h", []string{"service.name"}},
		{map[string]any{"service.name": "unknown_service"}, "unknown_service", nil},
		{map[string]any{"k": int64(7), "n": 1.5}, "dflt", []string{"n"}},
	}
	for _, c := range cases {
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		_ = rm.Resource().Attributes().FromRaw(c.attrs)
		sm := rm.ScopeMetrics().AppendEmpty()
		sm.Scope().SetName("lib")
		m := sm.Metrics().AppendEmpty()
		m.SetName("g")
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetIntValue(1)
		dp.Attributes().PutStr("k", "point wins")
		var b model.Batch
		d.Metrics(&b, md, 1)
		got := b.Metrics[0]
		var keys []string
		for _, tg := range got.Tags {
			if tg.Key != TagScopeName && tg.Key != "k" {
				keys = append(keys, tg.Key)
			}
		}
		if v, _ := got.Tags.Get("k"); got.Source != c.want || !cmp.Equal(keys, c.tags) || v != "point wins" {
			t.Errorf("%v: source %q tags %v", c.attrs, got.Source, got.Tags)
		}
	}
}

func TestSummary(t *testing.T) {
	d := NewDecoder(Options{}, NewDeltas(DeltasConfig{Since: since}))
	md, ms := newMetrics()
	m := ms.AppendEmpty()
	m.SetName("rpc")
	dp := m.SetEmptySummary().DataPoints().AppendEmpty()
	dp.SetStartTimestamp(pcommon.Timestamp(since + 1))
	dp.SetTimestamp(pcommon.Timestamp(since + sec))
	dp.SetCount(4)
	dp.SetSum(10)
	q := dp.QuantileValues().AppendEmpty()
	q.SetQuantile(0.99)
	q.SetValue(4)
	var b model.Batch
	d.Metrics(&b, md, 0)
	type pt struct {
		Name  string
		Kind  model.Kind
		Value float64
		Q     string
	}
	var got []pt
	for _, m := range b.Metrics {
		qv, _ := m.Tags.Get(TagQuantile)
		got = append(got, pt{m.Name, m.Kind, m.Value, qv})
	}
	want := []pt{{"rpc.count", model.Counter, 4, ""}, {"rpc.sum", model.Counter, 10, ""}, {"rpc", model.Gauge, 4, "0.99"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestDecodeProtoAndJSON: the same request in both encodings gives the
// same items; a truncated one is an error, not a panic.
func TestDecodeProtoAndJSON(t *testing.T) {
	md, ms := newMetrics()
	cumulativeSum(ms, "req", since+sec, since+2*sec, 5)
	req := pmetricotlp.NewExportRequestFromMetrics(md)
	pb, _ := req.MarshalProto()
	js, _ := req.MarshalJSON()
	var got []model.Batch
	for _, c := range []struct {
		body []byte
		enc  Encoding
	}{{pb, EncodingProto}, {js, EncodingJSON}} {
		d := NewDecoder(Options{}, NewDeltas(DeltasConfig{Since: since}))
		var b model.Batch
		n, err := d.Decode(&b, SignalMetrics, c.body, c.enc, 0)
		if err != nil || n != 1 {
			t.Fatalf("%v: n %d err %v", c.enc, n, err)
		}
		got = append(got, b)
	}
	if diff := cmp.Diff(got[0].Metrics, got[1].Metrics); diff != "" || len(got[0].Metrics) != 1 || got[0].Metrics[0].Value != 5 {
		t.Errorf("proto vs JSON (-proto +json):\n%s", diff)
	}
	d := NewDecoder(Options{}, nil)
	negative := `{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","histogram":{"aggregationTemporality":1,` +
		`"dataPoints":[{"count":"-1","bucketCounts":["-1"]}]}}]}]}]}`
	for _, bad := range []struct {
		body []byte
		enc  Encoding
	}{{pb[:len(pb)-3], EncodingProto}, {js[:len(js)/2], EncodingJSON}, {[]byte(negative), EncodingJSON}} {
		var b model.Batch
		if _, err := d.Decode(&b, SignalMetrics, bad.body, bad.enc, 0); !errors.Is(err, ErrPayload) || b.Len()+len(b.Rejects) != 0 {
			t.Errorf("%q: err %v, %d items", bad.body, err, b.Len())
		}
	}
	if _, ok := ParseContentType("application/json; charset=utf-8"); !ok {
		t.Error("JSON with charset not recognised")
	}
	if _, ok := ParseContentType("text/plain"); ok {
		t.Error("text/plain accepted")
	}
}
