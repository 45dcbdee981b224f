package wire_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/natsjs"
	"github.com/les-streams/les/internal/wire"
)

// exampleDir is the Node.js consumer documented in docs/wire-format.md.
var exampleDir = filepath.Join("..", "..", "examples", "node-consumer")

// TestNodeConsumerExample publishes records of every signal to a real
// (embedded) JetStream and checks that examples/node-consumer/consume.js
// prints exactly the items that were encoded.
func TestNodeConsumerExample(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH; install Node.js >= 20 to run the example consumer test")
	}
	if _, err := os.Stat(filepath.Join(exampleDir, "node_modules", "nats")); err != nil {
		t.Skip("examples/node-consumer/node_modules is missing: run `npm ci` in examples/node-consumer first (CI does)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := natsjs.Open(ctx, natsjs.Config{Listen: "127.0.0.1:-1"}, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	b := exampleBatch()
	zstdOK := nodeHasZstd(t, node)
	var recs []stream.Record
	var want []any
	seq := uint64(0)
	add := func(origin string, sig wire.Signal, c wire.Compression, decodable bool) {
		seq++
		e := wire.NewEncoder(sig)
		e.AppendBatch(b)
		data, err := e.Finish(nil, 0xfeedface, seq, c)
		if err != nil {
			t.Fatal(err)
		}
		h, err := wire.ParseHeader(data)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, stream.Record{Subject: stream.Subject(origin, sig, int(seq%3)), ID: h.ID(), Data: data})
		if decodable {
			want = append(want, expected(b, sig)...)
		}
	}
	for _, sig := range wire.Signals {
		add(stream.OriginIngest, sig, wire.CompressionNone, true)
	}
	// The stream drops a re-publish with the same batch id.
	recs = append(recs, recs[0])
	// Node.js before 22.15 cannot read zstd: the example skips such records.
	add(stream.OriginRollup, wire.SignalMetrics, wire.CompressionZstd, zstdOK)
	// Dead letters are not item records and never match les.*.*.*.
	recs = append(recs, stream.Record{Subject: stream.DLQSubject("rollup"), ID: "dlq-1", Data: recs[1].Data})
	for _, sig := range wire.Signals {
		add(stream.OriginDerived, sig, wire.CompressionGzip, true)
	}
	if err := s.Publish(ctx, recs...); err != nil {
		t.Fatal(err)
	}

	got, stderr := runExample(ctx, t, node, s.ClientURL(), "--from-start", "--limit", strconv.Itoa(len(want)))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("consume.js output (-want +got):\n%s\nstderr:\n%s", diff, stderr)
	}
	if !zstdOK && !strings.Contains(stderr, "compression: gzip") {
		t.Errorf("consume.js did not explain how to avoid zstd; stderr:\n%s", stderr)
	}

	// The durable acknowledged everything it printed: a second run sees
	// only what was published after the first.
	late := &model.Batch{Spans: []model.Span{{Name: "late", TraceID: "t9", SpanID: "s9", Start: 1700000100000000000, Duration: 7}}}
	e := wire.NewEncoder(wire.SignalSpans)
	e.AppendBatch(late)
	data, err := e.Finish(nil, 0xfeedface, 99, wire.CompressionGzip)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, stream.Record{Subject: stream.Subject(stream.OriginIngest, wire.SignalSpans, 0), ID: "feedface-99", Data: data}); err != nil {
		t.Fatal(err)
	}
	got, stderr = runExample(ctx, t, node, s.ClientURL(), "--limit", "1")
	if diff := cmp.Diff(expected(late, wire.SignalSpans), got); diff != "" {
		t.Errorf("second run (-want +got):\n%s\nstderr:\n%s", diff, stderr)
	}
}

func exampleBatch() *model.Batch {
	return &model.Batch{
		Metrics: []model.Metric{
			{Name: "lambda.duration", Value: 42.5, Timestamp: 1700000000123456789, Source: "fn-a",
				Tags: model.Tags{{Key: "env", Value: "prod"}, {Key: "region", Value: "eu-west-1"}}, Kind: model.Gauge},
			{Name: "req", Value: -1, Timestamp: 1, Kind: model.Sample, Window: model.WindowMinute},
			{Name: "odd", Value: 0.1, Timestamp: -1, Kind: model.Counter, Tags: model.Tags{{Key: "ü", Value: "\"q\"\n"}}},
			{Name: "nan", Value: math.NaN(), Timestamp: 1700000000000001000, Kind: model.GaugeDelta},
			{Name: "set", Value: 1 << 52, Timestamp: 1700000000000000000, Kind: model.Set, Window: model.WindowDay},
		},
		Dists: []model.Distribution{{
			Name: "lat", Timestamp: 1700000040000000000, Window: model.WindowMinute, Source: "fn-b",
			Tags: model.Tags{{Key: "k", Value: "v"}}, Count: 3, Sum: 6, Min: math.Inf(-1), Max: math.Inf(1),
			Centroids:  []model.Centroid{{Value: 1, Count: 1}, {Value: 2.5, Count: 2}},
			Quantiles:  []model.Quantile{{Q: 0.5, Value: 2.5}, {Q: 0.99, Value: 5e-324}},
			Correction: 300,
		}, {Name: "empty", Window: model.WindowHour}},
		Logs: []model.Log{
			{Timestamp: 1700000000000000000, Source: "fn-a", RequestID: "8f5c", Level: "INFO",
				Message: []byte("hello\tworld ünïcode 🚀"), Attrs: model.Tags{{Key: "a", Value: "b"}}},
			{Timestamp: 1700000000000000001, Message: []byte(strings.Repeat("x", 300))},
		},
		Spans: []model.Span{{Name: "get", TraceID: "t1", SpanID: "s1", ParentID: "p0", Start: 1700000000000000000,
			Duration: 1500000, Source: "fn-a", Tags: model.Tags{{Key: "http.status", Value: "200"}}}},
	}
}

// expected is what docs/wire-format.md says the example prints for the
// items of sig in b, normalised through encoding/json like the output.
func expected(b *model.Batch, sig wire.Signal) []any {
	var items []any
	switch sig {
	case wire.SignalMetrics:
		for _, m := range b.Metrics {
			items = append(items, map[string]any{"type": "metric", "name": m.Name, "value": jsonFloat(m.Value),
				"kind": m.Kind.String(), "window": m.Window.String(), "timestamp": rfc3339(m.Timestamp),
				"source": m.Source, "tags": tagMap(m.Tags)})
		}
	case wire.SignalDistributions:
		for _, d := range b.Dists {
			cs, qs := []any{}, []any{}
			for _, c := range d.Centroids {
				cs = append(cs, map[string]any{"value": jsonFloat(c.Value), "count": jsonFloat(c.Count)})
			}
			for _, q := range d.Quantiles {
				qs = append(qs, map[string]any{"q": jsonFloat(q.Q), "value": jsonFloat(q.Value)})
			}
			items = append(items, map[string]any{"type": "distribution", "name": d.Name, "window": d.Window.String(),
				"correction": d.Correction, "timestamp": rfc3339(d.Timestamp), "source": d.Source,
				"tags": tagMap(d.Tags), "count": jsonFloat(d.Count), "sum": jsonFloat(d.Sum),
				"min": jsonFloat(d.Min), "max": jsonFloat(d.Max), "centroids": cs, "quantiles": qs})
		}
	case wire.SignalLogs:
		for _, l := range b.Logs {
			items = append(items, map[string]any{"type": "log", "timestamp": rfc3339(l.Timestamp), "source": l.Source,
				"request_id": l.RequestID, "level": l.Level, "message": string(l.Message), "tags": tagMap(l.Attrs)})
		}
	case wire.SignalSpans:
		for _, s := range b.Spans {
			items = append(items, map[string]any{"type": "span", "name": s.Name, "trace_id": s.TraceID,
				"span_id": s.SpanID, "parent_id": s.ParentID, "timestamp": rfc3339(s.Start),
				"duration_ns": s.Duration, "source": s.Source, "tags": tagMap(s.Tags)})
		}
	}
	for i, it := range items {
		js, err := json.Marshal(it)
		if err != nil {
			panic(err)
		}
		items[i] = nil
		if err := json.Unmarshal(js, &items[i]); err != nil {
			panic(err)
		}
	}
	return items
}

// jsonFloat is a float64 as the example prints it: a JSON number, or the
// string "NaN", "+Inf" or "-Inf".
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsNaN(v):
		return []byte(`"NaN"`), nil
	case math.IsInf(v, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Inf"`), nil
	}
	return json.Marshal(v)
}

func rfc3339(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

func tagMap(t model.Tags) map[string]string {
	m := map[string]string{}
	for _, tag := range t {
		m[tag.Key] = tag.Value
	}
	return m
}

func nodeHasZstd(t *testing.T, node string) bool {
	out, err := exec.Command(node, "-p", "typeof require('node:zlib').zstdDecompressSync").Output()
	if err != nil {
		t.Fatalf("node -p: %v", err)
	}
	return strings.TrimSpace(string(out)) == "function"
}

// runExample runs consume.js against url and returns its stdout parsed as
// one JSON value per line, and its stderr.
func runExample(ctx context.Context, t *testing.T, node, url string, args ...string) ([]any, string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, node, append([]string{"consume.js"}, args...)...)
	cmd.Dir = exampleDir
	cmd.Env = append(os.Environ(), "NATS_URL="+url)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node consume.js %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var items []any
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("output line %q: %v", sc.Text(), err)
		}
		items = append(items, v)
	}
	return items, stderr.String()
}
