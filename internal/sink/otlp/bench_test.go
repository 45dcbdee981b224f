package otlp

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/rollup"
	"github.com/les-streams/les/internal/sink"
)

// benchBatch is a realistic batch as the rollup and the agent hand it to
// a sink: 10,000 series (100 functions × 100 metric names, 3 tags each)
// with one point each — 4,500 gauges, 3,500 minute counters and 2,000
// minute distributions (DDSketch centroids of 1,500 lognormal latencies,
// ~25 invocations/s) — plus 1,500 logs and 500 spans.
func benchBatch() *model.Batch {
	r := rand.New(rand.NewPCG(3, 4))
	b := &model.Batch{}
	var cents [][]model.Centroid
	var stats [][4]float64
	for range 50 {
		sk := rollup.NewSketch()
		mu := 2 + 3*r.Float64()
		for range 1500 {
			sk.Add(math.Exp(mu + 0.8*r.NormFloat64()))
		}
		cents = append(cents, sk.Centroids(nil))
		stats = append(stats, [4]float64{sk.Count(), sk.Sum(), sk.Min(), sk.Max()})
	}
	const ts = int64(1_764_000_000e9)
	tags := func(fn int) model.Tags {
		m := b.TagMark()
		b.AddTag("env", "prod")
		b.AddTag("region", "eu-west-1")
		b.AddTag("version", fmt.Sprint(fn%7))
		return b.TagsSince(m)
	}
	i := 0
	for fn := range 100 {
		src := fmt.Sprintf("fn-%03d", fn)
		for m := range 100 {
			name := fmt.Sprintf("lambda.app.metric_%02d", m)
			switch {
			case i%20 < 9:
				b.Metrics = append(b.Metrics, model.Metric{Name: name, Value: r.Float64() * 100, Timestamp: ts, Source: src, Tags: tags(fn)})
			case i%20 < 16:
				b.Metrics = append(b.Metrics, model.Metric{Name: name, Value: float64(r.IntN(1000)), Timestamp: ts, Source: src,
					Tags: tags(fn), Kind: model.Counter, Window: model.WindowMinute})
			default:
				k := i % len(cents)
				b.Dists = append(b.Dists, model.Distribution{Name: name, Timestamp: ts, Window: model.WindowMinute, Source: src,
					Tags: tags(fn), Count: stats[k][0], Sum: stats[k][1], Min: stats[k][2], Max: stats[k][3], Centroids: cents[k]})
			}
			i++
		}
	}
	for j := range 1500 {
		fn := j % 100
		b.Logs = append(b.Logs, model.Log{Timestamp: ts + int64(j)*1e6, Source: fmt.Sprintf("fn-%03d", fn),
			RequestID: fmt.Sprintf("8f5c1d2e-%04d-4a6b-9c1d-2e3f4a5b6c7d", j), Level: "INFO",
			Message: fmt.Appendf(nil, "processed order %d in %d ms", j, r.IntN(500)), Attrs: tags(fn)})
	}
	for j := range 500 {
		fn := j % 100
		b.Spans = append(b.Spans, model.Span{Name: "GET /orders/{id}", TraceID: fmt.Sprintf("%032x", j/5+1),
			SpanID: fmt.Sprintf("%016x", j+1), ParentID: fmt.Sprintf("%016x", (j/5)*5+1), Start: ts + int64(j)*1e6,
			Duration: int64(r.IntN(100)) * 1e6, Source: fmt.Sprintf("fn-%03d", fn), Tags: tags(fn), Kind: model.SpanKindServer})
	}
	return b
}

// usage is the state at the start of a measurement.
type usage struct {
	mem runtime.MemStats
	cpu time.Duration
}

func start() *usage {
	u := &usage{cpu: cpuTime()}
	runtime.ReadMemStats(&u.mem)
	return u
}

// cpuTime is the process's user+system CPU time: on a shared machine
// items per CPU second is the per-core rate that wall time hides.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportPerItem(b *testing.B, items int, u *usage) {
	cpu := cpuTime() - u.cpu
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	n := float64(b.N) * float64(items)
	b.ReportMetric(n/b.Elapsed().Seconds(), "items/s")
	b.ReportMetric(n/cpu.Seconds(), "items/cpu-s")
	b.ReportMetric(float64(after.Mallocs-u.mem.Mallocs)/n, "allocs/item")
}

// BenchmarkEncode measures the mapping and protobuf encoding (no
// compression, no HTTP) of benchBatch, per signal and for the whole mix.
func BenchmarkEncode(b *testing.B) {
	full := benchBatch()
	parts := []struct {
		name string
		b    *model.Batch
	}{
		{"gauges+counters", &model.Batch{Metrics: full.Metrics}},
		{"distributions", &model.Batch{Dists: full.Dists}},
		{"logs", &model.Batch{Logs: full.Logs}},
		{"spans", &model.Batch{Spans: full.Spans}},
		{"mix", full},
	}
	for _, p := range parts {
		b.Run(p.name, func(b *testing.B) {
			e := newEncoder(encOptions{sourceAttr: "service.name", maxScale: DefaultMaxScale, maxBuckets: DefaultMaxBuckets})
			var size int
			enc := func() {
				size = 0
				if len(p.b.Metrics)+len(p.b.Dists) > 0 {
					body, _, _, err := e.metricsRequest(p.b)
					if err != nil {
						b.Fatal(err)
					}
					size += len(body)
				}
				body, _, err := e.logsRequest(p.b)
				if err != nil {
					b.Fatal(err)
				}
				size += len(body)
				body, _, _, err = e.tracesRequest(p.b)
				if err != nil {
					b.Fatal(err)
				}
				size += len(body)
			}
			enc() // warm the encoder's scratch space
			b.SetBytes(int64(size))
			b.ReportAllocs()
			u := start()
			for b.Loop() {
				enc()
			}
			reportPerItem(b, p.b.Len(), u)
			b.ReportMetric(float64(size)/float64(p.b.Len()), "bytes/item")
		})
	}
}

// BenchmarkSend is a whole Send of the mix (encode, gzip, three POSTs) to
// a loopback server that drains the body and answers 200.
func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	client := &http.Client{Transport: sink.NewTransport()}
	defer client.CloseIdleConnections()
	s, err := New(Config{Endpoint: srv.URL}, sink.Deps{Name: "bench", HTTP: client})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	batch := benchBatch()
	b.ReportAllocs()
	u := start()
	for b.Loop() {
		if err := s.Send(context.Background(), batch, sink.Meta{}); err != nil {
			b.Fatal(err)
		}
	}
	reportPerItem(b, batch.Len(), u)
	c := s.Counts()
	b.ReportMetric(float64(c.Bytes)/float64(c.Items), "gzip-bytes/item")
}
