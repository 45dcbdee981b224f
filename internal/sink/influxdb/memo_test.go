package influxdb

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/les-streams/les/internal/sink/sinktest"
	"github.com/les-streams/les/internal/wire"
)

// TestSeriesMemoSameLines: a batch decoded from the series encoding
// (points of a series share its memory, so heads come from the memo) is
// written exactly as the same points decoded from the les encoding (no
// sharing, so every head is escaped), drops included, in both versions
// and on an encoder's second batch; and that is what AppendMetric (which
// has no memo) writes for each point.
func TestSeriesMemoSameLines(t *testing.T) {
	ms := sinktest.RawPoints()
	type result struct {
		Lines [2]string
		N     [2]int
		Drops [2]Drops
	}
	for _, v := range []int{1, 2} {
		t.Run(fmt.Sprint("version", v), func(t *testing.T) {
			run := func(enc wire.Encoding) result {
				b := sinktest.Decoded(t, ms, enc)
				e := &Encoder{Version: v}
				var r result
				for round := range 2 {
					e.Drops = Drops{}
					buf, n := e.AppendBatch(nil, b)
					r.Lines[round], r.N[round], r.Drops[round] = string(buf), n, e.Drops
				}
				return r
			}
			les, series := run(wire.EncodingLES), run(wire.EncodingSeries)
			d := les.Drops[0]
			// The reference drops what RawPoints means it to: no name (20),
			// a line break (20), non-finite values (4); version 1 also the
			// tag value ending in a backslash (20).
			want := Drops{EmptyName: 20, LineBreak: 20, NonFinite: 4}
			if v == 1 {
				want.Backslash = 20
			}
			if d != want {
				t.Fatalf("drops of the reference %+v, want %+v", d, want)
			}
			if diff := cmp.Diff(les, series); diff != "" {
				t.Fatalf("series-encoded batch written differently (-les +series):\n%s", diff)
			}
			// And both are what AppendMetric (no memo) writes point by point.
			ref := &Encoder{Version: v}
			var buf []byte
			for i := range ms {
				buf, _ = ref.AppendMetric(buf, &ms[i])
			}
			if string(buf) != les.Lines[0] || ref.Drops != d {
				t.Fatalf("AppendBatch differs from AppendMetric per point (drops %+v, want %+v)", d, ref.Drops)
			}
		})
	}
}

// TestSeriesMemoForgetsBetweenBatches: the next batch may hold other
// series in the same memory (the wire decoder reuses its buffer), so no
// head is carried over from one AppendBatch to the next.
func TestSeriesMemoForgetsBetweenBatches(t *testing.T) {
	e := &Encoder{Version: 2}
	b, set := sinktest.ReusedSeries()
	var got string
	for _, n := range []string{"aaaa", "bbbb"} {
		set(n)
		buf, _ := e.AppendBatch(nil, b)
		got += string(buf)
	}
	if want := "aaaa,source=fn-a,k=aaaa value=1 1000000000000000000\nbbbb,source=fn-b,k=bbbb value=1 1000000000000000000\n"; got != want {
		t.Fatalf("lines\n%s\nwant\n%s", got, want)
	}
}

// TestSeriesMemoDoesNotAllocate: a warm AppendBatch of a series-decoded
// batch allocates nothing (the memo's buffers are reused).
func TestSeriesMemoDoesNotAllocate(t *testing.T) {
	b := sinktest.Decoded(t, sinktest.RawPoints(), wire.EncodingSeries)
	e := &Encoder{Version: 2}
	buf, _ := e.AppendBatch(nil, b)
	if n := testing.AllocsPerRun(20, func() { buf, _ = e.AppendBatch(buf[:0], b) }); n != 0 {
		t.Errorf("%v allocations per warm AppendBatch, want 0", n)
	}
}

// BenchmarkEncodeRawPoints: the encoder on raw points (200 series × 20
// points) as decoded from each wire encoding, and with every point a
// series of its own (sinktest.RawPointsCases).
func BenchmarkEncodeRawPoints(b *testing.B) {
	for _, c := range sinktest.RawPointsCases() {
		b.Run(c.Name, func(b *testing.B) {
			batch := sinktest.Decoded(b, c.Points, c.Enc)
			e := &Encoder{Version: 2}
			buf, _ := e.AppendBatch(nil, batch)
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = e.AppendBatch(buf[:0], batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(c.Points)), "ns/point")
		})
	}
}
