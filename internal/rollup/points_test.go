package rollup

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/les-streams/les/internal/model"
)

// pointsRecord is one record as the wire series encoding has it: a table
// of (series, kind, window) in first-use order and per point its index;
// skip marks table entries whose points are left out.
type pointsRecord struct {
	table []model.Metric
	index []uint32
	ts    []int64
	value []float64
	skip  []bool
	kept  []memoPoint // the points not skipped, for the reference
}

// recordOf builds the record of pts (no distributions), skipping the
// points of each table entry with probability pskip.
func recordOf(rng *rand.Rand, series []memoSeries, pts []memoPoint, pskip float64) pointsRecord {
	var rec pointsRecord
	type entryKey struct {
		series int
		kind   model.Kind
		w      model.Window
	}
	at := map[entryKey]uint32{}
	for _, p := range pts {
		k := entryKey{p.series, p.kind, p.window}
		i, ok := at[k]
		if !ok {
			s := series[p.series]
			i = uint32(len(rec.table))
			at[k] = i
			// Series numbers, Ref and a point are set: AddPoints
			// must read none of them.
			rec.table = append(rec.table, model.Metric{Name: s.name, Source: s.source, Tags: s.tags, Kind: p.kind,
				Window: p.window, Series: 77, Ref: 1 << 40, Value: 1e9, Timestamp: 1})
			rec.skip = append(rec.skip, rng.Float64() < pskip)
		}
		rec.index = append(rec.index, i)
		rec.ts = append(rec.ts, p.ts)
		rec.value = append(rec.value, p.value)
		if !rec.skip[i] {
			rec.kept = append(rec.kept, p)
		}
	}
	if pskip == 0 {
		rec.skip = nil
	}
	return rec
}

// TestAddPointsDifferential: a Rollup fed records by series index
// (AddPoints), whole or in parts cut anywhere, with windows closing
// between two parts of a record and some series skipped, holds after
// every part exactly the entries (sketches byte for byte, counter and
// gauge values, sets) and stats of one fed the same points but the
// skipped ones as fresh copies through Add (every point looked up by its
// key), and emits exactly the same windows: over two windows and rules,
// late points and corrections, buckets created in the middle of a
// record, the series cap, invalid values and kinds, samples whose entries
// differ only in their window, and records that alternate with batches
// through Add (sharing memory per series, so with the memo); also with
// every series hash colliding.
func TestAddPointsDifferential(t *testing.T) {
	run := func(t *testing.T) {
		rng := rand.New(rand.NewPCG(19, 20))
		series, cfg := diffSeries(), diffConfig()
		byIndex, copied := newRollup(t, cfg), newRollup(t, cfg)
		check := func(step string, want, got *model.Batch) {
			t.Helper()
			if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
				t.Fatalf("%s: output by index differs (-fresh copies +by index):\n%s", step, d)
			}
			if ws, gs := copied.Stats(), byIndex.Stats(); ws != gs {
				t.Fatalf("%s: stats by index %+v, want %+v", step, gs, ws)
			}
			if d := cmp.Diff(entryStates(copied), entryStates(byIndex)); d != "" {
				t.Fatalf("%s: entries by index differ (-fresh copies +by index):\n%s", step, d)
			}
		}
		now := t0
		var advanced, skipped, batches int
		for step := range 16 {
			now += 25 * sec
			var pts []memoPoint
			for _, p := range diffPoints(rng, len(series), now) {
				if p.dist {
					continue // not in a series-encoded record
				}
				if rng.IntN(2) == 0 {
					p.value += rng.Float64() // a sketch's sum depends on the order
				}
				pts = append(pts, p)
			}
			if step%5 == 4 { // a batch through Add between two records
				byIndex.Add(batchOf(series, pts, true), now)
				copied.Add(batchOf(series, pts, false), now)
				check(fmt.Sprintf("step %d: Add", step), &model.Batch{}, &model.Batch{})
				batches++
				continue
			}
			pskip := 0.0
			if step%3 != 0 {
				pskip = 0.15
			}
			rec := recordOf(rng, series, pts, pskip)
			skipped += len(pts) - len(rec.kept)
			// Cut into parts at random points (step 0: whole).
			cuts := []int{0}
			for c := 0; step > 0 && c < len(rec.index); {
				c += 1 + rng.IntN(120)
				cuts = append(cuts, min(c, len(rec.index)))
			}
			if cuts[len(cuts)-1] != len(rec.index) {
				cuts = append(cuts, len(rec.index))
			}
			kept := 0 // rec.kept up to the current cut
			for i := 0; i+1 < len(cuts); i++ {
				lo, hi := cuts[i], cuts[i+1]
				part := &Points{Series: rec.table, Skip: rec.skip, Index: rec.index[lo:hi], Timestamp: rec.ts[lo:hi],
					Value: rec.value[lo:hi], Continues: i > 0, More: i+2 < len(cuts)}
				n := 0
				for _, ix := range part.Index {
					if rec.skip == nil || !rec.skip[ix] {
						n++
					}
				}
				ref := batchOf(series, rec.kept[kept:kept+n], false)
				kept += n
				ref.Continues, ref.More = part.Continues, part.More
				byIndex.AddPoints(part, now)
				copied.Add(ref, now)
				check(fmt.Sprintf("step %d part %d: AddPoints", step, i), &model.Batch{}, &model.Batch{})
				if part.More && rng.IntN(4) == 0 { // windows close in the middle of the record
					now += 20 * sec
					check(fmt.Sprintf("step %d part %d: Advance", step, i), advance(copied, now), advance(byIndex, now))
					advanced++
				}
			}
			if step%4 == 3 {
				check(fmt.Sprintf("step %d: Advance", step), advance(copied, now), advance(byIndex, now))
			}
		}
		var want, got model.Batch
		copied.Flush(&want)
		byIndex.Flush(&got)
		check("Flush", &want, &got)
		st := byIndex.Stats()
		if st.SeriesRejected == 0 || st.LateSamples == 0 || st.Invalid == 0 || st.CorrectionsEmitted == 0 ||
			advanced == 0 || skipped == 0 || batches == 0 {
			t.Fatalf("the records do not exercise the cap, corrections, invalid points, Advance between parts, skipped series and batches between records: %+v, %d, %d, %d",
				st, advanced, skipped, batches)
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

// TestAddPointsAllocs: records by series index allocate nothing once
// their series exist (every kind, two windows and a rule), in parts, with
// skipped series.
func TestAddPointsAllocs(t *testing.T) {
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
			pts = append(pts, memoPoint{series: i, kind: kinds[i%len(kinds)], value: float64(j), ts: t0 + int64(j)*sec})
		}
	}
	rec := recordOf(rand.New(rand.NewPCG(1, 2)), series, pts, 0.2)
	half := len(rec.index) / 2
	parts := []*Points{
		{Series: rec.table, Skip: rec.skip, Index: rec.index[:half], Timestamp: rec.ts[:half], Value: rec.value[:half], More: true},
		{Series: rec.table, Skip: rec.skip, Index: rec.index[half:], Timestamp: rec.ts[half:], Value: rec.value[half:], Continues: true},
	}
	add := func() {
		for _, p := range parts {
			r.AddPoints(p, t0)
		}
	}
	add()
	if a := testing.AllocsPerRun(50, add); a != 0 {
		t.Fatalf("AddPoints of existing series allocates %v per record", a)
	}
}

// BenchmarkAddPointsRecord is BenchmarkAddSeriesRecord's record by
// series index (AddPoints), in parts of wire.DefaultPartSize (4,096).
func BenchmarkAddPointsRecord(b *testing.B) {
	series, pts := seriesRecordShape()
	rec := recordOf(rand.New(rand.NewPCG(1, 2)), series, pts, 0)
	const size = 4096
	var parts []*Points
	for lo := 0; lo < len(rec.index); lo += size {
		hi := min(lo+size, len(rec.index))
		parts = append(parts, &Points{Series: rec.table, Index: rec.index[lo:hi], Timestamp: rec.ts[lo:hi],
			Value: rec.value[lo:hi], Continues: lo > 0, More: hi < len(rec.index)})
	}
	r := newRollup(b, Config{})
	add := func() {
		for _, p := range parts {
			r.AddPoints(p, t0+sec)
		}
	}
	add()
	b.ReportAllocs()
	for b.Loop() {
		add()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(pts)), "ns/point")
}
