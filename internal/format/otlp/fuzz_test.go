package otlp

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/les-streams/les/internal/model"
)

// seedMetrics is one request with every metric type.
func seedMetrics() pmetric.Metrics {
	md, ms := newMetrics()
	cumulativeSum(ms, "req", since+sec, since+2*sec, 5)
	histogramMetric(ms, pmetric.AggregationTemporalityCumulative, since+sec, since+2*sec, []float64{1, 10}, []uint64{1, 2, 3}, 40, 0.5, 20)
	g := ms.AppendEmpty()
	g.SetName("g")
	g.SetEmptyGauge().DataPoints().AppendEmpty().SetDoubleValue(1.5)
	e := ms.AppendEmpty()
	e.SetName("e")
	eh := e.SetEmptyExponentialHistogram()
	eh.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	dp := eh.DataPoints().AppendEmpty()
	dp.SetScale(3)
	dp.Positive().SetOffset(-5)
	dp.Positive().BucketCounts().FromRaw([]uint64{1, 0, 2})
	dp.SetCount(3)
	s := ms.AppendEmpty()
	s.SetName("s")
	sp := s.SetEmptySummary().DataPoints().AppendEmpty()
	sp.SetCount(2)
	sp.QuantileValues().AppendEmpty().SetQuantile(0.5)
	return md
}

func seedTraces() ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "svc")
	sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetName("op")
	sp.SetTraceID(pcommon.TraceID{1})
	sp.SetSpanID(pcommon.SpanID{2})
	sp.SetStartTimestamp(1)
	sp.SetEndTimestamp(2)
	sp.Events().AppendEmpty().SetName("ev")
	l := sp.Links().AppendEmpty()
	l.SetTraceID(pcommon.TraceID{3})
	return td
}

func seedLogs() plog.Logs {
	ld := plog.NewLogs()
	lr := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.SetSeverityNumber(plog.SeverityNumberError)
	lr.Body().SetStr("hello")
	lr.Attributes().PutInt("n", 1)
	return ld
}

// fuzzDecode must never panic, and every OTLP item is either mapped or
// rejected: rejects never exceed the items the request held.
func fuzzDecode(f *testing.F, sig Signal, seeds ...[]byte) {
	for _, s := range seeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	deltas := NewDeltas(DeltasConfig{Since: since, MaxSeries: 64})
	f.Fuzz(func(t *testing.T, payload []byte, json bool) {
		enc := EncodingProto
		if json {
			enc = EncodingJSON
		}
		d := NewDecoder(Options{}, deltas)
		var b model.Batch
		n, err := d.Decode(&b, sig, payload, enc, since)
		if err != nil {
			if b.Len() != 0 || len(b.Rejects) != 0 {
				t.Fatalf("error %v but %d items appended", err, b.Len())
			}
			return
		}
		if len(b.Rejects) > n {
			t.Fatalf("%d rejects for %d items", len(b.Rejects), n)
		}
		for _, dist := range b.Dists {
			var c float64
			for _, ct := range dist.Centroids {
				c += ct.Count
			}
			if c != dist.Count {
				t.Fatalf("distribution count %v, centroids hold %v", dist.Count, c)
			}
		}
	})
}

func FuzzDecodeMetrics(f *testing.F) {
	req := pmetricotlp.NewExportRequestFromMetrics(seedMetrics())
	pb, _ := req.MarshalProto()
	js, _ := req.MarshalJSON()
	fuzzDecode(f, SignalMetrics, pb, js)
}

func FuzzDecodeTraces(f *testing.F) {
	req := ptraceotlp.NewExportRequestFromTraces(seedTraces())
	pb, _ := req.MarshalProto()
	js, _ := req.MarshalJSON()
	fuzzDecode(f, SignalTraces, pb, js)
}

func FuzzDecodeLogs(f *testing.F) {
	req := plogotlp.NewExportRequestFromLogs(seedLogs())
	pb, _ := req.MarshalProto()
	js, _ := req.MarshalJSON()
	fuzzDecode(f, SignalLogs, pb, js)
}
