package rollup

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/les-streams/les/internal/model"
)

var historyMemory = flag.Bool("history-memory", false, "run TestHistoryMemory")

const histT0 = int64(1_780_000_000) * 1e9 // a minute boundary (1780000000 = 29666666·60 + 40; aligned below)

func minuteAt(i int) int64 { return windowStart(histT0, model.WindowMinute) + int64(i)*60e9 }

// distOf builds the distribution a rollup emits for samples, through the
// same centroid path the stream carries.
func distOf(name, source string, ts int64, corr uint32, samples []float64) model.Distribution {
	sk := NewSketch()
	for _, v := range samples {
		sk.Add(v)
	}
	return model.Distribution{Name: name, Source: source, Timestamp: ts, Window: model.WindowMinute,
		Count: sk.Count(), Sum: sk.Sum(), Min: sk.Min(), Max: sk.Max(), Centroids: sk.Centroids(nil), Correction: corr}
}

// TestHistoryMergeExact: a day of minute distributions from three sources,
// merged by History over the whole range, has the same count, sum, min,
// max and quantiles as one sketch of every sample; and its percentiles are
// within 1% of the exact order statistics of the samples.
func TestHistoryMergeExact(t *testing.T) {
	h := NewHistory(HistoryConfig{})
	rng := rand.New(rand.NewPCG(1, 2))
	all := NewSketch()
	var raw []float64
	var b model.Batch
	for i := range 1440 {
		b.Dists = b.Dists[:0]
		for _, src := range []string{"fn-a", "fn-b", "fn-c"} {
			var vs []float64
			for range 5 + rng.IntN(20) {
				v := math.Exp(rng.NormFloat64()) * 100
				if rng.IntN(50) == 0 {
					v = -v
				}
				vs = append(vs, v)
				all.Add(v)
				raw = append(raw, v)
			}
			b.Dists = append(b.Dists, distOf("lat", src, minuteAt(i), 0, vs))
		}
		h.Add(&b, minuteAt(i+1))
	}
	qs := []float64{0, 0.01, 0.5, 0.9, 0.99, 0.999, 1}
	got := h.Query(HistQuery{Name: "lat", AllSources: true, Merge: true, Window: model.WindowMinute,
		From: minuteAt(0), To: minuteAt(1440), Step: StepAll, Quantiles: qs})
	if len(got) != 1 || len(got[0].Points) != 1 || got[0].Series != 3 {
		t.Fatalf("merged answer: %+v", got)
	}
	p := got[0].Points[0]
	if p.Windows != 3*1440 || p.Count != all.Count() || p.Min != all.Min() || p.Max != all.Max() || math.Abs(p.Sum-all.Sum()) > 1e-9*math.Abs(all.Sum()) {
		t.Errorf("merged point windows=%d count=%v sum=%v min=%v max=%v; want count=%v sum=%v min=%v max=%v",
			p.Windows, p.Count, p.Sum, p.Min, p.Max, all.Count(), all.Sum(), all.Min(), all.Max())
	}
	slices.Sort(raw)
	for i, q := range qs {
		if p.Quantiles[i].Value != all.Quantile(q) {
			t.Errorf("q%v: history %v, one sketch of all samples %v", q, p.Quantiles[i].Value, all.Quantile(q))
		}
		exact := raw[int(math.Floor(q*float64(len(raw)-1)))]
		if exact > 0 && math.Abs(p.Quantiles[i].Value-exact) > 0.0101*exact {
			t.Errorf("q%v: %v, exact order statistic %v (more than 1%% off)", q, p.Quantiles[i].Value, exact)
		}
	}
	// Hour steps: 24 points, counts adding up.
	hours := h.Query(HistQuery{Name: "lat", Source: "fn-a", Window: model.WindowMinute, From: minuteAt(0), To: minuteAt(1440), Step: model.WindowHour.Nanos()})
	var n float64
	for _, p := range hours[0].Points {
		n += p.Count
	}
	if len(hours) != 1 || len(hours[0].Points) < 24 || len(hours[0].Points) > 25 {
		t.Errorf("hour steps: %d series, %d points", len(hours), len(hours[0].Points))
	}
	whole := h.Query(HistQuery{Name: "lat", Source: "fn-a", Window: model.WindowMinute, From: minuteAt(0), To: minuteAt(1440), Step: StepAll})
	if n != whole[0].Points[0].Count {
		t.Errorf("hour steps count %v, whole range %v", n, whole[0].Points[0].Count)
	}
}

// TestHistoryScalars: counters sum over steps and merged sources; gauges
// take the last window of each series (summed when merged); corrections
// add (counters) or replace (gauges); distribution corrections merge once.
func TestHistoryScalars(t *testing.T) {
	h := NewHistory(HistoryConfig{})
	var b model.Batch
	add := func(name, src string, kind model.Kind, minute int, v float64) {
		b.Metrics = append(b.Metrics, model.Metric{Name: name, Source: src, Kind: kind, Window: model.WindowMinute, Timestamp: minuteAt(minute), Value: v})
	}
	for m := range 120 {
		add("inv", "a", model.Counter, m, 2)
		add("inv", "b", model.Counter, m, 3)
		add("mem", "a", model.Gauge, m, float64(m))
		add("mem", "b", model.Gauge, m, 1000)
	}
	h.Add(&b, minuteAt(121))
	// A correction of minute 5 of inv/a (+10) and of mem/b (late value 7).
	b.Metrics = b.Metrics[:0]
	add("inv", "a", model.Counter, 5, 10)
	add("mem", "b", model.Gauge, 119, 7)
	h.Add(&b, minuteAt(122))
	if st := h.Stats(); st.Series != 4 || st.Windows != 480 {
		t.Errorf("stats %+v", st)
	}
	q := func(name string, src string, merge bool, step int64) []HistSeries {
		return h.Query(HistQuery{Name: name, Source: src, AllSources: src == "*", Merge: merge, Window: model.WindowMinute,
			From: minuteAt(0), To: minuteAt(120), Step: step})
	}
	inv := q("inv", "*", true, model.WindowHour.Nanos())
	if len(inv) != 1 || inv[0].Kind != HistCounter {
		t.Fatalf("inv merged: %+v", inv)
	}
	var total float64
	for _, p := range inv[0].Points {
		total += p.Value
	}
	if total != 120*5+10 {
		t.Errorf("inv merged total %v, want 610", total)
	}
	mem := q("mem", "a", false, StepAll)
	if p := mem[0].Points[0]; p.Value != 119 || p.Min != 0 || p.Max != 119 || p.Windows != 120 {
		t.Errorf("mem a over the range: %+v", p)
	}
	memAll := q("mem", "*", true, StepAll)
	if p := memAll[0].Points[0]; p.Value != 119+7 {
		t.Errorf("mem merged last values: %+v, want 126", p)
	}

	// Corrections of a distribution window merge once.
	b.Metrics = b.Metrics[:0]
	b.Dists = []model.Distribution{distOf("lat", "a", minuteAt(3), 0, []float64{1, 2, 3})}
	h.Add(&b, minuteAt(122))
	b.Dists = []model.Distribution{distOf("lat", "a", minuteAt(3), 1, []float64{40})}
	h.Add(&b, minuteAt(123))
	h.Add(&b, minuteAt(123))
	got := h.Query(HistQuery{Name: "lat", Source: "a", Window: model.WindowMinute, From: minuteAt(0), To: minuteAt(10), Quantiles: []float64{1}})
	if p := got[0].Points[0]; len(got[0].Points) != 1 || p.Count != 4 || p.Sum != 46 || p.Max != 40 || p.Quantiles[0].Value != 40 {
		t.Errorf("lat with its correction: %+v", got[0].Points)
	}
}

// TestHistoryRetentionAndCap: windows older than the retention go, and
// series past MaxSeries are refused and counted.
func TestHistoryRetentionAndCap(t *testing.T) {
	h := NewHistory(HistoryConfig{Retention: time.Hour, MaxSeries: 2})
	var b model.Batch
	for m := range 120 {
		for _, src := range []string{"a", "b", "c"} {
			b.Metrics = append(b.Metrics, model.Metric{Name: "c", Source: src, Kind: model.Counter, Window: model.WindowMinute, Timestamp: minuteAt(m), Value: 1})
		}
	}
	h.Add(&b, minuteAt(120))
	st := h.Stats()
	// Kept: the windows that ended in the last hour (minutes 59..119).
	if st.Series != 2 || st.SeriesRejected != 61 || st.Windows != 2*61 {
		t.Errorf("stats %+v (want 2 series, 61 rejected: only the last hour is kept)", st)
	}
	h.Prune(minuteAt(240))
	if st := h.Stats(); st.Series != 0 || st.Windows != 0 {
		t.Errorf("after the retention: %+v", st)
	}
	if names, _ := h.Names("", 0); len(names) != 0 {
		t.Errorf("names after the retention: %+v", names)
	}
}

// TestHistoryNames: counts of sources and tag sets per name and kind.
func TestHistoryNames(t *testing.T) {
	h := NewHistory(HistoryConfig{})
	var b model.Batch
	for i, src := range []string{"a", "a", "b"} {
		b.Metrics = append(b.Metrics, model.Metric{Name: "aws.lambda.invocations", Source: src, Kind: model.Counter, Window: model.WindowMinute,
			Timestamp: minuteAt(0), Value: 1, Tags: model.Tags{{Key: "v", Value: fmt.Sprint(i)}}})
	}
	b.Dists = append(b.Dists, distOf("aws.lambda.duration", "a", minuteAt(0), 0, []float64{1}))
	h.Add(&b, minuteAt(1))
	names, more := h.Names("LAMBDA", 1)
	if !more || len(names) != 1 || names[0].Name != "aws.lambda.duration" {
		t.Errorf("names limit 1: %+v %v", names, more)
	}
	names, _ = h.Names("invoc", 0)
	if len(names) != 1 || names[0].Sources != 2 || names[0].TagSets != 3 || names[0].Series != 3 || names[0].Kind != HistCounter || names[0].Last != minuteAt(0) {
		t.Errorf("names: %+v", names)
	}
	if s := h.Series("aws.lambda.invocations"); len(s) != 3 || s[0].Source != "a" || s[2].Source != "b" {
		t.Errorf("series: %+v", s)
	}
}

// TestHistoryMemory measures the heap of a full day of minute windows for
// 10,000 series (docs/adr/0007-ui-history.md quotes it). It runs only with
// -history-memory (it takes a few seconds and ~1 GB).
func TestHistoryMemory(t *testing.T) {
	if !*historyMemory {
		t.Skip("measurement: go test -run TestHistoryMemory -history-memory ./internal/rollup")
	}
	for _, c := range []struct {
		name      string
		distEvery int // every n-th series is a distribution
		samples   int // samples per distribution window
	}{{"counters", 0, 0}, {"lambda mix (1 in 6 distributions, 25 samples)", 6, 25}, {"distributions (25 samples)", 1, 25}} {
		runtime.GC()
		var m0 runtime.MemStats
		runtime.ReadMemStats(&m0)
		h := NewHistory(HistoryConfig{MaxSeries: 10_000})
		rng := rand.New(rand.NewPCG(3, 4))
		// A pool of distinct windows (building a sketch per window would
		// dominate the run time; the bins stored are what matters).
		pool := make([]model.Distribution, 500)
		for i := range pool {
			vs := make([]float64, max(1, c.samples))
			for j := range vs {
				vs[j] = math.Exp(rng.NormFloat64()) * 80
			}
			pool[i] = distOf("d", "", 0, 0, vs)
		}
		srcs := make([]string, 10_000)
		for i := range srcs {
			srcs[i] = fmt.Sprintf("fn-%04d", i)
		}
		var b model.Batch
		for minute := range 1440 {
			b.Metrics, b.Dists = b.Metrics[:0], b.Dists[:0]
			for s := range 10_000 {
				src := srcs[s]
				if c.distEvery > 0 && s%c.distEvery == 0 {
					d := pool[rng.IntN(len(pool))]
					d.Source, d.Timestamp = src, minuteAt(minute)
					b.Dists = append(b.Dists, d)
				} else {
					b.Metrics = append(b.Metrics, model.Metric{Name: "c", Source: src, Kind: model.Counter, Window: model.WindowMinute, Timestamp: minuteAt(minute), Value: 1})
				}
			}
			h.Add(&b, minuteAt(minute+1))
		}
		b = model.Batch{}
		runtime.GC()
		var m1 runtime.MemStats
		runtime.ReadMemStats(&m1)
		st := h.Stats()
		t.Logf("%s: %d series × %d windows: heap %.0f MiB (%.1f bytes per window)", c.name, st.Series, st.Windows/max(1, st.Series),
			float64(m1.HeapAlloc-m0.HeapAlloc)/(1<<20), float64(m1.HeapAlloc-m0.HeapAlloc)/float64(st.Windows))
		runtime.KeepAlive(h)
	}
}

// BenchmarkHistoryQueryDay: one series, 24 h of minute distributions,
// answered in minute steps with three percentiles (the Series page's
// default chart).
func BenchmarkHistoryQueryDay(b *testing.B) {
	h, q := dayOfOneSeries()
	b.ReportAllocs()
	for b.Loop() {
		if got := h.Query(q); len(got[0].Points) != 1440 {
			b.Fatal(len(got[0].Points))
		}
	}
}

func dayOfOneSeries() (*History, HistQuery) {
	h := NewHistory(HistoryConfig{})
	rng := rand.New(rand.NewPCG(5, 6))
	var b model.Batch
	for i := range 1440 {
		vs := make([]float64, 25)
		for j := range vs {
			vs[j] = math.Exp(rng.NormFloat64()) * 80
		}
		b.Dists = append(b.Dists[:0], distOf("d", "fn", minuteAt(i), 0, vs))
		h.Add(&b, minuteAt(i+1))
	}
	return h, HistQuery{Name: "d", Source: "fn", Window: model.WindowMinute, From: minuteAt(0), To: minuteAt(1440), Quantiles: []float64{0.5, 0.9, 0.99}}
}

// TestHistorySealedExact: windows sealed into compact chunks come back
// exactly as fed — awkward gauge values, weighted (non-integral)
// distribution centroids, corrections of sealed windows — and the
// retention cuts inside a chunk to the window.
func TestHistorySealedExact(t *testing.T) {
	h := NewHistory(HistoryConfig{Retention: 2 * time.Hour})
	values := []float64{1, 0, -3, 1.5, 0.1, -1e-300, 1 << 60, -(1 << 51), math.MaxFloat64, math.Copysign(0, -1), 123456.789}
	const n = 100
	var b model.Batch
	weighted := func(minute int) model.Distribution {
		cs := []model.Centroid{{Value: 10, Count: 0.5}, {Value: -2, Count: 2}, {Value: 0, Count: 1}, {Value: 1e6 + float64(minute), Count: 1}}
		return model.Distribution{Name: "w", Source: "s", Timestamp: minuteAt(minute), Window: model.WindowMinute,
			Count: 4.5, Sum: 5 - 4 + 1e6 + float64(minute), Min: -2, Max: 1e6 + float64(minute), Centroids: cs}
	}
	for m := range n {
		b.Metrics = append(b.Metrics[:0], model.Metric{Name: "g", Source: "s", Kind: model.Gauge, Window: model.WindowMinute, Timestamp: minuteAt(m), Value: values[m%len(values)]})
		b.Dists = append(b.Dists[:0], weighted(m))
		h.Add(&b, minuteAt(m+1))
	}
	// Corrections of minute 3, long sealed: the gauge takes the late
	// value, the distribution merges one more sample of 7.
	b.Metrics = append(b.Metrics[:0], model.Metric{Name: "g", Source: "s", Kind: model.Gauge, Window: model.WindowMinute, Timestamp: minuteAt(3), Value: 42.25})
	b.Dists = append(b.Dists[:0], distOf("w", "s", minuteAt(3), 1, []float64{7}))
	h.Add(&b, minuteAt(n+1))
	q := func(name string) []HistPoint {
		got := h.Query(HistQuery{Name: name, Source: "s", Window: model.WindowMinute, From: minuteAt(0), To: minuteAt(n), Quantiles: []float64{0, 1}})
		if len(got) != 1 {
			t.Fatalf("%s: %d series", name, len(got))
		}
		return got[0].Points
	}
	g := q("g")
	if len(g) != n {
		t.Fatalf("gauge: %d points, want %d", len(g), n)
	}
	for m, p := range g {
		want := values[m%len(values)]
		if m == 3 {
			want = 42.25
		}
		if p.Value != want || p.Start != minuteAt(m) {
			t.Errorf("gauge minute %d: %v at %d, want %v at %d", m, p.Value, p.Start, want, minuteAt(m))
		}
	}
	d := q("w")
	if len(d) != n {
		t.Fatalf("distribution: %d points, want %d", len(d), n)
	}
	for m, p := range d {
		count, sum, mx := 4.5, 5-4+1e6+float64(m), 1e6+float64(m)
		if m == 3 {
			count, sum = 5.5, sum+7
		}
		// Count, sum, min and max exact; the extreme quantiles within the
		// sketch's 1% of them.
		if p.Count != count || p.Sum != sum || p.Min != -2 || p.Max != mx || math.Abs(p.Quantiles[1].Value-mx) > 0.01*mx || math.Abs(p.Quantiles[0].Value+2) > 0.02 {
			t.Errorf("distribution minute %d: count %v sum %v min %v max %v q0 %v q1 %v; want count %v sum %v min -2 max %v",
				m, p.Count, p.Sum, p.Min, p.Max, p.Quantiles[0].Value, p.Quantiles[1].Value, count, sum, mx)
		}
	}
	if st := h.Stats(); st.Windows != 2*n || st.Duplicates != 0 {
		t.Errorf("stats %+v", st)
	}
	// The same correction again is recognised inside the sealed chunk.
	h.Add(&b, minuteAt(n+1))
	if st := h.Stats(); st.Duplicates != 1 {
		t.Errorf("a sealed correction fed twice: %+v", st)
	}
	// More than two hours after minute 45 ended, minutes 0…45 are gone: the cut
	// falls inside a sealed chunk (30 windows each).
	h.Prune(minuteAt(47) + int64(2*time.Hour))
	if st := h.Stats(); st.Windows != 2*(n-46) {
		t.Errorf("after the retention: %d windows, want %d", st.Windows, 2*(n-46))
	}
	for _, si := range h.Series("g") {
		if si.First != minuteAt(46) || si.Last != minuteAt(n-1) || si.Windows != n-46 {
			t.Errorf("series after the retention: %+v", si)
		}
	}
	if g := q("g"); len(g) != n-46 || g[0].Start != minuteAt(46) {
		t.Errorf("gauge after the retention: %d points from %d", len(g), g[0].Start)
	}
}

// BenchmarkHistoryFold: the cost of folding closed windows in (what the
// rebuild at start does for a day): 1,000 Lambda-like series (1 in 6 a
// distribution of 25 samples, the rest counters) × 1,440 minutes.
func BenchmarkHistoryFold(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	pool := make([]model.Distribution, 200)
	for i := range pool {
		vs := make([]float64, 25)
		for j := range vs {
			vs[j] = math.Exp(rng.NormFloat64()) * 80
		}
		pool[i] = distOf("d", "", 0, 0, vs)
	}
	const series, minutes = 1000, 1440
	srcs := make([]string, series)
	for i := range srcs {
		srcs[i] = fmt.Sprintf("fn-%04d", i)
	}
	batches := make([]model.Batch, minutes)
	for m := range batches {
		for s := range series {
			if s%6 == 0 {
				d := pool[(m*series+s)%len(pool)]
				d.Source, d.Timestamp = srcs[s], minuteAt(m)
				batches[m].Dists = append(batches[m].Dists, d)
			} else {
				batches[m].Metrics = append(batches[m].Metrics, model.Metric{Name: "c", Source: srcs[s], Kind: model.Counter, Window: model.WindowMinute, Timestamp: minuteAt(m), Value: 1})
			}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		h := NewHistory(HistoryConfig{})
		for m := range batches {
			h.Add(&batches[m], minuteAt(m+1))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(series*minutes), "ns/window")
}
