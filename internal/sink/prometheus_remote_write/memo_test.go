package promrw

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/wire"
)

// rawPoints is what a sink of raw metrics gets from the agent: many
// points per series (gauges, counters, samples), and series dropped by
// design (no name, a label value too long).
func rawPoints() []model.Metric {
	var ms []model.Metric
	kinds := []model.Kind{model.Gauge, model.Counter, model.Sample, model.GaugeDelta}
	for p := range 20 {
		for s := range 200 {
			m := model.Metric{Name: fmt.Sprint("app.metric_", s%13), Source: fmt.Sprint("fn-", s%7),
				Kind: kinds[s%len(kinds)], Value: float64(p*s%97) + 0.5, Timestamp: t0.UnixNano() + int64(p)*1e9 + int64(s),
				Tags: model.Tags{{Key: "env", Value: "prod"}, {Key: "series", Value: fmt.Sprint(s)}}}
			switch s {
			case 5:
				m.Name = ""
			case 6:
				m.Tags = model.Tags{{Key: "long", Value: strings.Repeat("x", 3000)}}
			}
			ms = append(ms, m)
		}
	}
	return ms
}

// TestSeriesMemoSameRequests: a batch decoded from the series encoding
// (points of a series share its memory, so labels come from the memo) is
// written exactly as the same points decoded from the les encoding (no
// sharing, so every point's labels are built), drops included.
func TestSeriesMemoSameRequests(t *testing.T) {
	ms := rawPoints()
	type result struct {
		raw   [][]byte
		drops map[string]int
	}
	run := func(enc wire.Encoding) result {
		e := wire.NewEncoding(wire.SignalMetrics, enc)
		for i := range ms {
			e.AppendMetric(&ms[i])
		}
		rec, err := e.Finish(nil, 1, 1, wire.CompressionNone)
		if err != nil {
			t.Fatal(err)
		}
		var d wire.Decoder
		var b model.Batch
		if _, err := d.Decode(&b, rec); err != nil {
			t.Fatal(err)
		}
		pe := testEncoder(Config{URL: "http://x", MaxLabelValueLength: 2048})
		var r result
		for round := range 2 { // counters carry over between batches
			pe.counters.begin()
			pe.encode(&b)
			pe.counters.commit()
			for _, q := range pe.requests() {
				r.raw = append(r.raw, append([]byte(nil), q.raw...))
			}
			if round == 0 {
				r.drops = map[string]int{}
				for k, v := range pe.drops {
					r.drops[k] = v
				}
			}
		}
		return r
	}
	les, series := run(wire.EncodingLES), run(wire.EncodingSeries)
	if les.drops[reasonEmptyName] != 20 || les.drops[reasonValueTooLong] != 20 || les.drops[reasonGaugeDelta] == 0 {
		t.Fatalf("drops of the reference %v", les.drops)
	}
	if diff := cmp.Diff(les, series, cmp.AllowUnexported(result{})); diff != "" {
		t.Fatalf("series-encoded batch written differently (-les +series):\n%s", diff)
	}
}

// TestSeriesMemoForgetsBetweenBatches: the next batch may hold other
// series in the same memory (the wire decoder reuses its buffer), so no
// labels are carried over from one encode to the next.
func TestSeriesMemoForgetsBetweenBatches(t *testing.T) {
	e := testEncoder(Config{URL: "http://x"})
	buf := []byte("aaaa")
	b := &model.Batch{Metrics: []model.Metric{{Name: unsafe.String(&buf[0], len(buf)), Value: 1, Timestamp: t0.UnixNano(), Kind: model.Gauge}}}
	var names []string
	for _, n := range []string{"aaaa", "bbbb"} {
		copy(buf, n)
		e.counters.begin()
		e.encode(b)
		e.counters.commit()
		for _, s := range decodeAll(t, e) {
			for _, l := range s.Labels {
				if l[0] == "__name__" {
					names = append(names, l[1])
				}
			}
		}
	}
	if !slices.Equal(names, []string{"aaaa", "bbbb"}) {
		t.Fatalf("names written %v, want [aaaa bbbb]", names)
	}
}

// BenchmarkEncodeRawPoints: the sink's encode of raw points (200 series ×
// 20 points) as decoded from each wire encoding.
func BenchmarkEncodeRawPoints(b *testing.B) {
	ms := rawPoints()
	for _, enc := range []wire.Encoding{wire.EncodingLES, wire.EncodingSeries} {
		b.Run(enc.String(), func(b *testing.B) {
			e := wire.NewEncoding(wire.SignalMetrics, enc)
			for i := range ms {
				e.AppendMetric(&ms[i])
			}
			rec, err := e.Finish(nil, 1, 1, wire.CompressionNone)
			if err != nil {
				b.Fatal(err)
			}
			var d wire.Decoder
			var batch model.Batch
			if _, err := d.Decode(&batch, rec); err != nil {
				b.Fatal(err)
			}
			pe := testEncoder(Config{URL: "http://x"})
			b.ReportAllocs()
			for b.Loop() {
				pe.counters.begin()
				pe.encode(&batch)
				pe.counters.commit()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ms)), "ns/point")
		})
	}
}
