package rollup

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/store"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/les-streams/les/internal/model"
)

// refSketch is a Sketch as sketches-go builds it on its own: a DDSketch of
// its own mapping and stores, every value added through
// DDSketch.AddWithCount, and count, sum, min and max as Sketch keeps them.
type refSketch struct {
	dd                   *ddsketch.DDSketch
	count, sum, min, max float64
}

func newRefSketch() *refSketch {
	m, err := mapping.NewLogarithmicMapping(RelativeAccuracy)
	if err != nil {
		panic(err)
	}
	return &refSketch{
		dd:  ddsketch.NewDDSketch(m, store.NewCollapsingLowestDenseStore(MaxBins), store.NewCollapsingLowestDenseStore(MaxBins)),
		min: math.Inf(1), max: math.Inf(-1),
	}
}

func (s *refSketch) add(v, count float64) {
	if !(count > 0) || math.IsInf(count, 0) || s.dd.AddWithCount(v, count) != nil {
		return
	}
	s.count += count
	s.sum += v * count
	s.min = min(s.min, v)
	s.max = max(s.max, v)
}

// binary is Sketch.MarshalBinary of the same contents.
func (s *refSketch) binary() []byte {
	return (&Sketch{dd: s.dd, count: s.count, sum: s.sum, min: s.min, max: s.max}).appendBinary(nil, new([]byte))
}

// sketchValue is a random value of every sort a sketch meets: positive
// and negative magnitudes over the whole float range (past the bins'
// span, so the stores collapse), the zero bin (0 and magnitudes below the
// mapping's smallest indexable value), and what it refuses (NaN, ±Inf,
// magnitudes above the largest indexable value).
func sketchValue(rng *rand.Rand) float64 {
	sign := 1.0
	if rng.IntN(3) == 0 {
		sign = -1
	}
	switch rng.IntN(20) {
	case 0:
		return 0
	case 1:
		return sign * minIndexable * rng.Float64()
	case 2:
		return sign * math.Nextafter(minIndexable, 0)
	case 3:
		return sign * minIndexable
	case 4:
		return sign * maxIndexable
	case 5:
		return sign * math.Nextafter(maxIndexable, math.Inf(1))
	case 6:
		return []float64{math.NaN(), math.Inf(1), math.Inf(-1)}[rng.IntN(3)]
	case 7:
		return sign * math.Ldexp(rng.Float64(), rng.IntN(2000)-1000)
	default:
		return sign * math.Exp(rng.NormFloat64()*2+3)
	}
}

// TestSketchAddIsDDSketchAdd: Sketch.Add and AddWeighted (which add to
// the DDSketch's stores directly) leave exactly the bins, counts and
// stats DDSketch.AddWithCount leaves, for every sort of value and weight,
// also for a sketch restored by UnmarshalBinary and added to further.
func TestSketchAddIsDDSketchAdd(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 99))
		s, ref := NewSketch(), newRefSketch()
		n := 1 + rng.IntN(3000)
		for i := range n {
			v := sketchValue(rng)
			switch rng.IntN(6) {
			case 0:
				w := []float64{0, -1, math.NaN(), math.Inf(1), 0.5, 3, 1e9}[rng.IntN(7)]
				s.AddWeighted(v, w)
				ref.add(v, w)
			default:
				s.Add(v)
				ref.add(v, 1)
			}
			if i == n/2 { // restored: its pointers must be the decoded sketch's stores
				b, err := s.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				s = &Sketch{}
				if err := s.UnmarshalBinary(b); err != nil {
					t.Fatal(err)
				}
			}
		}
		if got, want := s.appendBinary(nil, new([]byte)), ref.binary(); !bytes.Equal(got, want) {
			t.Fatalf("seed %d: sketch differs from DDSketch.AddWithCount's:\n got %x\nwant %x", seed, got, want)
		}
		for _, q := range testQuantiles {
			v, err := ref.dd.GetValueAtQuantile(q)
			if err != nil {
				v = math.NaN()
			} else {
				v = max(ref.min, min(ref.max, v))
			}
			if got := s.Quantile(q); math.Float64bits(got) != math.Float64bits(v) {
				t.Fatalf("seed %d: quantile %v = %v, want %v", seed, q, got, v)
			}
		}
	}
}

// entryStates is every entry of r, by bucket and series key, encoded as
// MarshalState encodes it (sketch bytes, float bits), so two rollups are
// compared exactly whatever order their maps iterate in.
func entryStates(r *Rollup) map[string]string {
	out := map[string]string{}
	for _, m := range [...]map[winKey]*bucket{r.open, r.corr} {
		for _, bk := range m {
			for _, e := range bk.appendEntries(nil) {
				var st string
				switch e.kind {
				case aggDist:
					st = string(e.sketch.appendBinary(nil, new([]byte)))
				case aggSet:
					st = fmt.Sprint(e.set.count())
				default:
					st = fmt.Sprintf("%x %d %v", math.Float64bits(e.value), e.ts, e.hasVal)
				}
				out[fmt.Sprintf("%v/%d/%d/%q", bk.w, bk.start, bk.corr, e.key)] = st
			}
		}
	}
	return out
}

// TestQueuedSamplesDifferential: Add queues samples and adds them to their
// sketches in batches (flushSamples); rollups that queue 256 samples (the
// default) or 7 give exactly what one that adds each sample at once (a
// queue of one) gives: the same sketches byte for byte (and the same
// counter and gauge values) after every Add and record part, the same
// Advance and Flush output and stats. The values have fractions, so a
// sketch's sum depends on the order its samples are added in; the points
// cover every kind, rules, distributions with sums of the same series as
// Samples (merged after the record's samples), windows, corrections, the
// series cap and invalid values.
func TestQueuedSamplesDifferential(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	series, cfg := diffSeries(), diffConfig()
	at, queued, small := newRollup(t, cfg), newRollup(t, cfg), newRollup(t, cfg)
	at.queue, small.queue = 1, 7
	check := func(step string, want, got, got7 *model.Batch) {
		t.Helper()
		wantState := entryStates(at)
		for _, c := range []struct {
			r   *Rollup
			out *model.Batch
		}{{queued, got}, {small, got7}} {
			if d := cmp.Diff(want, c.out, cmpopts.EquateEmpty()); d != "" {
				t.Fatalf("%s: queue %d: output differs (-at once +queued):\n%s", step, c.r.queue, d)
			}
			if got := entryStates(c.r); !maps.Equal(wantState, got) {
				t.Fatalf("%s: queue %d: state differs (-at once +queued):\n%s", step, c.r.queue, cmp.Diff(wantState, got))
			}
			if ws, gs := at.Stats(), c.r.Stats(); ws != gs {
				t.Fatalf("%s: queue %d: stats %+v, want %+v", step, c.r.queue, gs, ws)
			}
		}
	}
	now := t0
	var samples int
	for step := range 8 {
		now += 25 * sec
		var pts []memoPoint
		for range 1 + rng.IntN(4) { // up to ~2,000 points: several full queues
			pts = append(pts, diffPoints(rng, len(series), now)...)
		}
		for i := range pts {
			if pts[i].kind != model.Set {
				pts[i].value += rng.Float64()
			}
			if pts[i].kind == model.Sample && !pts[i].dist {
				samples++
			}
		}
		record := batchOf(series, pts, true)
		for i := range record.Dists { // a sum, so that it is added to the sketch's in order
			d := &record.Dists[i]
			d.Sum = d.Centroids[0].Value * d.Centroids[0].Count
		}
		if step%2 == 0 {
			for _, r := range []*Rollup{at, queued, small} {
				r.Add(record, now)
			}
		} else { // in parts, as wire.Decoder.DecodeParts hands a record over
			for c := 0; c < len(record.Metrics); {
				n := min(1+rng.IntN(400), len(record.Metrics)-c)
				part := &model.Batch{Metrics: record.Metrics[c : c+n], Continues: c > 0, More: c+n < len(record.Metrics)}
				if c == 0 {
					part.Dists = record.Dists
				}
				for _, r := range []*Rollup{at, queued, small} {
					r.Add(part, now)
				}
				c += n
				check(fmt.Sprintf("step %d part at %d", step, c), &model.Batch{}, &model.Batch{}, &model.Batch{})
			}
		}
		check(fmt.Sprintf("step %d: Add", step), &model.Batch{}, &model.Batch{}, &model.Batch{})
		if step%3 == 2 {
			want := advance(at, now)
			check(fmt.Sprintf("step %d: Advance", step), want, advance(queued, now), advance(small, now))
		}
	}
	var want, got, got7 model.Batch
	at.Flush(&want)
	queued.Flush(&got)
	small.Flush(&got7)
	check("Flush", &want, &got, &got7)
	if st := at.Stats(); samples < 3*pendingMax || st.DistsIn == 0 || st.LateSamples == 0 || st.SeriesRejected == 0 || st.Invalid == 0 {
		t.Fatalf("the points do not exercise full queues, distributions, corrections, the cap and invalid values: %d samples, %+v", samples, st)
	}
}

// TestGaugeTiesLaterArrival: of gauges with the same timestamp the later
// arrival wins and an older one never does (within an Add and across
// Adds), and counters sum in the order of the points.
func TestGaugeTiesLaterArrival(t *testing.T) {
	c1, c2, c3 := 0.1, 0.2, 0.3 // summed in this order: 0.6000000000000001
	r := newRollup(t, Config{})
	ts := t0 + 10*sec
	add(r, t0+20*sec, pt("g", 1, ts, model.Gauge), pt("g", 2, ts, model.Gauge), pt("g", 3, ts, model.Gauge),
		pt("g", 9, ts-sec, model.Gauge), pt("c", c1, ts, model.Counter), pt("c", c2, ts, model.Counter),
		pt("c", c3, ts, model.Counter))
	add(r, t0+20*sec, pt("g", 4, ts, model.Gauge), pt("g", 8, ts-sec, model.Gauge))
	got := map[string]float64{}
	for _, m := range advance(r, t0+2*minute).Metrics {
		got[m.Name] = m.Value
	}
	if want := (map[string]float64{"g": 4, "c": c1 + c2 + c3}); !cmp.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
