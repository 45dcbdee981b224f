package wire

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/les-streams/les/internal/model"
)

// part is what a DecodeParts callback saw of one part.
type part struct {
	metrics         []model.Metric
	seriesN         uint32
	continues, more bool
}

// decodeParts runs DecodeParts, copying each part (fn may not keep it).
func decodeParts(t testing.TB, d *Decoder, rec []byte, n int) ([]part, error) {
	t.Helper()
	var parts []part
	var b model.Batch
	_, err := d.DecodeParts(&b, rec, n, func(p *model.Batch) {
		parts = append(parts, part{metrics: append([]model.Metric(nil), p.Metrics...), seriesN: p.SeriesN, continues: p.Continues, more: p.More})
	})
	return parts, err
}

// TestDecodeParts: the parts of a series record, put together, are
// Decode's items, in order, with the same series numbers; each part holds
// at most n items, the flags mark first, middle and last parts, and every
// part carries the record's series count.
func TestDecodeParts(t *testing.T) {
	ms := randomMetrics(11, 1000, 60)
	for _, c := range []Compression{CompressionNone, CompressionZstd} {
		rec := encodeSeries(t, ms, c)
		var whole model.Batch
		var d Decoder
		if _, err := d.Decode(&whole, rec); err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{1, 7, 999, 1000, 1001, 0} {
			parts, err := decodeParts(t, &d, rec, n)
			if err != nil {
				t.Fatalf("%v n=%d: %v", c, n, err)
			}
			size := n
			if n <= 0 {
				size = DefaultPartSize
			}
			if want := (len(ms) + size - 1) / size; len(parts) != want {
				t.Fatalf("%v n=%d: %d parts, want %d", c, n, len(parts), want)
			}
			var got []model.Metric
			for i, p := range parts {
				if p.continues != (i > 0) || p.more != (i < len(parts)-1) {
					t.Errorf("%v n=%d part %d of %d: continues %v more %v", c, n, i, len(parts), p.continues, p.more)
				}
				if len(p.metrics) > size || len(p.metrics) == 0 {
					t.Errorf("%v n=%d part %d: %d metrics", c, n, i, len(p.metrics))
				}
				if p.seriesN != whole.SeriesN {
					t.Errorf("%v n=%d part %d: SeriesN %d, want %d", c, n, i, p.seriesN, whole.SeriesN)
				}
				got = append(got, p.metrics...)
			}
			if diff := cmp.Diff(whole.Metrics, got, cmpopts.EquateEmpty(), cmpopts.EquateNaNs()); diff != "" {
				t.Fatalf("%v n=%d: parts differ from Decode (-want +got):\n%s", c, n, diff)
			}
		}
	}
}

// TestDecodePartsOne: a record that is not series-encoded, and an empty
// one, come in one part with neither flag.
func TestDecodePartsOne(t *testing.T) {
	recs := encodeAll(t, sampleBatch(), CompressionZstd)
	empty := encodeSeries(t, nil, CompressionNone)
	var d Decoder
	for name, rec := range map[string][]byte{"logs": recs[SignalLogs], "les metrics": recs[SignalMetrics], "empty series": empty} {
		var whole model.Batch
		if _, err := d.Decode(&whole, rec); err != nil {
			t.Fatal(err)
		}
		parts, err := decodeParts(t, &d, rec, 1)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(parts) != 1 || parts[0].continues || parts[0].more {
			t.Fatalf("%s: parts %+v, want one part without flags", name, parts)
		}
		if diff := cmp.Diff(whole.Metrics, parts[0].metrics, cmpopts.EquateEmpty(), cmpopts.EquateNaNs()); diff != "" {
			t.Fatalf("%s (-want +got):\n%s", name, diff)
		}
	}
}

// TestDecodePartsCorrupt: damage anywhere in the items, even in the last
// part, is found before the first part is handed over.
func TestDecodePartsCorrupt(t *testing.T) {
	ms := randomMetrics(12, 200, 9)
	rec := encodeSeries(t, ms, CompressionNone)
	mutate := func(f func(b []byte) []byte) []byte {
		return setBodyLen(f(append([]byte{}, rec...)))
	}
	cases := map[string][]byte{
		"truncated": mutate(func(b []byte) []byte { return b[:len(b)-3] }),
		"trailing":  mutate(func(b []byte) []byte { return append(b, 0) }),
		"last index out of range": mutate(func(b []byte) []byte {
			i := len(b) - 8 // the last item: index, delta, value (8)
			for i--; b[i-1]&0x80 != 0; i-- {
			}
			b[i-1] = 0x7f
			return b
		}),
	}
	var d Decoder
	for name, c := range cases {
		parts, err := decodeParts(t, &d, c, 10)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorrupt", name, err)
		}
		if len(parts) != 0 {
			t.Errorf("%s: %d parts handed over from a corrupt record", name, len(parts))
		}
	}
}

// TestDecodePartsAllocs: once warm, a record in parts allocates nothing
// (uncompressed: zstd's decoder keeps buffers in a sync.Pool, which a GC
// may empty between two records).
func TestDecodePartsAllocs(t *testing.T) {
	rec := encodeSeries(t, randomMetrics(13, 5000, 300), CompressionNone)
	var d Decoder
	var b model.Batch
	var n int
	fn := func(p *model.Batch) { n += len(p.Metrics) }
	run := func() {
		b.Reset()
		if _, err := d.DecodeParts(&b, rec, 512, fn); err != nil {
			t.Fatal(err)
		}
	}
	run()
	if a := testing.AllocsPerRun(20, run); a != 0 {
		t.Fatalf("%v allocations per record, want 0", a)
	}
	if n != 22*5000 { // AllocsPerRun runs once more to warm up
		t.Fatalf("handed over %d metrics, want %d", n, 22*5000)
	}
}

// FuzzDecodeParts: on any input DecodeParts agrees with Decode: an error
// for the same records, and the same items otherwise.
func FuzzDecodeParts(f *testing.F) {
	f.Add(encodeSeries(f, randomMetrics(7, 20, 4), CompressionNone), 3)
	f.Add(encodeSeries(f, randomMetrics(8, 3, 3), CompressionS2), 1)
	f.Fuzz(func(t *testing.T, rec []byte, n int) {
		var d Decoder
		var whole model.Batch
		_, werr := d.Decode(&whole, rec)
		parts, err := decodeParts(t, &d, rec, n%64)
		if (werr == nil) != (err == nil) {
			t.Fatalf("Decode err %v, DecodeParts err %v", werr, err)
		}
		if err != nil {
			if len(parts) != 0 {
				t.Fatalf("%d parts handed over before error %v", len(parts), err)
			}
			return
		}
		var got []model.Metric
		for _, p := range parts {
			got = append(got, p.metrics...)
		}
		if diff := cmp.Diff(whole.Metrics, got, cmpopts.EquateEmpty(), cmpopts.EquateNaNs()); diff != "" {
			t.Fatalf("(-Decode +DecodeParts):\n%s", diff)
		}
	})
}
