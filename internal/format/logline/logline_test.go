package logline

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/les-streams/les/internal/model"
)

const now = int64(1_700_000_000_000_000_000)

func ts(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixNano()
}

type logOut struct {
	Timestamp int64
	Source    string
	RequestID string
	Level     string
	Message   string
	Attrs     map[string]string
}

func flat(b *model.Batch) ([]logOut, []string) {
	var out []logOut
	for _, l := range b.Logs {
		o := logOut{l.Timestamp, l.Source, l.RequestID, l.Level, string(l.Message), nil}
		if len(l.Attrs) > 0 {
			o.Attrs = map[string]string{}
			for _, a := range l.Attrs {
				o.Attrs[a.Key] = a.Value
			}
		}
		out = append(out, o)
	}
	var rej []string
	for _, r := range b.Rejects {
		rej = append(rej, r.Reason)
	}
	return out, rej
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []logOut
		rejects []string
	}{
		{"plain", "hello world\n", []logOut{{now, "src", "", "", "hello world", nil}}, nil},
		{"crlf and blank", "a\r\n\r\n  \nb", []logOut{{now, "src", "", "", "a", nil}, {now, "src", "", "", "b", nil}}, nil},
		{"node text", "2024-01-01T00:00:00.000Z\t8f507cfc-xmpl-4697-b07a-ac58fc914c95\tINFO\tprocessing event\n",
			[]logOut{{ts("2024-01-01T00:00:00Z"), "src", "8f507cfc-xmpl-4697-b07a-ac58fc914c95", "INFO", "processing event", nil}}, nil},
		{"node text no level", "2024-01-01T00:00:00.500Z\t8f507cfc-xmpl-4697-b07a-ac58fc914c95\tjust text",
			[]logOut{{ts("2024-01-01T00:00:00.5Z"), "src", "8f507cfc-xmpl-4697-b07a-ac58fc914c95", "", "just text", nil}}, nil},
		{"python text", "[ERROR]\t2025-06-04T12:46:22.643Z\t79b4f56e-95b1-4643-9700-2807f4e68189\tboom\tTraceback",
			[]logOut{{ts("2025-06-04T12:46:22.643Z"), "src", "79b4f56e-95b1-4643-9700-2807f4e68189", "ERROR", "boom\tTraceback", nil}}, nil},
		{"not a request id", "2024-01-01T00:00:00.000Z\tnope\tINFO\tx",
			[]logOut{{now, "src", "", "", "2024-01-01T00:00:00.000Z\tnope\tINFO\tx", nil}}, nil},
		{"json basic", `{"timestamp":"2026-10-08T07:30:29.443Z","level":"ERROR","requestId":"79b5c1a5-8f5c-4b2e-9a4f-3c0d2f1e7a61","message":"failed","user":"bob","n":3,"ok":true,"nil":null}`,
			[]logOut{{ts("2026-10-08T07:30:29.443Z"), "src", "79b5c1a5-8f5c-4b2e-9a4f-3c0d2f1e7a61", "ERROR", "failed", map[string]string{"user": "bob", "n": "3", "ok": "true"}}}, nil},
		{"json aliases", `{"ts":1700000001,"severity":"warn","msg":"m","service":"api","request_id":"r1"}`,
			[]logOut{{1700000001_000000000, "api", "r1", "WARN", "m", nil}}, nil},
		{"json epoch ms", `{"@timestamp":1700000001234,"log_level":30,"msg":"m"}`,
			[]logOut{{1700000001234_000000, "src", "", "INFO", "m", nil}}, nil},
		{"json level lower case", `{"level":"error","msg":"m"}`, []logOut{{now, "src", "", "ERROR", "m", nil}}, nil},
		{"json level mixed case", `{"level":"Critical","msg":"m"}`, []logOut{{now, "src", "", "CRITICAL", "m", nil}}, nil},
		{"json level pino fatal", `{"level":60,"msg":"m"}`, []logOut{{now, "src", "", "FATAL", "m", nil}}, nil},
		{"json level unknown kept", `{"level":"verbose","msg":"m"}`, []logOut{{now, "src", "", "verbose", "m", nil}}, nil},
		{"json epoch ns", `{"time":1700000001234567891}`,
			[]logOut{{1700000001234567891, "src", "", "", `{"time":1700000001234567891}`, nil}}, nil},
		{"json nested", `{"message":"x","http":{"method":"GET","req":{"path":"/a"}},"tags":["a","b"]}`,
			[]logOut{{now, "src", "", "", "x", map[string]string{"http.method": "GET", "http.req.path": "/a", "tags": `["a","b"]`}}}, nil},
		{"json escapes", `{"message":"a\nb \u00e9","k\u0041":"v\"q"}`,
			[]logOut{{now, "src", "", "", "a\nb é", map[string]string{"kA": `v"q`}}}, nil},
		{"json message object", `{"message":{"a":1}}`,
			[]logOut{{now, "src", "", "", `{"a":1}`, nil}}, nil},
		{"lambda json function record string", `{"time":"2022-10-12T00:03:50.000Z","type":"function","record":"2022-10-12T00:03:50.000Z\tabc\tINFO\thi"}`,
			[]logOut{{ts("2022-10-12T00:03:50Z"), "src", "", "", "2022-10-12T00:03:50.000Z\tabc\tINFO\thi", map[string]string{"type": "function"}}}, nil},
		{"lambda json record object", `{"time":"2022-10-12T00:03:50.000Z","type":"function","record":{"timestamp":"2022-10-12T00:03:50.000Z","level":"INFO","requestId":"79b4f56e-95b1-4643-9700-2807f4e68189","message":"Hello world"}}`,
			[]logOut{{ts("2022-10-12T00:03:50Z"), "src", "79b4f56e-95b1-4643-9700-2807f4e68189", "INFO", "Hello world", map[string]string{"type": "function", "timestamp": "2022-10-12T00:03:50.000Z"}}}, nil},
		{"broken json is text", `{"a":`, []logOut{{now, "src", "", "", `{"a":`, nil}}, nil},
		{"json trailing garbage is text", `{"a":1} x`, []logOut{{now, "src", "", "", `{"a":1} x`, nil}}, nil},
		{"invalid utf8", "ok\n\xff\xfe\nok2", []logOut{{now, "src", "", "", "ok", nil}, {now, "src", "", "", "ok2", nil}}, []string{ReasonInvalidUTF8}},
		{"too long", "x\n" + strings.Repeat("a", 101), []logOut{{now, "src", "", "", "x", nil}}, []string{ReasonLineTooLong}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b model.Batch
			d := NewDecoder(Options{DefaultSource: "src", MaxLineLen: 100})
			if tt.name == "too long" {
				d = NewDecoder(Options{DefaultSource: "src", MaxLineLen: 100})
			} else {
				d = NewDecoder(Options{DefaultSource: "src"})
			}
			d.Decode(&b, []byte(tt.in), now)
			got, rej := flat(&b)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("logs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.rejects, rej); diff != "" {
				t.Errorf("rejects (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMaxAttrs(t *testing.T) {
	var sb strings.Builder
	sb.WriteString(`{"message":"m"`)
	for i := range 150 {
		sb.WriteString(`,"k`)
		sb.WriteString(strings.Repeat("x", i))
		sb.WriteString(`":1`)
	}
	sb.WriteString(`,"n":{"a":{"b":1}}}`)
	var b model.Batch
	new(Decoder).Decode(&b, []byte(sb.String()), now)
	if len(b.Logs) != 1 || len(b.Logs[0].Attrs) != MaxAttrs {
		t.Fatalf("got %d logs, attrs %d", len(b.Logs), len(b.Logs[0].Attrs))
	}
}

func TestDecodeRecordKeepsCallerTags(t *testing.T) {
	var b model.Batch
	mark := b.TagMark()
	b.AddTag("log_group", "/aws/lambda/fn")
	d := NewDecoder(Options{DefaultSource: "fn"})
	if !d.DecodeRecord(&b, []byte("{\"msg\":\"x\",\"a\":\"b\"}\n"), now, mark) {
		t.Fatal("not decoded")
	}
	want := model.Tags{{Key: "log_group", Value: "/aws/lambda/fn"}, {Key: "a", Value: "b"}}
	if diff := cmp.Diff(want, b.Logs[0].Attrs); diff != "" {
		t.Error(diff)
	}
	mark = b.TagMark()
	b.AddTag("log_group", "g")
	if d.DecodeRecord(&b, []byte("\xff"), now, mark) || len(b.Arena) != 2 {
		t.Errorf("reject must drop caller tags; arena %d", len(b.Arena))
	}
}

func TestAllocs(t *testing.T) {
	payload := []byte("2024-01-01T00:00:00.000Z\t8f507cfc-xmpl-4697-b07a-ac58fc914c95\tINFO\tprocessing event\n" +
		`{"timestamp":"2026-10-08T07:30:29.443Z","level":"ERROR","requestId":"79b5","message":"failed","user":"bob"}` + "\n")
	var b model.Batch
	d := NewDecoder(Options{})
	d.Decode(&b, payload, now)
	n := testing.AllocsPerRun(100, func() {
		b.Reset()
		d.Decode(&b, payload, now)
	})
	if n > 0 {
		t.Errorf("allocs per run = %v, want 0", n)
	}
}

func BenchmarkDecode(b *testing.B) {
	payload := []byte(strings.Repeat("2024-01-01T00:00:00.000Z\t8f507cfc-xmpl-4697-b07a-ac58fc914c95\tINFO\tprocessing event id=42\n"+
		`{"timestamp":"2026-10-08T07:30:29.443Z","level":"ERROR","requestId":"79b5c1a5-8f5c-4b2e-9a4f-3c0d2f1e7a61","message":"failed","user":"bob","http":{"status":500}}`+"\n", 50))
	var batch model.Batch
	d := NewDecoder(Options{})
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		batch.Reset()
		d.Decode(&batch, payload, now)
	}
	b.ReportMetric(float64(b.N)*100/b.Elapsed().Seconds(), "lines/s")
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("2024-01-01T00:00:00.000Z\t8f507cfc-xmpl-4697-b07a-ac58fc914c95\tINFO\tx\n{\"a\":{\"b\":[1,2]},\"msg\":\"\\u00e9\"}\n"))
	f.Add([]byte(`{"time":"2022-10-12T00:03:50.000Z","type":"function","record":{"level":"INFO"}}`))
	f.Add([]byte("[INFO]\t2025-06-04T12:46:22.643Z\t79b4f56e-95b1-4643-9700-2807f4e68189\tm"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var b model.Batch
		d := NewDecoder(Options{DefaultSource: "s", MaxLineLen: 4096})
		d.Decode(&b, data, now)
		for _, l := range b.Logs {
			if len(l.Attrs) > MaxAttrs {
				t.Fatalf("too many attrs %d", len(l.Attrs))
			}
		}
	})
}
