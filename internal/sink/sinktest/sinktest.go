// Package sinktest is the conformance suite every sink passes, against a
// real backend (or a faithful local stand-in) wherever one runs in tests.
//
// The suite sends batches whose contents are written out here, item by
// item, and compares what the backend returns — read back by the sink's
// test and turned into Items — with the values written here (Want), not
// with anything the sink computed.
package sinktest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/sink"
)

// Options describe what the sink under test does by design.
type Options struct {
	// Skips lists the signals the sink does not take: "metrics",
	// "distributions", "logs", "spans" (the names used by `signals:`).
	Skips []string
	// Ignore lists Item fields the backend does not keep (e.g. "Kind",
	// "Min", "Quantiles", "RequestID"); they are cleared on both sides
	// before comparing.
	Ignore []string
	// Name maps an item's name to the one the backend stores (e.g.
	// les.test.requests → les_test_requests); nil keeps names.
	Name func(signal, name string) string
	// CumulativeCounters: the backend stores counters as running totals
	// per series (Prometheus), so a counter's expected value is the sum of
	// its deltas over every batch this sink instance was sent.
	CumulativeCounters bool
	// Time is the timestamp of the first batch's items (default: the
	// current hour minus 2h, which every backend accepts as recent). The
	// items of batch n are n*10 minutes later.
	Time time.Time
}

// Counts of each signal in every batch that BatchAt builds.
const (
	NumMetrics       = 3
	NumDistributions = 2
	NumLogs          = 2
	NumSpans         = 2
)

// Item is the canonical form of one delivered item. Zero fields are left
// out of String, so a backend that keeps no such field compares equal once
// the field is in Options.Ignore.
type Item struct {
	Signal string // metrics, distributions, logs, spans
	Name   string // metric, distribution or span name; "" for logs
	Source string
	Tags   map[string]string // tags, or a log's attributes
	Time   time.Time         // point, window start, log or span start time
	Kind   string            // metrics: gauge, counter, sample

	Value float64 // metrics

	Count, Sum, Min, Max float64             // distributions
	Quantiles            map[float64]float64 // distributions: q → value

	Level, RequestID, Message string // logs

	TraceID, SpanID, ParentID string // spans
	Duration                  time.Duration
}

// String is a deterministic one-line rendering (used to compare and to
// show differences).
func (it Item) String() string {
	var b strings.Builder
	b.WriteString(it.Signal)
	add := func(k, v string) {
		if v != "" {
			b.WriteString(" " + k + "=" + strconv.Quote(v))
		}
	}
	num := func(k string, v float64) {
		if v != 0 {
			b.WriteString(" " + k + "=" + strconv.FormatFloat(v, 'g', 12, 64))
		}
	}
	add("name", it.Name)
	add("source", it.Source)
	for _, k := range slices.Sorted(maps.Keys(it.Tags)) {
		add("tag."+k, it.Tags[k])
	}
	if !it.Time.IsZero() {
		add("time", it.Time.UTC().Format(time.RFC3339Nano))
	}
	add("kind", it.Kind)
	num("value", it.Value)
	num("count", it.Count)
	num("sum", it.Sum)
	num("min", it.Min)
	num("max", it.Max)
	for _, q := range slices.Sorted(maps.Keys(it.Quantiles)) {
		num("q"+strconv.FormatFloat(q, 'g', -1, 64), it.Quantiles[q])
	}
	add("level", it.Level)
	add("request_id", it.RequestID)
	add("message", it.Message)
	add("trace_id", it.TraceID)
	add("span_id", it.SpanID)
	add("parent_id", it.ParentID)
	if it.Duration != 0 {
		add("duration", it.Duration.String())
	}
	return b.String()
}

func (o Options) base() time.Time {
	if !o.Time.IsZero() {
		return o.Time
	}
	return time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
}

// Run runs the suite. newSink returns a new sink writing to a fresh
// backend; read returns every item the backend of the sink most recently
// returned by newSink holds. read is called only after that sink's Close
// returned.
func Run(t *testing.T, newSink func(t *testing.T) sink.Sink, read func(t *testing.T) []Item, opts Options) {
	base := opts.base()
	t.Run("AllSignals", func(t *testing.T) {
		s := newSink(t)
		b, _ := BatchAt(base, 0)
		send(t, s, b, "sinktest-0")
		closeSink(t, s)
		Compare(t, read(t), Want(base, opts, 0), opts)
	})
	t.Run("EmptyBatch", func(t *testing.T) {
		s := newSink(t)
		send(t, s, &model.Batch{}, "sinktest-empty")
		closeSink(t, s)
		if items := read(t); len(items) != 0 {
			t.Fatalf("backend holds %d items after an empty batch: %v", len(items), items)
		}
	})
	t.Run("DoesNotKeepBatch", func(t *testing.T) {
		s := newSink(t)
		b, text := BatchAt(base, 0)
		send(t, s, b, "sinktest-0")
		Scribble(b, text)
		b2, text2 := BatchAt(base, 1)
		send(t, s, b2, "sinktest-1")
		Scribble(b2, text2)
		closeSink(t, s)
		Compare(t, read(t), Want(base, opts, 0, 1), opts)
	})
	t.Run("Close", func(t *testing.T) {
		s := newSink(t)
		b, _ := BatchAt(base, 0)
		send(t, s, b, "sinktest-0")
		closeSink(t, s)
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		b2, _ := BatchAt(base, 1)
		if err := s.Send(context.Background(), b2, sink.Meta{RecordID: "sinktest-1", Pos: "2"}); err == nil {
			t.Errorf("Send after Close succeeded")
		}
		Compare(t, read(t), Want(base, opts, 0), opts)
	})
}

// Compare fails t unless got and want hold the same items (in any order),
// after clearing the fields in opts.Ignore.
func Compare(t testing.TB, got, want []Item, opts Options) {
	t.Helper()
	render := func(items []Item) []string {
		out := make([]string, len(items))
		for i, it := range items {
			out[i] = clear(it, opts.Ignore).String()
		}
		sort.Strings(out)
		return out
	}
	g, w := render(got), render(want)
	if slices.Equal(g, w) {
		return
	}
	var missing, extra []string
	for _, s := range w {
		if i := slices.Index(g, s); i >= 0 {
			g = slices.Delete(g, i, i+1)
		} else {
			missing = append(missing, s)
		}
	}
	extra = g
	t.Errorf("backend holds %d items, want %d\nmissing:\n  %s\nunexpected:\n  %s", len(got), len(want),
		strings.Join(missing, "\n  "), strings.Join(extra, "\n  "))
}

func clear(it Item, fields []string) Item {
	for _, f := range fields {
		switch f {
		case "Source":
			it.Source = ""
		case "Tags":
			it.Tags = nil
		case "Time":
			it.Time = time.Time{}
		case "Kind":
			it.Kind = ""
		case "Min":
			it.Min = 0
		case "Max":
			it.Max = 0
		case "Sum":
			it.Sum = 0
		case "Quantiles":
			it.Quantiles = nil
		case "Level":
			it.Level = ""
		case "RequestID":
			it.RequestID = ""
		case "TraceID":
			it.TraceID = ""
		case "SpanID":
			it.SpanID = ""
		case "ParentID":
			it.ParentID = ""
		case "Duration":
			it.Duration = 0
		default:
			panic("sinktest: unknown field in Ignore: " + f)
		}
	}
	return it
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

// Want returns the items of the batches numbered ns (as BatchAt builds
// them), written out independently of BatchAt, with signals in opts.Skips
// left out and names mapped by opts.Name.
func Want(base time.Time, opts Options, ns ...int) []Item {
	name := func(sig, n string) string {
		if opts.Name != nil {
			return opts.Name(sig, n)
		}
		return n
	}
	tags := map[string]string{"env": "prod", "region": "eu-west-1"}
	var out []Item
	counter := 0.0
	for _, n := range ns {
		ts := base.Add(time.Duration(n) * 10 * time.Minute)
		counter += 1.5
		cv := 1.5
		if opts.CumulativeCounters {
			cv = counter
		}
		if !slices.Contains(opts.Skips, "metrics") {
			out = append(out,
				Item{Signal: "metrics", Name: name("metrics", "les.test.requests"), Source: "host-1", Tags: tags, Time: ts, Kind: "gauge", Value: 0.5},
				Item{Signal: "metrics", Name: name("metrics", "les.test.latency"), Source: "host-1", Tags: tags, Time: ts, Kind: "counter", Value: cv},
				Item{Signal: "metrics", Name: name("metrics", "les.test.cold_start"), Source: "host-1", Tags: tags, Time: ts, Kind: "sample", Value: 2.5})
		}
		if !slices.Contains(opts.Skips, "distributions") {
			out = append(out,
				Item{Signal: "distributions", Name: name("distributions", "les.test.latency"), Source: "fn-checkout", Tags: tags, Time: ts,
					Count: 5, Sum: 32, Min: 1, Max: 10, Quantiles: map[float64]float64{0.5: 10, 0.99: 10}},
				Item{Signal: "distributions", Name: name("distributions", "les.test.latency"), Source: "fn-checkout", Tags: tags, Time: ts.Add(time.Minute),
					Count: 5, Sum: 35, Min: 1, Max: 11, Quantiles: map[float64]float64{0.5: 10, 0.99: 11}})
		}
		if !slices.Contains(opts.Skips, "logs") {
			out = append(out,
				Item{Signal: "logs", Source: "fn-checkout", Tags: tags, Time: ts, Level: "INFO", RequestID: "req-0001", Message: "order 42 processed"},
				Item{Signal: "logs", Source: "fn-checkout", Tags: tags, Time: ts.Add(time.Millisecond), Level: "ERROR", RequestID: "req-0001", Message: "timeout calling db"})
		}
		if !slices.Contains(opts.Skips, "spans") {
			out = append(out,
				Item{Signal: "spans", Name: name("spans", "GET /orders"), Source: "fn-checkout", Tags: map[string]string{"http.status": "200"}, Time: ts,
					TraceID: "trace-abc", SpanID: "span-1", Duration: 45 * time.Millisecond},
				Item{Signal: "spans", Name: name("spans", "db.query"), Source: "fn-checkout", Tags: tags, Time: ts.Add(5 * time.Millisecond),
					TraceID: "trace-abc", SpanID: "span-2", ParentID: "span-1", Duration: 30 * time.Millisecond})
		}
	}
	return out
}

// Batch returns BatchAt(a fixed time, 0), for tests that need a realistic
// batch but no backend round trip.
func Batch() (*model.Batch, []byte) {
	return BatchAt(time.Date(2026, 11, 22, 3, 4, 5, 0, time.UTC), 0)
}

// BatchAt returns batch number n of the suite: items of every signal
// whose times are base + n*10min (+ small offsets), whose strings and log
// messages alias the returned text buffer and whose tags and centroids
// live in the batch's arenas, as a decoder would produce them.
func BatchAt(base time.Time, n int) (*model.Batch, []byte) {
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
	ts := base.Add(time.Duration(n) * 10 * time.Minute).UnixNano()
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
		b.Dists = append(b.Dists, model.Distribution{Name: str("les.test.latency"), Timestamp: ts + int64(i)*60e9, Window: model.WindowMinute,
			Source: str("fn-checkout"), Tags: tags(), Count: 5, Sum: 2 + 3*(10+float64(i)), Min: 1, Max: 10 + float64(i),
			Centroids: b.CentroidArena[c:len(b.CentroidArena):len(b.CentroidArena)],
			Quantiles: []model.Quantile{{Q: 0.5, Value: 10}, {Q: 0.99, Value: 10 + float64(i)}}})
	}
	b.Logs = append(b.Logs,
		model.Log{Timestamp: ts, Source: str("fn-checkout"), RequestID: str("req-0001"), Level: str("INFO"),
			Message: byt("order 42 processed"), Attrs: tags()},
		model.Log{Timestamp: ts + 1e6, Source: str("fn-checkout"), RequestID: str("req-0001"), Level: str("ERROR"),
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

// FromBatch turns decoded items into Items, for sinks whose backend's
// output a les decoder reads back (the Wavefront line format). The
// metric kind is not carried by such formats and is left empty.
func FromBatch(b *model.Batch) []Item {
	tagMap := func(ts model.Tags) map[string]string {
		if len(ts) == 0 {
			return nil
		}
		m := map[string]string{}
		for _, t := range ts {
			m[t.Key] = t.Value
		}
		return m
	}
	var out []Item
	for _, m := range b.Metrics {
		out = append(out, Item{Signal: "metrics", Name: m.Name, Source: m.Source, Tags: tagMap(m.Tags), Time: time.Unix(0, m.Timestamp), Value: m.Value})
	}
	for _, d := range b.Dists {
		q := map[float64]float64{}
		for _, x := range d.Quantiles {
			q[x.Q] = x.Value
		}
		out = append(out, Item{Signal: "distributions", Name: d.Name, Source: d.Source, Tags: tagMap(d.Tags), Time: time.Unix(0, d.Timestamp),
			Count: d.Count, Sum: d.Sum, Min: d.Min, Max: d.Max, Quantiles: q})
	}
	for _, l := range b.Logs {
		out = append(out, Item{Signal: "logs", Source: l.Source, Tags: tagMap(l.Attrs), Time: time.Unix(0, l.Timestamp),
			Level: l.Level, RequestID: l.RequestID, Message: string(l.Message)})
	}
	for _, s := range b.Spans {
		out = append(out, Item{Signal: "spans", Name: s.Name, Source: s.Source, Tags: tagMap(s.Tags), Time: time.Unix(0, s.Start),
			TraceID: s.TraceID, SpanID: s.SpanID, ParentID: s.ParentID, Duration: time.Duration(s.Duration)})
	}
	return out
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
