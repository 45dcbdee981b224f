package wire_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
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

	"github.com/les-streams/les/internal/format/jsonl"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/embedded"
	embedsrv "github.com/les-streams/les/internal/stream/embedded/server"
	"github.com/les-streams/les/internal/wire"
)

// exampleDir is the Node.js consumer documented in docs/wire-format.md.
var exampleDir = filepath.Join("..", "..", "examples", "node-consumer")

// TestNodeConsumerExample publishes records of every signal to a real
// (embedded) JetStream and checks that examples/node-consumer/consume.js
// prints, for every item, the same JSON object as `les tail` (which prints
// internal/format/jsonl): same fields with the same values, and the same
// order of fields.
func TestNodeConsumerExample(t *testing.T) {
	node := nodeForExample(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	t.Setenv("LES_DATA_DIR", dataDir) // consume.js reads the stream's token from <data dir>/stream.creds
	s, err := embedsrv.Open(ctx, embedded.Config{Listen: "127.0.0.1:-1"}, dataDir, 3, embedsrv.Deps{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	b := exampleBatch()
	var recs []stream.Record
	var want [][]byte
	seq := uint64(0)
	enc := wire.EncodingLES
	add := func(origin string, sig wire.Signal, c wire.Compression, decodable bool) {
		seq++
		e := wire.NewEncoding(sig, enc)
		e.AppendBatch(b)
		data, err := e.Finish(nil, 0xfeedface, seq, c)
		if err != nil {
			t.Fatal(err)
		}
		h, err := wire.ParseHeader(data)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, stream.Record{Origin: origin, Signal: sig, Partition: int(seq % 3), ID: h.ID(), Data: data})
		if decodable {
			want = append(want, jsonlLines(b, sig)...)
		}
	}
	for _, sig := range wire.Signals {
		add(stream.OriginIngest, sig, wire.CompressionNone, true)
	}
	// The stream drops a re-publish with the same batch id.
	recs = append(recs, recs[0])
	// zstd, les' default on remote streams: Node's own decoder (22.15+) or fzstd.
	add(stream.OriginRollup, wire.SignalMetrics, wire.CompressionZstd, true)
	// s2, les' default on the embedded stream: consume.js's own Snappy
	// decoder, on small records and on one of several 64 KiB blocks (long
	// literals, copies with 1- and 2-byte offsets).
	for _, sig := range wire.Signals {
		add(stream.OriginIngest, sig, wire.CompressionS2, true)
	}
	small := b
	b = bigMetricsBatch(3000) // ~250 KiB: long literals and far copies
	add(stream.OriginIngest, wire.SignalMetrics, wire.CompressionS2, true)
	b = small
	// Dead letters (les.dlq.*.*) are not item records: the example skips them.
	recs = append(recs, stream.Record{Origin: stream.OriginDLQ, Signal: wire.SignalMetrics, ID: "dlq-1", Data: recs[1].Data})
	for _, sig := range wire.Signals {
		add(stream.OriginDerived, sig, wire.CompressionGzip, true)
	}
	// The series encoding, the agent's default for metrics, with every
	// compression; the big batch repeats series, the small one does not.
	enc = wire.EncodingSeries
	for _, c := range []wire.Compression{wire.CompressionNone, wire.CompressionZstd, wire.CompressionS2, wire.CompressionGzip} {
		add(stream.OriginIngest, wire.SignalMetrics, c, true)
	}
	b = bigMetricsBatch(3000)
	add(stream.OriginIngest, wire.SignalMetrics, wire.CompressionS2, true)
	b = small
	if err := s.Publish(ctx, recs...); err != nil {
		t.Fatal(err)
	}

	got, stderr := runExample(ctx, t, node, s.ClientURL(), "--from-start", "--limit", strconv.Itoa(len(want)))
	if diff := cmp.Diff(jsonView(t, want), jsonView(t, got)); diff != "" {
		t.Errorf("consume.js output (-les tail +consume.js):\n%s\nstderr:\n%s", diff, stderr)
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
	if err := s.Publish(ctx, stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalSpans, ID: "feedface-99", Data: data}); err != nil {
		t.Fatal(err)
	}
	got, stderr = runExample(ctx, t, node, s.ClientURL(), "--limit", "1")
	if diff := cmp.Diff(jsonView(t, jsonlLines(late, wire.SignalSpans)), jsonView(t, got)); diff != "" {
		t.Errorf("second run (-les tail +consume.js):\n%s\nstderr:\n%s", diff, stderr)
	}
}

// bigMetricsBatch returns n gauges of repeating names, sources and tags and
// one unique tag each, so that their record is several 64 KiB blocks.
func bigMetricsBatch(n int) *model.Batch {
	b := &model.Batch{}
	for i := range n {
		b.Metrics = append(b.Metrics, model.Metric{Name: "app.metric." + strconv.Itoa(i%37), Value: float64(i%1000) / 8,
			Timestamp: 1700000000000000000 + int64(i)*1000, Source: "fn-" + strconv.Itoa(i%101), Kind: model.Gauge,
			Tags: model.Tags{{Key: "env", Value: "prod"}, {Key: "i", Value: strconv.Itoa(i * 7919)}}})
	}
	return b
}

// exampleBatch holds ordinary items and the corner cases of the JSON view:
// non-finite floats, unknown kinds and windows, percentile keys, extreme
// timestamps, invalid UTF-8, characters JSON escapes, and tag keys that JS
// objects treat specially.
func exampleBatch() *model.Batch {
	return &model.Batch{
		Metrics: []model.Metric{
			{Name: "lambda.duration", Value: 42.5, Timestamp: 1700000000123456789, Source: "fn-a",
				Tags: model.Tags{{Key: "env", Value: "prod"}, {Key: "region", Value: "eu-west-1"}}, Kind: model.Gauge},
			{Name: "req", Value: -1, Timestamp: 1, Kind: model.Sample, Window: model.WindowMinute},
			{Name: "odd", Value: 0.1, Timestamp: -1, Kind: model.Counter, Tags: model.Tags{{Key: "ü", Value: "\"q\"\n"}}},
			{Name: "nan", Value: math.NaN(), Timestamp: 1700000000000001000, Kind: model.GaugeDelta},
			{Name: "set", Value: 1 << 52, Timestamp: 1700000000000000000, Kind: model.Set, Window: model.WindowDay},
			{Name: "ninf", Value: math.Inf(-1), Timestamp: math.MinInt64, Kind: model.Kind(9), Window: model.Window(7),
				Source: "cut \xe2\x82 and \xff"},
			{Name: "tiny", Value: 1e-7, Timestamp: math.MaxInt64, Kind: model.Gauge, Window: model.WindowHour},
			{Name: "huge", Value: -1e21, Timestamp: 999999999, Kind: model.Gauge},
			{Name: "negzero", Value: math.Copysign(0, -1), Timestamp: 1000000000, Kind: model.Gauge},
		},
		Dists: []model.Distribution{{
			Name: "lat", Timestamp: 1700000040000000000, Window: model.WindowMinute, Source: "fn-b",
			Tags: model.Tags{{Key: "k", Value: "v"}}, Count: 3, Sum: 6, Min: math.Inf(-1), Max: math.Inf(1),
			Centroids: []model.Centroid{{Value: 1, Count: 1}, {Value: 2.5, Count: 2}, {Value: math.NaN(), Count: 0}},
			Quantiles: []model.Quantile{{Q: 0.5, Value: 2.5}, {Q: 0.99, Value: 5e-324}, {Q: 0.999, Value: math.NaN()},
				{Q: 1, Value: 3}, {Q: 0, Value: 1}, {Q: 0.001, Value: 1}, {Q: 0.12345678, Value: 1}, {Q: 5e-9, Value: 1},
				{Q: 4.9e-9, Value: 1}, {Q: -0.005, Value: 1}, {Q: math.Copysign(0, -1), Value: 1}, {Q: 1e19, Value: 1},
				{Q: 1e300, Value: 1}, {Q: 1e303, Value: 1}, {Q: math.NaN(), Value: 1},
				{Q: 0.001953125, Value: 1}, {Q: -0.001953125, Value: 1}}, // 100·q·1e6 = ±195312.5: Go rounds halves away from 0
			Correction: 300,
		},
			{Name: "empty", Window: model.WindowHour},
			{Name: "nocount", Window: model.Window(5), Count: math.NaN(), Sum: 1, Correction: math.MaxUint32},
			{Name: "infcount", Window: model.WindowDay, Count: math.Inf(1), Sum: 1, Quantiles: []model.Quantile{{Q: 0.75, Value: 1}}},
		},
		Logs: []model.Log{
			{Timestamp: 1700000000000000000, Source: "fn-a", RequestID: "8f5c", Level: "INFO",
				Message: []byte("hello\tworld ünïcode 🚀"), Attrs: model.Tags{{Key: "a", Value: "b"}}},
			{Timestamp: 1700000000000000001, Message: []byte(strings.Repeat("x", 300))},
			{Timestamp: 1700000000000000002, Source: "fn-\xc3", RequestID: "r", Level: "WARN",
				Message: []byte("\xef\xbb\xbfbom, cut \xe2\x82 surrogate \xed\xa0\x80 end \xf4\x90\x80\x80 " +
					"\u2028\u2029 \b\f\x01\x7f \"q\" \\ \xf0\x9f\x9a"),
				Attrs: model.Tags{{Key: "a", Value: "1"}, {Key: "200", Value: "int-like"}, {Key: "__proto__", Value: "p"},
					{Key: "", Value: "empty key"}, {Key: "a", Value: "2"}}},
		},
		Spans: []model.Span{
			{Name: "get", TraceID: "t1", SpanID: "s1", ParentID: "p0", Start: 1700000000000000000,
				Duration: 1500000, Source: "fn-a", Tags: model.Tags{{Key: "http.status", Value: "200"}}},
			{Name: "neg", TraceID: "t2", SpanID: "s2", Start: -1500, Duration: -7,
				Tags: model.Tags{{Key: "__proto__", Value: "x"}, {Key: "constructor", Value: "y"}}},
			{Name: "long", TraceID: "t3", SpanID: "s3", Start: 1, Duration: math.MaxInt64},
			// Version 2 (OTLP spans): kind, status, events, links.
			{Name: "otlp", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7", Start: 1700000000000000000,
				Duration: 2000000, Source: "checkout", Kind: model.SpanKindServer, StatusCode: model.StatusError,
				StatusMessage: "boom \"x\"", Events: []model.SpanEvent{{Name: "exception", Timestamp: 1700000000000000500,
					Attrs: model.Tags{{Key: "exception.type", Value: "E"}}}},
				Links: []model.SpanLink{{TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331"}}},
			{Name: "kind", TraceID: "t5", SpanID: "s5", Kind: model.SpanKind(9), StatusCode: model.StatusCode(7)},
		},
	}
}

// jsonlLines is what `les tail` prints for the items of sig in b.
func jsonlLines(b *model.Batch, sig wire.Signal) [][]byte {
	var lines [][]byte
	switch sig {
	case wire.SignalMetrics:
		for i := range b.Metrics {
			lines = append(lines, jsonl.AppendMetric(nil, &b.Metrics[i], jsonl.Options{}))
		}
	case wire.SignalDistributions:
		for i := range b.Dists {
			lines = append(lines, jsonl.AppendDistribution(nil, &b.Dists[i], jsonl.Options{}))
		}
	case wire.SignalLogs:
		for i := range b.Logs {
			lines = append(lines, jsonl.AppendLog(nil, &b.Logs[i], jsonl.Options{}))
		}
	case wire.SignalSpans:
		for i := range b.Spans {
			lines = append(lines, jsonl.AppendSpan(nil, &b.Spans[i], jsonl.Options{}))
		}
	}
	return lines
}

// jsonObject is one output line: its top-level keys in order, and its value
// decoded by encoding/json (so the formatting of numbers and escapes in
// strings does not matter, and of a repeated key the last value wins).
type jsonObject struct {
	Keys  []string
	Value map[string]any
}

func jsonView(t *testing.T, lines [][]byte) []jsonObject {
	t.Helper()
	out := make([]jsonObject, len(lines))
	for i, line := range lines {
		if err := json.Unmarshal(line, &out[i].Value); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		keys, err := topLevelKeys(line)
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out[i].Keys = keys
	}
	return out
}

func topLevelKeys(line []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not an object (%v)", err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// nodeForExample returns the node binary for the example consumer's
// tests; without node or the example's npm packages they skip, and fail
// under CI (scripts/test.sh installs both).
func nodeForExample(t *testing.T) string {
	t.Helper()
	missing := t.Skip
	if os.Getenv("CI") != "" {
		missing = t.Fatal
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not on PATH; install Node.js >= 20 to run the example consumer test (scripts/test.sh does)")
	}
	for _, pkg := range []string{"nats", "fzstd"} {
		if _, err := os.Stat(filepath.Join(exampleDir, "node_modules", pkg)); err != nil {
			missing("examples/node-consumer/node_modules/" + pkg + " is missing: run `npm ci` in examples/node-consumer first (scripts/test.sh does)")
		}
	}
	return node
}

// runExample runs consume.js against url and returns its stdout lines and
// its stderr.
func runExample(ctx context.Context, t *testing.T, node, url string, args ...string) ([][]byte, string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, node, append([]string{"consume.js"}, args...)...)
	cmd.Dir = exampleDir
	cmd.Env = append(os.Environ(), "NATS_URL="+url)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node consume.js %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var lines [][]byte
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines, stderr.String()
}

// TestWireFormatDocJSONView checks the example output in the section "JSON
// view of items" of docs/wire-format.md: it must be, byte for byte, what
// `les tail` prints for the items of the golden records
// (testdata/*.hex, the records of the worked example), in signal order.
func TestWireFormatDocJSONView(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "wire-format.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## JSON view of items\n")
	if !ok {
		t.Fatal(`docs/wire-format.md has no section "## JSON view of items"`)
	}
	_, block, ok := strings.Cut(section, "\n```json\n")
	if ok {
		block, _, ok = strings.Cut(block, "\n```\n")
	}
	if !ok {
		t.Fatal("the JSON view section has no ```json block")
	}
	var want []byte
	var dec wire.Decoder
	for _, sig := range wire.Signals {
		dump, err := os.ReadFile(filepath.Join("testdata", sig.String()+".hex"))
		if err != nil {
			t.Fatal(err)
		}
		var b model.Batch
		if _, err := dec.Decode(&b, undump(t, string(dump))); err != nil {
			t.Fatalf("%s.hex: %v", sig, err)
		}
		for _, line := range jsonlLines(&b, sig) {
			want = append(want, line...)
		}
	}
	if diff := cmp.Diff(string(want), block+"\n"); diff != "" {
		t.Errorf("docs/wire-format.md JSON view example (-les tail +doc):\n%s", diff)
	}
}

// undump reverses hex.Dump.
func undump(t *testing.T, dump string) []byte {
	t.Helper()
	var out []byte
	for _, line := range strings.Split(strings.TrimRight(dump, "\n"), "\n") {
		hexPart, _, _ := strings.Cut(line, "|")
		fields := strings.Fields(hexPart)
		if len(fields) == 0 {
			continue
		}
		for _, f := range fields[1:] { // fields[0] is the offset
			b, err := hex.DecodeString(f)
			if err != nil {
				t.Fatalf("hex dump line %q: %v", line, err)
			}
			out = append(out, b...)
		}
	}
	return out
}
