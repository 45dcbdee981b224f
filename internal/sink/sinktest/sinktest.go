// Package sinktest is the conformance suite every sink passes, against a
// real backend (or a faithful local stand-in) wherever one runs in tests.
package sinktest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/sink"
)

// Options describe what the sink under test does by design.
type Options struct {
	// Skips lists the signals the sink drops: "metrics", "distributions",
	// "logs", "spans" (the names used by `signals:` in les.yaml).
	Skips []string
}

// Counts of each signal in the batch that Batch builds.
const (
	NumMetrics       = 3
	NumDistributions = 2
	NumLogs          = 2
	NumSpans         = 2
)

// Run runs the suite. newSink returns a new sink writing to a fresh backend;
// read returns what the backend of the sink most recently returned by
// newSink received, one string per item (without the line terminator). read
// is called only after that sink's Close returned.
func Run(t *testing.T, newSink func(t *testing.T) sink.Sink, read func(t *testing.T) []string, opts Options) {
	want := 0
	for sig, n := range map[string]int{"metrics": NumMetrics, "distributions": NumDistributions,
		"logs": NumLogs, "spans": NumSpans} {
		if !slices.Contains(opts.Skips, sig) {
			want += n
		}
	}
	t.Run("AllSignals", func(t *testing.T) {
		s := newSink(t)
		b, _ := Batch()
		send(t, s, b, "sinktest-1")
		closeSink(t, s)
		lines := read(t)
		if len(lines) != want {
			t.Fatalf("backend received %d items, want %d:\n%s", len(lines), want, strings.Join(lines, "\n"))
		}
		for i, l := range lines {
			if l == "" || strings.ContainsAny(l, "\r\n") {
				t.Errorf("item %d is empty or has a line break: %q", i, l)
			}
		}
	})
	t.Run("EmptyBatch", func(t *testing.T) {
		s := newSink(t)
		send(t, s, &model.Batch{}, "sinktest-empty")
		closeSink(t, s)
		if lines := read(t); len(lines) != 0 {
			t.Fatalf("backend received %d items for an empty batch: %q", len(lines), lines)
		}
	})
	t.Run("DoesNotKeepBatch", func(t *testing.T) {
		s := newSink(t)
		b, text := Batch()
		send(t, s, b, "sinktest-1")
		Scribble(b, text)
		b2, _ := Batch()
		send(t, s, b2, "sinktest-2")
		Scribble(b2, nil)
		closeSink(t, s)
		lines := read(t)
		if len(lines) != 2*want {
			t.Fatalf("backend received %d items, want %d", len(lines), 2*want)
		}
		first, second := lines[:want], lines[want:]
		for i := range first {
			if second[i] = strings.ReplaceAll(second[i], "sinktest-2", "sinktest-1"); first[i] != second[i] {
				t.Errorf("item %d changed after the batch was modified post-Send:\n got  %s\n want %s", i, first[i], second[i])
			}
		}
	})
	t.Run("Close", func(t *testing.T) {
		s := newSink(t)
		b, _ := Batch()
		send(t, s, b, "sinktest-1")
		closeSink(t, s)
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if err := s.Send(context.Background(), b, sink.Meta{RecordID: "sinktest-2", Pos: "2"}); err == nil {
			t.Errorf("Send after Close succeeded")
		}
		if lines := read(t); len(lines) != want {
			t.Errorf("backend received %d items, want %d", len(lines), want)
		}
	})
}

func send(t *testing.T, s sink.Sink, b *model.Batch, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Send(ctx, b, sink.Meta{RecordID: id, Pos: "1"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

func closeSink(t *testing.T, s sink.Sink) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// Batch returns a batch with items of every signal whose strings and log
// messages alias the returned text buffer and whose tags and centroids live
// in the batch's arenas, as a decoder would produce them.
func Batch() (*model.Batch, []byte) {
	var text []byte
	type span struct{ off, n int }
	var spans []span
	add := func(s string) int {
		spans = append(spans, span{len(text), len(s)})
		text = append(text, s...)
		return len(spans) - 1
	}
	// Build the text first, then alias it once it no longer grows.
	ids := map[string]int{}
	words := []string{"les.test.requests", "les.test.latency", "les.test.cold_start", "host-1", "fn-checkout",
		"env", "prod", "region", "eu-west-1", "req-0001", "INFO", "ERROR", "order 42 processed", "timeout calling db",
		"GET /orders", "db.query", "trace-abc", "span-1", "span-2", "http.status", "200"}
	for _, w := range words {
		ids[w] = add(w)
	}
	str := func(w string) string {
		sp := spans[ids[w]]
		return unsafe.String(&text[sp.off], sp.n)
	}
	byt := func(w string) []byte {
		sp := spans[ids[w]]
		return text[sp.off : sp.off+sp.n : sp.off+sp.n]
	}
	ts := time.Date(2026, 11, 22, 3, 4, 5, 0, time.UTC).UnixNano()
	b := &model.Batch{}
	tags := func() model.Tags {
		m := b.TagMark()
		b.AddTag(str("env"), str("prod"))
		b.AddTag(str("region"), str("eu-west-1"))
		return b.TagsSince(m)
	}
	for i, n := range []string{"les.test.requests", "les.test.latency", "les.test.cold_start"} {
		b.Metrics = append(b.Metrics, model.Metric{Name: str(n), Value: float64(i) + 0.5, Timestamp: ts,
			Source: str("host-1"), Tags: tags(), Kind: model.Kind(i)})
	}
	for i := range NumDistributions {
		c := len(b.CentroidArena)
		b.CentroidArena = append(b.CentroidArena, model.Centroid{Value: 1, Count: 2}, model.Centroid{Value: 10 + float64(i), Count: 3})
		b.Dists = append(b.Dists, model.Distribution{Name: str("les.test.latency"), Timestamp: ts, Window: model.WindowMinute,
			Source: str("fn-checkout"), Tags: tags(), Count: 5, Sum: 2 + 3*(10+float64(i)), Min: 1, Max: 10 + float64(i),
			Centroids: b.CentroidArena[c:len(b.CentroidArena):len(b.CentroidArena)],
			Quantiles: []model.Quantile{{Q: 0.5, Value: 10}, {Q: 0.99, Value: 10 + float64(i)}}})
	}
	b.Logs = append(b.Logs,
		model.Log{Timestamp: ts, Source: str("fn-checkout"), RequestID: str("req-0001"), Level: str("INFO"),
			Message: byt("order 42 processed"), Attrs: tags()},
		model.Log{Timestamp: ts + 1, Source: str("fn-checkout"), RequestID: str("req-0001"), Level: str("ERROR"),
			Message: byt("timeout calling db"), Attrs: tags()})
	m := b.TagMark()
	b.AddTag(str("http.status"), str("200"))
	b.Spans = append(b.Spans,
		model.Span{Name: str("GET /orders"), TraceID: str("trace-abc"), SpanID: str("span-1"), Start: ts, Duration: 45e6,
			Source: str("fn-checkout"), Tags: b.TagsSince(m)},
		model.Span{Name: str("db.query"), TraceID: str("trace-abc"), SpanID: str("span-2"), ParentID: str("span-1"),
			Start: ts + 5e6, Duration: 30e6, Source: str("fn-checkout"), Tags: tags()})
	if b.Len() != NumMetrics+NumDistributions+NumLogs+NumSpans {
		panic(fmt.Sprintf("sinktest: batch has %d items", b.Len()))
	}
	return b, text
}

// Scribble overwrites everything b and text hold, as a caller reusing them
// for the next batch would: text bytes, tag and centroid arenas, item
// fields. A sink that kept any of it would then deliver garbage.
func Scribble(b *model.Batch, text []byte) {
	for i := range text {
		text[i] = 'X'
	}
	for i := range b.Arena {
		b.Arena[i] = model.Tag{Key: "scribbled", Value: "scribbled"}
	}
	for i := range b.CentroidArena {
		b.CentroidArena[i] = model.Centroid{Value: -1, Count: 99}
	}
	for i := range b.Metrics {
		b.Metrics[i].Value, b.Metrics[i].Name = -1, "scribbled"
	}
	for i := range b.Dists {
		b.Dists[i].Count, b.Dists[i].Quantiles[0].Value = -1, -1
	}
	for i := range b.Spans {
		b.Spans[i].Duration = -1
	}
	b.Reset()
}
