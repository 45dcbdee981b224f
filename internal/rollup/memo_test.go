package rollup

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/les-streams/les/internal/model"
)

// counters returns the value of every counter window emitted, by name and
// source.
func counters(out *model.Batch) map[string]float64 {
	got := map[string]float64{}
	for _, m := range out.Metrics {
		if m.Kind == model.Counter {
			got[m.Name+"/"+m.Source] += m.Value
		}
	}
	return got
}

// TestKeyMemoSharedMemory: points whose name, source and tags are the same
// memory (as the wire series encoding decodes them) aggregate as one
// series, and the memo never merges what differs: another source or tags
// over the same name memory, or another kind.
func TestKeyMemoSharedMemory(t *testing.T) {
	r := newRollup(t, Config{Windows: []model.Window{model.WindowMinute}})
	name, srcA, srcB := "hits", "a", "b"
	tags := model.Tags{{Key: "env", Value: "prod"}}
	var ms []model.Metric
	for i := range 30 {
		m := model.Metric{Name: name, Source: srcA, Tags: tags, Kind: model.Counter, Value: 1, Timestamp: t0 + int64(i)}
		switch i % 3 {
		case 1:
			m.Source = srcB // same name memory, other source
		case 2:
			m.Tags = tags[:0] // same tags memory, no tags
		}
		ms = append(ms, m)
	}
	ms = append(ms, model.Metric{Name: name, Source: srcA, Tags: tags, Kind: model.Sample, Value: 5, Timestamp: t0})
	add(r, t0, ms...)
	var out model.Batch
	r.Flush(&out)
	got := map[string]float64{}
	for _, m := range out.Metrics {
		got[m.Name+"/"+m.Source+"/"+fmt.Sprint(len(m.Tags))] += m.Value
	}
	want := map[string]float64{"hits/a/1": 10, "hits/b/1": 10, "hits/a/0": 10}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if len(out.Dists) != 1 || out.Dists[0].Count != 1 {
		t.Errorf("the sample of the same memory is its own series: %+v", out.Dists)
	}
}

// TestKeyMemoReusedMemory: the next batch may reuse the previous one's
// memory for other series (the wire decoder reuses its buffer), so a key
// remembered in one Add is never used in the next.
func TestKeyMemoReusedMemory(t *testing.T) {
	r := newRollup(t, Config{Windows: []model.Window{model.WindowMinute}})
	buf := []byte("aaaa")
	name := unsafe.String(&buf[0], len(buf))
	add(r, t0, model.Metric{Name: name, Source: "s", Kind: model.Counter, Value: 1, Timestamp: t0})
	copy(buf, "bbbb") // same memory, another series
	add(r, t0, model.Metric{Name: name, Source: "s", Kind: model.Counter, Value: 2, Timestamp: t0})
	var out model.Batch
	r.Flush(&out)
	got := counters(&out)
	if got["aaaa/s"] != 1 || got["bbbb/s"] != 2 || len(got) != 2 {
		t.Fatalf("got %v, want aaaa/s=1 bbbb/s=2", got)
	}
}

// memoPoint is one point of memoBatches, by series number.
type memoPoint struct {
	series int
	kind   model.Kind
	window model.Window // Samples only
	value  float64
	ts     int64
	dist   bool // a Distribution instead of a Metric
}

// memoSeries is the identity of a memoBatches series.
type memoSeries struct {
	name, source string
	tags         model.Tags
}

// batchOf builds one batch of pts. With shared, the points of a series
// share its name, source and tags memory and carry its number (as the
// wire series decoder hands them over), so the rollup's memo finds them;
// without it every string and tag slice is a fresh copy and Series is 0,
// so the memo always misses and every point is looked up in its bucket.
func batchOf(series []memoSeries, pts []memoPoint, shared bool) *model.Batch {
	b := &model.Batch{}
	for _, p := range pts {
		s := series[p.series]
		number := uint32(p.series + 1)
		if !shared {
			s.name, s.source = strings.Clone(s.name), strings.Clone(s.source)
			s.tags = make(model.Tags, len(s.tags))
			for i, t := range series[p.series].tags {
				s.tags[i] = model.Tag{Key: strings.Clone(t.Key), Value: strings.Clone(t.Value)}
			}
			number = 0
		}
		if p.dist {
			b.Dists = append(b.Dists, model.Distribution{Name: s.name, Source: s.source, Tags: s.tags, Timestamp: p.ts,
				Window: p.window, Centroids: []model.Centroid{{Value: p.value, Count: 1 + float64(int(p.value)%3)}}})
			continue
		}
		if shared && p.series%4 == 3 {
			number = 0 // found by memory alone (the memo's shared slots)
		}
		b.Metrics = append(b.Metrics, model.Metric{Name: s.name, Source: s.source, Tags: s.tags, Kind: p.kind,
			Window: p.window, Value: p.value, Timestamp: p.ts, Series: number})
	}
	return b
}

// diffSeries are the series of the memo differential tests: names shared
// by series with other sources and tags, one name and source with three
// tag sets.
func diffSeries() []memoSeries {
	var series []memoSeries
	for i := range 90 {
		s := memoSeries{name: fmt.Sprintf("m.%d", i%23), source: fmt.Sprintf("fn-%d", i%4)}
		if i%23 == 0 { // same name and source, other tags
			s.name, s.source = "m.0", "fn-0"
		}
		for j := range i % 3 {
			s.tags = append(s.tags, model.Tag{Key: fmt.Sprintf("k%d", j), Value: fmt.Sprint(i)})
		}
		series = append(series, s)
	}
	return series
}

// diffConfig has two windows, rules at both and a series cap the
// differential tests' series exceed.
func diffConfig() Config {
	return Config{
		Windows: []model.Window{model.WindowMinute, model.WindowHour}, Grace: 10 * time.Second,
		MaxSeriesPerWindow: 110,
		Rules: []Rule{{Match: "m.1*", Window: model.WindowMinute}, {Match: "m.?", Window: model.WindowHour},
			{Match: "m.2", Window: model.WindowMinute}},
	}
}

// diffPoints is one step's points over nseries series at now: every
// kind, current, late and future windows, invalid values and kinds.
func diffPoints(rng *rand.Rand, nseries int, now int64) []memoPoint {
	kinds := []model.Kind{model.Sample, model.Counter, model.Gauge, model.GaugeDelta, model.Set}
	var pts []memoPoint
	for range 300 + rng.IntN(200) {
		p := memoPoint{series: rng.IntN(nseries), value: float64(rng.IntN(50))}
		// the same series, and the same window start, repeat
		// within the batch, so the memo finds it in the
		// bucket it was found in before
		switch k := rng.IntN(10); {
		case k < 5:
			p.ts = now - 5*sec // the current minute
		case k < 7:
			p.ts = now - minute - 20*sec // minute just closed: late
		case k < 8:
			p.ts = now + 61*sec // a bucket created in the middle of the Add
		case k < 9:
			p.ts = now - 2*time.Hour.Nanoseconds() // late at every window
		default:
			p.ts = now - 30*sec
		}
		p.kind = kinds[p.series%len(kinds)]
		if p.kind == model.Sample {
			p.window = []model.Window{model.WindowNone, model.WindowMinute, model.WindowHour}[rng.IntN(3)]
			p.dist = rng.IntN(4) == 0
		}
		switch rng.IntN(40) {
		case 0:
			p.value = math.NaN()
		case 1:
			p.kind = model.Kind(99)
		}
		pts = append(pts, p)
	}
	return pts
}

// TestEntryMemoDifferential: a Rollup fed points that share memory per
// series (so the memo remembers each series' key and the entries it was
// found in) emits exactly what one fed the same points as fresh copies
// (so every point is looked up by key) emits, and counts the same stats:
// over two windows and rules, points of one series in several window
// starts within a batch (the hot bucket changes between them), late points
// into corrections, buckets created in the middle of an Add, a series cap
// that refuses series, invalid values, every kind and distributions; also
// with every series hash colliding.
func TestEntryMemoDifferential(t *testing.T) {
	run := func(t *testing.T) {
		rng := rand.New(rand.NewPCG(13, 14))
		series, cfg := diffSeries(), diffConfig()
		shared, copied := newRollup(t, cfg), newRollup(t, cfg)
		check := func(step string, want, got *model.Batch) {
			t.Helper()
			if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
				t.Fatalf("%s: output with the memo differs (-fresh copies +shared memory):\n%s", step, d)
			}
			if ws, gs := copied.Stats(), shared.Stats(); ws != gs {
				t.Fatalf("%s: stats with the memo %+v, want %+v", step, gs, ws)
			}
		}
		now := t0
		for step := range 12 {
			now += 25 * sec
			pts := diffPoints(rng, len(series), now)
			shared.Add(batchOf(series, pts, true), now)
			copied.Add(batchOf(series, pts, false), now)
			check(fmt.Sprintf("step %d: Add", step), &model.Batch{}, &model.Batch{})
			if step%3 == 2 {
				check(fmt.Sprintf("step %d: Advance", step), advance(copied, now), advance(shared, now))
			}
		}
		var want, got model.Batch
		copied.Flush(&want)
		shared.Flush(&got)
		check("Flush", &want, &got)
		if st := shared.Stats(); st.SeriesRejected == 0 || st.LateSamples == 0 || st.Invalid == 0 || st.CorrectionsEmitted == 0 {
			t.Fatalf("the points do not exercise the cap, corrections and invalid points: %+v", st)
		}
		if len(got.Dists) == 0 || len(got.Metrics) == 0 {
			t.Fatal("nothing emitted")
		}
	}
	t.Run("hashes", run)
	t.Run("colliding", func(t *testing.T) {
		hashMask = 0
		t.Cleanup(func() { hashMask = ^uint64(0) })
		run(t)
	})
}

// BenchmarkAddSeriesRecord is the shape of a `les bench` StatsD record as
// the rollup consumer folds it: 5,000 series (16 names: 8 timers and
// histograms, 6 counters, 2 gauges; 3 to 6 tags), 17 points each,
// interleaved, decoded from the wire series encoding (the points of a
// series share its strings and carry its number). The window stays open,
// so the series exist after the first Add.
func BenchmarkAddSeriesRecord(b *testing.B) {
	series, pts := seriesRecordShape()
	batch := batchOf(series, pts, true)
	for i := range batch.Metrics {
		batch.Metrics[i].Series = uint32(i%len(series)) + 1
	}
	r := newRollup(b, Config{})
	r.Add(batch, t0+sec)
	b.ReportAllocs()
	for b.Loop() {
		r.Add(batch, t0+sec)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch.Metrics)), "ns/point")
}

// seriesRecordShape is BenchmarkAddSeriesRecord's record: its series
// and points, series by series, perSeries times.
func seriesRecordShape() ([]memoSeries, []memoPoint) {
	const nseries, perSeries = 5000, 17
	kinds := []model.Kind{model.Sample, model.Sample, model.Sample, model.Counter, model.Counter, model.Counter,
		model.Gauge, model.Gauge, model.Sample, model.Sample, model.Sample, model.Sample, model.Counter,
		model.Counter, model.Counter, model.Sample}
	series := make([]memoSeries, nseries)
	for i := range series {
		fn := i / len(kinds)
		s := memoSeries{name: fmt.Sprintf("app.metric.%d", i%len(kinds)), source: fmt.Sprintf("fn-%d", fn),
			tags: model.Tags{{Key: "env", Value: fmt.Sprint("env-", fn/25%3)}, {Key: "region", Value: fmt.Sprint("r-", fn%5)},
				{Key: "runtime", Value: fmt.Sprint("rt-", fn/5%5)}}}
		for j := range i % 4 {
			s.tags = append(s.tags, model.Tag{Key: fmt.Sprint("x", j), Value: fmt.Sprint(fn % 7)})
		}
		series[i] = s
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var pts []memoPoint
	for range perSeries {
		for i := range series {
			pts = append(pts, memoPoint{series: i, kind: kinds[i%len(kinds)], value: float64(int(rng.ExpFloat64()*2000)) / 100, ts: t0 + sec})
		}
	}
	return series, pts
}

// TestAddAllocsSharedMemory: points that share memory per series (the
// memo remembers their keys and entries) allocate nothing once their
// series exist, at several windows and with a rule.
func TestAddAllocsSharedMemory(t *testing.T) {
	r := newRollup(t, Config{Windows: []model.Window{model.WindowMinute, model.WindowHour},
		Rules: []Rule{{Match: "m.*", Window: model.WindowMinute}}})
	var series []memoSeries
	for i := range 40 {
		series = append(series, memoSeries{name: fmt.Sprintf("m.%d", i%7), source: fmt.Sprintf("fn-%d", i),
			tags: model.Tags{{Key: "env", Value: "prod"}}})
	}
	kinds := []model.Kind{model.Sample, model.Counter, model.Gauge, model.GaugeDelta, model.Set}
	var pts []memoPoint
	for j := range 5 {
		for i := range series {
			pts = append(pts, memoPoint{series: i, kind: kinds[i%len(kinds)], value: float64(j), ts: t0 + int64(j)*sec, dist: i%10 == 9})
		}
	}
	b := batchOf(series, pts, true)
	r.Add(b, t0)
	if a := testing.AllocsPerRun(50, func() { r.Add(b, t0) }); a != 0 {
		t.Fatalf("Add of existing series allocates %v per batch", a)
	}
}

// TestEntryMemoParts: a record folded in parts (wire DecodeParts: the
// per-series work is remembered from its first part to its last) gives
// what the same points give as separate Adds of fresh copies, also when
// windows close between two parts of one record (Advance forgets what was
// found: the buckets it points to are gone).
func TestEntryMemoParts(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	series, cfg := diffSeries(), diffConfig()
	parts, copied := newRollup(t, cfg), newRollup(t, cfg)
	check := func(step string, want, got *model.Batch) {
		t.Helper()
		if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("%s: output in parts differs (-fresh copies +parts):\n%s", step, d)
		}
		if ws, gs := copied.Stats(), parts.Stats(); ws != gs {
			t.Fatalf("%s: stats in parts %+v, want %+v", step, gs, ws)
		}
	}
	now := t0
	var advanced int
	for step := range 12 {
		now += 25 * sec
		pts := diffPoints(rng, len(series), now)
		record := batchOf(series, pts, true)
		// Cut the record's metrics into parts at random points; its
		// distributions go with the first part.
		var cuts []int
		for c := 0; c < len(record.Metrics); c += 1 + rng.IntN(120) {
			cuts = append(cuts, c)
		}
		cuts = append(cuts, len(record.Metrics))
		for i := 0; i+1 < len(cuts); i++ {
			part := &model.Batch{Metrics: record.Metrics[cuts[i]:cuts[i+1]], SeriesN: uint32(len(series)),
				Continues: i > 0, More: i+2 < len(cuts)}
			var fresh []memoPoint
			for _, p := range pts {
				if !p.dist {
					fresh = append(fresh, p)
				}
			}
			ref := batchOf(series, fresh[cuts[i]:cuts[i+1]], false)
			if i == 0 {
				part.Dists = record.Dists
				ref.Dists = batchOf(series, pts, false).Dists
			}
			parts.Add(part, now)
			copied.Add(ref, now)
			check(fmt.Sprintf("step %d part %d: Add", step, i), &model.Batch{}, &model.Batch{})
			if part.More && rng.IntN(4) == 0 { // windows close in the middle of the record
				now += 20 * sec
				check(fmt.Sprintf("step %d part %d: Advance", step, i), advance(copied, now), advance(parts, now))
				advanced++
			}
		}
	}
	var want, got model.Batch
	copied.Flush(&want)
	parts.Flush(&got)
	check("Flush", &want, &got)
	if st := parts.Stats(); st.SeriesRejected == 0 || st.LateSamples == 0 || st.CorrectionsEmitted == 0 || advanced == 0 {
		t.Fatalf("the points do not exercise the cap, corrections and Advance between parts: %+v, %d", st, advanced)
	}
}
