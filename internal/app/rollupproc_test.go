package app

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

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

// TestRollupProcSeriesDifferential: records decoded by series index
// (DecodeSeriesParts into AddSeries, as the processor runner does) fold
// into exactly what the same records decoded as whole metrics
// (DecodeParts into Add) fold into: the same emitted windows and stats
// after every record. The records mix points the encoder finds by
// identity and by reference (model.Metric.Ref, from two caches), every
// kind, plain gauges (dropped, but for a rule's), windows, late points
// and NaNs; they come in parts of 1 to 300 points, windows close
// between two parts of a record, and among them are records in the les
// encoding, distributions and corrupt records (neither folds anything of
// them).
func TestRollupProcSeriesDifferential(t *testing.T) {
	const t0 = int64(1_700_000_040) * 1e9
	const sec = int64(1e9)
	rng := rand.New(rand.NewPCG(5, 6))
	rules := []rollup.Rule{{Match: "g.1*", Window: model.WindowMinute}, {Match: "c.*", Window: model.WindowHour}}
	cfg := rollup.Config{Windows: []model.Window{model.WindowMinute, model.WindowHour}, Grace: 10e9, Rules: rules,
		MaxSeriesPerWindow: 40}
	newProc := func() *rollupProc {
		eng, err := rollup.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return &rollupProc{Rollup: eng, rules: rules}
	}
	byMetric, bySeries := newProc(), newProc()
	// The series: every kind at several windows; a third interned by
	// one of two caches (their points share memory and carry a Ref).
	kinds := []model.Kind{model.Sample, model.Counter, model.Gauge, model.GaugeDelta, model.Set}
	caches := [2]uint64{uint64(model.NewInternID()), uint64(model.NewInternID())}
	var series []model.Metric
	for i := range 120 {
		k := kinds[i%len(kinds)]
		m := model.Metric{Name: fmt.Sprintf("%c.%d", "scgds"[i%len(kinds)], i%13), Source: fmt.Sprintf("fn-%d", i%4), Kind: k,
			Window: model.Window(i / len(kinds) % 2)}
		for j := range i % 3 {
			m.Tags = append(m.Tags, model.Tag{Key: fmt.Sprintf("k%d", j), Value: fmt.Sprint(i % 7)})
		}
		if i%3 == 0 {
			m.Ref = caches[i/3%2]<<32 | uint64(i+1)
		}
		series = append(series, m)
	}
	record := func(seq uint64, now int64, enc wire.Encoding, c wire.Compression) []byte {
		e := wire.NewEncoding(wire.SignalMetrics, enc)
		for range 200 + rng.IntN(600) {
			m := series[rng.IntN(len(series))]
			m.Timestamp = now - int64(rng.IntN(150))*sec // some late
			m.Value = float64(rng.IntN(40)) + rng.Float64()
			if rng.IntN(60) == 0 {
				m.Value = math.NaN()
			}
			if m.Kind == model.Gauge && rng.IntN(2) == 0 {
				m.Value = -m.Value
			}
			e.AppendMetric(&m)
		}
		rec, err := e.Finish(nil, 7, seq, c)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	dists := func(seq uint64, now int64) []byte {
		e := wire.NewEncoder(wire.SignalDistributions)
		for i := range 5 {
			e.AppendDistribution(&model.Distribution{Name: "s.1", Source: "fn-1", Timestamp: now, Window: model.WindowMinute,
				Count: 2, Sum: 3, Min: 1, Max: 2, Centroids: []model.Centroid{{Value: 1, Count: 1}, {Value: float64(2 + i), Count: 1}}})
		}
		rec, err := e.Finish(nil, 7, seq, wire.CompressionNone)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	corrupt := func(rec []byte) []byte { // a trailing byte after the last point
		rec = append(append([]byte{}, rec...), 0)
		binary.LittleEndian.PutUint32(rec[44:], uint32(len(rec)-wire.HeaderSize))
		return rec
	}
	var decM, decS wire.Decoder
	var inM, inS model.Batch
	now := t0
	var advanced, corrupted int
	for i := range 40 {
		now += 20 * sec
		var rec []byte
		switch i % 8 {
		case 3:
			rec = record(uint64(i), now, wire.EncodingLES, wire.CompressionZstd)
		case 5:
			rec = dists(uint64(i), now)
		case 7:
			rec, corrupted = corrupt(record(uint64(i), now, wire.EncodingSeries, wire.CompressionNone)), corrupted+1
		default:
			rec = record(uint64(i), now, wire.EncodingSeries, wire.CompressionZstd)
		}
		n := 1 + rng.IntN(300)
		closeAt := rng.IntN(4) // the part after which windows close
		var outM, outS model.Batch
		partM, partS := 0, 0
		inM.Reset()
		_, errM := decM.DecodeParts(&inM, rec, n, func(b *model.Batch) {
			byMetric.Add(b, now)
			if partM == closeAt && b.More {
				byMetric.Advance(now+15*sec, &outM)
				advanced++
			}
			partM++
		})
		inS.Reset()
		_, errS := decS.DecodeSeriesParts(&inS, rec, n, func(b *model.Batch) {
			bySeries.Add(b, now)
			partS++
		}, func(sp *wire.SeriesPart) {
			bySeries.AddSeries(sp, now)
			if partS == closeAt && sp.More {
				bySeries.Advance(now+15*sec, &outS)
			}
			partS++
		})
		if (errM == nil) != (errS == nil) || partM != partS {
			t.Fatalf("record %d: DecodeParts err %v in %d parts, DecodeSeriesParts err %v in %d", i, errM, partM, errS, partS)
		}
		if (errS != nil) != (i%8 == 7) {
			t.Fatalf("record %d: err %v", i, errS)
		}
		if i%3 == 2 {
			now += 15 * sec
			byMetric.Advance(now, &outM)
			bySeries.Advance(now, &outS)
		}
		if d := cmp.Diff(outM, outS, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("record %d: emitted by series index differs (-by metric +by series):\n%s", i, d)
		}
		if sm, ss := byMetric.Stats(), bySeries.Stats(); sm != ss {
			t.Fatalf("record %d: stats by series %+v, want %+v", i, ss, sm)
		}
	}
	var outM, outS model.Batch
	byMetric.Flush(&outM)
	bySeries.Flush(&outS)
	if d := cmp.Diff(outM, outS, cmpopts.EquateEmpty()); d != "" {
		t.Fatalf("Flush: emitted by series index differs (-by metric +by series):\n%s", d)
	}
	st := bySeries.Stats()
	if advanced == 0 || corrupted == 0 || st.LateSamples == 0 || st.Invalid == 0 || st.DistsIn == 0 || st.SeriesRejected == 0 ||
		len(outS.Metrics) == 0 || len(outS.Dists) == 0 {
		t.Fatalf("the records do not exercise windows closing between parts, corrupt records, late and invalid points, distributions and the cap: %d, %d, %+v",
			advanced, corrupted, st)
	}
}

// TestRollupProcSeriesAllocs: once its series exist, a record by series
// index (DecodeSeriesParts into AddSeries, in parts, with plain gauges
// to drop) allocates nothing.
func TestRollupProcSeriesAllocs(t *testing.T) {
	const t0 = int64(1_700_000_040) * 1e9
	eng, err := rollup.New(rollup.Config{})
	if err != nil {
		t.Fatal(err)
	}
	p := &rollupProc{Rollup: eng}
	e := wire.NewEncoding(wire.SignalMetrics, wire.EncodingSeries)
	kinds := []model.Kind{model.Sample, model.Counter, model.Gauge, model.GaugeDelta, model.Set}
	for i := range 3000 {
		m := model.Metric{Name: fmt.Sprint("m.", i%50), Source: "fn", Kind: kinds[i%len(kinds)], Timestamp: t0 + int64(i), Value: float64(i % 9)}
		e.AppendMetric(&m)
	}
	rec, err := e.Finish(nil, 1, 1, wire.CompressionNone)
	if err != nil {
		t.Fatal(err)
	}
	var dec wire.Decoder
	var b model.Batch
	add := func(*model.Batch) { t.Fatal("a series record went to Add") }
	addSeries := func(sp *wire.SeriesPart) { p.AddSeries(sp, t0) }
	run := func() {
		b.Reset()
		if _, err := dec.DecodeSeriesParts(&b, rec, 256, add, addSeries); err != nil {
			t.Fatal(err)
		}
	}
	run()
	if a := testing.AllocsPerRun(20, run); a != 0 {
		t.Fatalf("%v allocations per record, want 0", a)
	}
	if st := p.Stats(); st.SamplesIn == 0 {
		t.Fatalf("nothing folded: %+v", st)
	}
}

// BenchmarkRollupConsumer is the rollup consumer's work per StatsD line,
// as `les up` does it for each record: decode a wire record (zstd) of
// `les bench`'s StatsD mix (5,000 series, 4-7 tags, every type; 88,000
// lines, about a full 1 MiB record in the series encoding) and fold it
// into the rollup, the whole record at once (Decode), in parts by series
// index (DecodeSeriesParts into AddSeries, as the processor runner does;
// "parts") or in parts of whole metrics (DecodeParts into Add, as the
// runner did before; "batches"). The windows stay open (no Advance),
// so the series exist after the first round.
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
		for _, how := range []string{"whole", "parts", "batches"} {
			b.Run(enc.String()+"/"+how, func(b *testing.B) {
				eng, err := rollup.New(rollup.Config{})
				if err != nil {
					b.Fatal(err)
				}
				p := &rollupProc{Rollup: eng}
				var dec wire.Decoder
				var batch model.Batch
				add := func(b *model.Batch) { p.Add(b, t0) }
				addSeries := func(sp *wire.SeriesPart) { p.AddSeries(sp, t0) }
				round := func() {
					batch.Reset()
					switch how {
					case "parts":
						_, err = dec.DecodeSeriesParts(&batch, rec, 0, add, addSeries)
					case "batches":
						_, err = dec.DecodeParts(&batch, rec, 0, add)
					default:
						if _, err = dec.Decode(&batch, rec); err == nil {
							p.Add(&batch, t0)
						}
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
