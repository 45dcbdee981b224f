package promrw

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/s2"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/sink/sinktest/backendtest"
)

func testEncoder(cfg Config) *encoder {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	s, err := New(cfg, sink.Deps{})
	if err != nil {
		panic(err)
	}
	return s.enc
}

func decodeAll(t *testing.T, e *encoder) []wSeries {
	t.Helper()
	var out []wSeries
	for _, r := range e.requests() {
		ss, err := decodeWriteRequest(r.raw)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ss...)
	}
	return out
}

func TestBucketIndex(t *testing.T) {
	// bucket i holds (2^((i-1)/2^schema), 2^(i/2^schema)]
	for _, tc := range []struct {
		v      float64
		schema int32
		want   int32
	}{
		{1, 0, 0}, {0.5, 0, -1}, {0.75, 0, 0}, {2, 0, 1}, {3, 0, 2}, {10, 0, 4}, {1024, 0, 10},
		{1, 8, 0}, {2, 8, 256}, {1.001, 8, 1}, {0.25, 8, -512},
		{4, -1, 1}, {5, -1, 2}, {16, -2, 1}, {17, -2, 2},
	} {
		if got := BucketIndex(tc.v, tc.schema); got != tc.want {
			t.Errorf("BucketIndex(%v, %d) = %d, want %d", tc.v, tc.schema, got, tc.want)
		}
	}
}

func TestNativeHistogramWire(t *testing.T) {
	e := testEncoder(Config{URL: "http://x", Distributions: []string{"native"}, HistogramSchema: new(0)})
	e.counters.begin()
	e.encode(&model.Batch{Dists: []model.Distribution{{Name: "d", Timestamp: 5e6, Count: 8, Sum: 36,
		Centroids: []model.Centroid{{Value: -4, Count: 1}, {Value: -3, Count: 1}, {Value: 0, Count: 1}, {Value: 1, Count: 2}, {Value: 10, Count: 3}}}}})
	ss := decodeAll(t, e)
	if len(ss) != 1 || len(ss[0].Histograms) != 1 || len(ss[0].Samples) != 0 {
		t.Fatalf("%+v", ss)
	}
	h := ss[0].Histograms[0]
	if h.Count != 8 || h.Sum != 36 || h.Schema != 0 || h.ZeroCount != 1 || h.ZeroThreshold != ZeroThreshold || h.ResetHint != 3 || h.Ms != 5 {
		t.Errorf("%+v", h)
	}
	if d := cmp.Diff(map[int32]int64{0: 2, 4: 3}, buckets(h.PosSpans, h.PosDeltas)); d != "" {
		t.Errorf("positive buckets -want +got\n%s", d)
	}
	// -3 and -4 both fall in (2,4]
	if d := cmp.Diff(map[int32]int64{2: 2}, buckets(h.NegSpans, h.NegDeltas)); d != "" {
		t.Errorf("negative buckets -want +got\n%s", d)
	}
	// a gap of two buckets is filled inside the span, a gap of three starts a new one
	if len(h.PosSpans) != 2 {
		t.Errorf("positive spans %+v", h.PosSpans)
	}
	e.counters.begin()
	e.encode(&model.Batch{Dists: []model.Distribution{{Name: "d", Count: 3, Sum: 5,
		Centroids: []model.Centroid{{Value: 1, Count: 1}, {Value: 8, Count: 2}}}}})
	h = decodeAll(t, e)[0].Histograms[0]
	if len(h.PosSpans) != 1 || h.PosSpans[0] != (wSpan{0, 4}) || !cmp.Equal(h.PosDeltas, []int64{1, -1, 0, 2}) {
		t.Errorf("spans %+v deltas %v", h.PosSpans, h.PosDeltas)
	}
}

func TestNativeHistogramRefusesBadCentroids(t *testing.T) {
	e := testEncoder(Config{URL: "http://x", Distributions: []string{"native"}})
	for _, cs := range [][]model.Centroid{nil, {{Value: 1, Count: 0.5}}, {{Value: math.Inf(1), Count: 1}}, {{Value: 1, Count: -1}}} {
		e.counters.begin()
		e.encode(&model.Batch{Dists: []model.Distribution{{Name: "d", Count: 1, Sum: 1, Centroids: cs}}})
		if n := len(e.requests()); n != 0 {
			t.Errorf("centroids %v: %d requests", cs, n)
		}
		want := map[string]int{reasonBadCentroid: 1}
		if cs == nil {
			want = map[string]int{reasonNoCentroids: 1}
		}
		if d := cmp.Diff(want, e.drops); d != "" {
			t.Errorf("centroids %v: drops -want +got\n%s", cs, d)
		}
	}
}

func TestNaNIsPrometheusNormalNaN(t *testing.T) {
	e := testEncoder(Config{URL: "http://x"})
	e.counters.begin()
	e.encode(&model.Batch{Metrics: []model.Metric{{Name: "a", Value: math.Float64frombits(0x7ff0000000000002)}, {Name: "b", Value: math.Inf(-1)}}})
	ss := decodeAll(t, e)
	if got := math.Float64bits(ss[0].Samples[0].V); got != 0x7ff8000000000001 {
		t.Errorf("NaN sent as %#x, want Prometheus' normal NaN", got)
	}
	if !math.IsInf(ss[1].Samples[0].V, -1) {
		t.Errorf("-Inf sent as %v", ss[1].Samples[0].V)
	}
}

func TestLabelOrder(t *testing.T) {
	e := testEncoder(Config{URL: "http://x", SourceLabel: "host", Labels: map[string]string{"env": "test", "zone": "z1"}})
	e.counters.begin()
	e.encode(&model.Batch{Dists: []model.Distribution{{Name: "d", Source: "h1", Count: 1, Sum: 1, Min: 1, Max: 1,
		Tags:      model.Tags{{Key: "Az", Value: "1"}, {Key: "env", Value: "prod"}, {Key: "quantile", Value: "x"}},
		Quantiles: []model.Quantile{{Q: 0.5, Value: 1}}}}})
	ss := decodeAll(t, e)
	got := ss[2].key() // the quantile series
	want := `d{Az="1",_quantile="x",env="prod",host="h1",quantile="0.5",zone="z1"}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if ss[2].Labels[1][0] != "__name__" {
		t.Errorf("__name__ not in its sorted place: %v", ss[2].Labels)
	}
}

func TestEncodeDoesNotAllocate(t *testing.T) {
	e := testEncoder(Config{URL: "http://x", Distributions: []string{"summary", "min_max", "native"}})
	b := realisticBatch(1000, t0)
	run := func() {
		e.counters.begin()
		e.encode(b)
		e.counters.commit()
	}
	run()
	if n := testing.AllocsPerRun(20, run); n > 0 {
		t.Errorf("%v allocations per warm encode of %d items, want 0", n, b.Len())
	}
}

// realisticBatch returns n items like the rollup's output for a fleet of
// functions: 60% gauges, 20% counters, 20% distributions with the sketch
// of 50 samples (about 25 centroids) and five percentiles; every item has
// a source and four tags; series are distinct.
func realisticBatch(n int, at time.Time) *model.Batch {
	rng := rand.New(rand.NewPCG(7, 8))
	b := &model.Batch{}
	regions := []string{"eu-west-1", "us-east-1", "ap-south-1"}
	for i := range n {
		src := fmt.Sprintf("fn-%04d", i%500)
		m := b.TagMark()
		b.AddTag("env", "prod")
		b.AddTag("function_version", fmt.Sprint(i%7))
		b.AddTag("region", regions[i%3])
		b.AddTag("series", fmt.Sprint(i))
		tags := b.TagsSince(m)
		ts := at.UnixNano()
		switch i % 5 {
		case 0, 1, 2:
			b.Metrics = append(b.Metrics, model.Metric{Name: "aws.lambda.memory_used", Value: rng.Float64() * 512, Timestamp: ts, Source: src, Tags: tags, Kind: model.Gauge})
		case 3:
			b.Metrics = append(b.Metrics, model.Metric{Name: "aws.lambda.invocations", Value: float64(rng.IntN(100)), Timestamp: ts, Source: src, Tags: tags, Kind: model.Counter})
		case 4:
			c := len(b.CentroidArena)
			sum, cnt := 0.0, 0.0
			v := 1 + rng.Float64()*5
			for range 25 {
				v *= 1.02 + rng.Float64()*0.2
				k := float64(1 + rng.IntN(3))
				b.CentroidArena = append(b.CentroidArena, model.Centroid{Value: v, Count: k})
				sum, cnt = sum+v*k, cnt+k
			}
			cs := b.CentroidArena[c:len(b.CentroidArena):len(b.CentroidArena)]
			b.Dists = append(b.Dists, model.Distribution{Name: "aws.lambda.duration", Timestamp: ts, Window: model.WindowMinute, Source: src, Tags: tags,
				Count: cnt, Sum: sum, Min: cs[0].Value, Max: cs[len(cs)-1].Value, Centroids: cs,
				Quantiles: []model.Quantile{{Q: 0.5, Value: cs[12].Value}, {Q: 0.9, Value: cs[22].Value}, {Q: 0.95, Value: cs[23].Value}, {Q: 0.99, Value: cs[24].Value}, {Q: 0.999, Value: cs[24].Value}}})
		}
	}
	return b
}

// BenchmarkEncode: the CPU part of a Send on 10,000 series — encode the
// protobuf, snappy-compress each request.
// cpuTime is the process' user+system CPU time: on a shared machine
// items per CPU second is steadier than per wall-clock second.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkEncode(b *testing.B) {
	for _, mode := range [][]string{{"summary", "min_max"}, {"native", "min_max"}} {
		b.Run(fmt.Sprint(mode), func(b *testing.B) {
			e := testEncoder(Config{URL: "http://x", Distributions: mode})
			batch := realisticBatch(10_000, t0)
			var body []byte
			raw, comp := 0, 0
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				e.counters.begin()
				e.encode(batch)
				raw, comp = 0, 0
				for _, r := range e.requests() {
					body = s2.EncodeSnappy(body[:cap(body)], r.raw)
					raw, comp = raw+len(r.raw), comp+len(body)
				}
				e.counters.commit()
			}
			b.ReportMetric(float64(b.N*batch.Len())/(cpuTime()-cpu0).Seconds(), "items/cpu-s")
			b.SetBytes(int64(raw))
			b.ReportMetric(float64(b.N*batch.Len())/b.Elapsed().Seconds(), "items/s")
			b.ReportMetric(float64(comp)/float64(raw), "snappy-ratio")
			b.ReportMetric(float64(testing.AllocsPerRun(1, func() {
				e.counters.begin()
				e.encode(batch)
				e.counters.commit()
			}))/float64(batch.Len()), "allocs/item")
		})
	}
}

// BenchmarkSend is the end-to-end figure: 10,000-item batches (a new
// minute each) into the local Prometheus or VictoriaMetrics, one Send at
// a time.
func BenchmarkSend(b *testing.B) {
	for _, backend := range []string{"prometheus", "victoria-metrics"} {
		b.Run(backend, func(b *testing.B) {
			var srv *backendtest.Server
			if backend == "prometheus" {
				srv = backendtest.Prometheus(b)
			} else {
				srv = backendtest.VictoriaMetrics(b)
			}
			s, err := New(Config{URL: srv.URL + "/api/v1/write"}, sink.Deps{Name: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			start := time.Now().Add(-24 * time.Hour).Truncate(time.Minute)
			batch := realisticBatch(10_000, start)
			n := 0
			b.ReportAllocs()
			cpu0 := cpuTime()
			for i := 0; b.Loop(); i++ {
				ts := start.UnixNano() + int64(i)*60e9 // a new minute each time
				for j := range batch.Metrics {
					batch.Metrics[j].Timestamp = ts
				}
				for j := range batch.Dists {
					batch.Dists[j].Timestamp = ts
				}
				if err := s.Send(context.Background(), batch, sink.Meta{}); err != nil {
					b.Fatal(err)
				}
				n += batch.Len()
			}
			// the backend runs in another process: this is les' CPU only
			b.ReportMetric(float64(n)/(cpuTime()-cpu0).Seconds(), "items/les-cpu-s")
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "items/s")
			if c := s.Counts(); c.Refused > 0 {
				b.Errorf("refused %d", c.Refused)
			}
		})
	}
}

// BenchmarkSendDiscard is Send against a receiver that reads and drops
// the body: the sink's own cost with HTTP on loopback.
func BenchmarkSendDiscard(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(204)
	}))
	defer srv.Close()
	s, err := New(Config{URL: srv.URL}, sink.Deps{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	batch := realisticBatch(10_000, t0)
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		if err := s.Send(context.Background(), batch, sink.Meta{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch.Len())/(cpuTime()-cpu0).Seconds(), "items/cpu-s")
	b.ReportMetric(float64(b.N*batch.Len())/b.Elapsed().Seconds(), "items/s")
}

// TestSeriesInTimeOrder (issue 9): Prometheus appends a request's samples
// in the order they come and refuses a series' sample older than the one
// before it (out_of_order); a batch holding a series' points out of time
// order (records merged from an agent that published them so) must reach
// it in time order, within a request and from one request to the next.
func TestSeriesInTimeOrder(t *testing.T) {
	e := testEncoder(Config{URL: "http://x", MaxSamplesPerRequest: 2})
	b := &model.Batch{}
	for _, p := range []struct {
		name string
		ms   int64
	}{{"a", 3}, {"b", 1}, {"a", 1}, {"c", 2}, {"a", 2}, {"b", 0}} {
		b.Metrics = append(b.Metrics, model.Metric{Name: p.name, Source: "h", Kind: model.Gauge, Value: float64(p.ms), Timestamp: p.ms * 1e6})
	}
	e.counters.begin()
	e.encode(b)
	e.counters.commit()
	last := map[string]int64{}
	for _, s := range decodeAll(t, e) {
		for _, smp := range s.Samples {
			if prev, ok := last[s.key()]; ok && smp.Ms < prev {
				t.Errorf("%s: sample at %d ms after one at %d ms", s.key(), smp.Ms, prev)
			}
			last[s.key()] = smp.Ms
		}
	}
	if len(last) != 3 {
		t.Errorf("%d series, want 3", len(last))
	}
	if n := testing.AllocsPerRun(20, func() { e.counters.begin(); e.encode(b); e.counters.commit() }); n > 0 {
		t.Errorf("%v allocations per warm encode of a batch out of time order, want 0", n)
	}
}
