package rollup

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/les-streams/les/internal/model"
)

const (
	sec    = int64(time.Second)
	minute = 60 * sec
	t0     = int64(1_700_000_040) * sec // a minute boundary
)

func newRollup(t testing.TB, cfg Config) *Rollup {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func pt(name string, v float64, ts int64, k model.Kind, tags ...model.Tag) model.Metric {
	return model.Metric{Name: name, Value: v, Timestamp: ts, Kind: k, Source: "src", Tags: tags}
}

func add(r *Rollup, now int64, ms ...model.Metric) {
	r.Add(&model.Batch{Metrics: ms}, now)
}

func advance(r *Rollup, now int64) *model.Batch {
	var out model.Batch
	r.Advance(now, &out)
	return &out
}

func TestWindowsByEventTimeAndGrace(t *testing.T) {
	r := newRollup(t, Config{})
	add(r, t0+90*sec, pt("lat", 1, t0+5*sec, model.Sample), pt("lat", 3, t0+59*sec, model.Sample), pt("lat", 7, t0+60*sec, model.Sample))
	if out := advance(r, t0+minute+29*sec); len(out.Dists) != 0 {
		t.Fatalf("closed before grace: %+v", out.Dists)
	}
	out := advance(r, t0+minute+30*sec)
	if len(out.Dists) != 1 {
		t.Fatalf("got %d dists, want 1", len(out.Dists))
	}
	d := out.Dists[0]
	if d.Timestamp != t0 || d.Window != model.WindowMinute || d.Count != 2 || d.Sum != 4 || d.Min != 1 || d.Max != 3 || d.Correction != 0 || d.Source != "src" {
		t.Fatalf("bad dist %+v", d)
	}
	if len(d.Quantiles) != 5 || d.Quantiles[0].Q != 0.5 {
		t.Fatalf("quantiles %+v", d.Quantiles)
	}
	out = advance(r, t0+2*minute+30*sec)
	if len(out.Dists) != 1 || out.Dists[0].Timestamp != t0+minute || out.Dists[0].Count != 1 {
		t.Fatalf("second window: %+v", out.Dists)
	}
	if st := r.Stats(); st.SamplesIn != 3 || st.WindowsEmitted != 2 || st.LateSamples != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLateSamplesCorrection(t *testing.T) {
	r := newRollup(t, Config{})
	add(r, t0, pt("lat", 1, t0, model.Sample), pt("hits", 2, t0, model.Counter))
	advance(r, t0+minute+30*sec)
	// Late for the closed window [t0, t0+1m).
	arrival := t0 + 2*minute
	add(r, arrival, pt("lat", 5, t0+10*sec, model.Sample), pt("lat", 6, t0+11*sec, model.Sample), pt("hits", 3, t0+1*sec, model.Counter))
	if out := advance(r, arrival+29*sec); len(out.Dists)+len(out.Metrics) != 0 {
		t.Fatalf("correction closed early")
	}
	out := advance(r, arrival+30*sec)
	if len(out.Dists) != 1 || out.Dists[0].Correction != 1 || out.Dists[0].Count != 2 || out.Dists[0].Timestamp != t0 {
		t.Fatalf("correction dist %+v", out.Dists)
	}
	if len(out.Metrics) != 1 || out.Metrics[0].Value != 3 || out.Metrics[0].Kind != model.Counter {
		t.Fatalf("correction counter %+v", out.Metrics)
	}
	add(r, arrival+time.Hour.Nanoseconds(), pt("lat", 9, t0, model.Sample))
	out = advance(r, arrival+2*time.Hour.Nanoseconds())
	if len(out.Dists) != 1 || out.Dists[0].Correction != 2 {
		t.Fatalf("second correction %+v", out.Dists)
	}
	st := r.Stats()
	if st.LateSamples != 4 || st.CorrectionsEmitted != 3 || st.WindowsEmitted != 2 {
		t.Fatalf("stats %+v", st)
	}
	q := r.Query("lat", "src", model.WindowMinute)
	if len(q) != 3 || q[0].Correction != 0 || q[1].Correction != 1 || q[2].Correction != 2 {
		t.Fatalf("query %+v", q)
	}
}

func TestStatsdSemantics(t *testing.T) {
	r := newRollup(t, Config{})
	tag := model.Tag{Key: "env", Value: "prod"}
	add(r, t0,
		pt("c", 1, t0+1*sec, model.Counter, tag), pt("c", 2.5, t0+2*sec, model.Counter, tag),
		pt("g", 10, t0+5*sec, model.Gauge), pt("g", 7, t0+3*sec, model.Gauge), // older ts loses
		pt("g", 2, t0+6*sec, model.GaugeDelta), pt("g", -1, t0+7*sec, model.GaugeDelta),
		pt("d", 5, t0, model.GaugeDelta), // deltas only: start from 0
		pt("s", 1, t0, model.Set), pt("s", 2, t0, model.Set), pt("s", 1, t0, model.Set),
	)
	out := advance(r, t0+minute+30*sec)
	got := map[string]model.Metric{}
	for _, m := range out.Metrics {
		got[m.Name] = m
	}
	want := map[string]model.Metric{
		"c": {Name: "c", Value: 3.5, Timestamp: t0, Source: "src", Tags: model.Tags{tag}, Kind: model.Counter, Window: model.WindowMinute},
		"g": {Name: "g", Value: 11, Timestamp: t0, Source: "src", Kind: model.Gauge, Window: model.WindowMinute},
		"d": {Name: "d", Value: 5, Timestamp: t0, Source: "src", Kind: model.Gauge, Window: model.WindowMinute},
		"s": {Name: "s", Value: 2, Timestamp: t0, Source: "src", Kind: model.Gauge, Window: model.WindowMinute},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Fatal(diff)
	}
}

func TestSetHLL(t *testing.T) {
	r := newRollup(t, Config{})
	var b model.Batch
	const n = 50_000
	for i := range n {
		b.Metrics = append(b.Metrics, pt("s", float64(uint64(i)*2654435761&(1<<53-1)), t0, model.Set))
	}
	r.Add(&b, t0)
	out := advance(r, t0+time.Hour.Nanoseconds())
	if got := out.Metrics[0].Value; math.Abs(got-n)/n > 0.03 {
		t.Fatalf("distinct ~ %v, want %v ±3%%", got, n)
	}
	if r.Stats().SetsApproximated != 1 {
		t.Fatal("not counted")
	}
}

func TestRules(t *testing.T) {
	r := newRollup(t, Config{Rules: []Rule{{Match: "lambda.*.duration", Window: model.WindowHour}, {Match: "*.duration", Window: model.WindowHour}}})
	add(r, t0, pt("lambda.fn.duration", 12, t0, model.Gauge), pt("other.count", 1, t0, model.Counter))
	out := advance(r, t0+2*time.Hour.Nanoseconds())
	if len(out.Dists) != 1 || out.Dists[0].Name != "lambda.fn.duration" || out.Dists[0].Window != model.WindowHour || out.Dists[0].Count != 1 {
		t.Fatalf("rule dists %+v", out.Dists)
	}
	if len(out.Metrics) != 2 {
		t.Fatalf("gauge/counter still aggregated: %+v", out.Metrics)
	}
	if _, err := New(Config{Rules: []Rule{{Match: "[", Window: model.WindowHour}}}); err == nil {
		t.Fatal("bad glob accepted")
	}
}

func TestSeriesCap(t *testing.T) {
	r := newRollup(t, Config{MaxSeriesPerWindow: 2})
	add(r, t0, pt("a", 1, t0, model.Sample), pt("b", 1, t0, model.Sample), pt("c", 1, t0, model.Sample), pt("a", 2, t0, model.Sample))
	out := advance(r, t0+2*minute)
	if len(out.Dists) != 2 || out.Dists[0].Name != "a" || out.Dists[0].Count != 2 {
		t.Fatalf("dists %+v", out.Dists)
	}
	if st := r.Stats(); st.SeriesRejected != 1 || st.SamplesIn != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNoBatchReferences(t *testing.T) {
	r := newRollup(t, Config{})
	name := []byte("lat")
	b := model.Batch{Metrics: []model.Metric{{Name: string(name), Value: 1, Timestamp: t0, Kind: model.Sample, Tags: model.Tags{{Key: "k", Value: "v"}}}}}
	r.Add(&b, t0)
	b.Metrics[0].Tags[0].Value = "changed"
	out := advance(r, t0+2*minute)
	if out.Dists[0].Tags[0].Value != "v" {
		t.Fatal("rollup kept a reference to the batch's tags")
	}
}

func TestDistributionMergeExact(t *testing.T) {
	// Distributions emitted by one stage (e.g. !M per minute) merged into
	// an hour give exactly the hour sketch of all samples.
	rng := rand.New(rand.NewPCG(11, 12))
	direct := NewSketch()
	stage1 := newRollup(t, Config{})
	h0 := windowStart(t0, model.WindowHour)
	for i := range 60 {
		var b model.Batch
		for range 100 {
			v := math.Exp(rng.NormFloat64())
			direct.Add(v)
			b.Metrics = append(b.Metrics, pt("lat", v, h0+int64(i)*minute, model.Sample))
		}
		stage1.Add(&b, t0)
	}
	var mid model.Batch
	stage1.Flush(&mid)
	if len(mid.Dists) != 60 {
		t.Fatalf("stage 1 emitted %d", len(mid.Dists))
	}
	for i := range mid.Dists {
		mid.Dists[i].Window = model.WindowHour
	}
	stage2 := newRollup(t, Config{})
	stage2.Add(&mid, t0)
	var out model.Batch
	stage2.Flush(&out)
	if len(out.Dists) != 1 {
		t.Fatalf("stage 2 emitted %d", len(out.Dists))
	}
	got := out.Dists[0]
	if diff := cmp.Diff(direct.Centroids(nil), got.Centroids); diff != "" {
		t.Fatal(diff)
	}
	if got.Count != direct.Count() || got.Min != direct.Min() || got.Max != direct.Max() || math.Abs(got.Sum-direct.Sum()) > 1e-9*direct.Sum() {
		t.Fatalf("stats %v/%v/%v/%v vs %v/%v/%v/%v", got.Count, got.Sum, got.Min, got.Max, direct.Count(), direct.Sum(), direct.Min(), direct.Max())
	}
}

// TestConservation: random batches, random Advance times and state round
// trips at random points never lose or duplicate a sample.
func TestConservation(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 99))
		cfg := Config{Grace: time.Duration(rng.IntN(90)) * time.Second, Rules: []Rule{{Match: "g*", Window: model.WindowHour}}}
		r := newRollup(t, cfg)
		now := t0
		var added, emitted, counterIn, counterOut float64
		var out model.Batch
		for step := range 300 {
			now += int64(rng.IntN(40)) * sec
			var b model.Batch
			for range rng.IntN(50) {
				ts := now - int64(rng.IntN(600))*sec // up to 10 minutes late
				switch rng.IntN(4) {
				case 0:
					b.Metrics = append(b.Metrics, pt(fmt.Sprintf("s%d", rng.IntN(5)), rng.Float64()*100, ts, model.Sample, model.Tag{Key: "k", Value: fmt.Sprint(rng.IntN(3))}))
					added++
				case 1:
					b.Metrics = append(b.Metrics, pt("c", 1, ts, model.Counter))
					counterIn++
				case 2:
					b.Metrics = append(b.Metrics, pt("g", rng.Float64(), ts, model.Gauge)) // also a sample via rule
					added++
				case 3:
					s := NewSketch()
					for range 1 + rng.IntN(5) {
						s.Add(rng.ExpFloat64())
					}
					b.Dists = append(b.Dists, model.Distribution{Name: "d", Timestamp: ts, Window: model.Window(rng.IntN(3)),
						Count: s.Count(), Sum: s.Sum(), Min: s.Min(), Max: s.Max(), Centroids: s.Centroids(nil)})
					added += s.Count()
				}
			}
			r.Add(&b, now)
			if rng.IntN(3) == 0 {
				out.Reset()
				r.Advance(now, &out)
				for _, d := range out.Dists {
					emitted += d.Count
				}
				for _, m := range out.Metrics {
					if m.Kind == model.Counter {
						counterOut += m.Value
					}
				}
			}
			if rng.IntN(10) == 0 {
				st, err := r.MarshalState()
				if err != nil {
					t.Fatal(err)
				}
				r2 := newRollup(t, cfg)
				if err := r2.UnmarshalState(st); err != nil {
					t.Fatalf("seed %d step %d: %v", seed, step, err)
				}
				r = r2
			}
		}
		out.Reset()
		r.Flush(&out)
		for _, d := range out.Dists {
			emitted += d.Count
		}
		for _, m := range out.Metrics {
			if m.Kind == model.Counter {
				counterOut += m.Value
			}
		}
		if emitted != added || counterIn != counterOut {
			t.Fatalf("seed %d: emitted %v samples of %v, counters %v of %v; stats %+v", seed, emitted, added, counterOut, counterIn, r.Stats())
		}
		if st := r.Stats(); st.SeriesRejected != 0 || st.Invalid != 0 {
			t.Fatalf("stats %+v", st)
		}
	}
}

func TestStateCorrupt(t *testing.T) {
	r := newRollup(t, Config{})
	add(r, t0, pt("a", 1, t0, model.Sample), pt("c", 1, t0, model.Counter), pt("s", 1, t0, model.Set), pt("g", 1, t0, model.Gauge))
	advance(r, t0+2*minute)
	add(r, t0, pt("a", 1, t0+3*minute, model.Sample))
	st, _ := r.MarshalState()
	for i := range len(st) {
		r2 := newRollup(t, Config{})
		if err := r2.UnmarshalState(st[:i]); err == nil {
			t.Fatalf("truncated state at %d accepted", i)
		}
	}
	for i := range len(st) {
		c := append([]byte(nil), st...)
		c[i] ^= 0xff
		_ = newRollup(t, Config{}).UnmarshalState(c) // must not panic
	}
}

func TestAddAllocs(t *testing.T) {
	r := newRollup(t, Config{})
	b := benchBatch(100, t0)
	r.Add(b, t0)
	if a := testing.AllocsPerRun(50, func() { r.Add(b, t0) }); a != 0 {
		t.Fatalf("Add of existing series allocates %v per batch", a)
	}
}

func benchBatch(series int, ts int64) *model.Batch {
	b := &model.Batch{}
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range series {
		b.Metrics = append(b.Metrics, model.Metric{
			Name: fmt.Sprintf("app.latency.%d", i%50), Value: math.Exp(rng.NormFloat64() + 3), Timestamp: ts, Kind: model.Sample,
			Source: "fn-" + fmt.Sprint(i/50), Tags: model.Tags{{Key: "env", Value: "prod"}, {Key: "region", Value: "us-east-1"}},
		})
	}
	return b
}

func BenchmarkAdd10kSeries(b *testing.B) {
	r := newRollup(b, Config{})
	batch := benchBatch(10_000, t0)
	r.Add(batch, t0)
	b.ReportAllocs()
	for b.Loop() {
		r.Add(batch, t0)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch.Metrics)), "ns/sample")
}

func BenchmarkMemoryPerSeries(b *testing.B) {
	for b.Loop() {
		batch := benchBatch(10_000, t0)
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		r := newRollup(b, Config{})
		for i := range 20 { // 20 samples per series
			for j := range batch.Metrics {
				batch.Metrics[j].Value = float64(i*7+j%100) + 1
			}
			r.Add(batch, t0)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/10_000, "bytes/series-window")
		runtime.KeepAlive(r)
	}
}

func TestSources(t *testing.T) {
	r, err := New(Config{Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var b model.Batch
	for _, src := range []string{"b", "a", ""} {
		b.Metrics = append(b.Metrics, model.Metric{Name: "lat", Source: src, Kind: model.Sample, Value: 1, Timestamp: 0})
	}
	b.Metrics = append(b.Metrics, model.Metric{Name: "other", Source: "z", Kind: model.Sample, Value: 1, Timestamp: 0})
	r.Add(&b, 0)
	var out model.Batch
	r.Advance(int64(2*time.Minute), &out)
	if got := r.Sources("lat", model.WindowMinute); !slices.Equal(got, []string{"", "a", "b"}) {
		t.Errorf("Sources = %q", got)
	}
	if got := r.Sources("lat", model.WindowHour); len(got) != 0 {
		t.Errorf("Sources(hour) = %q", got)
	}
}

// TestSeriesHashCollisions: series whose in-memory hashes collide (here
// all of them, with hashMask cleared) are still aggregated apart, told
// apart by their full identity, through a state round trip too.
func TestSeriesHashCollisions(t *testing.T) {
	run := func() *model.Batch {
		r := newRollup(t, Config{Windows: []model.Window{model.WindowMinute, model.WindowHour},
			Rules: []Rule{{Match: "c", Window: model.WindowMinute}}})
		for i := range 300 {
			tags := model.Tags{{Key: "k", Value: fmt.Sprint(i % 7)}}
			src := fmt.Sprintf("fn-%d", i%5)
			b := &model.Batch{Metrics: []model.Metric{
				{Name: "c", Source: src, Tags: tags, Kind: model.Counter, Value: 1, Timestamp: t0},
				{Name: "c", Source: src, Tags: tags, Kind: model.Sample, Value: float64(i), Timestamp: t0},
				{Name: "s", Source: src, Tags: tags, Kind: model.Set, Value: float64(i), Timestamp: t0},
			}}
			r.Add(b, t0)
			if i == 150 {
				st, err := r.MarshalState()
				if err != nil {
					t.Fatal(err)
				}
				r2 := newRollup(t, r.cfg)
				if err := r2.UnmarshalState(st); err != nil {
					t.Fatal(err)
				}
				r = r2
			}
		}
		var out model.Batch
		r.Flush(&out)
		return &out
	}
	want := run()
	hashMask = 0
	t.Cleanup(func() { hashMask = ^uint64(0) })
	got := run()
	if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
		t.Fatalf("colliding hashes change the output (-want +got):\n%s", d)
	}
	// 35 (source, k) series: i%5 and i%7 pick one of 35 pairs, each
	// 300/35 = 8 or 9 times.
	counters := map[string]float64{}
	var sets, dists int
	for _, m := range got.Metrics {
		switch m.Name {
		case "c":
			if m.Kind != model.Counter {
				t.Fatalf("metric %+v", m)
			}
			counters[fmt.Sprint(m.Window, m.Source, m.Tags)] += m.Value
		case "s":
			sets++
			if n := 300/35 + 1; m.Value != float64(n) && m.Value != float64(n-1) {
				t.Fatalf("set %+v", m)
			}
		}
	}
	for _, d := range got.Dists {
		dists++
		// the samples and, by the rule, the counter's points
		if d.Count != 2*(300/35) && d.Count != 2*(300/35+1) {
			t.Fatalf("dist %s %s %v: count %v", d.Name, d.Source, d.Tags, d.Count)
		}
	}
	if len(counters) != 2*35 || sets != 2*35 || dists != 35 {
		t.Fatalf("%d counter series, %d sets, %d dists; want 70, 70, 35", len(counters), sets, dists)
	}
	for k, v := range counters {
		if v != 300/35 && v != 300/35+1 {
			t.Fatalf("counter %s = %v", k, v)
		}
	}
}

// TestAddAllocsAllKinds: once its series exist, Add allocates nothing for
// any kind, at several windows, with rules and distributions.
func TestAddAllocsAllKinds(t *testing.T) {
	r := newRollup(t, Config{Windows: []model.Window{model.WindowMinute, model.WindowHour},
		Rules: []Rule{{Match: "g.*", Window: model.WindowMinute}}})
	b := benchBatch(50, t0)
	for i := range 50 {
		tags := model.Tags{{Key: "env", Value: "prod"}, {Key: "i", Value: fmt.Sprint(i)}}
		for _, k := range []model.Kind{model.Counter, model.Gauge, model.GaugeDelta, model.Set} {
			b.Metrics = append(b.Metrics, model.Metric{Name: fmt.Sprintf("g.%d", i%3), Source: "fn", Tags: tags, Kind: k, Value: float64(i), Timestamp: t0})
		}
		b.Dists = append(b.Dists, model.Distribution{Name: "d", Source: "fn", Tags: tags, Timestamp: t0,
			Centroids: []model.Centroid{{Value: 1, Count: 2}}})
	}
	r.Add(b, t0)
	if a := testing.AllocsPerRun(50, func() { r.Add(b, t0) }); a != 0 {
		t.Fatalf("Add of existing series allocates %v per batch", a)
	}
}

// TestStateV1Readable: a state written by the rollup before series were
// indexed by hash (testdata/state-v1.bin: minute windows closed, then the
// same points again as corrections, hour windows still open) restores, and
// points for its series land in the restored aggregates.
func TestStateV1Readable(t *testing.T) {
	st, err := os.ReadFile("testdata/state-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	r := newRollup(t, Config{Windows: []model.Window{model.WindowMinute, model.WindowHour}})
	if err := r.UnmarshalState(st); err != nil {
		t.Fatal(err)
	}
	// One more counter point of a restored hour series.
	add(r, t0, model.Metric{Name: "hits", Source: "fn-a", Tags: model.Tags{{Key: "env", Value: "prod"}, {Key: "region", Value: "eu"}},
		Kind: model.Counter, Value: 1, Timestamp: t0})
	var out model.Batch
	r.Flush(&out)
	got := map[string]float64{}
	for _, m := range out.Metrics {
		got[fmt.Sprintf("%s %s %v", m.Name, m.Source, m.Window)] += m.Value
	}
	for _, d := range out.Dists {
		got[fmt.Sprintf("%s %s %v corr %d", d.Name, d.Source, d.Window, d.Correction)] += d.Count
	}
	want := map[string]float64{
		"hits fn-a hour": 11, "mem fn-a hour": 64, "users fn-a hour": 2, // open hour windows
		"hits fn-a minute": 6, "mem fn-a minute": 64, "users fn-a minute": 2, // minute corrections (the new point is late too)
		"lat fn-a minute corr 1": 2, "lat fn-b minute corr 1": 1,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("restored state (-want +got):\n%s", d)
	}
	if q := r.Query("lat", "fn-a", model.WindowMinute); len(q) != 2 || q[0].Count != 2 || q[0].Sum != 8 || q[1].Correction != 1 {
		t.Fatalf("Query = %+v", q)
	}
}

// TestMarshalStateAllocs: a checkpoint of a warm rollup is one allocation
// (the state, of about the last one's size), not one per doubling of it
// and per entry list and sketch; and it is the same bytes every time.
func TestMarshalStateAllocs(t *testing.T) {
	r := newRollup(t, Config{})
	var pts []model.Metric
	for i := range 200 {
		n := "s" + strconv.Itoa(i)
		pts = append(pts, pt(n, float64(i), t0, model.Sample), pt("c"+n, 1, t0, model.Counter), pt("g"+n, 1, t0, model.Gauge))
	}
	add(r, t0, pts...)
	first, err := r.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	first = bytes.Clone(first)
	allocs := testing.AllocsPerRun(20, func() {
		st, err := r.MarshalState()
		if err != nil || len(st) != len(first) {
			t.Fatalf("state of %d bytes, %v; first %d", len(st), err, len(first))
		}
	})
	if allocs > 1 {
		t.Fatalf("%.1f allocations per MarshalState, want 1", allocs)
	}
	r2 := newRollup(t, Config{})
	if err := r2.UnmarshalState(first); err != nil {
		t.Fatal(err)
	}
	again, _ := r2.MarshalState()
	if len(again) != len(first) {
		t.Fatalf("state after a round trip: %d bytes, want %d", len(again), len(first))
	}
}
