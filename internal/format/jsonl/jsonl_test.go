package jsonl

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/les-streams/les/internal/model"
)

var ts = time.Date(2026, 11, 22, 3, 4, 5, 123456789, time.UTC).UnixNano()

func decode(t *testing.T, line []byte) map[string]any {
	t.Helper()
	if len(line) == 0 || line[len(line)-1] != '\n' {
		t.Fatalf("line does not end in newline: %q", line)
	}
	if strings.Count(string(line), "\n") != 1 {
		t.Fatalf("line has inner newlines: %q", line)
	}
	var got map[string]any
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("invalid JSON %q: %v", line, err)
	}
	return got
}

func TestMetric(t *testing.T) {
	m := model.Metric{Name: "cpu.user", Value: 12.5, Timestamp: ts, Source: "host-1",
		Tags: model.Tags{{Key: "env", Value: "prod"}, {Key: "k\"ey", Value: "va\\l\nue"}}, Kind: model.Counter}
	got := decode(t, AppendMetric(nil, &m, Options{}))
	want := map[string]any{
		"type": "metric", "name": "cpu.user", "value": 12.5, "kind": "counter",
		"timestamp": "2026-11-22T03:04:05.123456789Z", "source": "host-1",
		"tags": map[string]any{"env": "prod", "k\"ey": "va\\l\nue"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("-want +got\n%s", d)
	}

	m.Kind, m.Window, m.Value, m.Tags = model.Sample, model.WindowHour, math.NaN(), nil
	got = decode(t, AppendMetric(nil, &m, Options{RecordID: "p-7", Item: 2, Items: 3}))
	want = map[string]any{
		"type": "metric", "record": "p-7", "item": 2.0, "items": 3.0, "name": "cpu.user",
		"value": nil, "kind": "sample", "window": "hour",
		"timestamp": "2026-11-22T03:04:05.123456789Z", "source": "host-1", "tags": map[string]any{},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("-want +got\n%s", d)
	}
}

func TestDistribution(t *testing.T) {
	d := model.Distribution{Name: "lat", Timestamp: ts, Window: model.WindowMinute, Source: "fn",
		Tags: model.Tags{{Key: "a", Value: "b"}}, Count: 4, Sum: 10, Min: 1, Max: math.Inf(1),
		Centroids:  []model.Centroid{{Value: 1, Count: 1}, {Value: 2, Count: 2}, {Value: 5, Count: 1}},
		Quantiles:  []model.Quantile{{Q: 0.5, Value: 2}, {Q: 0.99, Value: 5}, {Q: 0.999, Value: 5}, {Q: 1, Value: 5}},
		Correction: 2}
	got := decode(t, AppendDistribution(nil, &d, Options{}))
	want := map[string]any{
		"type": "distribution", "name": "lat", "timestamp": "2026-11-22T03:04:05.123456789Z",
		"window": "minute", "source": "fn", "tags": map[string]any{"a": "b"},
		"count": 4.0, "sum": 10.0, "min": 1.0, "max": nil, "avg": 2.5,
		"percentiles": map[string]any{"p50": 2.0, "p99": 5.0, "p99.9": 5.0, "p100": 5.0},
		"centroids":   []any{[]any{1.0, 1.0}, []any{2.0, 2.0}, []any{5.0, 1.0}},
		"correction":  2.0,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("-want +got\n%s", diff)
	}

	empty := decode(t, AppendDistribution(nil, &model.Distribution{Name: "e"}, Options{}))
	if empty["avg"] != nil || empty["window"] != "none" || len(empty["centroids"].([]any)) != 0 {
		t.Errorf("empty distribution: %v", empty)
	}
}

func TestLog(t *testing.T) {
	l := model.Log{Timestamp: ts, Source: "fn", RequestID: "req-1", Level: "INFO",
		Message: []byte("hello \"w\"\t\x01 \xff\xfe ok \u2028 é 😀"), Attrs: model.Tags{{Key: "x", Value: "1"}}}
	line := AppendLog(nil, &l, Options{})
	got := decode(t, line)
	want := map[string]any{
		"type": "log", "timestamp": "2026-11-22T03:04:05.123456789Z", "source": "fn",
		"request_id": "req-1", "level": "INFO",
		"message": "hello \"w\"\t\x01 \ufffd\ufffd ok \u2028 é 😀", "attrs": map[string]any{"x": "1"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("-want +got\n%s", d)
	}
	if !strings.Contains(string(line), `\u2028`) || !strings.Contains(string(line), `\u0001`) {
		t.Errorf("expected escapes in %s", line)
	}
}

func TestSpan(t *testing.T) {
	s := model.Span{Name: "GET /", TraceID: "t1", SpanID: "s2", ParentID: "", Start: ts,
		Duration: 1500000, Source: "svc", Tags: model.Tags{{Key: "http.status", Value: "200"}}}
	got := decode(t, AppendSpan(nil, &s, Options{}))
	want := map[string]any{
		"type": "span", "name": "GET /", "trace_id": "t1", "span_id": "s2", "parent_id": "",
		"timestamp": "2026-11-22T03:04:05.123456789Z", "start": "2026-11-22T03:04:05.123456789Z",
		"duration_ms": 1.5, "source": "svc", "tags": map[string]any{"http.status": "200"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("-want +got\n%s", d)
	}
}

func TestFloat(t *testing.T) {
	for _, v := range []float64{0, -0.0, 1, -1.25, 1e-7, 1.5e-300, 1e20, 1e21, 1.7976931348623157e308,
		123456789.125, 5e-324, 0.1} {
		b := AppendFloat(nil, v)
		want, _ := json.Marshal(v)
		if string(b) != string(want) {
			t.Errorf("AppendFloat(%v) = %s, encoding/json says %s", v, b, want)
		}
	}
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if b := AppendFloat(nil, v); string(b) != "null" {
			t.Errorf("AppendFloat(%v) = %s", v, b)
		}
	}
}

func TestStringMatchesUnmarshal(t *testing.T) {
	for _, s := range []string{"", "plain", "\x00\x1f\x7f", "<>&", "a\xc3", "\xed\xa0\x80", "\u2029",
		strings.Repeat("\\\"", 10), "\xf4\x90\x80\x80"} {
		b := AppendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q -> %s: %v", s, b, err)
		}
		// encoding/json also replaces each invalid byte with U+FFFD.
		ref, _ := json.Marshal(s)
		var want string
		_ = json.Unmarshal(ref, &want)
		if got != want {
			t.Errorf("%q -> %s -> %q, want %q", s, b, got, want)
		}
	}
}

func FuzzString(f *testing.F) {
	f.Add("hello\n\"x\"")
	f.Add("\xff\u2028")
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q -> %s: %v", s, b, err)
		}
		ref, _ := json.Marshal(s)
		var want string
		_ = json.Unmarshal(ref, &want)
		if got != want {
			t.Fatalf("%q round-tripped to %q, want %q", s, got, want)
		}
	})
}

func sampleItems() (model.Metric, model.Distribution, model.Log, model.Span) {
	tags := model.Tags{{Key: "env", Value: "prod"}, {Key: "region", Value: "eu-west-1"}, {Key: "function", Value: "checkout"}}
	return model.Metric{Name: "aws.lambda.duration", Value: 123.456, Timestamp: ts, Source: "checkout", Tags: tags},
		model.Distribution{Name: "latency", Timestamp: ts, Window: model.WindowMinute, Source: "checkout", Tags: tags,
			Count: 10, Sum: 55, Min: 1, Max: 10,
			Centroids: []model.Centroid{{Value: 1, Count: 2}, {Value: 5, Count: 5}, {Value: 10, Count: 3}}, Quantiles: []model.Quantile{{Q: 0.5, Value: 5}, {Q: 0.99, Value: 10}}},
		model.Log{Timestamp: ts, Source: "checkout", RequestID: "8f5a2c1e-1111-2222-3333-444455556666", Level: "INFO",
			Message: []byte(`processed order 1234 in 45ms "ok"`), Attrs: tags},
		model.Span{Name: "handler", TraceID: "1-5759e988-bd862e3fe1be46a994272793", SpanID: "53995c3f42cd8ad8",
			ParentID: "ab12", Start: ts, Duration: 45e6, Source: "checkout", Tags: tags}
}

func TestAllocs(t *testing.T) {
	m, d, l, s := sampleItems()
	buf := make([]byte, 0, 4096)
	o := Options{RecordID: "prod-1", Item: 1, Items: 4}
	n := testing.AllocsPerRun(100, func() {
		b := AppendMetric(buf[:0], &m, o)
		b = AppendDistribution(b, &d, o)
		b = AppendLog(b, &l, o)
		_ = AppendSpan(b, &s, o)
	})
	if n != 0 {
		t.Errorf("allocs per run = %v, want 0", n)
	}
}

func BenchmarkAppend(b *testing.B) {
	m, d, l, s := sampleItems()
	buf := make([]byte, 0, 4096)
	o := Options{RecordID: "prod-1", Item: 1, Items: 4}
	b.Run("metric", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(AppendMetric(nil, &m, o))))
		for b.Loop() {
			buf = AppendMetric(buf[:0], &m, o)
		}
	})
	b.Run("distribution", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(AppendDistribution(nil, &d, o))))
		for b.Loop() {
			buf = AppendDistribution(buf[:0], &d, o)
		}
	})
	b.Run("log", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(AppendLog(nil, &l, o))))
		for b.Loop() {
			buf = AppendLog(buf[:0], &l, o)
		}
	})
	b.Run("span", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(AppendSpan(nil, &s, o))))
		for b.Loop() {
			buf = AppendSpan(buf[:0], &s, o)
		}
	})
}

func TestSpanExtended(t *testing.T) {
	s := model.Span{Name: "GET /", TraceID: "t1", SpanID: "s2", Start: ts, Duration: 2e6, Source: "svc",
		Kind: model.SpanKindServer, StatusCode: model.StatusError, StatusMessage: "boom \"x\"",
		Events: []model.SpanEvent{{Name: "exception", Timestamp: ts + 1000, Attrs: model.Tags{{Key: "exception.type", Value: "E"}}}},
		Links:  []model.SpanLink{{TraceID: "t9", SpanID: "s9", Attrs: model.Tags{{Key: "k", Value: "v"}}}, {TraceID: "t8", SpanID: "s8"}}}
	line := AppendSpan(nil, &s, Options{})
	got := decode(t, line)
	want := map[string]any{
		"type": "span", "name": "GET /", "trace_id": "t1", "span_id": "s2", "parent_id": "",
		"timestamp": "2026-11-22T03:04:05.123456789Z", "start": "2026-11-22T03:04:05.123456789Z",
		"duration_ms": 2.0, "source": "svc", "tags": map[string]any{},
		"kind": "server", "status_code": "error", "status_message": "boom \"x\"",
		"events": []any{map[string]any{"name": "exception", "timestamp": "2026-11-22T03:04:05.123457789Z",
			"attrs": map[string]any{"exception.type": "E"}}},
		"links": []any{
			map[string]any{"trace_id": "t9", "span_id": "s9", "attrs": map[string]any{"k": "v"}},
			map[string]any{"trace_id": "t8", "span_id": "s8", "attrs": map[string]any{}},
		},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("-want +got\n%s", d)
	}
	if !strings.Contains(string(line), `"tags":{},"kind":"server","status_code":"error","status_message"`) {
		t.Errorf("field order: %s", line)
	}
	// A span with no optional field prints none of them.
	plain := model.Span{Name: "p"}
	if l := string(AppendSpan(nil, &plain, Options{})); strings.Contains(l, `"kind"`) || strings.Contains(l, `"events"`) {
		t.Errorf("plain span has optional fields: %s", l)
	}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { _ = AppendSpan(buf[:0], &s, Options{}) }); n != 0 {
		t.Errorf("allocs per run = %v, want 0", n)
	}
}
