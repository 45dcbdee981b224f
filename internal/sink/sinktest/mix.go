package sinktest

import (
	"fmt"

	"github.com/les-streams/les/internal/model"
)

// MixBatch is a realistic rollup output for encoder benchmarks: 10,000
// items of 10,000 series (7,000 metrics, 2,000 distributions with five
// percentiles, 800 logs, 200 spans), with Lambda-like names, sources and
// tags. The http and influxdb sinks' benchmarks run on it.
func MixBatch() *model.Batch {
	b := &model.Batch{}
	const ts = 1763780400000000000
	tags := func(i int) model.Tags { // i is unique per item: 10,000 series
		m := b.TagMark()
		b.AddTag("env", "prod")
		b.AddTag("instance", fmt.Sprintf("i-%05d", i))
		b.AddTag("function", fmt.Sprintf("fn-%03d", i%200))
		b.AddTag("region", []string{"eu-west-1", "us-east-1", "ap-south-1"}[i%3])
		b.AddTag("version", fmt.Sprintf("v%d", i%7))
		return b.TagsSince(m)
	}
	names := []string{"lambda.invocations", "lambda.errors", "lambda.duration", "lambda.billed_duration", "lambda.max_memory_used",
		"app.orders.processed", "app.cache.hits", "app.db.latency", "app.http.requests", "app.queue.depth"}
	for i := range 7000 {
		b.Metrics = append(b.Metrics, model.Metric{Name: names[i%len(names)], Value: float64(i) * 1.25, Timestamp: ts + int64(i)*1e6,
			Source: fmt.Sprintf("fn-%03d", i%200), Tags: tags(i), Kind: model.Kind(i % 2), Window: model.WindowMinute})
	}
	for i := range 2000 {
		b.Dists = append(b.Dists, model.Distribution{Name: names[i%len(names)] + ".dist", Timestamp: ts, Window: model.WindowMinute,
			Source: fmt.Sprintf("fn-%03d", i%200), Tags: tags(7000 + i), Count: 25, Sum: 312.5, Min: 1.5, Max: 48,
			Quantiles: []model.Quantile{{Q: 0.5, Value: 11}, {Q: 0.9, Value: 30}, {Q: 0.95, Value: 35}, {Q: 0.99, Value: 47}, {Q: 0.999, Value: 48}}})
	}
	for i := range 800 {
		b.Logs = append(b.Logs, model.Log{Timestamp: ts + int64(i)*1e6, Source: fmt.Sprintf("fn-%03d", i%200), RequestID: fmt.Sprintf("8f0c2a4e-%04d-4b1e-9d2f-6c1a7e3b5d90", i),
			Level: []string{"INFO", "WARN", "ERROR"}[i%3], Message: []byte(fmt.Sprintf(`processed order %d for customer "c-%d" in 12.5 ms`, i, i*7)), Attrs: tags(9000 + i)[:2]})
	}
	for i := range 200 {
		b.Spans = append(b.Spans, model.Span{Name: "GET /orders/{id}", TraceID: fmt.Sprintf("4bf92f3577b34da6a3ce929d0e0e%04d", i), SpanID: fmt.Sprintf("00f067aa0ba9%04d", i),
			ParentID: "00f067aa0ba90000", Start: ts + int64(i)*1e6, Duration: 12_500_000, Source: fmt.Sprintf("fn-%03d", i%200), Tags: tags(9800 + i)[:3]})
	}
	return b
}
