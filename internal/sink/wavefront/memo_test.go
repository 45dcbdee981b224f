package wavefront

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/les-streams/les/internal/format/wavefront"
	"github.com/les-streams/les/internal/sink/sinktest"
	"github.com/les-streams/les/internal/wire"
)

// TestSeriesMemoSameLines: a batch decoded from the series encoding
// (points of a series share its memory, so line parts come from the memo)
// is written exactly as the same points decoded from the les encoding (no
// sharing), invalid points included, on the sink's first and second
// batch; and both are the lines wavefront.AppendMetric writes for the
// points that are valid.
func TestSeriesMemoSameLines(t *testing.T) {
	ms := sinktest.RawPoints()
	type result struct {
		Lines   [2]string
		N       [2]int
		Invalid uint64
	}
	run := func(enc wire.Encoding) result {
		b := sinktest.Decoded(t, ms, enc)
		s, err := New(Config{Address: "127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		var r result
		for round := range 2 {
			buf, n := s.encode(nil, b)
			r.Lines[round], r.N[round] = string(buf), n
		}
		r.Invalid = s.counts.Invalid
		return r
	}
	les, series := run(wire.EncodingLES), run(wire.EncodingSeries)
	if diff := cmp.Diff(les, series); diff != "" {
		t.Fatalf("series-encoded batch written differently (-les +series):\n%s", diff)
	}
	// The reference: each point the format encoder writes, less those
	// with a trailing backslash (series 11), a line break (series 5 and
	// 9) or a non-finite value (4 points).
	var want []byte
	invalid := 0
	for i := range ms {
		m := &ms[i]
		line := wavefront.AppendMetric(nil, m)
		if strings.HasSuffix(m.Tags[0].Value, `\`) || bytes.Count(line, []byte("\n")) > 1 || m.Value != m.Value {
			invalid++
			continue
		}
		want = append(want, line...)
	}
	if invalid != 3*20+4 {
		t.Fatalf("%d invalid points in the reference, want 64", invalid)
	}
	if diff := cmp.Diff(string(want), les.Lines[0]); diff != "" {
		t.Fatalf("lines (-AppendMetric +sink):\n%s", diff)
	}
	if les.Lines[1] != les.Lines[0] || les.Invalid != 2*uint64(invalid) {
		t.Fatalf("second batch differs, or %d invalid, want %d", les.Invalid, 2*invalid)
	}
}

// TestSeriesMemoForgetsBetweenBatches: the next batch may hold other
// series in the same memory (the wire decoder reuses its buffer), so no
// line part is carried over from one encode to the next.
func TestSeriesMemoForgetsBetweenBatches(t *testing.T) {
	s, err := New(Config{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	b, set := sinktest.ReusedSeries()
	var got string
	for _, n := range []string{"aaaa", "bbbb"} {
		set(n)
		buf, _ := s.encode(nil, b)
		got += string(buf)
	}
	if want := "\"aaaa\" 1 1000000000 source=\"fn-a\" \"k\"=\"aaaa\"\n\"bbbb\" 1 1000000000 source=\"fn-b\" \"k\"=\"bbbb\"\n"; got != want {
		t.Fatalf("lines\n%s\nwant\n%s", got, want)
	}
}

// TestSeriesMemoDoesNotAllocate: a warm encode of a series-decoded batch
// allocates nothing (the memo's buffers are reused).
func TestSeriesMemoDoesNotAllocate(t *testing.T) {
	b := sinktest.Decoded(t, sinktest.RawPoints(), wire.EncodingSeries)
	s, err := New(Config{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	buf, _ := s.encode(nil, b)
	if n := testing.AllocsPerRun(20, func() { buf, _ = s.encode(buf[:0], b) }); n != 0 {
		t.Errorf("%v allocations per warm encode, want 0", n)
	}
}

// BenchmarkEncodeRawPoints: the relay's encode of raw points (200 series
// × 20 points) as decoded from each wire encoding, and with every point a
// series of its own (sinktest.RawPointsCases).
func BenchmarkEncodeRawPoints(b *testing.B) {
	for _, c := range sinktest.RawPointsCases() {
		b.Run(c.Name, func(b *testing.B) {
			batch := sinktest.Decoded(b, c.Points, c.Enc)
			s, err := New(Config{Address: "127.0.0.1:1"})
			if err != nil {
				b.Fatal(err)
			}
			buf, _ := s.encode(nil, batch)
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = s.encode(buf[:0], batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(c.Points)), "ns/point")
		})
	}
}
