package app

import (
	"testing"

	"github.com/les-streams/les/internal/bench"
	"github.com/les-streams/les/internal/format/statsd"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/rollup"
	"github.com/les-streams/les/internal/wire"
)

// TestRollupProcDropsPlainGauges: plain gauges (no window, no rule) never
// reach the engine, wherever they sit in the batch; everything else does,
// and the batch passed in is left as it was.
func TestRollupProcDropsPlainGauges(t *testing.T) {
	const t0 = int64(1_700_000_040) * 1e9
	rules := []rollup.Rule{{Match: "ruled", Window: model.WindowMinute}}
	eng, err := rollup.New(rollup.Config{Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	p := &rollupProc{Rollup: eng, rules: rules}
	pt := func(name string, k model.Kind, w model.Window) model.Metric {
		return model.Metric{Name: name, Kind: k, Window: w, Value: 1, Timestamp: t0, Source: "s"}
	}
	batches := [][]model.Metric{
		{pt("c", model.Counter, 0), pt("lat", model.Sample, 0)},                              // nothing to drop
		{pt("c", model.Counter, 0), pt("plain", model.Gauge, 0), pt("lat", model.Sample, 0)}, // drop in the middle
		{pt("plain", model.Gauge, 0), pt("ruled", model.Gauge, 0), pt("sg", model.Gauge, model.WindowMinute)},
	}
	for _, ms := range batches {
		b := &model.Batch{Metrics: ms}
		n := len(ms)
		p.Add(b, t0)
		if len(b.Metrics) != n {
			t.Fatalf("Add changed its input: %+v", b.Metrics)
		}
	}
	var out model.Batch
	p.Flush(&out)
	got := map[string]float64{}
	for _, m := range out.Metrics {
		got[m.Name+"/"+m.Kind.String()] += m.Value
	}
	for _, d := range out.Dists {
		got[d.Name+"/dist"] += d.Count
	}
	want := map[string]float64{"c/counter": 2, "lat/dist": 2, "ruled/dist": 1, "ruled/gauge": 1, "sg/gauge": 1}
	if len(got) != len(want) {
		t.Fatalf("emitted %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("emitted %v, want %v", got, want)
		}
	}
}

// BenchmarkRollupConsumer is the rollup consumer's work per StatsD line,
// as `les up` does it for each record: decode a wire record (zstd) of
// `les bench`'s StatsD mix (5,000 series, 4-7 tags, every type; 88,000
// lines, about a full 1 MiB record in the series encoding) and fold it
// into the rollup, the whole record at once (Decode) or in parts
// (DecodeParts, as the processor runner does). The windows stay open (no
// Advance), so the series exist after the first round.
func BenchmarkRollupConsumer(b *testing.B) {
	const lines = 88_000
	const t0 = int64(1_700_000_040) * 1e9
	ds, err := bench.Datagrams("statsd", 5000, lines/20, 20, 64<<10, 5)
	if err != nil {
		b.Fatal(err)
	}
	var in model.Batch
	d := statsd.NewDecoder(statsd.Options{DefaultSource: "bench-host"})
	for _, dg := range ds {
		d.Decode(&in, dg, t0)
	}
	for _, enc := range []wire.Encoding{wire.EncodingLES, wire.EncodingSeries} {
		e := wire.NewEncoding(wire.SignalMetrics, enc)
		for i := range in.Metrics {
			e.AppendMetric(&in.Metrics[i])
		}
		rec, err := e.Finish(nil, 1, 1, wire.CompressionZstd)
		if err != nil {
			b.Fatal(err)
		}
		for _, parts := range []bool{false, true} {
			name := enc.String() + "/whole"
			if parts {
				name = enc.String() + "/parts"
			}
			b.Run(name, func(b *testing.B) {
				eng, err := rollup.New(rollup.Config{})
				if err != nil {
					b.Fatal(err)
				}
				p := &rollupProc{Rollup: eng}
				var dec wire.Decoder
				var batch model.Batch
				add := func(b *model.Batch) { p.Add(b, t0) }
				round := func() {
					batch.Reset()
					if parts {
						_, err = dec.DecodeParts(&batch, rec, 0, add)
					} else if _, err = dec.Decode(&batch, rec); err == nil {
						p.Add(&batch, t0)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				round()
				b.ReportAllocs() // ~0: zstd's decoder pools buffers, which a GC may empty
				for b.Loop() {
					round()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(in.Metrics)), "ns/line")
			})
		}
	}
}
