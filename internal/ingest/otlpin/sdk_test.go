package otlpin

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/les-streams/les/internal/format/otlp"
	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream/mem"
	"github.com/les-streams/les/internal/wire"
)

// otlpRig is an agent front half with both OTLP listeners on free
// loopback ports, publishing to an in-memory stream.
type otlpRig struct {
	st        *mem.Stream
	reg       *selfmetric.Registry
	httpAddr  string
	grpcAddr  string
	stop      func()
	published func(t *testing.T) *model.Batch
}

func startOTLP(t *testing.T, token string) *otlpRig {
	t.Helper()
	return startGatedOTLP(t, token, nil)
}

// startGatedOTLP is startOTLP with gate as both intakes' StoreGate.
func startGatedOTLP(t *testing.T, token string, gate *ingest.StoreGate) *otlpRig {
	t.Helper()
	st := mem.New(mem.NewStore(), mem.Config{Partitions: 1, MaxRecordBytes: 8 << 20})
	reg := selfmetric.New()
	log := slog.New(slog.DiscardHandler)
	b, err := ingest.NewBatcher(ingest.BatchConfig{FlushInterval: time.Hour}, st, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	deltas := otlp.NewDeltas(otlp.DeltasConfig{Since: time.Now().UnixNano()})
	newDec := func() *otlp.Decoder { return otlp.NewDecoder(otlp.Options{}, deltas) }
	cfg := Config{Address: "127.0.0.1:0", Token: token, MaxBody: 1 << 20}
	hin, gin := ingest.NewIntake("otlp", "http", b, reg), ingest.NewIntake("otlp", "grpc", b, reg)
	hin.Gate, gin.Gate = gate, gate
	hs, err := ListenHTTP(cfg, hin, newDec, b, log)
	if err != nil {
		t.Fatal(err)
	}
	gs, err := ListenGRPC(cfg, gin, newDec, b, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 3)
	go func() { done <- b.Run(ctx, time.Second) }()
	go func() { done <- hs.Run(ctx) }()
	go func() { done <- gs.Run(ctx) }()
	r := &otlpRig{st: st, reg: reg, httpAddr: hs.Addr().String(), grpcAddr: gs.Addr().String()}
	r.stop = func() {
		cancel()
		for range 3 {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
		st.Close()
	}
	// published decodes every record the listeners published so far
	// (PublishNow: all of them once the exporter's call returned).
	r.published = func(t *testing.T) *model.Batch {
		var out model.Batch
		for _, rec := range st.Store().Records() {
			var d wire.Decoder
			var b model.Batch
			if _, err := d.Decode(&b, rec.Data); err != nil {
				t.Fatal(err)
			}
			out.Metrics = append(out.Metrics, b.Metrics...)
			out.Dists = append(out.Dists, b.Dists...)
			out.Logs = append(out.Logs, b.Logs...)
			out.Spans = append(out.Spans, b.Spans...)
		}
		return &out
	}
	return r
}

var ignoreArenas = cmpopts.IgnoreFields(model.Batch{}, "Arena", "CentroidArena", "EventArena", "LinkArena")

// TestOTelSDK points the real OpenTelemetry Go SDK's OTLP exporters
// (metrics over HTTP with gzip and over gRPC, traces and logs over HTTP)
// at les and checks what lands on the stream, value by value.
func TestOTelSDK(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const token = "s3cret"
	rig := startOTLP(t, token)
	defer rig.stop()
	ctx := context.Background()
	auth := map[string]string{"Authorization": "Bearer " + token}
	res := resource.NewSchemaless(attribute.String("service.name", "checkout"), attribute.String("deployment.environment", "test"))

	// Metrics over OTLP/HTTP, gzip, cumulative temporality (the SDK default).
	mexp, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpoint(rig.httpAddr), otlpmetrichttp.WithInsecure(),
		otlpmetrichttp.WithHeaders(auth), otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(time.Hour))))
	meter := mp.Meter("shop")
	orders, _ := meter.Int64Counter("orders", metric.WithUnit("1"))
	lat, _ := meter.Float64Histogram("latency")
	temp, _ := meter.Float64Gauge("temperature")
	queue, _ := meter.Int64UpDownCounter("queue")
	orders.Add(ctx, 3)
	orders.Add(ctx, 4)
	for _, v := range []float64{1, 2.5, 7, 300} {
		lat.Record(ctx, v)
	}
	temp.Record(ctx, 21.5)
	queue.Add(ctx, 10)
	queue.Add(ctx, -3)
	if err := mp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	orders.Add(ctx, 5)
	lat.Record(ctx, 60)
	if err := mp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := mp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	// Metrics over OTLP/gRPC, delta temporality.
	gexp, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(rig.grpcAddr), otlpmetricgrpc.WithInsecure(),
		otlpmetricgrpc.WithHeaders(auth), otlpmetricgrpc.WithTemporalitySelector(
			func(sdkmetric.InstrumentKind) metricdata.Temporality { return metricdata.DeltaTemporality }))
	if err != nil {
		t.Fatal(err)
	}
	gmp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(gexp, sdkmetric.WithInterval(time.Hour))))
	grpcHits, _ := gmp.Meter("shop").Int64Counter("grpc.hits")
	grpcHits.Add(ctx, 2, metric.WithAttributes(attribute.String("route", "/a")))
	if err := gmp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	grpcHits.Add(ctx, 9, metric.WithAttributes(attribute.String("route", "/a")))
	if err := gmp.Shutdown(ctx); err != nil { // exports the rest
		t.Fatal(err)
	}

	// Traces over OTLP/HTTP.
	texp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(rig.httpAddr), otlptracehttp.WithInsecure(),
		otlptracehttp.WithHeaders(auth))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSyncer(texp))
	linked := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled})
	start := time.Unix(1700000000, 0)
	_, span := tp.Tracer("shop").Start(ctx, "GET /cart", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(start), trace.WithAttributes(attribute.Int("http.status_code", 500)),
		trace.WithLinks(trace.Link{SpanContext: linked, Attributes: []attribute.KeyValue{attribute.String("why", "retry")}}))
	span.AddEvent("exception", trace.WithTimestamp(start.Add(time.Millisecond)),
		trace.WithAttributes(attribute.String("exception.type", "Boom")))
	span.SetStatus(codes.Error, "boom")
	span.End(trace.WithTimestamp(start.Add(2500 * time.Microsecond)))
	sc := span.SpanContext()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	// Logs over OTLP/HTTP.
	lexp, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(rig.httpAddr), otlploghttp.WithInsecure(),
		otlploghttp.WithHeaders(auth))
	if err != nil {
		t.Fatal(err)
	}
	lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewSimpleProcessor(lexp)))
	var rec otellog.Record
	rec.SetTimestamp(start)
	rec.SetSeverity(otellog.SeverityWarn)
	rec.SetBody(attribute.StringValue("cart is slow"))
	rec.AddAttributes(attribute.String("cart.id", "c-42"))
	lp.Logger("shop").Emit(trace.ContextWithSpanContext(ctx, sc), rec)
	if err := lp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	got := rig.published(t)
	rt := model.Tags{{Key: "deployment.environment", Value: "test"}}
	scope := func(extra ...model.Tag) model.Tags {
		tags := append(model.Tags{}, rt...)
		tags = append(tags, extra...)
		tags = append(tags, model.Tag{Key: otlp.TagScopeName, Value: "shop"})
		model.SortTags(tags)
		return tags
	}
	type point struct {
		Name  string
		Kind  model.Kind
		Value float64
		Tags  model.Tags
	}
	var points []point
	for _, m := range got.Metrics {
		if m.Source != "checkout" {
			t.Errorf("metric %s: source %q", m.Name, m.Source)
		}
		points = append(points, point{m.Name, m.Kind, m.Value, m.Tags})
	}
	wantPoints := []point{
		// first export: cumulative 7 since the SDK started (after les)
		{"orders", model.Counter, 7, scope(model.Tag{Key: otlp.TagUnit, Value: "1"})},
		{"temperature", model.Gauge, 21.5, scope()},
		{"queue", model.Gauge, 7, scope()}, // cumulative up-down counter: the level
		// second export: cumulative 12, delta 5
		{"orders", model.Counter, 5, scope(model.Tag{Key: otlp.TagUnit, Value: "1"})},
		{"temperature", model.Gauge, 21.5, scope()},
		{"queue", model.Gauge, 7, scope()},
		// Shutdown exports once more: nothing new (the histogram's empty
		// delta gives no distribution)
		{"orders", model.Counter, 0, scope(model.Tag{Key: otlp.TagUnit, Value: "1"})},
		{"temperature", model.Gauge, 21.5, scope()},
		{"queue", model.Gauge, 7, scope()},
		// gRPC, delta temporality
		{"grpc.hits", model.Counter, 2, scope(model.Tag{Key: "route", Value: "/a"})},
		{"grpc.hits", model.Counter, 9, scope(model.Tag{Key: "route", Value: "/a"})},
	}
	sortPoints := cmpopts.SortSlices(func(a, b point) bool { return a.Name+fmtF(a.Value) < b.Name+fmtF(b.Value) })
	if diff := cmp.Diff(wantPoints, points, sortPoints); diff != "" {
		t.Errorf("metric points (-want +got):\n%s", diff)
	}

	// Histogram: SDK default bounds 0, 5, 10, 25, 50, 75, 100, 250, 500, …
	// First export: 1 and 2.5 in (0,5] (clipped to [min 1, 5], centroid 3),
	// 7 in (5,10] (7.5), 300 in (250,500] (clipped to [250, max 300]: 275).
	// Second: the delta is the one sample 60 in (50,75]: its min and max are
	// not known exactly (cumulative min/max did not move), so the centroid
	// is the bucket's middle and min/max its bounds.
	type dist struct {
		Count, Sum, Min, Max float64
		Centroids            []model.Centroid
	}
	var dists []dist
	for _, d := range got.Dists {
		if d.Name != "latency" || d.Source != "checkout" || !cmp.Equal(d.Tags, scope()) {
			t.Errorf("distribution %s/%s %v", d.Name, d.Source, d.Tags)
		}
		dists = append(dists, dist{d.Count, d.Sum, d.Min, d.Max, d.Centroids})
	}
	wantDists := []dist{
		{4, 310.5, 1, 300, []model.Centroid{{Value: 3, Count: 2}, {Value: 7.5, Count: 1}, {Value: 275, Count: 1}}},
		{1, 60, 50, 75, []model.Centroid{{Value: 62.5, Count: 1}}},
	}
	if diff := cmp.Diff(wantDists, dists); diff != "" {
		t.Errorf("distributions (-want +got):\n%s", diff)
	}

	wantSpans := []model.Span{{
		Name: "GET /cart", TraceID: sc.TraceID().String(), SpanID: sc.SpanID().String(),
		Start: start.UnixNano(), Duration: 2500000, Source: "checkout",
		Tags: scope(model.Tag{Key: "http.status_code", Value: "500"}),
		Kind: model.SpanKindServer, StatusCode: model.StatusError, StatusMessage: "boom",
		Events: []model.SpanEvent{{Name: "exception", Timestamp: start.Add(time.Millisecond).UnixNano(),
			Attrs: model.Tags{{Key: "exception.type", Value: "Boom"}}}},
		Links: []model.SpanLink{{TraceID: linked.TraceID().String(), SpanID: linked.SpanID().String(),
			Attrs: model.Tags{{Key: "why", Value: "retry"}}}},
	}}
	if diff := cmp.Diff(wantSpans, got.Spans, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("spans (-want +got):\n%s", diff)
	}

	wantLogs := []model.Log{{
		Timestamp: start.UnixNano(), Source: "checkout", Level: "WARN", Message: []byte("cart is slow"),
		Attrs: scope(model.Tag{Key: "cart.id", Value: "c-42"}, model.Tag{Key: otlp.AttrSeverityNum, Value: "13"},
			model.Tag{Key: otlp.AttrTraceID, Value: sc.TraceID().String()}, model.Tag{Key: otlp.AttrSpanID, Value: sc.SpanID().String()}),
	}}
	if diff := cmp.Diff(wantLogs, got.Logs, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("logs (-want +got):\n%s", diff)
	}

	// Without the token: 401, and nothing more is published.
	before := rig.st.Store().Len()
	resp, err := http.Post("http://"+rig.httpAddr+"/v1/metrics", "application/x-protobuf", http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || rig.st.Store().Len() != before {
		t.Errorf("no token: status %d, records %d → %d", resp.StatusCode, before, rig.st.Store().Len())
	}
	http.DefaultClient.CloseIdleConnections()
}

func fmtF(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
