package otlp

import (
	"strconv"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/les-streams/les/internal/model"
)

// benchMetrics is an export request as an SDK sends it: a resource with
// the SDK's attributes, one scope, 100 counter series (3 attributes each),
// 50 gauges and 50 histograms with the SDK's default 15 bounds: 200 points.
func benchMetrics(temp pmetric.AggregationTemporality) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	ra := rm.Resource().Attributes()
	ra.PutStr("service.name", "checkout")
	ra.PutStr("telemetry.sdk.name", "opentelemetry")
	ra.PutStr("telemetry.sdk.language", "go")
	ra.PutStr("telemetry.sdk.version", "1.47.0")
	ra.PutStr("cloud.region", "eu-west-1")
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName("github.com/acme/checkout")
	ms := sm.Metrics()
	c := ms.AppendEmpty()
	c.SetName("http.server.requests")
	sum := c.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(temp)
	for i := range 100 {
		dp := sum.DataPoints().AppendEmpty()
		dp.SetStartTimestamp(pcommon.Timestamp(since + sec))
		dp.SetTimestamp(pcommon.Timestamp(since + 2*sec))
		dp.SetIntValue(int64(100 + i))
		dp.Attributes().PutStr("http.route", "/api/v1/item/"+strconv.Itoa(i))
		dp.Attributes().PutInt("http.status_code", int64(200+i%5))
		dp.Attributes().PutStr("http.method", "GET")
	}
	g := ms.AppendEmpty()
	g.SetName("process.memory.usage")
	g.SetUnit("By")
	gauge := g.SetEmptyGauge()
	for i := range 50 {
		dp := gauge.DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.Timestamp(since + 2*sec))
		dp.SetDoubleValue(float64(i) * 1.5)
		dp.Attributes().PutStr("pool", "p"+strconv.Itoa(i))
	}
	h := ms.AppendEmpty()
	h.SetName("http.server.duration")
	h.SetUnit("ms")
	hist := h.SetEmptyHistogram()
	hist.SetAggregationTemporality(temp)
	bounds := []float64{0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000}
	for i := range 50 {
		dp := hist.DataPoints().AppendEmpty()
		dp.SetStartTimestamp(pcommon.Timestamp(since + sec))
		dp.SetTimestamp(pcommon.Timestamp(since + 2*sec))
		dp.ExplicitBounds().FromRaw(bounds)
		counts := make([]uint64, 16)
		counts[i%16], counts[(i+3)%16] = 4, 6
		dp.BucketCounts().FromRaw(counts)
		dp.SetCount(10)
		dp.SetSum(1234)
		dp.SetMin(1)
		dp.SetMax(9000)
		dp.Attributes().PutStr("http.route", "/api/v1/item/"+strconv.Itoa(i))
	}
	return md
}

// BenchmarkDecodeMetrics: the whole intake path of one request body:
// pdata's protobuf unmarshalling plus the mapping (delta temporality, so
// every iteration maps the same values).
func BenchmarkDecodeMetrics(b *testing.B) {
	md := benchMetrics(pmetric.AggregationTemporalityDelta)
	body, _ := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	n := PointCount(md)
	d := NewDecoder(Options{}, NewDeltas(DeltasConfig{Since: since}))
	var batch model.Batch
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		batch.Reset()
		if _, err := d.Decode(&batch, SignalMetrics, body, EncodingProto, since); err != nil {
			b.Fatal(err)
		}
	}
	if len(batch.Rejects) > 0 || batch.Len() != n {
		b.Fatalf("%d items, rejects %v", batch.Len(), batch.Rejects)
	}
	reportPerItem(b, n)
}

// BenchmarkUnmarshalMetrics: pdata's protobuf unmarshalling alone, the
// part of BenchmarkDecodeMetrics that is not les'.
func BenchmarkUnmarshalMetrics(b *testing.B) {
	md := benchMetrics(pmetric.AggregationTemporalityDelta)
	body, _ := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := pmetricotlp.NewExportRequest().UnmarshalProto(body); err != nil {
			b.Fatal(err)
		}
	}
	reportPerItem(b, PointCount(md))
}

// BenchmarkMapMetrics: les' mapping alone (the request already parsed, as
// gRPC hands it over), cumulative temporality through Deltas.
func BenchmarkMapMetrics(b *testing.B) {
	md := benchMetrics(pmetric.AggregationTemporalityCumulative)
	n := PointCount(md)
	d := NewDecoder(Options{}, NewDeltas(DeltasConfig{Since: since}))
	var batch model.Batch
	ts := since + 2*sec
	advance := func() { // the next export: 1 s later, same values
		ts += sec
		ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
		for i := range ms.At(0).Sum().DataPoints().Len() {
			ms.At(0).Sum().DataPoints().At(i).SetTimestamp(pcommon.Timestamp(ts))
		}
		for i := range ms.At(2).Histogram().DataPoints().Len() {
			ms.At(2).Histogram().DataPoints().At(i).SetTimestamp(pcommon.Timestamp(ts))
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		advance()
		batch.Reset()
		b.StartTimer()
		d.Metrics(&batch, md, since)
	}
	if len(batch.Rejects) > 0 {
		b.Fatalf("rejects %v", batch.Rejects)
	}
	reportPerItem(b, n)
}

// reportPerItem reports items/s; allocs/op divided by n (printed by
// ReportAllocs) is the allocations per item.
func reportPerItem(b *testing.B, n int) {
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "items/s")
	b.ReportMetric(float64(n), "items/op")
}

func TestMapAllocs(t *testing.T) {
	md := benchMetrics(pmetric.AggregationTemporalityDelta)
	d := NewDecoder(Options{}, nil)
	var batch model.Batch
	d.Metrics(&batch, md, since)
	allocs := testing.AllocsPerRun(20, func() {
		batch.Reset()
		d.Metrics(&batch, md, since)
	})
	// The int attribute values (http.status_code) are rendered into one
	// string buffer per call: a few allocations per request, none per item.
	if allocs > 3 {
		t.Fatalf("mapping a warm request of %d points allocated %v times", PointCount(md), allocs)
	}
}
