package otlp

import (
	"context"
	"encoding/hex"
	"net"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.uber.org/goleak"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/sink/sinktest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// collector is the OpenTelemetry Collector's own OTLP receiver, run
// in-process on a loopback port, with sinks that keep what it received.
type collector struct {
	url     string
	metrics *consumertest.MetricsSink
	logs    *consumertest.LogsSink
	traces  *consumertest.TracesSink
}

func startCollector(t *testing.T) *collector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	f := otlpreceiver.NewFactory()
	cfg := f.CreateDefaultConfig().(*otlpreceiver.Config)
	cfg.Protocols.HTTP.GetOrInsertDefault().ServerConfig.NetAddr.Endpoint = addr
	c := &collector{url: "http://" + addr, metrics: new(consumertest.MetricsSink), logs: new(consumertest.LogsSink),
		traces: new(consumertest.TracesSink)}
	ctx := context.Background()
	set := receivertest.NewNopSettings(f.Type())
	mr, err := f.CreateMetrics(ctx, set, cfg, c.metrics)
	if err != nil {
		t.Fatal(err)
	}
	lr, err := f.CreateLogs(ctx, set, cfg, c.logs)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := f.CreateTraces(ctx, set, cfg, c.traces)
	if err != nil {
		t.Fatal(err)
	}
	// The three share one receiver (keyed by cfg); Start starts it once.
	if err := mr.Start(ctx, componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, r := range []interface{ Shutdown(context.Context) error }{mr, lr, tr} {
			if err := r.Shutdown(context.Background()); err != nil {
				t.Error(err)
			}
		}
	})
	return c
}

// testClient is a client whose idle connections the test closes, so that
// goleak sees no connection goroutines at the end.
func testClient(t *testing.T) *http.Client {
	c := &http.Client{Transport: sink.NewTransport()}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func deps(t *testing.T) (sink.Deps, *selfmetric.Registry) {
	reg := selfmetric.New()
	return sink.Deps{Name: "otel", Metrics: reg, HTTP: testClient(t),
		Drops: reg.NewReasonCounters("les_sink_dropped_items_total", "sink", "otel")}, reg
}

func TestSinkConformance(t *testing.T) {
	var col *collector
	sinktest.Run(t, func(t *testing.T) sink.Sink {
		col = startCollector(t)
		d, _ := deps(t)
		s, err := New(Config{Endpoint: col.url}, d)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, func(t *testing.T) []sinktest.Item {
		return readBack(t, col)
	}, sinktest.Options{Ignore: []string{"Quantiles"}})
}

// readBack turns what the receiver got into sinktest Items, checking on
// the way the parts of the mapping Items do not show (resource attributes,
// temporality, monotonicity, buckets that hold the count).
func readBack(t *testing.T, c *collector) []sinktest.Item {
	t.Helper()
	var out []sinktest.Item
	for _, md := range c.metrics.AllMetrics() {
		for _, rm := range md.ResourceMetrics().All() {
			src := resourceSource(t, rm.Resource())
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					out = append(out, metricItems(t, src, m)...)
				}
			}
		}
	}
	for _, ld := range c.logs.AllLogs() {
		for _, rl := range ld.ResourceLogs().All() {
			src := resourceSource(t, rl.Resource())
			for _, sl := range rl.ScopeLogs().All() {
				for _, lr := range sl.LogRecords().All() {
					out = append(out, logItem(t, src, lr))
				}
			}
		}
	}
	for _, td := range c.traces.AllTraces() {
		for _, rs := range td.ResourceSpans().All() {
			src := resourceSource(t, rs.Resource())
			for _, ss := range rs.ScopeSpans().All() {
				for _, sp := range ss.Spans().All() {
					out = append(out, spanItem(src, sp))
				}
			}
		}
	}
	return out
}

func resourceSource(t *testing.T, r pcommon.Resource) string {
	t.Helper()
	a := r.Attributes()
	src, _ := a.Get(AttrSource)
	svc, _ := a.Get("service.name")
	if src.Str() != svc.Str() {
		t.Errorf("resource: les.source %q, service.name %q", src.Str(), svc.Str())
	}
	return src.Str()
}

func attrMap(a pcommon.Map, drop ...string) map[string]string {
	m := map[string]string{}
	for k, v := range a.All() {
		m[k] = v.AsString()
	}
	for _, k := range drop {
		delete(m, k)
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

func ts(t pcommon.Timestamp) time.Time { return time.Unix(0, int64(t)) }

func metricItems(t *testing.T, src string, m pmetric.Metric) []sinktest.Item {
	t.Helper()
	var out []sinktest.Item
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		for _, dp := range m.Gauge().DataPoints().All() {
			out = append(out, sinktest.Item{Signal: "metrics", Name: m.Name(), Source: src, Tags: attrMap(dp.Attributes()),
				Time: ts(dp.Timestamp()), Kind: "gauge", Value: dp.DoubleValue()})
		}
	case pmetric.MetricTypeSum:
		s := m.Sum()
		if s.AggregationTemporality() != pmetric.AggregationTemporalityDelta || !s.IsMonotonic() {
			t.Errorf("%s: temporality %v, monotonic %v; want delta, monotonic", m.Name(), s.AggregationTemporality(), s.IsMonotonic())
		}
		for _, dp := range s.DataPoints().All() {
			tm := dp.StartTimestamp()
			if tm == 0 {
				tm = dp.Timestamp()
			}
			out = append(out, sinktest.Item{Signal: "metrics", Name: m.Name(), Source: src, Tags: attrMap(dp.Attributes()),
				Time: ts(tm), Kind: "counter", Value: dp.DoubleValue()})
		}
	case pmetric.MetricTypeExponentialHistogram:
		h := m.ExponentialHistogram()
		if h.AggregationTemporality() != pmetric.AggregationTemporalityDelta {
			t.Errorf("%s: temporality %v, want delta", m.Name(), h.AggregationTemporality())
		}
		for _, dp := range h.DataPoints().All() {
			checkBucketTotal(t, m.Name(), dp)
			if dp.StartTimestamp() == 0 && dp.Count() == 1 {
				// a raw sample (test heuristic: distributions here are windowed)
				out = append(out, sinktest.Item{Signal: "metrics", Name: m.Name(), Source: src, Tags: attrMap(dp.Attributes()),
					Time: ts(dp.Timestamp()), Kind: "sample", Value: dp.Sum()})
				continue
			}
			out = append(out, sinktest.Item{Signal: "distributions", Name: m.Name(), Source: src, Tags: attrMap(dp.Attributes()),
				Time: ts(dp.StartTimestamp()), Count: float64(dp.Count()), Sum: dp.Sum(), Min: dp.Min(), Max: dp.Max()})
		}
	default:
		t.Errorf("%s: unexpected type %v", m.Name(), m.Type())
	}
	return out
}

func checkBucketTotal(t *testing.T, name string, dp pmetric.ExponentialHistogramDataPoint) {
	t.Helper()
	n := dp.ZeroCount()
	for _, c := range dp.Positive().BucketCounts().All() {
		n += c
	}
	for _, c := range dp.Negative().BucketCounts().All() {
		n += c
	}
	if n != dp.Count() {
		t.Errorf("%s: buckets hold %d, count is %d", name, n, dp.Count())
	}
}

func logItem(t *testing.T, src string, lr plog.LogRecord) sinktest.Item {
	t.Helper()
	rid, _ := lr.Attributes().Get(AttrInvocationID)
	want := map[string]plog.SeverityNumber{"INFO": plog.SeverityNumberInfo, "ERROR": plog.SeverityNumberError}[lr.SeverityText()]
	if lr.SeverityNumber() != want {
		t.Errorf("log %q: severity number %v, want %v", lr.SeverityText(), lr.SeverityNumber(), want)
	}
	return sinktest.Item{Signal: "logs", Source: src, Tags: attrMap(lr.Attributes(), AttrInvocationID), Time: ts(lr.Timestamp()),
		Level: lr.SeverityText(), RequestID: rid.Str(), Message: lr.Body().Str()}
}

// spanItem reads ids back from les.* attributes where the sink kept the
// original, else as the hex of the OTLP id.
func spanItem(src string, sp ptrace.Span) sinktest.Item {
	a := sp.Attributes()
	id := func(key string, b []byte) string {
		if v, ok := a.Get(key); ok {
			return v.Str()
		}
		if isZero(b) {
			return ""
		}
		return hex.EncodeToString(b)
	}
	tid, sid, pid := sp.TraceID(), sp.SpanID(), sp.ParentSpanID()
	return sinktest.Item{Signal: "spans", Name: sp.Name(), Source: src, Tags: attrMap(a, AttrTraceID, AttrSpanID, AttrParentID),
		Time: ts(sp.StartTimestamp()), TraceID: id(AttrTraceID, tid[:]), SpanID: id(AttrSpanID, sid[:]),
		ParentID: id(AttrParentID, pid[:]), Duration: time.Duration(sp.EndTimestamp() - sp.StartTimestamp())}
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// TestSinkCollectorFields sends through the real receiver what the sinktest
// batch does not hold: span kind, status, events and links, hex ids, log
// trace context, invalid UTF-8, gauge deltas, negative counters, items the
// mapping drops.
func TestSinkCollectorFields(t *testing.T) {
	col := startCollector(t)
	d, _ := deps(t)
	s, err := New(Config{Endpoint: col.url, SourceAttribute: "faas.name",
		ResourceAttributes: map[string]string{"deployment.environment.name": "prod"}}, d)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const (
		tid = "0af7651916cd43dd8448eb211c80319c"
		sid = "b7ad6b7169203331"
	)
	b := &model.Batch{}
	b.Metrics = append(b.Metrics,
		model.Metric{Name: "bad\xffname", Value: 1, Timestamp: 1e18, Source: "fn"},
		model.Metric{Name: "queue.depth", Value: -3, Timestamp: 1e18, Source: "fn", Kind: model.GaugeDelta},
		model.Metric{Name: "balance", Value: -2, Timestamp: 1e18, Source: "fn", Kind: model.Counter, Window: model.WindowMinute},
		model.Metric{Name: "nan", Value: nan(), Source: "fn"},
		model.Metric{Name: "set", Value: 42, Source: "fn", Kind: model.Set})
	b.Dists = append(b.Dists, model.Distribution{Name: "empty", Count: 0})
	b.Logs = append(b.Logs, model.Log{Timestamp: 1e18, Source: "fn", Level: "warning", Message: []byte("m\xff"),
		Attrs: model.Tags{{Key: "trace_id", Value: tid}, {Key: "span_id", Value: sid}, {Key: "k", Value: "v"}}})
	b.EventArena = append(b.EventArena, model.SpanEvent{Name: "retry", Timestamp: 1e18 + 5, Attrs: model.Tags{{Key: "n", Value: "2"}}})
	b.LinkArena = append(b.LinkArena, model.SpanLink{TraceID: "12345678-9abc-def0-1234-56789abcdef0", SpanID: sid})
	b.Spans = append(b.Spans,
		model.Span{Name: "GET", TraceID: tid, SpanID: sid, Start: 1e18, Duration: 10, Source: "fn",
			Kind: model.SpanKindServer, StatusCode: model.StatusError, StatusMessage: "boom",
			Events: b.EventArena[:1], Links: b.LinkArena[:1]},
		model.Span{Name: "no id", Source: "fn"})
	if err := s.Send(context.Background(), b, sink.Meta{}); err != nil {
		t.Fatal(err)
	}

	md := col.metrics.AllMetrics()[0]
	res := md.ResourceMetrics().At(0).Resource().Attributes()
	for k, want := range map[string]string{"faas.name": "fn", AttrSource: "fn", "deployment.environment.name": "prod"} {
		if v, _ := res.Get(k); v.Str() != want {
			t.Errorf("resource %s = %q, want %q", k, v.Str(), want)
		}
	}
	if _, ok := res.Get("service.name"); ok {
		t.Errorf("service.name set although source_attribute is faas.name")
	}
	ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	got := map[string]pmetric.Metric{}
	for _, m := range ms.All() {
		got[m.Name()] = m
	}
	if _, ok := got["bad\uFFFDname"]; !ok {
		t.Errorf("invalid UTF-8 name not replaced: %v", keys(got))
	}
	if m := got["queue.depth"]; m.Type() != pmetric.MetricTypeSum || m.Sum().IsMonotonic() || m.Sum().DataPoints().At(0).DoubleValue() != -3 {
		t.Errorf("gauge delta: want a non-monotonic delta sum of -3")
	}
	if m := got["balance"]; m.Type() != pmetric.MetricTypeSum || m.Sum().IsMonotonic() {
		t.Errorf("negative counter: want a non-monotonic sum")
	} else if dp := m.Sum().DataPoints().At(0); dp.StartTimestamp() != 1e18 || dp.Timestamp() != 1e18+60e9 {
		t.Errorf("windowed counter: start %d, time %d; want window start and end", dp.StartTimestamp(), dp.Timestamp())
	}
	if len(got) != 3 {
		t.Errorf("metrics received %v, want 3 (nan, set and empty dropped)", keys(got))
	}

	lr := col.logs.AllLogs()[0].ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0)
	if lr.TraceID().String() != tid || lr.SpanID().String() != sid {
		t.Errorf("log trace context %s/%s", lr.TraceID(), lr.SpanID())
	}
	if lr.SeverityNumber() != plog.SeverityNumberWarn || lr.SeverityText() != "warning" {
		t.Errorf("severity %v %q", lr.SeverityNumber(), lr.SeverityText())
	}
	if lr.Body().Type() != pcommon.ValueTypeBytes || string(lr.Body().Bytes().AsRaw()) != "m\xff" {
		t.Errorf("non-UTF-8 body: want bytes, got %v %q", lr.Body().Type(), lr.Body().AsString())
	}
	if m := attrMap(lr.Attributes()); len(m) != 1 || m["k"] != "v" {
		t.Errorf("log attributes %v, want only k=v", m)
	}

	spans := col.traces.AllTraces()[0].ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	if spans.Len() != 1 {
		t.Fatalf("%d spans received, want 1 (the span without ids dropped)", spans.Len())
	}
	sp := spans.At(0)
	if sp.TraceID().String() != tid || sp.SpanID().String() != sid || !sp.ParentSpanID().IsEmpty() {
		t.Errorf("ids %s %s %s", sp.TraceID(), sp.SpanID(), sp.ParentSpanID())
	}
	if sp.Attributes().Len() != 0 {
		t.Errorf("hex ids kept as attributes: %v", sp.Attributes().AsRaw())
	}
	if sp.Kind() != ptrace.SpanKindServer || sp.Status().Code() != ptrace.StatusCodeError || sp.Status().Message() != "boom" {
		t.Errorf("kind %v, status %v %q", sp.Kind(), sp.Status().Code(), sp.Status().Message())
	}
	if ev := sp.Events().At(0); sp.Events().Len() != 1 || ev.Name() != "retry" || ev.Timestamp() != 1e18+5 || attrMap(ev.Attributes())["n"] != "2" {
		t.Errorf("events %v", sp.Events().Len())
	}
	l := sp.Links().At(0)
	if l.TraceID().String() != "123456789abcdef0123456789abcdef0" || l.SpanID().String() != sid {
		t.Errorf("link %s %s", l.TraceID(), l.SpanID())
	}
	if v, _ := l.Attributes().Get(AttrTraceID); v.Str() != "12345678-9abc-def0-1234-56789abcdef0" {
		t.Errorf("link keeps the UUID form: %v", l.Attributes().AsRaw())
	}

	want := map[string]int64{ReasonNonFinite: 1, ReasonUnsupportedKind: 1, ReasonNoCentroids: 1, ReasonMissingID: 1}
	for r, n := range want {
		if got := dropCount(t, d, r); got != n {
			t.Errorf("dropped{reason=%q} = %d, want %d", r, got, n)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
