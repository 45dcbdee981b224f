package wire

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/les-streams/les/internal/model"
)

// seriesParts runs DecodeSeriesParts and rebuilds the metrics each
// series part stands for (Series[Index[i]] with Timestamp[i], Value[i]),
// as decodeParts copies DecodeParts' parts; records that are not
// series-encoded come through fn, and are copied as they are.
func seriesParts(t testing.TB, d *Decoder, rec []byte, n int) ([]part, error) {
	t.Helper()
	var parts []part
	var b model.Batch
	var series []model.Metric
	_, err := d.DecodeSeriesParts(&b, rec, n, func(p *model.Batch) {
		parts = append(parts, part{metrics: append([]model.Metric(nil), p.Metrics...), seriesN: p.SeriesN, continues: p.Continues, more: p.More})
	}, func(sp *SeriesPart) {
		if len(sp.Index) != len(sp.Timestamp) || len(sp.Index) != len(sp.Value) {
			t.Fatalf("part of %d indexes, %d timestamps and %d values", len(sp.Index), len(sp.Timestamp), len(sp.Value))
		}
		if !sp.Continues {
			series = append([]model.Metric(nil), sp.Series...)
		} else if len(sp.Series) != len(series) || len(series) > 0 && &sp.Series[0] != &b.Metrics[0] {
			t.Fatal("a later part of a record has other series")
		}
		if !sp.More {
			if diff := cmp.Diff(series, sp.Series, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("the series changed between the parts of a record (-first +last):\n%s", diff)
			}
		}
		var ms []model.Metric
		for i, ix := range sp.Index {
			m := sp.Series[ix]
			if m.Value != 0 || m.Timestamp != 0 || m.Ref != 0 {
				t.Fatalf("series %d carries a point: %+v", ix, m)
			}
			m.Timestamp, m.Value = sp.Timestamp[i], sp.Value[i]
			ms = append(ms, m)
		}
		parts = append(parts, part{metrics: ms, seriesN: b.SeriesN, continues: sp.Continues, more: sp.More})
	})
	return parts, err
}

// samePartsAs fails t unless got are the parts want are: the same flags,
// series counts and lengths, part by part, and the same metrics.
func samePartsAs(t testing.TB, want, got []part) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d parts, want %d", len(got), len(want))
	}
	var wm, gm []model.Metric
	for i := range want {
		w, g := want[i], got[i]
		if g.continues != w.continues || g.more != w.more || g.seriesN != w.seriesN || len(g.metrics) != len(w.metrics) {
			t.Fatalf("part %d: continues %v more %v SeriesN %d, %d metrics; want %v %v %d, %d", i,
				g.continues, g.more, g.seriesN, len(g.metrics), w.continues, w.more, w.seriesN, len(w.metrics))
		}
		wm, gm = append(wm, w.metrics...), append(gm, g.metrics...)
	}
	if diff := cmp.Diff(wm, gm, cmpopts.EquateEmpty(), cmpopts.EquateNaNs()); diff != "" {
		t.Fatalf("metrics differ (-DecodeParts +DecodeSeriesParts):\n%s", diff)
	}
}

// TestDecodeSeriesParts: DecodeSeriesParts hands over, part by part, what
// DecodeParts does (the same metrics, series numbers, flags and series
// counts), for every part size; records that are not series-encoded come
// through fn, in one part, as from DecodeParts; and after a record, dst
// holds its series.
func TestDecodeSeriesParts(t *testing.T) {
	recs := encodeAll(t, sampleBatch(), CompressionZstd)
	cases := map[string][]byte{
		"series zstd":  encodeSeries(t, randomMetrics(21, 1000, 300), CompressionZstd),
		"series none":  encodeSeries(t, randomMetrics(22, 120, 40), CompressionNone),
		"series one":   encodeSeries(t, randomMetrics(23, 1, 1), CompressionNone),
		"empty series": encodeSeries(t, nil, CompressionNone),
		"logs":         recs[SignalLogs],
		"les metrics":  recs[SignalMetrics],
		"dists":        recs[SignalDistributions],
	}
	var d, ref Decoder
	for name, rec := range cases {
		for _, n := range []int{1, 7, 119, 120, 121, 999, 1000, 1001, 0} {
			if n == 1 && name == "series zstd" {
				continue // 1,000 parts: slow to compare, and "series none" has parts of 1
			}
			want, err := decodeParts(t, &ref, rec, n)
			if err != nil {
				t.Fatal(err)
			}
			got, err := seriesParts(t, &d, rec, n)
			if err != nil {
				t.Fatalf("%s n=%d: %v", name, n, err)
			}
			samePartsAs(t, want, got)
		}
	}
	var b model.Batch
	rec := cases["series none"]
	if _, err := d.DecodeSeriesParts(&b, rec, 100, func(*model.Batch) { t.Fatal("a series record went to fn") }, func(*SeriesPart) {}); err != nil {
		t.Fatal(err)
	}
	var whole model.Batch
	if _, err := ref.Decode(&whole, rec); err != nil {
		t.Fatal(err)
	}
	if b.SeriesN != whole.SeriesN || len(b.Metrics) != int(whole.SeriesN) {
		t.Fatalf("after the record dst holds %d metrics, SeriesN %d; want its %d series", len(b.Metrics), b.SeriesN, whole.SeriesN)
	}
}

// TestDecodeSeriesPartsCorrupt: damage anywhere in the items, even in the
// last part, is found before anything is handed over.
func TestDecodeSeriesPartsCorrupt(t *testing.T) {
	rec := encodeSeries(t, randomMetrics(24, 200, 9), CompressionNone)
	mutate := func(f func(b []byte) []byte) []byte {
		return setBodyLen(f(append([]byte{}, rec...)))
	}
	cases := map[string][]byte{
		"truncated":       mutate(func(b []byte) []byte { return b[:len(b)-3] }),
		"trailing":        mutate(func(b []byte) []byte { return append(b, 0) }),
		"value cut short": mutate(func(b []byte) []byte { return b[:len(b)-1] }),
		"last index out of range": mutate(func(b []byte) []byte {
			i := len(b) - 8 // the last item: index, delta, value (8)
			for i--; b[i-1]&0x80 != 0; i-- {
			}
			b[i-1] = 0x7f
			return b
		}),
		"delta overflows": mutate(func(b []byte) []byte {
			i := len(b) - 8 // the last delta ends before the value
			for i--; b[i-1]&0x80 != 0; i-- {
			}
			// a delta of 11 bytes instead of the last one's
			over := append(append([]byte{}, b[:i]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)
			return append(over, b[len(b)-8:]...)
		}),
	}
	var d Decoder
	for name, c := range cases {
		parts, err := seriesParts(t, &d, c, 10)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorrupt", name, err)
		}
		if len(parts) != 0 {
			t.Errorf("%s: %d parts handed over from a corrupt record", name, len(parts))
		}
	}
}

// TestDecodeSeriesPartsAllocs: once warm, a record by series allocates
// nothing (uncompressed, as TestDecodePartsAllocs).
func TestDecodeSeriesPartsAllocs(t *testing.T) {
	rec := encodeSeries(t, randomMetrics(25, 5000, 300), CompressionNone)
	var d Decoder
	var b model.Batch
	var n int
	fn := func(*model.Batch) { t.Fatal("a series record went to fn") }
	points := func(sp *SeriesPart) { n += len(sp.Index) }
	run := func() {
		b.Reset()
		if _, err := d.DecodeSeriesParts(&b, rec, 512, fn, points); err != nil {
			t.Fatal(err)
		}
	}
	run()
	if a := testing.AllocsPerRun(20, run); a != 0 {
		t.Fatalf("%v allocations per record, want 0", a)
	}
	if n != 22*5000 { // AllocsPerRun runs once more to warm up
		t.Fatalf("handed over %d points, want %d", n, 22*5000)
	}
}

// TestUvarintAt: the point readers' uvarint (uvarintAt, and the cases
// seriesPoints.decode and checkPoints write out) reads what
// binary.Uvarint reads, with the same length, and fails where it fails:
// every width, non-minimal encodings, overflow, cut-off input and
// offsets past the end.
func TestUvarintAt(t *testing.T) {
	var inputs [][]byte
	for _, v := range []uint64{0, 1, 0x7f, 0x80, 0x3fff, 0x4000, 1<<21 - 1, 1 << 21, 1<<35 + 5, 1<<63 - 1, 1 << 63, math.MaxUint64} {
		b := binary.AppendUvarint(nil, v)
		inputs = append(inputs, b, append(b, 0x42))
		for cut := 1; cut < len(b); cut++ {
			inputs = append(inputs, b[:cut])
		}
	}
	inputs = append(inputs,
		[]byte{0x80, 0x00}, []byte{0xff, 0x00}, []byte{0x80, 0x80, 0x00}, // non-minimal
		[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, // overflows the 10th byte
		[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		nil)
	for _, in := range inputs {
		for pre := range 3 {
			b := append(make([]byte, pre), in...)
			for off := range len(b) + 2 {
				var wv uint64
				wn := -1
				if off <= len(b) {
					if v, k := binary.Uvarint(b[off:]); k > 0 {
						wv, wn = v, off+k
					}
				}
				gv, gn := uvarintAt(b, off)
				if gn < 0 {
					gn, gv = -1, 0
				}
				if gv != wv || gn != wn {
					t.Fatalf("uvarintAt(% x, %d) = %d, %d; binary.Uvarint: %d, %d", b, off, gv, gn, wv, wn)
				}
				lv, ln := uvarintLongAt(b, off)
				if ln < 0 {
					ln, lv = -1, 0
				}
				if lv != wv || ln != wn {
					t.Fatalf("uvarintLongAt(% x, %d) = %d, %d; binary.Uvarint: %d, %d", b, off, lv, ln, wv, wn)
				}
			}
		}
	}
	if _, n := uvarintAt([]byte{1}, -1); n >= 0 {
		t.Fatal("uvarintAt read at a negative offset")
	}
}

// FuzzDecodeSeriesParts: on any input DecodeSeriesParts agrees with
// DecodeParts: an error for the same records (nothing handed over), and
// the same parts otherwise.
func FuzzDecodeSeriesParts(f *testing.F) {
	f.Add(encodeSeries(f, randomMetrics(7, 20, 4), CompressionNone), 3)
	f.Add(encodeSeries(f, randomMetrics(8, 3, 3), CompressionS2), 1)
	f.Add(encodeSeries(f, randomMetrics(9, 300, 200), CompressionNone), 40)
	f.Fuzz(func(t *testing.T, rec []byte, n int) {
		var d, ref Decoder
		want, werr := decodeParts(t, &ref, rec, n%64)
		got, err := seriesParts(t, &d, rec, n%64)
		if (werr == nil) != (err == nil) {
			t.Fatalf("DecodeParts err %v, DecodeSeriesParts err %v", werr, err)
		}
		if err != nil {
			if len(got) != 0 {
				t.Fatalf("%d parts handed over before error %v", len(got), err)
			}
			return
		}
		samePartsAs(t, want, got)
	})
}

// BenchmarkDecodeSeriesParts is the decoder's share of the rollup
// consumer's work on a record of 88,000 points of 5,000 series
// (uncompressed, so only the tables, the check and the points count):
// DecodeParts' metrics against DecodeSeriesParts' indexes, both in parts
// of DefaultPartSize handed to a callback that does nothing.
func BenchmarkDecodeSeriesParts(b *testing.B) {
	ms := randomMetrics(26, 88_000, 5000)
	rec := encodeSeries(b, ms, CompressionNone)
	for _, how := range []string{"metrics", "series"} {
		b.Run(how, func(b *testing.B) {
			var d Decoder
			var batch model.Batch
			fn := func(*model.Batch) {}
			points := func(*SeriesPart) {}
			b.ReportAllocs()
			for b.Loop() {
				batch.Reset()
				var err error
				if how == "series" {
					_, err = d.DecodeSeriesParts(&batch, rec, 0, fn, points)
				} else {
					_, err = d.DecodeParts(&batch, rec, 0, fn)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ms)), "ns/point")
		})
	}
}
