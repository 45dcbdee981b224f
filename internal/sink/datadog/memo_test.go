package datadog

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/les-streams/les/internal/sink/sinktest"
	"github.com/les-streams/les/internal/wire"
)

func memoOptions(o encOptions) encOptions {
	o.maxLogBytes, o.maxLogLength, o.logSource = DefaultMaxLogRequestBytes, DefaultMaxLogLength, "les"
	if o.maxBytes == 0 {
		o.maxBytes = DefaultMaxRequestBytes
	}
	return o
}

// TestSeriesMemoSameRequests: a batch decoded from the series encoding
// (points of a series share its memory, so names, hosts and tags come
// from the memo) is written exactly as the same points decoded from the
// les encoding (no sharing), drops and request splits included, in every
// series form and on an encoder's second batch.
func TestSeriesMemoSameRequests(t *testing.T) {
	ms := sinktest.RawPoints()
	type result struct {
		Series [2][]string
		Drops  [2]map[string]int
		Items  [2]int
	}
	for _, o := range []encOptions{
		{},
		{seriesV1: true},
		{sourceAsTag: true, tags: []string{"team:core", "les"}},
		{seriesV1: true, tags: []string{"les"}, maxBytes: 20000}, // many requests, items moved to the next
	} {
		t.Run(fmt.Sprintf("%+v", o), func(t *testing.T) {
			run := func(enc wire.Encoding) result {
				b := sinktest.Decoded(t, ms, enc)
				e := newEncoder(memoOptions(o))
				var r result
				for round := range 2 {
					e.encode(b)
					for _, q := range e.series.all() {
						r.Series[round] = append(r.Series[round], string(q.raw))
					}
					r.Drops[round], r.Items[round] = map[string]int{}, e.items
					for k, v := range e.drops {
						r.Drops[round][k] = v
					}
				}
				return r
			}
			les, series := run(wire.EncodingLES), run(wire.EncodingSeries)
			// The reference drops what RawPoints means it to: gauge deltas,
			// names that are empty, start with a digit or hold a line
			// break (turned into '_', so kept), non-finite values.
			want := map[string]int{reasonGaugeDelta: 1000, reasonInvalidName: 20 + 20, reasonNonFinite: 4}
			if diff := cmp.Diff(want, les.Drops[0]); diff != "" {
				t.Fatalf("drops of the reference (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(les, series); diff != "" {
				t.Fatalf("series-encoded batch written differently (-les +series):\n%s", diff)
			}
		})
	}
}

// TestSeriesMemoForgetsBetweenBatches: the next batch may hold other
// series in the same memory (the wire decoder reuses its buffer), so
// nothing is carried over from one encode to the next.
func TestSeriesMemoForgetsBetweenBatches(t *testing.T) {
	e := newEncoder(memoOptions(encOptions{seriesV1: true}))
	b, set := sinktest.ReusedSeries()
	var got []string
	for _, n := range []string{"aaaa", "bbbb"} {
		set(n)
		e.encode(b)
		for _, q := range e.series.all() {
			got = append(got, string(q.raw))
		}
	}
	want := []string{
		`{"series":[{"metric":"aaaa","type":"gauge","points":[[1000000000,1]],"host":"fn-a","tags":["k:aaaa"]}]}`,
		`{"series":[{"metric":"bbbb","type":"gauge","points":[[1000000000,1]],"host":"fn-b","tags":["k:bbbb"]}]}`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("requests (-want +got):\n%s", diff)
	}
}

// TestSeriesMemoDoesNotAllocate: a warm encode of a series-decoded batch
// allocates nothing (the memo's buffers are reused).
func TestSeriesMemoDoesNotAllocate(t *testing.T) {
	b := sinktest.Decoded(t, sinktest.RawPoints(), wire.EncodingSeries)
	e := newEncoder(memoOptions(encOptions{}))
	e.encode(b)
	if n := testing.AllocsPerRun(20, func() { e.encode(b) }); n != 0 {
		t.Errorf("%v allocations per warm encode, want 0", n)
	}
}

// BenchmarkEncodeRawPoints: the encoder on raw points (200 series × 20
// points) as decoded from each wire encoding, and with every point a
// series of its own (sinktest.RawPointsCases).
func BenchmarkEncodeRawPoints(b *testing.B) {
	for _, c := range sinktest.RawPointsCases() {
		b.Run(c.Name, func(b *testing.B) {
			batch := sinktest.Decoded(b, c.Points, c.Enc)
			e := newEncoder(memoOptions(encOptions{}))
			e.encode(batch)
			b.ReportAllocs()
			for b.Loop() {
				e.encode(batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(c.Points)), "ns/point")
		})
	}
}
