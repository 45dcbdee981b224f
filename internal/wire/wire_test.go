package wire

import (
	"encoding/hex"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/les-streams/les/internal/model"
)

var update = flag.Bool("update", false, "rewrite golden files")

func sampleBatch() *model.Batch {
	return &model.Batch{
		Metrics: []model.Metric{
			{Name: "lambda.duration", Value: 42.5, Timestamp: 1700000000123456789, Source: "fn-a",
				Tags: model.Tags{{Key: "env", Value: "prod"}, {Key: "region", Value: "eu-west-1"}}, Kind: model.Gauge},
			{Name: "req", Value: -1, Timestamp: 1, Source: "", Kind: model.Sample, Window: model.WindowMinute},
		},
		Dists: []model.Distribution{{
			Name: "lat", Timestamp: 1700000040000000000, Window: model.WindowMinute, Source: "fn-b",
			Tags: model.Tags{{Key: "k", Value: "v"}}, Count: 3, Sum: 6, Min: 1, Max: 3,
			Centroids:  []model.Centroid{{Value: 1, Count: 1}, {Value: 2.5, Count: 2}},
			Quantiles:  []model.Quantile{{Q: 0.5, Value: 2.5}},
			Correction: 1,
		}},
		Logs: []model.Log{{Timestamp: 1700000000000000000, Source: "fn-a", RequestID: "8f5c", Level: "INFO",
			Message: []byte("hello\tworld ünïcode"), Attrs: model.Tags{{Key: "a", Value: "b"}}}},
		Spans: []model.Span{{Name: "get", TraceID: "t1", SpanID: "s1", ParentID: "p0", Start: 1700000000000000000,
			Duration: 1500000, Source: "fn-a", Tags: model.Tags{{Key: "http.status", Value: "200"}}}},
	}
}

func encodeAll(t testing.TB, b *model.Batch, c Compression) map[Signal][]byte {
	out := map[Signal][]byte{}
	for i, sig := range Signals {
		e := NewEncoder(sig)
		e.AppendBatch(b)
		rec, err := e.Finish(nil, 0xfeedface, uint64(i+1), c)
		if err != nil {
			t.Fatal(err)
		}
		out[sig] = rec
	}
	return out
}

var batchOpts = cmp.Options{
	cmpopts.IgnoreFields(model.Batch{}, "Arena", "CentroidArena", "EventArena", "LinkArena"),
	cmpopts.EquateEmpty(),
}

func decodeAll(t testing.TB, recs map[Signal][]byte) *model.Batch {
	var d Decoder
	var got model.Batch
	for _, sig := range Signals {
		h, err := d.Decode(&got, recs[sig])
		if err != nil {
			t.Fatalf("%v: %v", sig, err)
		}
		if h.Signal != sig {
			t.Fatalf("signal %v, want %v", h.Signal, sig)
		}
		// Clone out of the decoder's buffer before the next call reuses it.
		cloneInPlace(&got)
	}
	return &got
}

// cloneInPlace copies every string so the batch survives decoder reuse.
func cloneInPlace(b *model.Batch) {
	for i := range b.Metrics {
		m := &b.Metrics[i]
		m.Name, m.Source, m.Tags = strings.Clone(m.Name), strings.Clone(m.Source), m.Tags.Clone()
	}
	for i := range b.Dists {
		d := &b.Dists[i]
		d.Name, d.Source, d.Tags = strings.Clone(d.Name), strings.Clone(d.Source), d.Tags.Clone()
		d.Centroids = append([]model.Centroid(nil), d.Centroids...)
	}
	for i := range b.Logs {
		l := &b.Logs[i]
		l.Source, l.RequestID, l.Level = strings.Clone(l.Source), strings.Clone(l.RequestID), strings.Clone(l.Level)
		l.Message, l.Attrs = append([]byte(nil), l.Message...), l.Attrs.Clone()
	}
	for i := range b.Spans {
		s := &b.Spans[i]
		s.Name, s.TraceID, s.SpanID, s.ParentID, s.Source = strings.Clone(s.Name), strings.Clone(s.TraceID),
			strings.Clone(s.SpanID), strings.Clone(s.ParentID), strings.Clone(s.Source)
		s.Tags = s.Tags.Clone()
		s.StatusMessage = strings.Clone(s.StatusMessage)
		if s.Events != nil {
			evs := make([]model.SpanEvent, len(s.Events))
			for j, ev := range s.Events {
				evs[j] = model.SpanEvent{Name: strings.Clone(ev.Name), Timestamp: ev.Timestamp, Attrs: ev.Attrs.Clone()}
			}
			s.Events = evs
		}
		if s.Links != nil {
			ls := make([]model.SpanLink, len(s.Links))
			for j, l := range s.Links {
				ls[j] = model.SpanLink{TraceID: strings.Clone(l.TraceID), SpanID: strings.Clone(l.SpanID), Attrs: l.Attrs.Clone()}
			}
			s.Links = ls
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, c := range []Compression{CompressionNone, CompressionGzip, CompressionZstd, CompressionS2} {
		t.Run(c.String(), func(t *testing.T) {
			want := sampleBatch()
			got := decodeAll(t, encodeAll(t, want, c))
			if diff := cmp.Diff(want, got, batchOpts); diff != "" {
				t.Fatalf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHeader(t *testing.T) {
	recs := encodeAll(t, sampleBatch(), CompressionNone)
	h, err := ParseHeader(recs[SignalMetrics])
	if err != nil {
		t.Fatal(err)
	}
	want := Header{Version: 1, Signal: SignalMetrics, Encoding: EncodingLES, Compression: CompressionNone,
		Producer: 0xfeedface, Seq: 1, Count: 2, MinTime: 1, MaxTime: 1700000000123456789,
		BodyLen: uint32(len(recs[SignalMetrics]) - HeaderSize)}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Fatalf("header (-want +got):\n%s", diff)
	}
	if h.ID() != "feedface-1" {
		t.Fatalf("id %q", h.ID())
	}
}

// TestGolden pins the exact bytes of uncompressed records: a change to the
// format must be deliberate (and documented in docs/wire-format.md).
func TestGolden(t *testing.T) {
	recs := encodeAll(t, sampleBatch(), CompressionNone)
	for _, sig := range Signals {
		checkGolden(t, sig.String()+".hex", recs[sig])
	}
}

// checkGolden compares the hex dump of rec with testdata/name, or writes
// it there with -update.
func checkGolden(t *testing.T, name string, rec []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	got := hex.Dump(rec)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s golden bytes (-want +got):\n%s", name, diff)
	}
}

func TestCorrupt(t *testing.T) {
	rec := encodeAll(t, sampleBatch(), CompressionNone)[SignalMetrics]
	var d Decoder
	var b model.Batch
	cases := map[string]struct {
		rec  []byte
		want error
	}{
		"empty":     {nil, ErrShort},
		"magic":     {append([]byte("XXXX"), rec[4:]...), ErrMagic},
		"truncated": {rec[:len(rec)-3], ErrCorrupt},
		"version":   {append(append([]byte{}, rec[:4]...), append([]byte{9}, rec[5:]...)...), ErrVersion},
	}
	for name, c := range cases {
		if _, err := d.Decode(&b, c.rec); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", name, err, c.want)
		}
	}
	// A body whose count promises more items than it holds.
	bad := append([]byte{}, rec...)
	bad[24] = 200
	if _, err := d.Decode(&b, bad); !errors.Is(err, ErrCorrupt) {
		t.Errorf("overcount: err %v", err)
	}
}

func TestDecodeAllocs(t *testing.T) {
	e := NewEncoder(SignalMetrics)
	for i := 0; i < 1000; i++ {
		e.AppendMetric(&model.Metric{Name: "aws.lambda.duration", Value: float64(i), Timestamp: int64(i),
			Source: "fn", Tags: model.Tags{{Key: "env", Value: "prod"}, {Key: "region", Value: "eu"}}})
	}
	for _, c := range []Compression{CompressionZstd, CompressionS2} {
		rec, err := e.Finish(nil, 1, 1, c)
		if err != nil {
			t.Fatal(err)
		}
		var d Decoder
		var b model.Batch
		allocs := testing.AllocsPerRun(20, func() {
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

func FuzzRoundTrip(f *testing.F) {
	f.Add("name", "src", "k", "v", 1.5, int64(1700000000000000000), []byte("msg"))
	f.Add("", "", "", "", math.Inf(1), int64(-1), []byte{0xff})
	f.Fuzz(func(t *testing.T, name, src, k, v string, val float64, ts int64, msg []byte) {
		want := &model.Batch{
			Metrics: []model.Metric{{Name: name, Source: src, Value: val, Timestamp: ts, Tags: model.Tags{{Key: k, Value: v}}}},
			Dists: []model.Distribution{{Name: name, Source: src, Timestamp: ts, Count: val, Sum: val,
				Centroids: []model.Centroid{{Value: val, Count: 1}}, Tags: model.Tags{{Key: k, Value: v}}}},
			Logs:  []model.Log{{Timestamp: ts, Source: src, RequestID: k, Level: v, Message: msg}},
			Spans: []model.Span{{Name: name, TraceID: k, SpanID: v, Source: src, Start: ts, Duration: ts}},
		}
		for _, c := range []Compression{CompressionNone, CompressionZstd, CompressionS2} {
			got := decodeAll(t, encodeAll(t, want, c))
			if diff := cmp.Diff(want, got, batchOpts, cmpopts.EquateNaNs()); diff != "" {
				t.Fatalf("round trip (-want +got):\n%s", diff)
			}
		}
	})
}

func FuzzDecode(f *testing.F) {
	for _, c := range []Compression{CompressionNone, CompressionS2} {
		for _, rec := range encodeAll(f, sampleBatch(), c) {
			f.Add(rec)
		}
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		var d Decoder
		var b model.Batch
		_, _ = d.Decode(&b, rec) // must not panic or hang
	})
}

func BenchmarkEncode(b *testing.B) {
	m := model.Metric{Name: "aws.lambda.duration", Value: 12.5, Timestamp: 1700000000000000000,
		Source: "fn-a", Tags: model.Tags{{Key: "env", Value: "prod"}, {Key: "region", Value: "eu"}, {Key: "v", Value: "42"}}}
	for _, c := range []Compression{CompressionNone, CompressionZstd, CompressionGzip} {
		b.Run(c.String(), func(b *testing.B) {
			e := NewEncoder(SignalMetrics)
			var out []byte
			b.ReportAllocs()
			for b.Loop() {
				e.Reset()
				for range 1000 {
					e.AppendMetric(&m)
				}
				var err error
				out, err = e.Finish(out[:0], 1, 1, c)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(e.Size()))
			b.ReportMetric(float64(1000*b.N)/b.Elapsed().Seconds(), "items/s")
			b.ReportMetric(float64(len(out))/1000, "stored-bytes/item")
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	m := model.Metric{Name: "aws.lambda.duration", Value: 12.5, Timestamp: 1700000000000000000,
		Source: "fn-a", Tags: model.Tags{{Key: "env", Value: "prod"}, {Key: "region", Value: "eu"}, {Key: "v", Value: "42"}}}
	for _, c := range []Compression{CompressionNone, CompressionZstd} {
		b.Run(c.String(), func(b *testing.B) {
			e := NewEncoder(SignalMetrics)
			for range 1000 {
				e.AppendMetric(&m)
			}
			rec, _ := e.Finish(nil, 1, 1, c)
			var d Decoder
			var batch model.Batch
			b.ReportAllocs()
			b.SetBytes(int64(e.Size()))
			for b.Loop() {
				batch.Reset()
				if _, err := d.Decode(&batch, rec); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(1000*b.N)/b.Elapsed().Seconds(), "items/s")
		})
	}
}
