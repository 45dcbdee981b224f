package wire

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/les-streams/les/internal/model"
)

// ignoreSeries leaves out the decoder's series numbers (TestSeriesNumbers
// checks them): the points encoded have none.
var (
	ignoreSeries = cmpopts.IgnoreFields(model.Metric{}, "Series")
	ignoreRef    = cmpopts.IgnoreFields(model.Metric{}, "Ref")
)

// randomMetrics is n points over series series, with every kind and
// window, timestamps that go back as well as forward, and values of every
// class (NaN, infinities, negative zero).
func randomMetrics(seed uint64, n, series int) []model.Metric {
	rng := rand.New(rand.NewPCG(seed, 7))
	vals := []float64{0, math.Copysign(0, -1), 1.5, -3, math.Inf(1), math.Inf(-1), math.MaxFloat64, 1e-300}
	ts := int64(1700000000000000000)
	out := make([]model.Metric, n)
	for i := range out {
		s := rng.IntN(series)
		ts += rng.Int64N(2_000_000) - 500_000
		m := model.Metric{
			Name:      fmt.Sprintf("metric.%d", s%17),
			Source:    fmt.Sprintf("fn-%d", s/17),
			Kind:      model.Kind(s % 7),
			Window:    model.Window(s % 4),
			Timestamp: ts,
			Value:     vals[rng.IntN(len(vals))] * float64(rng.IntN(100)),
		}
		if rng.IntN(50) == 0 {
			m.Value = math.NaN()
		}
		for k := range s % 4 {
			m.Tags = append(m.Tags, model.Tag{Key: fmt.Sprintf("k%d", k), Value: fmt.Sprintf("v%d", s)})
		}
		out[i] = m
	}
	return out
}

func encodeSeries(t testing.TB, ms []model.Metric, c Compression) []byte {
	t.Helper()
	e := NewEncoding(SignalMetrics, EncodingSeries)
	for i := range ms {
		e.AppendMetric(&ms[i])
	}
	rec, err := e.Finish(nil, 0xfeedface, 9, c)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestSeriesRoundTrip: every point comes back as it went in, in order,
// for every compression; the header says series encoding.
func TestSeriesRoundTrip(t *testing.T) {
	want := randomMetrics(1, 5000, 300)
	for _, c := range []Compression{CompressionNone, CompressionGzip, CompressionZstd, CompressionS2} {
		t.Run(c.String(), func(t *testing.T) {
			rec := encodeSeries(t, want, c)
			var d Decoder
			var got model.Batch
			h, err := d.Decode(&got, rec)
			if err != nil {
				t.Fatal(err)
			}
			if h.Encoding != EncodingSeries || h.Count != uint32(len(want)) {
				t.Fatalf("header %+v", h)
			}
			if diff := cmp.Diff(want, got.Metrics, cmpopts.EquateEmpty(), cmpopts.EquateNaNs(), ignoreSeries); diff != "" {
				t.Fatalf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSeriesEncoderReuse: after Reset the table starts again (a stale
// index entry would point past the new table).
func TestSeriesEncoderReuse(t *testing.T) {
	e := NewEncoding(SignalMetrics, EncodingSeries)
	var d Decoder
	for round := range 3 {
		want := randomMetrics(uint64(round), 400, 50+round*30)
		e.Reset()
		for i := range want {
			e.AppendMetric(&want[i])
		}
		rec, err := e.Finish(nil, 1, uint64(round), CompressionNone)
		if err != nil {
			t.Fatal(err)
		}
		var got model.Batch
		if _, err := d.Decode(&got, rec); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if diff := cmp.Diff(want, got.Metrics, cmpopts.EquateEmpty(), cmpopts.EquateNaNs(), ignoreSeries); diff != "" {
			t.Fatalf("round %d (-want +got):\n%s", round, diff)
		}
	}
}

// TestSeriesTableOnce: a series is written once however many points it
// has, so a record of many points of few series is small.
func TestSeriesTableOnce(t *testing.T) {
	ms := randomMetrics(3, 10000, 20)
	series := encodeSeries(t, ms, CompressionNone)
	e := NewEncoder(SignalMetrics)
	for i := range ms {
		e.AppendMetric(&ms[i])
	}
	items, err := e.Finish(nil, 1, 1, CompressionNone)
	if err != nil {
		t.Fatal(err)
	}
	// An item is index (1 byte) + delta (≤ 3 bytes here) + value (8).
	if per := float64(len(series)-HeaderSize) / float64(len(ms)); per > 13 {
		t.Fatalf("%.1f bytes per point, want ≤ 13 (les encoding: %.1f)", per, float64(len(items)-HeaderSize)/float64(len(ms)))
	}
}

// TestSeriesGolden pins the bytes of a series-encoded record (the metrics
// of sampleBatch, the first repeated), as docs/wire-format.md shows them.
func TestSeriesGolden(t *testing.T) {
	ms := sampleBatch().Metrics
	ms = append(ms, ms[0])
	ms[2].Timestamp += 1000
	ms[2].Value = 43
	checkGolden(t, "metrics-series.hex", encodeSeries(t, ms, CompressionNone))
}

func TestSeriesCorrupt(t *testing.T) {
	ms := randomMetrics(4, 50, 5)
	rec := encodeSeries(t, ms, CompressionNone)
	mutate := func(f func(b []byte) []byte) []byte {
		return setBodyLen(f(append([]byte{}, rec...)))
	}
	var d Decoder
	cases := map[string][]byte{
		// The table claims one entry fewer: the last index is out of range
		// (or an entry's bytes are read as items).
		"table count": mutate(func(b []byte) []byte { b[HeaderSize]--; return b }),
		"truncated":   mutate(func(b []byte) []byte { return b[:len(b)-3] }),
		"trailing":    mutate(func(b []byte) []byte { return append(b, 0) }),
		"overcount": mutate(func(b []byte) []byte {
			b[24] = 0xff
			return b
		}),
		"index out of range": mutate(func(b []byte) []byte {
			// The last item's index byte: value (8) and delta before it.
			i := len(b) - 8
			for i--; b[i-1]&0x80 != 0; i-- {
			}
			b[i-1] = 0x7f
			return b
		}),
		"no table": mutate(func(b []byte) []byte { return b[:HeaderSize] }),
	}
	for name, c := range cases {
		var b model.Batch
		if _, err := d.Decode(&b, c); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorrupt", name, err)
		}
	}
	// Series encoding is for metrics only.
	logs := append([]byte{}, encodeAll(t, sampleBatch(), CompressionNone)[SignalLogs]...)
	logs[6] = byte(EncodingSeries)
	if _, err := ParseHeader(logs); !errors.Is(err, ErrCorrupt) {
		t.Errorf("series-encoded logs: err %v, want ErrCorrupt", err)
	}
}

// TestSeriesUndo: an append undone (Split's overflow) leaves the record as
// if it had never happened, including a series it added to the table.
func TestSeriesUndo(t *testing.T) {
	ms := randomMetrics(5, 200, 40)
	e := NewEncoding(SignalMetrics, EncodingSeries)
	var want []model.Metric
	for i := range ms {
		mk := e.mark()
		e.AppendMetric(&ms[i])
		if i%3 == 1 {
			e.undo(mk)
			continue
		}
		want = append(want, ms[i])
	}
	extra := model.Metric{Name: "after", Value: 1, Timestamp: 5}
	e.AppendMetric(&extra)
	want = append(want, extra)
	rec, err := e.Finish(nil, 0xfeedface, 9, CompressionNone)
	if err != nil {
		t.Fatal(err)
	}
	var d Decoder
	var got model.Batch
	if _, err := d.Decode(&got, rec); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got.Metrics, cmpopts.EquateEmpty(), cmpopts.EquateNaNs(), ignoreSeries); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	// Unique entries: the undone series are not in the table, so it
	// holds exactly the distinct series of want.
	seen := map[string]bool{}
	for _, m := range want {
		seen[fmt.Sprint(m.Kind, m.Window, m.Name, m.Source, m.Tags)] = true
	}
	if e.tab.n != len(seen) {
		t.Fatalf("table has %d entries, %d distinct series kept", e.tab.n, len(seen))
	}
	// And the string table holds exactly their distinct strings.
	strs := map[string]bool{}
	for _, m := range want {
		strs[m.Name], strs[m.Source] = true, true
		for _, tg := range m.Tags {
			strs[tg.Key], strs[tg.Value] = true, true
		}
	}
	if len(e.tab.strAt) != len(strs) {
		t.Fatalf("string table has %d strings, %d distinct kept", len(e.tab.strAt), len(strs))
	}
}

// TestSeriesStringsOnce: a string is written once however many series use
// it, so a record of many series of a small vocabulary (one point each,
// the series table's worst case) stays small.
func TestSeriesStringsOnce(t *testing.T) {
	var ms []model.Metric
	for s := range 5000 {
		ms = append(ms, model.Metric{Name: fmt.Sprint("aws.lambda.metric_", s%16), Source: fmt.Sprint("function-", s%313),
			Kind: model.Gauge, Value: 1, Timestamp: int64(s), Tags: model.Tags{{Key: "env", Value: "prod"},
				{Key: "region", Value: fmt.Sprint("eu-west-", s%3)}, {Key: "version", Value: fmt.Sprint(s % 7)}}})
	}
	rec := encodeSeries(t, ms, CompressionNone)
	// An entry is 2 + 1 + 2 + 1 + 3×2 bytes of numbers, a point 10–11.
	if per := float64(len(rec)-HeaderSize) / float64(len(ms)); per > 26 {
		t.Fatalf("%.1f bytes per point of a new series, want ≤ 26", per)
	}
}

// TestSeriesAllocs: a warm encoder and decoder allocate nothing, with
// points found by identity and interned points found by reference.
func TestSeriesAllocs(t *testing.T) {
	ms := randomMetrics(6, 2000, 500)
	for name, in := range map[string][]model.Metric{"identity": ms, "reference": sharedMetrics(randomMetrics(14, 5000, 3000))} {
		e := NewEncoding(SignalMetrics, EncodingSeries)
		var out []byte
		run := func() {
			e.Reset()
			for i := range in {
				e.AppendMetric(&in[i])
			}
			out, _ = e.Finish(out[:0], 1, 1, CompressionNone)
		}
		run()
		if a := testing.AllocsPerRun(10, run); a != 0 {
			t.Fatalf("encode (%s) allocated %v times", name, a)
		}
	}
	for _, c := range []Compression{CompressionNone, CompressionZstd, CompressionS2} {
		rec := encodeSeries(t, ms, c)
		var d Decoder
		var b model.Batch
		allocs := testing.AllocsPerRun(10, func() {
			b.Reset()
			if _, err := d.Decode(&b, rec); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Fatalf("%s: decode of a warm record allocated %v times", c, allocs)
		}
	}
}

func FuzzSeriesRoundTrip(f *testing.F) {
	f.Add("name", "src", "k", "v", 1.5, int64(1700000000000000000), int64(-5), uint8(3))
	f.Add("", "", "", "", math.Inf(1), int64(math.MinInt64), int64(math.MaxInt64), uint8(0))
	f.Fuzz(func(t *testing.T, name, src, k, v string, val float64, ts, step int64, n uint8) {
		var want []model.Metric
		for i := range int(n)%8 + 1 {
			m := model.Metric{Name: name, Source: src, Value: val, Timestamp: ts + step*int64(i), Kind: model.Kind(i % 3)}
			if i%2 == 0 {
				m.Tags = model.Tags{{Key: k, Value: v}}
			}
			want = append(want, m)
		}
		for _, c := range []Compression{CompressionNone, CompressionS2} {
			var d Decoder
			var got model.Batch
			if _, err := d.Decode(&got, encodeSeries(t, want, c)); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got.Metrics, cmpopts.EquateEmpty(), cmpopts.EquateNaNs(), ignoreSeries); diff != "" {
				t.Fatalf("round trip (-want +got):\n%s", diff)
			}
		}
	})
}

func FuzzSeriesDecode(f *testing.F) {
	f.Add(encodeSeries(f, randomMetrics(7, 20, 4), CompressionNone))
	f.Add(encodeSeries(f, randomMetrics(8, 3, 3), CompressionS2))
	f.Fuzz(func(t *testing.T, rec []byte) {
		var d Decoder
		var b model.Batch
		_, _ = d.Decode(&b, rec) // must not panic or hang
	})
}

// TestSeriesNumbers: the decoder numbers the series of a batch: points of
// one series share a number, other series have other numbers, and a
// second record decoded into the same batch continues the numbering.
func TestSeriesNumbers(t *testing.T) {
	var d Decoder
	var b model.Batch
	recs := [][]byte{encodeSeries(t, randomMetrics(9, 500, 40), CompressionNone), encodeSeries(t, randomMetrics(10, 500, 30), CompressionS2)}
	for _, rec := range recs {
		if _, err := d.Decode(&b, rec); err != nil {
			t.Fatal(err)
		}
	}
	byNumber := map[uint32]string{}
	numbers := map[string]uint32{}
	for i, m := range b.Metrics {
		key := fmt.Sprint(i >= 500, m.Kind, m.Window, m.Name, m.Source, m.Tags) // the record, then the series
		if m.Series == 0 || m.Series > b.SeriesN {
			t.Fatalf("point %d: number %d of %d", i, m.Series, b.SeriesN)
		}
		if k, ok := byNumber[m.Series]; ok && k != key {
			t.Fatalf("number %d for %s and %s", m.Series, k, key)
		}
		if n, ok := numbers[key]; ok && n != m.Series {
			t.Fatalf("series %s numbered %d and %d", key, n, m.Series)
		}
		byNumber[m.Series], numbers[key] = key, m.Series
	}
	if int(b.SeriesN) != len(numbers) {
		t.Fatalf("SeriesN %d, %d series", b.SeriesN, len(numbers))
	}
	b.Reset()
	if b.SeriesN != 0 {
		t.Fatal("Reset kept SeriesN")
	}
}

// BenchmarkSeriesAppend is the agent's side: appending points of 1,000
// series with 4 tags each (a StatsD load) to a warm series-encoded record.
func BenchmarkSeriesAppend(b *testing.B) {
	ms := make([]model.Metric, 13000)
	for i := range ms {
		s := i % 1000
		ms[i] = model.Metric{Name: fmt.Sprintf("app.metric_%d", s%40), Source: "bench-host", Kind: model.Sample,
			Value: float64(i % 997), Timestamp: 1700000000000000000 + int64(i)*5000,
			Tags: model.Tags{{Key: "env", Value: "prod"}, {Key: "region", Value: fmt.Sprintf("eu-west-%d", s%3)},
				{Key: "service", Value: fmt.Sprintf("svc-%d", s%25)}, {Key: "version", Value: fmt.Sprintf("v%d", s%4)}}}
	}
	e := NewEncoding(SignalMetrics, EncodingSeries)
	b.ReportAllocs()
	for b.Loop() {
		e.Reset()
		for i := range ms {
			e.AppendMetric(&ms[i])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ms)), "ns/point")
}

// sharedMetrics is ms with the points of each series sharing one copy of
// its strings and tags, interned in a series cache of its own (Ref), as a
// decoder's series cache hands them out. Series that differ only by kind
// or window share an entry.
func sharedMetrics(ms []model.Metric) []model.Metric {
	type shared struct {
		name, source string
		tags         model.Tags
		ref          uint64
	}
	cache := uint64(model.NewInternID()) << 32
	bySeries := map[string]shared{}
	out := make([]model.Metric, len(ms))
	for i, m := range ms {
		key := fmt.Sprint(m.Name, "\x00", m.Source, "\x00", m.Tags)
		s, ok := bySeries[key]
		if !ok {
			s = shared{name: strings.Clone(m.Name), source: strings.Clone(m.Source), ref: cache | uint64(len(bySeries)+1)}
			for _, tg := range m.Tags {
				s.tags = append(s.tags, model.Tag{Key: strings.Clone(tg.Key), Value: strings.Clone(tg.Value)})
			}
			bySeries[key] = s
		}
		m.Name, m.Source, m.Tags, m.Ref = s.name, s.source, s.tags, s.ref
		out[i] = m
	}
	return out
}

// TestSeriesMemoSameRecord: points whose series share memory (found by
// the memo) give the same record, byte for byte, as the same points with
// every string its own copy (found by encoding and hashing the identity).
func TestSeriesMemoSameRecord(t *testing.T) {
	ms := randomMetrics(11, 6000, 700)
	distinct := encodeSeries(t, ms, CompressionNone)
	shared := sharedMetrics(ms)
	if got := encodeSeries(t, shared, CompressionNone); !bytes.Equal(got, distinct) {
		t.Fatal("a record of points sharing their series' memory differs from one of distinct copies")
	}
	// A reused encoder: the memo of the first record must not leak into
	// the second, whose series have other numbers.
	e := NewEncoding(SignalMetrics, EncodingSeries)
	for _, part := range [][]model.Metric{shared[3000:], shared[:3000]} {
		e.Reset()
		for i := range part {
			e.AppendMetric(&part[i])
		}
		got, err := e.Finish(nil, 0xfeedface, 9, CompressionNone)
		if err != nil {
			t.Fatal(err)
		}
		var d Decoder
		var b model.Batch
		if _, err := d.Decode(&b, got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(part, b.Metrics, cmpopts.EquateEmpty(), cmpopts.EquateNaNs(), ignoreSeries, ignoreRef); diff != "" {
			t.Fatalf("reused encoder (-want +got):\n%s", diff)
		}
	}
}

// TestSeriesMemoReusedMemory: a decoder may write other bytes where the
// strings of an earlier point were (a reused datagram buffer). Points at
// the same addresses with other contents are other series.
func TestSeriesMemoReusedMemory(t *testing.T) {
	buf := make([]byte, 8)
	tags := make(model.Tags, 1)
	tagBuf := make([]byte, 2)
	e := NewEncoding(SignalMetrics, EncodingSeries)
	var want []model.Metric
	for i := range 40 {
		copy(buf, fmt.Sprintf("metric%02d", i%5)) // same length, same address
		copy(tagBuf, fmt.Sprintf("v%d", i%3))
		tags[0] = model.Tag{Key: "k", Value: unsafe.String(&tagBuf[0], len(tagBuf))}
		m := model.Metric{Name: unsafe.String(&buf[0], len(buf)), Source: "src", Tags: tags, Kind: model.Gauge, Value: float64(i), Timestamp: int64(i)}
		e.AppendMetric(&m)
		want = append(want, model.Metric{Name: strings.Clone(m.Name), Source: "src", Tags: model.Tags{{Key: "k", Value: strings.Clone(tags[0].Value)}},
			Kind: model.Gauge, Value: float64(i), Timestamp: int64(i)})
	}
	rec, err := e.Finish(nil, 1, 1, CompressionNone)
	if err != nil {
		t.Fatal(err)
	}
	var d Decoder
	var b model.Batch
	if _, err := d.Decode(&b, rec); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, b.Metrics, cmpopts.EquateEmpty(), ignoreSeries); diff != "" {
		t.Fatalf("points at reused addresses (-want +got):\n%s", diff)
	}
}

// TestSeriesMemoUndo: series given back by an undo (Split) are not found
// again through the memo under their old numbers, which the next series
// take.
func TestSeriesMemoUndo(t *testing.T) {
	a := sharedMetrics(randomMetrics(12, 100, 30))
	undone := sharedMetrics(randomMetrics(13, 100, 3000)) // mostly series a does not have
	b := sharedMetrics(randomMetrics(14, 200, 3000))
	e := NewEncoding(SignalMetrics, EncodingSeries)
	for i := range a {
		e.AppendMetric(&a[i])
	}
	mk := e.mark()
	for i := range undone {
		e.AppendMetric(&undone[i])
	}
	e.undo(mk)
	want := append([]model.Metric(nil), a...)
	for _, part := range [][]model.Metric{b, undone} { // b takes the numbers given back
		for i := range part {
			e.AppendMetric(&part[i])
			want = append(want, part[i])
		}
	}
	rec, err := e.Finish(nil, 0xfeedface, 9, CompressionNone)
	if err != nil {
		t.Fatal(err)
	}
	var d Decoder
	var got model.Batch
	if _, err := d.Decode(&got, rec); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got.Metrics, cmpopts.EquateEmpty(), cmpopts.EquateNaNs(), ignoreSeries, ignoreRef); diff != "" {
		t.Fatalf("after undo (-want +got):\n%s", diff)
	}
	if !bytes.Equal(rec, encodeSeries(t, want, CompressionNone)) {
		t.Fatal("record after undo differs from one encoded without it")
	}
}

// BenchmarkSeriesAppendShared is BenchmarkSeriesAppend with the points of
// a series sharing its strings (a decoder's series cache, or points
// re-encoded from a series-encoded record).
func BenchmarkSeriesAppendShared(b *testing.B) {
	ms := make([]model.Metric, 13000)
	for i := range ms {
		s := i % 1000
		ms[i] = model.Metric{Name: fmt.Sprintf("app.metric_%d", s%40), Source: "bench-host", Kind: model.Sample,
			Value: float64(i % 997), Timestamp: 1700000000000000000 + int64(i)*5000,
			Tags: model.Tags{{Key: "env", Value: "prod"}, {Key: "region", Value: fmt.Sprintf("eu-west-%d", s%3)},
				{Key: "service", Value: fmt.Sprintf("svc-%d", s%25)}, {Key: "version", Value: fmt.Sprintf("v%d", s%4)}}}
	}
	ms = sharedMetrics(ms)
	e := NewEncoding(SignalMetrics, EncodingSeries)
	b.ReportAllocs()
	for b.Loop() {
		e.Reset()
		for i := range ms {
			e.AppendMetric(&ms[i])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ms)), "ns/point")
}

// TestSeriesMemoKinds: one interned entry can serve series that differ
// only by kind or window (a StatsD name sent as a counter and as a
// gauge); they stay apart.
func TestSeriesMemoKinds(t *testing.T) {
	name, tags := strings.Clone("requests"), model.Tags{{Key: "env", Value: "prod"}}
	ref := uint64(model.NewInternID())<<32 | 1
	var want []model.Metric
	for i := range 60 {
		want = append(want, model.Metric{Name: name, Source: "src", Tags: tags, Ref: ref,
			Kind: model.Kind(i % 3), Window: model.Window(i / 3 % 2), Value: float64(i), Timestamp: int64(i)})
	}
	var d Decoder
	var got model.Batch
	if _, err := d.Decode(&got, encodeSeries(t, want, CompressionNone)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got.Metrics, cmpopts.EquateEmpty(), ignoreSeries, ignoreRef); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if got.SeriesN != 6 {
		t.Fatalf("%d series, want 6", got.SeriesN)
	}
}

// TestSeriesMemoCaches: entries of different caches with the same entry
// numbers are different series, with more caches in one record than it
// tells apart by reference.
func TestSeriesMemoCaches(t *testing.T) {
	var parts [][]model.Metric
	for c := range refCaches + 2 {
		parts = append(parts, sharedMetrics(randomMetrics(uint64(20+c), 3000, 200)))
	}
	var want []model.Metric
	for i := range 3000 { // interleaved, as readers' batches are
		for _, p := range parts {
			want = append(want, p[i])
		}
	}
	rec := encodeSeries(t, want, CompressionNone)
	var d Decoder
	var got model.Batch
	if _, err := d.Decode(&got, rec); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got.Metrics, cmpopts.EquateEmpty(), cmpopts.EquateNaNs(), ignoreSeries, ignoreRef); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	plain := slices.Clone(want)
	for i := range plain {
		plain[i].Ref = 0
	}
	if !bytes.Equal(rec, encodeSeries(t, plain, CompressionNone)) {
		t.Fatal("a record of interned points differs from the same points found by identity")
	}
}
