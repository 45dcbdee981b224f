package wire

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/les-streams/les/internal/model"
)

// extSpans are spans with the optional fields of record version 2, between
// plain ones: the first plain span is appended before the encoder knows it
// needs version 2.
func extSpans() []model.Span {
	return []model.Span{
		{Name: "plain", TraceID: "t0", SpanID: "s0", Start: 1700000000000000000, Duration: 10, Source: "fn-a"},
		{Name: "GET /", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7", ParentID: "53995c3f42cd8ad8",
			Start: 1700000000000000001, Duration: 2500000, Source: "checkout",
			Tags: model.Tags{{Key: "http.method", Value: "GET"}},
			Kind: model.SpanKindServer, StatusCode: model.StatusError, StatusMessage: "boom",
			Events: []model.SpanEvent{{Name: "exception", Timestamp: 1700000000000000002,
				Attrs: model.Tags{{Key: "exception.type", Value: "E"}}}, {Name: "empty", Timestamp: -1}},
			Links: []model.SpanLink{{TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331",
				Attrs: model.Tags{{Key: "k", Value: "v"}}}}},
		{Name: "kind-only", TraceID: "t2", SpanID: "s2", Start: 5, Kind: model.SpanKindClient},
	}
}

func encodeSpans(t testing.TB, spans []model.Span, c Compression) []byte {
	t.Helper()
	e := NewEncoder(SignalSpans)
	e.AppendBatch(&model.Batch{Spans: spans})
	rec, err := e.Finish(nil, 0xfeedface, 5, c)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestSpanExtRoundTrip(t *testing.T) {
	for _, c := range []Compression{CompressionNone, CompressionGzip, CompressionZstd} {
		want := &model.Batch{Spans: extSpans()}
		rec := encodeSpans(t, want.Spans, c)
		if rec[4] != Version2 {
			t.Fatalf("%v: version %d, want %d", c, rec[4], Version2)
		}
		var d Decoder
		var got model.Batch
		if _, err := d.Decode(&got, rec); err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		if diff := cmp.Diff(want, &got, batchOpts); diff != "" {
			t.Fatalf("%v: round trip (-want +got):\n%s", c, diff)
		}
	}
}

// TestSpanRecordsStayVersion1: spans without optional fields are written
// exactly as before (TestGolden pins spans.hex), so version-1 readers keep
// reading them, and the version-1 golden record still decodes.
func TestSpanRecordsStayVersion1(t *testing.T) {
	rec := encodeSpans(t, sampleBatch().Spans, CompressionNone)
	if rec[4] != Version {
		t.Fatalf("plain spans written as version %d", rec[4])
	}
	dump, err := os.ReadFile(filepath.Join("testdata", "spans.hex"))
	if err != nil {
		t.Fatal(err)
	}
	old := undumpHex(t, string(dump))
	var d Decoder
	var got model.Batch
	if _, err := d.Decode(&got, old); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sampleBatch().Spans, got.Spans, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("version-1 golden spans (-want +got):\n%s", diff)
	}
	// Reset forgets version 2.
	e := NewEncoder(SignalSpans)
	e.AppendSpan(&extSpans()[1])
	e.Reset()
	e.AppendSpan(&sampleBatch().Spans[0])
	if e.Version() != Version {
		t.Fatalf("after Reset: version %d", e.Version())
	}
}

func TestSpanExtGolden(t *testing.T) {
	checkGolden(t, "spans-v2.hex", encodeSpans(t, extSpans(), CompressionNone))
}

func TestSpanExtCorrupt(t *testing.T) {
	rec := encodeSpans(t, extSpans(), CompressionNone)
	var d Decoder
	for cut := HeaderSize; cut < len(rec); cut++ {
		bad := append([]byte(nil), rec[:cut]...)
		// Keep body_len consistent so the body itself is short.
		bad[44], bad[45], bad[46], bad[47] = byte(cut-HeaderSize), byte((cut-HeaderSize)>>8), 0, 0
		var b model.Batch
		if _, err := d.Decode(&b, bad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("cut at %d: err %v, want ErrCorrupt", cut, err)
		}
	}
	// A version-1 reader's view: the same body read as version 1 has
	// trailing bytes, so it is rejected rather than misread.
	v1 := append([]byte(nil), rec...)
	v1[4] = Version
	var b model.Batch
	if _, err := d.Decode(&b, v1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("v2 body as v1: err %v", err)
	}
}

// TestSplitUndoAcrossUpgrade: Split undoes an append that overflows a part;
// when that append was the one that switched the part to version 2, the
// undo must restore the version-1 bytes.
func TestSplitUndoAcrossUpgrade(t *testing.T) {
	var b model.Batch
	plain := sampleBatch().Spans[0]
	for range 40 {
		b.Spans = append(b.Spans, plain)
	}
	for range 40 {
		b.Spans = append(b.Spans, extSpans()[1])
	}
	parts := Split(&b, "in", "", 700, 1)
	var total int
	var want []model.Span
	for _, p := range parts {
		rec, err := p.Enc.Finish(nil, 1, 1, CompressionNone)
		if err != nil {
			t.Fatal(err)
		}
		var d Decoder
		var got model.Batch
		if _, err := d.Decode(&got, rec); err != nil {
			t.Fatalf("part: %v", err)
		}
		total += len(got.Spans)
		cloneInPlace(&got)
		want = append(want, got.Spans...)
	}
	if total != len(b.Spans) {
		t.Fatalf("%d spans in parts, want %d", total, len(b.Spans))
	}
	if diff := cmp.Diff(b.Spans, want, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("spans (-in +parts):\n%s", diff)
	}
}

func TestSpanExtDecodeAllocs(t *testing.T) {
	e := NewEncoder(SignalSpans)
	for range 100 {
		e.AppendSpan(&extSpans()[1])
	}
	rec, err := e.Finish(nil, 1, 1, CompressionZstd)
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
		t.Fatalf("decode of a warm version-2 span record allocated %v times", allocs)
	}
}

func FuzzSpanExtRoundTrip(f *testing.F) {
	f.Add("n", "t", "s", "ev", "k", "v", uint8(2), uint8(1), "msg", int64(7), true)
	f.Add("", "", "", "", "", "", uint8(0), uint8(0), "", int64(-1), false)
	f.Fuzz(func(t *testing.T, name, tid, sid, ev, k, v string, kind, code uint8, msg string, ts int64, plainFirst bool) {
		s := model.Span{Name: name, TraceID: tid, SpanID: sid, Start: ts, Duration: ts,
			Kind: model.SpanKind(kind), StatusCode: model.StatusCode(code), StatusMessage: msg,
			Events: []model.SpanEvent{{Name: ev, Timestamp: ts, Attrs: model.Tags{{Key: k, Value: v}}}},
			Links:  []model.SpanLink{{TraceID: tid, SpanID: sid, Attrs: model.Tags{{Key: v, Value: k}}}}}
		want := &model.Batch{Spans: []model.Span{s}}
		if plainFirst {
			want.Spans = append([]model.Span{{Name: name, TraceID: tid}}, want.Spans...)
		}
		for _, c := range []Compression{CompressionNone, CompressionZstd} {
			var d Decoder
			var got model.Batch
			if _, err := d.Decode(&got, encodeSpans(t, want.Spans, c)); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, &got, batchOpts); diff != "" {
				t.Fatalf("round trip (-want +got):\n%s", diff)
			}
		}
	})
}

// undumpHex reverses hex.Dump.
func undumpHex(t *testing.T, dump string) []byte {
	t.Helper()
	var out []byte
	for _, line := range strings.Split(strings.TrimRight(dump, "\n"), "\n") {
		hexPart, _, _ := strings.Cut(line, "|")
		fields := strings.Fields(hexPart)
		for _, f := range fields[min(1, len(fields)):] { // fields[0] is the offset
			b, err := hex.DecodeString(f)
			if err != nil {
				t.Fatalf("hex dump line %q: %v", line, err)
			}
			out = append(out, b...)
		}
	}
	return out
}
