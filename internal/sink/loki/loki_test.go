package loki

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/sink/sinktest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newSink(t *testing.T, cfg Config, reg *selfmetric.Registry) *Sink {
	t.Helper()
	if reg == nil {
		reg = selfmetric.New()
	}
	client := &http.Client{Transport: sink.NewTransport()}
	s, err := New(cfg, sink.Deps{Name: "loki", Metrics: reg, HTTP: client})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		client.CloseIdleConnections()
		s.client.CloseIdleConnections()
	})
	return s
}

func send(t *testing.T, s *Sink, b *model.Batch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Send(ctx, b, sink.Meta{}); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

// items turns what the fake holds into sinktest items, reading the line
// as the line format says. The label names are the defaults
// (service_name, level); other labels are left out.
func items(t *testing.T, f *fakeLoki, tenant, lineFormat string) []sinktest.Item {
	var out []sinktest.Item
	for _, st := range f.streams(tenant) {
		for _, e := range st.entries {
			it := sinktest.Item{Signal: "logs", Source: st.labels["service_name"], Level: st.labels["level"], Time: time.Unix(0, e.ts)}
			fields := map[string]string{}
			switch lineFormat {
			case "message":
				it.Message = e.line
				for k, v := range e.metadata {
					fields[k] = v
				}
			case "logfmt":
				fields = parseLogfmt(t, e.line)
				it.Message = fields["msg"]
				delete(fields, "msg")
			case "json":
				if err := json.Unmarshal([]byte(e.line), &fields); err != nil {
					t.Fatalf("line %s: %v", e.line, err)
				}
				it.Message = fields["msg"]
				delete(fields, "msg")
			}
			it.RequestID = fields["request_id"]
			delete(fields, "request_id")
			if len(fields) > 0 {
				it.Tags = fields
			}
			out = append(out, it)
		}
	}
	return out
}

// parseLogfmt reads key=value pairs, values bare or double-quoted.
func parseLogfmt(t *testing.T, line string) map[string]string {
	out := map[string]string{}
	for line != "" {
		eq := strings.IndexByte(line, '=')
		if eq < 0 {
			t.Fatalf("logfmt: no '=' in %q", line)
		}
		k := line[:eq]
		line = line[eq+1:]
		var v string
		if strings.HasPrefix(line, `"`) {
			end := 1
			for ; end < len(line) && line[end] != '"'; end++ {
				if line[end] == '\\' {
					end++
				}
			}
			var err error
			if v, err = strconv.Unquote(line[:end+1]); err != nil {
				t.Fatalf("logfmt value %q: %v", line[:end+1], err)
			}
			line = line[end+1:]
		} else {
			end := strings.IndexByte(line, ' ')
			if end < 0 {
				end = len(line)
			}
			v, line = line[:end], line[end:]
		}
		out[k] = v
		line = strings.TrimPrefix(line, " ")
	}
	return out
}

func TestConformance(t *testing.T) {
	for _, tc := range []struct{ encoding, compression, lineFormat string }{
		{"protobuf", "", "message"}, {"json", "gzip", "message"}, {"json", "none", "message"},
		{"protobuf", "", "logfmt"}, {"json", "gzip", "json"},
	} {
		t.Run(tc.encoding+"-"+tc.compression+"-"+tc.lineFormat, func(t *testing.T) {
			var f *fakeLoki
			sinktest.Run(t, func(t *testing.T) sink.Sink {
				f = newFakeLoki(t, nil)
				return newSink(t, Config{URL: f.url(), Encoding: tc.encoding, Compression: tc.compression, LineFormat: tc.lineFormat}, nil)
			}, func(t *testing.T) []sinktest.Item {
				return items(t, f, "fake", tc.lineFormat)
			}, sinktest.Options{Skips: []string{"metrics", "distributions", "spans"}})
		})
	}
}

// TestRequestFormat: headers, labels, structured metadata and per-stream
// order as Loki receives them.
func TestRequestFormat(t *testing.T) {
	t.Setenv("LOKI_TEST_PW", "s3cret")
	f := newFakeLoki(t, func(f *fakeLoki) { f.orgRequired = true })
	s := newSink(t, Config{URL: f.url(), Tenant: "team-a", Labels: map[string]string{"job": "les"},
		LabelFields: []string{"source", "level", "env"},
		HTTPAuth:    sink.HTTPAuth{BasicAuth: &sink.BasicAuth{Username: "12345", PasswordEnv: "LOKI_TEST_PW"}}}, nil)
	t0 := time.Now().Truncate(time.Second).Add(-time.Minute)
	b := &model.Batch{}
	at := func(d time.Duration) int64 { return t0.Add(d).UnixNano() }
	// out of time order in the batch, two streams interleaved
	b.Logs = []model.Log{
		{Timestamp: at(3 * time.Second), Source: "fn-a", Level: "INFO", RequestID: "r-1", Message: []byte("third"), Attrs: model.Tags{{Key: "env", Value: "prod"}, {Key: "cold", Value: "true"}}},
		{Timestamp: at(1 * time.Second), Source: "fn-a", Level: "INFO", RequestID: "r-1", Message: []byte("first"), Attrs: model.Tags{{Key: "env", Value: "prod"}}},
		{Timestamp: at(2 * time.Second), Source: "fn-b", Level: "ERROR", RequestID: "r-2", Message: []byte("boom \"quoted\"\n"), Attrs: model.Tags{{Key: "env", Value: "dev"}, {Key: "http.status", Value: "500"}}},
		{Timestamp: at(2 * time.Second), Source: "fn-a", Level: "INFO", RequestID: "r-3", Message: []byte("second"), Attrs: model.Tags{{Key: "env", Value: "prod"}}},
	}
	send(t, s, b)
	r := f.requests[0]
	for k, want := range map[string]string{"Content-Type": "application/x-protobuf", "X-Scope-OrgID": "team-a", "Content-Encoding": ""} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if u, p, ok := r.BasicAuth(); !ok || u != "12345" || p != "s3cret" {
		t.Errorf("basic auth %q %q %v", u, p, ok)
	}
	var got []string
	for _, st := range f.streams("team-a") {
		for _, e := range st.entries {
			md, _ := json.Marshal(e.metadata)
			got = append(got, fmt.Sprintf("%s %d %q %s", canonical(st.labels), (e.ts-t0.UnixNano())/1e9, e.line, md))
		}
	}
	want := []string{
		`{env="dev", job="les", level="ERROR", service_name="fn-b"} 2 "boom \"quoted\"\n" {"http_status":"500","request_id":"r-2"}`,
		`{env="prod", job="les", level="INFO", service_name="fn-a"} 1 "first" {"request_id":"r-1"}`,
		`{env="prod", job="les", level="INFO", service_name="fn-a"} 2 "second" {"request_id":"r-3"}`,
		`{env="prod", job="les", level="INFO", service_name="fn-a"} 3 "third" {"cold":"true","request_id":"r-1"}`,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Loki holds (-want +got)\n%s", d)
	}
	if c := s.Counts(); c.Requests != 1 || c.Entries != 4 {
		t.Errorf("counts %+v", c)
	}
	// Without the tenant this Loki answers 401 "no org id": a hint says so.
	s2 := newSink(t, Config{URL: f.url()}, nil)
	err := s2.Send(context.Background(), b, sink.Meta{})
	if !errors.Is(err, sink.ErrPermanent) || !strings.Contains(err.Error(), "set tenant") {
		t.Errorf("no tenant: %v", err)
	}
}

// TestLabelSanitising: label values that need escaping or are invalid
// UTF-8 reach Loki intact (or with U+FFFD), and Loki parses the labels.
func TestLabelSanitising(t *testing.T) {
	f := newFakeLoki(t, nil)
	s := newSink(t, Config{URL: f.url(), LabelFields: []string{"source", "level", "5xx.region"}}, nil)
	ts := time.Now().Add(-time.Minute).UnixNano()
	send(t, s, &model.Batch{Logs: []model.Log{
		{Timestamp: ts, Source: `fn "x"\y` + "\n\t", Level: "in\xfffo", Message: []byte("bad \xff line"), Attrs: model.Tags{{Key: "5xx.region", Value: "eu"}, {Key: "__meta", Value: "m"}}},
	}})
	st := f.streams("fake")
	if len(st) != 1 {
		t.Fatalf("%d streams", len(st))
	}
	want := map[string]string{"service_name": "fn \"x\"\\y\n\t", "level": "in\uFFFDfo", "_5xx_region": "eu"}
	if d := cmp.Diff(want, st[0].labels); d != "" {
		t.Errorf("labels (-want +got)\n%s", d)
	}
	e := st[0].entries[0]
	if e.line != "bad \uFFFD line" || e.metadata["_meta"] != "m" {
		t.Errorf("entry %+v", e)
	}
}

// TestRefusedEntriesAreDropped: Loki stores the good entries of a request
// and answers 400 for the others; the sink isolates those, counts them as
// dropped with the reason, and returns nil.
func TestRefusedEntriesAreDropped(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ordered bool
		late    time.Duration // how much older than the stream's last entry
		reason  string
	}{
		{"out of order", true, time.Second, "out_of_order"},
		{"too far behind", false, 2 * time.Hour, "too_far_behind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeLoki(t, func(f *fakeLoki) { f.orderedWrites = tc.ordered })
			reg := selfmetric.New()
			s := newSink(t, Config{URL: f.url()}, reg)
			t0 := time.Now().Add(-time.Minute)
			log := func(src string, at time.Time, msg string) model.Log {
				return model.Log{Timestamp: at.UnixNano(), Source: src, Level: "INFO", Message: []byte(msg)}
			}
			send(t, s, &model.Batch{Logs: []model.Log{log("fn-late", t0, "last")}})
			b := &model.Batch{}
			for i := range 100 {
				b.Logs = append(b.Logs, log(fmt.Sprintf("fn-%03d", i), t0, fmt.Sprintf("line %d", i)))
			}
			b.Logs = append(b.Logs[:50], append([]model.Log{log("fn-late", t0.Add(-tc.late), "late")}, b.Logs[50:]...)...)
			send(t, s, b)
			n := 0
			for _, st := range f.streams("fake") {
				n += len(st.entries)
			}
			if n != 101 {
				t.Errorf("Loki holds %d entries, want 101 (the late one refused)", n)
			}
			var text bytes.Buffer
			reg.WritePrometheus(&text)
			if !strings.Contains(text.String(), `les_sink_dropped_items_total{sink="loki",reason="`+tc.reason+`"} 1`) {
				t.Errorf("refusal not counted:\n%s", grep(text.String(), "les_sink"))
			}
			if c := s.Counts(); c.Refused != 1 || c.Splits == 0 {
				t.Errorf("counts %+v", c)
			}
		})
	}
}

func grep(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestTooOldAndTooLong(t *testing.T) {
	f := newFakeLoki(t, nil)
	reg := selfmetric.New()
	s := newSink(t, Config{URL: f.url(), MaxLineSize: 1 << 20}, reg)
	now := time.Now()
	send(t, s, &model.Batch{Logs: []model.Log{
		{Timestamp: now.Add(-200 * time.Hour).UnixNano(), Source: "a", Message: []byte("ancient")},
		{Timestamp: now.Add(time.Hour).UnixNano(), Source: "a", Message: []byte("future")},
		{Timestamp: now.UnixNano(), Source: "b", Message: bytes.Repeat([]byte("x"), 300<<10)},
		{Timestamp: now.UnixNano(), Source: "c", Message: []byte("fine")},
	}})
	var text bytes.Buffer
	reg.WritePrometheus(&text)
	for _, r := range []string{"too_old", "too_new", "line_too_long"} {
		if !strings.Contains(text.String(), `les_sink_dropped_items_total{sink="loki",reason="`+r+`"} 1`) {
			t.Errorf("no drop with reason %s:\n%s", r, grep(text.String(), "les_sink"))
		}
	}
	// With the default max_line_size the long line is cut, not refused.
	s2 := newSink(t, Config{URL: f.url()}, nil)
	send(t, s2, &model.Batch{Logs: []model.Log{{Timestamp: now.UnixNano(), Source: "d", Message: bytes.Repeat([]byte("é"), 200<<10)}}})
	for _, st := range f.streams("fake") {
		if st.labels["service_name"] == "d" && len(st.entries[0].line) != 256<<10 {
			t.Errorf("cut line has %d bytes", len(st.entries[0].line))
		}
	}
	if c := s2.Counts(); c.Truncated != 1 {
		t.Errorf("counts %+v", c)
	}
}

// TestCardinality: past max_label_values distinct values a label becomes
// _overflow_ and the value moves into structured metadata; counted.
func TestCardinality(t *testing.T) {
	f := newFakeLoki(t, nil)
	reg := selfmetric.New()
	s := newSink(t, Config{URL: f.url(), MaxLabelValues: 3}, reg)
	ts := time.Now().Add(-time.Minute).UnixNano()
	b := &model.Batch{}
	for i := range 5 {
		b.Logs = append(b.Logs, model.Log{Timestamp: ts + int64(i), Source: fmt.Sprintf("fn-%d", i), Level: "INFO", Message: []byte("m")})
	}
	send(t, s, b)
	var got []string
	for _, st := range f.streams("fake") {
		for _, e := range st.entries {
			got = append(got, st.labels["service_name"]+" "+e.metadata["service_name"])
		}
	}
	want := []string{"_overflow_ fn-3", "_overflow_ fn-4", "fn-0 ", "fn-1 ", "fn-2 "}
	slices.Sort(got)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
	var text bytes.Buffer
	reg.WritePrometheus(&text)
	for _, w := range []string{`les_sink_label_overflows_total{sink="loki",label="service_name"} 2`, `les_sink_label_values{sink="loki",label="service_name"} 3`,
		`les_sink_label_values{sink="loki",label="level"} 1`} {
		if !strings.Contains(text.String(), w) {
			t.Errorf("no %s in\n%s", w, grep(text.String(), "les_sink"))
		}
	}
	// An hour of event time later the old values are forgotten.
	later := ts + int64(2*time.Hour)
	send(t, s, &model.Batch{Logs: []model.Log{{Timestamp: later, Source: "fn-9", Level: "INFO", Message: []byte("m")}}})
	if c := s.Counts(); c.Overflowed != 2 {
		t.Errorf("counts %+v: fn-9 should have a label of its own", c)
	}
}

func TestSplitsLargeBatches(t *testing.T) {
	f := newFakeLoki(t, nil)
	s := newSink(t, Config{URL: f.url(), MaxRequestBytes: 2048}, nil)
	t0 := time.Now().Add(-time.Minute)
	b := &model.Batch{}
	for i := range 100 {
		b.Logs = append(b.Logs, model.Log{Timestamp: t0.Add(time.Duration(99-i) * time.Millisecond).UnixNano(), Source: fmt.Sprintf("fn-%d", i%3),
			Message: []byte(strings.Repeat("x", 40))})
	}
	send(t, s, b)
	if n := f.numRequests(); n < 3 {
		t.Errorf("%d requests, want several", n)
	}
	n := 0
	for _, st := range f.streams("fake") {
		n += len(st.entries)
		if !slices.IsSortedFunc(st.entries, func(a, b fakeEntry) int { return int(a.ts - b.ts) }) {
			t.Errorf("stream %v not in time order", st.labels)
		}
	}
	if n != 100 {
		t.Errorf("%d entries stored", n)
	}
}

// TestAnswers: how each answer ends a Send; errors name the sink and where
// the credential came from, never the credential.
func TestAnswers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		code      int
		body      string
		permanent bool
		retryIn   bool
		contains  string
	}{
		{"unauthorized", 401, "invalid token", true, false, "LOKI_TOKEN"},
		{"forbidden", 403, "forbidden", true, false, "LOKI_TOKEN"},
		{"bad request", 400, "error parsing labels", true, false, "parsing"},
		{"metadata disallowed", 400, "stream '{a=\"b\"}' includes structured metadata, but this feature is disallowed", true, false, "line_format"},
		{"rate limited", 429, "ingestion rate limit exceeded", false, true, "429"},
		{"server error", 500, "internal", false, false, "500"},
		{"unavailable", 503, "", false, false, "503"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeLoki(t, func(f *fakeLoki) {
				f.before = func(w http.ResponseWriter, r *http.Request, _ int) bool {
					if tc.retryIn {
						w.Header().Set("Retry-After", "7")
					}
					http.Error(w, tc.body, tc.code)
					return true
				}
			})
			t.Setenv("LOKI_TOKEN", "very-secret-token")
			s := newSink(t, Config{URL: f.url(), HTTPAuth: sink.HTTPAuth{BearerTokenEnv: "LOKI_TOKEN"}}, nil)
			b, _ := sinktest.Batch()
			err := s.Send(context.Background(), b, sink.Meta{})
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, sink.ErrPermanent) != tc.permanent {
				t.Errorf("%v: permanent %v, want %v", err, !tc.permanent, tc.permanent)
			}
			if !strings.Contains(err.Error(), `loki sink "loki"`) || strings.Contains(err.Error(), "very-secret-token") || !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q: want the sink's name and %q, never the token", err, tc.contains)
			}
			if ra, ok := errors.AsType[*sink.RetryAfterError](err); tc.retryIn != ok || ok && ra.After != 7*time.Second {
				t.Errorf("retry after: %v %v", ra, ok)
			}
		})
	}
}

// TestRetriedByDeliver: a 503 then success; the retry sends the batch
// again and Loki keeps each entry once.
func TestRetriedByDeliver(t *testing.T) {
	f := newFakeLoki(t, func(f *fakeLoki) {
		f.before = func(w http.ResponseWriter, r *http.Request, n int) bool {
			if n == 1 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return true
			}
			return false
		}
	})
	s := newSink(t, Config{URL: f.url(), MaxRequestBytes: 1024}, nil)
	t0 := time.Now().Add(-time.Minute)
	b := &model.Batch{}
	for i := range 40 {
		b.Logs = append(b.Logs, model.Log{Timestamp: t0.Add(time.Duration(i)).UnixNano(), Source: "fn", Message: []byte(strings.Repeat("y", 60) + strconv.Itoa(i))})
	}
	retries := 0
	if err := sink.Deliver(context.Background(), s, b, sink.Meta{}, sink.RetryConfig{InitialBackoff: time.Millisecond}, func(error) { retries++ }); err != nil || retries != 1 {
		t.Fatalf("Deliver: %v after %d retries", err, retries)
	}
	if got := len(f.streams("fake")[0].entries); got != 40 {
		t.Errorf("Loki holds %d entries, want 40", got)
	}
}

func TestTLS(t *testing.T) {
	f := newFakeLoki(t, func(f *fakeLoki) { f.tls = true })
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	b, _ := sinktest.Batch()
	b.Logs[0].Timestamp, b.Logs[1].Timestamp = time.Now().UnixNano(), time.Now().UnixNano()
	s := newSink(t, Config{URL: f.url(), TLS: sink.TLSConfig{CAFile: ca}}, nil)
	send(t, s, b)
	s2 := newSink(t, Config{URL: f.url()}, nil)
	if err := s2.Send(context.Background(), b, sink.Meta{}); err == nil || errors.Is(err, sink.ErrPermanent) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("self-signed without ca_file: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "url: required"},
		{Config{URL: "ftp://x"}, "url:"},
		{Config{URL: "http://u:p@x"}, "credentials"},
		{Config{URL: "http://x", LabelFields: []string{"source", "request_id"}}, "stream per request"},
		{Config{URL: "http://x", LabelFields: []string{"trace.id"}}, "stream per request"},
		{Config{URL: "http://x", LabelFields: []string{"a.b", "a_b"}}, "both become label a_b"},
		{Config{URL: "http://x", LabelFields: []string{}}, "at least one label"},
		{Config{URL: "http://x", Labels: map[string]string{"__x": "1"}}, "labels:"},
		{Config{URL: "http://x", Labels: map[string]string{"level": "1"}}, "also the label"},
		{Config{URL: "http://x", LabelFields: strings.Fields("a b c d e f g h i j k l m n o p")}, "at most 15"},
		{Config{URL: "http://x", Encoding: "xml"}, "encoding:"},
		{Config{URL: "http://x", LineFormat: "csv"}, "line_format:"},
		{Config{URL: "http://x", HTTPAuth: sink.HTTPAuth{Headers: map[string]string{"X-Scope-OrgID": "a"}}}, "use tenant"},
		{Config{URL: "http://x", HTTPAuth: sink.HTTPAuth{BasicAuth: &sink.BasicAuth{Username: "u"}}}, "basic_auth:"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	c := Config{URL: "http://x"}
	if err := c.Validate(); err != nil || c.Encoding != "protobuf" || !slices.Equal(c.LabelFields, []string{"source", "level"}) || c.SourceLabel != "service_name" {
		t.Errorf("defaults: %+v %v", c, err)
	}
	if _, err := New(Config{URL: "http://x", HTTPAuth: sink.HTTPAuth{BearerTokenEnv: "LOKI_UNSET_VAR"}}, sink.Deps{}); err == nil || !strings.Contains(err.Error(), "LOKI_UNSET_VAR") {
		t.Errorf("unset token variable: %v", err)
	}
}

// TestEncodeAllocs: a warm Send's label resolution and encoding allocate
// nothing per entry once the streams are known.
func TestEncodeAllocs(t *testing.T) {
	b := mixLogs(2000)
	for _, format := range []string{"protobuf", "json"} {
		s, err := New(Config{URL: "http://127.0.0.1:1", Encoding: format}, sink.Deps{Name: "loki"})
		if err != nil {
			t.Fatal(err)
		}
		st := &sendState{}
		st.enc.c = &s.res.ec
		run := func() {
			s.mu.Lock()
			st.entries = s.resolve(st.entries[:0], b)
			s.mu.Unlock()
			sortEntries(st.entries)
			if format == "protobuf" {
				st.enc.proto(b, st.entries)
			} else {
				st.enc.json(b, st.entries)
			}
		}
		run()
		if n := testing.AllocsPerRun(5, run); n > 2 {
			t.Errorf("%s: %v allocations per batch of %d logs", format, n, len(b.Logs))
		}
	}
}
