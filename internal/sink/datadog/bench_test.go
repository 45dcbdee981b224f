package datadog

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/sink"
)

// mixBatch is a realistic rollup output of 10,000 series: 7,000 metrics
// (gauges and counters), 2,000 distributions with 25 centroids and five
// percentiles, 1,000 logs; Lambda-like names, sources and tags.
func mixBatch() *model.Batch {
	b := &model.Batch{}
	const ts = 1763780400000000000
	tags := func(i int) model.Tags {
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
		b.Metrics = append(b.Metrics, model.Metric{Name: names[i%len(names)], Value: float64(i) * 1.25, Timestamp: ts,
			Source: fmt.Sprintf("fn-%03d", i%200), Tags: tags(i), Kind: model.Kind(i % 2), Window: model.WindowMinute})
	}
	for i := range 2000 {
		c := len(b.CentroidArena)
		for j := range 25 {
			b.CentroidArena = append(b.CentroidArena, model.Centroid{Value: 1.5 * float64(j+1), Count: float64(1 + j%3)})
		}
		b.Dists = append(b.Dists, model.Distribution{Name: names[i%len(names)] + ".dist", Timestamp: ts, Window: model.WindowMinute,
			Source: fmt.Sprintf("fn-%03d", i%200), Tags: tags(7000 + i), Count: 50, Sum: 975, Min: 1.5, Max: 37.5,
			Centroids: b.CentroidArena[c:len(b.CentroidArena):len(b.CentroidArena)],
			Quantiles: []model.Quantile{{Q: 0.5, Value: 19.5}, {Q: 0.9, Value: 34.5}, {Q: 0.95, Value: 36}, {Q: 0.99, Value: 37.5}, {Q: 0.999, Value: 37.5}}})
	}
	for i := range 1000 {
		b.Logs = append(b.Logs, model.Log{Timestamp: ts + int64(i)*1e6, Source: fmt.Sprintf("fn-%03d", i%200), RequestID: fmt.Sprintf("8f0c2a4e-%04d-4b1e-9d2f-6c1a7e3b5d90", i),
			Level: []string{"INFO", "WARN", "ERROR"}[i%3], Message: []byte(fmt.Sprintf(`processed order %d for customer "c-%d" in 12.5 ms`, i, i*7)), Attrs: tags(9000 + i)[:2]})
	}
	return b
}

// mixLogs is 10,000 log lines of 200 functions.
func mixLogs() *model.Batch {
	b := &model.Batch{}
	const ts = 1763780400000000000
	for i := range 10000 {
		m := b.TagMark()
		b.AddTag("env", "prod")
		b.AddTag("region", []string{"eu-west-1", "us-east-1", "ap-south-1"}[i%3])
		b.Logs = append(b.Logs, model.Log{Timestamp: ts + int64(i)*1e6, Source: fmt.Sprintf("fn-%03d", i%200), RequestID: fmt.Sprintf("8f0c2a4e-%04d-4b1e-9d2f-6c1a7e3b5d90", i),
			Level: []string{"INFO", "WARN", "ERROR"}[i%3], Message: []byte(fmt.Sprintf(`processed order %d for customer "c-%d" in 12.5 ms`, i, i*7)), Attrs: b.TagsSince(m)})
	}
	return b
}

// BenchmarkEncode: go test -run '^$' -bench Encode -benchmem ./internal/sink/datadog
// (encoding only; compression is BenchmarkCompress).
func BenchmarkEncode(b *testing.B) {
	for _, tc := range []struct {
		name  string
		batch *model.Batch
		opt   encOptions
	}{
		{"mix-sketches", mixBatch(), encOptions{sketches: true}},
		{"mix-series", mixBatch(), encOptions{}},
		{"logs", mixLogs(), encOptions{}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tc.opt.maxBytes, tc.opt.maxLogBytes, tc.opt.maxLogLength, tc.opt.logSource = DefaultMaxRequestBytes, DefaultMaxLogRequestBytes, DefaultMaxLogLength, "les"
			e := newEncoder(tc.opt)
			e.encode(tc.batch)
			size := 0
			for _, rs := range []*requests{&e.series, &e.sketches, &e.logs} {
				for _, r := range rs.all() {
					size += len(r.raw)
				}
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				e.encode(tc.batch)
			}
			n := float64(tc.batch.Len())
			b.ReportMetric(float64(b.N)*n/b.Elapsed().Seconds(), "items/s")
			b.ReportMetric(testing.AllocsPerRun(3, func() { e.encode(tc.batch) })/n, "allocs/item")
		})
	}
}

// BenchmarkEncodeCompress is BenchmarkEncode plus the compression every
// request gets on the way out (gzip; deflate for sketches), as Send does.
func BenchmarkEncodeCompress(b *testing.B) {
	for _, tc := range []struct {
		name  string
		batch *model.Batch
	}{{"mix-sketches", mixBatch()}, {"logs", mixLogs()}} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := New(Config{APIKeyFile: writeKey(b)}, sink.Deps{Name: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			run := func() {
				s.enc.encode(tc.batch)
				for i, rs := range []*requests{&s.enc.series, &s.enc.sketches, &s.enc.logs} {
					for _, r := range rs.all() {
						s.compress(i, r.raw)
					}
				}
			}
			run()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				run()
			}
			n := float64(tc.batch.Len())
			b.ReportMetric(float64(b.N)*n/b.Elapsed().Seconds(), "items/s")
			b.ReportMetric(testing.AllocsPerRun(3, run)/n, "allocs/item")
		})
	}
}

func writeKey(b *testing.B) string {
	f := filepath.Join(b.TempDir(), "key")
	if err := os.WriteFile(f, []byte(testKey), 0o600); err != nil {
		b.Fatal(err)
	}
	return f
}
