package influxdb

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/sink/sinktest"
	"github.com/les-streams/les/internal/sink/sinktest/backendtest"
)

func deps(name string) sink.Deps {
	return sink.Deps{Name: name, Metrics: selfmetric.New(), HTTP: &http.Client{Transport: sink.NewTransport()}}
}

func newSink(t *testing.T, cfg Config, d sink.Deps) *Sink {
	t.Helper()
	s, err := New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// --- conformance against the real servers ---

func TestConformanceInfluxDB1(t *testing.T) {
	srv := backendtest.InfluxDB(t)
	var db string
	n := 0
	sinktest.Run(t, func(t *testing.T) sink.Sink {
		n++
		db = fmt.Sprintf("les%d", n)
		influxQuery(t, srv.URL, "", "CREATE DATABASE "+db)
		return newSink(t, Config{URL: srv.URL, Database: db, Compression: "gzip"}, deps("influx-test"))
	}, func(t *testing.T) []sinktest.Item {
		return readInflux(t, srv.URL, db)
	}, sinktest.Options{Ignore: []string{"Kind"}})
}

func TestConformanceVictoriaMetrics(t *testing.T) {
	for _, version := range []int{1, 2} {
		t.Run("version"+strconv.Itoa(version), func(t *testing.T) {
			var srv *backendtest.Server
			sinktest.Run(t, func(t *testing.T) sink.Sink {
				srv = backendtest.VictoriaMetrics(t) // a fresh server for each sink
				cfg := Config{URL: srv.URL, Version: version, Database: "les"}
				if version == 2 {
					cfg.Database, cfg.Org, cfg.Bucket = "", "les", "les"
				}
				return newSink(t, cfg, deps("vm-test"))
			}, func(t *testing.T) []sinktest.Item {
				return readVM(t, srv, map[int]string{1: "les", 2: ""}[version])
			}, sinktest.Options{
				// VictoriaMetrics stores numbers only: the string fields of
				// logs and spans (message, ids) are not kept.
				Skips:  []string{"logs", "spans"},
				Ignore: []string{"Kind"},
			})
		})
	}
}

func influxQuery(t *testing.T, base, db, q string) []influxSeries {
	t.Helper()
	v := url.Values{"q": {q}, "epoch": {"ns"}}
	if db != "" {
		v.Set("db", db)
	}
	resp, err := http.PostForm(base+"/query", v)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Results []struct {
			Error  string
			Series []influxSeries
		}
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("query %q: %v", q, err)
	}
	if len(out.Results) != 1 || out.Results[0].Error != "" {
		t.Fatalf("query %q: %+v", q, out)
	}
	return out.Results[0].Series
}

type influxSeries struct {
	Name    string
	Tags    map[string]string
	Columns []string
	Values  [][]any
}

// readInflux reads every point of db back into Items, by the mapping in
// README.md.
func readInflux(t *testing.T, base, db string) []sinktest.Item {
	t.Helper()
	var items []sinktest.Item
	for _, ms := range influxQuery(t, base, db, "SHOW MEASUREMENTS") {
		for _, row := range ms.Values {
			meas := row[0].(string)
			for _, se := range influxQuery(t, base, db, "SELECT * FROM "+quoteIdent(meas)+" GROUP BY *") {
				for _, vals := range se.Values {
					fields := map[string]any{}
					var ts int64
					for i, c := range se.Columns {
						if vals[i] == nil {
							continue
						}
						if c == "time" {
							ts, _ = vals[i].(json.Number).Int64()
							continue
						}
						fields[c] = vals[i]
					}
					items = append(items, influxItem(t, meas, se.Tags, fields, ts))
				}
			}
		}
	}
	return items
}

// quoteIdent quotes an InfluxQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func num(t *testing.T, v any) float64 {
	t.Helper()
	f, err := v.(json.Number).Float64()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func influxItem(t *testing.T, meas string, tags map[string]string, fields map[string]any, ts int64) sinktest.Item {
	t.Helper()
	it := sinktest.Item{Time: time.Unix(0, ts), Tags: map[string]string{}}
	for k, v := range tags {
		if v != "" {
			it.Tags[k] = v
		}
	}
	it.Source = it.Tags["source"]
	delete(it.Tags, "source")
	switch {
	case meas == "logs":
		it.Signal, it.Level = "logs", it.Tags["level"]
		delete(it.Tags, "level")
		for k, v := range fields {
			switch k {
			case "message":
				it.Message = v.(string)
			case "request_id":
				it.RequestID = v.(string)
			default:
				it.Tags[k] = v.(string) // attributes are string fields
			}
		}
	case meas == "spans":
		it.Signal, it.Name = "spans", it.Tags["name"]
		delete(it.Tags, "name")
		it.TraceID, it.SpanID = fields["trace_id"].(string), fields["span_id"].(string)
		it.ParentID, _ = fields["parent_id"].(string)
		it.Duration = time.Duration(num(t, fields["duration_ns"]))
	case fields["value"] != nil:
		it.Signal, it.Name, it.Value = "metrics", meas, num(t, fields["value"])
	case fields["count"] != nil:
		it.Signal, it.Name = "distributions", meas
		if w := it.Tags["window"]; w != "minute" {
			t.Errorf("distribution %s has window tag %q, want minute", meas, w)
		}
		delete(it.Tags, "window")
		it.Count, it.Sum, it.Min, it.Max = num(t, fields["count"]), num(t, fields["sum"]), num(t, fields["min"]), num(t, fields["max"])
		if avg := num(t, fields["avg"]); avg != it.Sum/it.Count {
			t.Errorf("avg %v, want sum/count %v", avg, it.Sum/it.Count)
		}
		it.Quantiles = map[float64]float64{}
		for k, v := range fields {
			if p, ok := strings.CutPrefix(k, "p"); ok {
				f, err := strconv.ParseFloat(p, 64)
				if err != nil {
					t.Fatalf("field %q", k)
				}
				it.Quantiles[f/100] = num(t, v)
			}
		}
	default:
		t.Fatalf("point of %s with fields %v", meas, fields)
	}
	if len(it.Tags) == 0 {
		it.Tags = nil
	}
	return it
}

// readVM reads everything back from VictoriaMetrics' export API. VM names
// each field's series <measurement>_<field>.
func readVM(t *testing.T, vm *backendtest.Server, wantDB string) []sinktest.Item {
	t.Helper()
	type key struct {
		meas, tags string
		ts         int64
	}
	points := map[key]map[string]float64{}
	tagsOf := map[key]map[string]string{}
	for _, line := range vm.Export(t, `{__name__=~".+"}`) {
		name := line.Metric["__name__"]
		delete(line.Metric, "__name__")
		// VictoriaMetrics adds /write's db query parameter as a "db"
		// label (and nothing for /api/v2/write's bucket).
		if db := line.Metric["db"]; db != wantDB {
			t.Errorf("series %s has db label %q, want %q", name, db, wantDB)
		}
		delete(line.Metric, "db")
		i := strings.LastIndexByte(name, '_')
		meas, field := name[:i], name[i+1:]
		if strings.HasPrefix(name, "logs_") || strings.HasPrefix(name, "spans_") {
			continue // string fields are stored as 0: see Skips
		}
		tj, _ := json.Marshal(line.Metric)
		for j, ts := range line.Timestamps {
			k := key{meas, string(tj), ts}
			if points[k] == nil {
				points[k], tagsOf[k] = map[string]float64{}, line.Metric
			}
			points[k][field] = line.Values[j]
		}
	}
	var items []sinktest.Item
	for k, f := range points {
		fields := map[string]any{}
		for n, v := range f {
			fields[n] = json.Number(strconv.FormatFloat(v, 'g', -1, 64))
		}
		items = append(items, influxItem(t, k.meas, tagsOf[k], fields, k.ts*1e6))
	}
	return items
}

// --- encoder ---

func TestEncoderLines(t *testing.T) {
	const ts = 1763780400000000000
	tags := model.Tags{{Key: "a b", Value: "c,d=e"}, {Key: "empty", Value: ""}, {Key: "source", Value: "ignored"}, {Key: "time", Value: "x"}, {Key: "z", Value: `back\slash`}}
	for _, tc := range []struct {
		name    string
		version int
		encode  func(e *Encoder, dst []byte) ([]byte, bool)
		want    string // "" = dropped
	}{
		{"metric", 1, func(e *Encoder, dst []byte) ([]byte, bool) {
			return e.AppendMetric(dst, &model.Metric{Name: "cpu, user", Value: 12.5, Timestamp: ts, Source: "host 1", Tags: tags, Kind: model.Counter})
		}, `cpu\,\ user,source=host\ 1,a\ b=c\,d\=e,z=back\slash value=12.5 1763780400000000000`},
		{"metric v2 backslash", 2, func(e *Encoder, dst []byte) ([]byte, bool) {
			return e.AppendMetric(dst, &model.Metric{Name: `m\`, Value: 1e21, Timestamp: ts, Tags: tags[4:]})
		}, `m\\,z=back\\slash value=1e+21 1763780400000000000`},
		{"metric window", 1, func(e *Encoder, dst []byte) ([]byte, bool) {
			return e.AppendMetric(dst, &model.Metric{Name: "req", Value: -3, Timestamp: ts, Source: "fn", Window: model.WindowHour,
				Tags: model.Tags{{Key: "window", Value: "mine"}}})
		}, `req,source=fn,window=hour value=-3 1763780400000000000`},
		{"metric trailing backslash v1", 1, func(e *Encoder, dst []byte) ([]byte, bool) {
			return e.AppendMetric(dst, &model.Metric{Name: "m", Value: 1, Tags: model.Tags{{Key: "k", Value: `v\`}}})
		}, ""},
		{"metric backslash before comma v1", 1, func(e *Encoder, dst []byte) ([]byte, bool) {
			return e.AppendMetric(dst, &model.Metric{Name: `m\,x`, Value: 1})
		}, ""},
		{"metric backslash before comma v2", 2, func(e *Encoder, dst []byte) ([]byte, bool) {
			return e.AppendMetric(dst, &model.Metric{Name: `m\,x`, Value: 1, Timestamp: 5})
		}, `m\\\,x value=1 5`},
		{"metric NaN", 1, func(e *Encoder, dst []byte) ([]byte, bool) {
			return e.AppendMetric(dst, &model.Metric{Name: "m", Value: math.NaN()})
		}, ""},
		{"metric newline in tag", 2, func(e *Encoder, dst []byte) ([]byte, bool) {
			return e.AppendMetric(dst, &model.Metric{Name: "m", Value: 1, Tags: model.Tags{{Key: "k", Value: "a\nb"}}})
		}, ""},
		{"metric empty name", 1, func(e *Encoder, dst []byte) ([]byte, bool) {
			return e.AppendMetric(dst, &model.Metric{Value: 1})
		}, ""},
		{"distribution", 1, func(e *Encoder, dst []byte) ([]byte, bool) {
			return e.AppendDistribution(dst, &model.Distribution{Name: "lat", Timestamp: ts, Window: model.WindowMinute, Source: "fn",
				Tags: model.Tags{{Key: "env", Value: "prod"}}, Count: 4, Sum: 10, Min: 1, Max: math.Inf(1), Correction: 2,
				Quantiles: []model.Quantile{{Q: 0.5, Value: 2}, {Q: 0.999, Value: 5}, {Q: 0.99, Value: math.NaN()}}})
		}, `lat,source=fn,window=minute,correction=2,env=prod count=4,sum=10,min=1,avg=2.5,p50=2,p99.9=5 1763780400000000000`},
		{"log fields", 1, func(e *Encoder, dst []byte) ([]byte, bool) {
			return e.AppendLog(dst, &model.Log{Timestamp: ts, Source: "fn", RequestID: "req-1", Level: "INFO",
				Message: []byte("say \"hi\" \\ now\nline 2"), Attrs: model.Tags{{Key: "user id", Value: `x"y`}, {Key: "message", Value: "no"}}})
		}, "logs,source=fn,level=INFO message=\"say \\\"hi\\\" \\\\ now\nline 2\",request_id=\"req-1\",user\\ id=\"x\\\"y\" 1763780400000000000"},
		{"log v2 tags", 2, func(e *Encoder, dst []byte) ([]byte, bool) {
			e.LogAttrs, e.LogMeasurement = "tags", "app logs"
			return e.AppendLog(dst, &model.Log{Timestamp: ts, Source: "fn", Message: []byte("a\nb\\"), Attrs: model.Tags{{Key: "env", Value: "prod"}, {Key: "level", Value: "x"}}})
		}, `app\ logs,source=fn,env=prod message="a\\nb\\" 1763780400000000000`},
		{"span", 1, func(e *Encoder, dst []byte) ([]byte, bool) {
			return e.AppendSpan(dst, &model.Span{Name: "GET /x", TraceID: "t1", SpanID: "s2", ParentID: "s1", Start: ts, Duration: 45e6, Source: "fn",
				Tags: model.Tags{{Key: "http.status", Value: "200"}, {Key: "name", Value: "dup"}}})
		}, `spans,source=fn,name=GET\ /x,http.status=200 trace_id="t1",span_id="s2",parent_id="s1",duration_ns=45000000i 1763780400000000000`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &Encoder{Version: tc.version}
			got, ok := tc.encode(e, []byte("prefix\n"))
			if tc.want == "" {
				if ok || string(got) != "prefix\n" || e.Drops.Total() != 1 {
					t.Fatalf("not dropped: %q ok=%v drops=%+v", got, ok, e.Drops)
				}
				return
			}
			if !ok || string(got) != "prefix\n"+tc.want+"\n" {
				t.Fatalf("got  %q\nwant %q", got, "prefix\n"+tc.want+"\n")
			}
		})
	}
}

func TestEncoderSpreadsEqualLogTimestamps(t *testing.T) {
	b := &model.Batch{Logs: []model.Log{
		{Timestamp: 100, Source: "fn", Level: "INFO", Message: []byte("a")},
		{Timestamp: 100, Source: "fn", Level: "INFO", Message: []byte("b")},
		{Timestamp: 100, Source: "fn", Level: "INFO", Message: []byte("c")},
		{Timestamp: 100, Source: "fn", Level: "ERROR", Message: []byte("d")},
		{Timestamp: 101, Source: "fn", Level: "ERROR", Message: []byte("e")},
	}}
	got, n := (&Encoder{Version: 1}).AppendBatch(nil, b)
	want := `logs,source=fn,level=INFO message="a" 100
logs,source=fn,level=INFO message="b" 101
logs,source=fn,level=INFO message="c" 102
logs,source=fn,level=ERROR message="d" 100
logs,source=fn,level=ERROR message="e" 101
`
	if n != 5 || string(got) != want {
		t.Fatalf("got %d lines\n%s\nwant\n%s", n, got, want)
	}
}

// TestEncoderAgainstInfluxDB1 writes awkward strings through the real
// server and reads them back, to hold the escaping rules of line.go to
// what InfluxDB 1.x does.
func TestEncoderAgainstInfluxDB1(t *testing.T) {
	srv := backendtest.InfluxDB(t)
	influxQuery(t, srv.URL, "", "CREATE DATABASE esc")
	s := newSink(t, Config{URL: srv.URL, Database: "esc"}, deps("esc"))
	weird := `a,b=c d\e"f`
	b := &model.Batch{
		Metrics: []model.Metric{{Name: "m " + weird, Value: 1, Timestamp: 1e18, Source: weird, Tags: model.Tags{{Key: weird, Value: weird}}}},
		Logs:    []model.Log{{Timestamp: 1e18, Source: "fn", Level: "INFO", Message: []byte("line 1\nline \"2\" \\ end\\"), Attrs: model.Tags{{Key: weird, Value: weird}}}},
	}
	if err := s.Send(context.Background(), b, sink.Meta{}); err != nil {
		t.Fatal(err)
	}
	got := readInflux(t, srv.URL, "esc")
	sinktest.Compare(t, got, []sinktest.Item{
		{Signal: "metrics", Name: "m " + weird, Source: weird, Tags: map[string]string{weird: weird}, Time: time.Unix(0, 1e18), Value: 1},
		{Signal: "logs", Source: "fn", Level: "INFO", Tags: map[string]string{weird: weird}, Time: time.Unix(0, 1e18), Message: "line 1\nline \"2\" \\ end\\"},
	}, sinktest.Options{})
}

func TestEncoderDoesNotAllocate(t *testing.T) {
	b, _ := sinktest.Batch()
	e := &Encoder{Version: 1}
	buf, _ := e.AppendBatch(nil, b)
	if n := testing.AllocsPerRun(100, func() { buf, _ = e.AppendBatch(buf[:0], b) }); n != 0 {
		t.Errorf("%v allocations per warm AppendBatch, want 0", n)
	}
}

// --- HTTP behaviour, against local receivers ---

type receiver struct {
	mu     sync.Mutex
	bodies []string
	reqs   []*http.Request
}

func (r *receiver) handler(t *testing.T, answer func(w http.ResponseWriter, n int) bool) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		var rd io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(req.Body)
			if err != nil {
				t.Errorf("gzip: %v", err)
				return
			}
			rd = zr
		}
		body, _ := io.ReadAll(rd)
		r.mu.Lock()
		r.bodies = append(r.bodies, string(body))
		r.reqs = append(r.reqs, req)
		n := len(r.bodies)
		r.mu.Unlock()
		if answer == nil || !answer(w, n) {
			w.WriteHeader(http.StatusNoContent)
		}
	}
}

func TestVersion2RequestAndToken(t *testing.T) {
	var rc receiver
	srv := httptest.NewServer(rc.handler(t, nil))
	defer srv.Close()
	t.Setenv("LES_TEST_INFLUX_TOKEN", "s3cr3t-token")
	s := newSink(t, Config{URL: srv.URL + "/", Version: 2, Org: "my org", Bucket: "b&x", TokenEnv: "LES_TEST_INFLUX_TOKEN", Compression: "gzip"}, deps("v2"))
	b, _ := sinktest.Batch()
	if err := s.Send(context.Background(), b, sink.Meta{}); err != nil {
		t.Fatal(err)
	}
	req := rc.reqs[0]
	if req.URL.Path != "/api/v2/write" || req.URL.Query().Get("org") != "my org" || req.URL.Query().Get("bucket") != "b&x" || req.URL.Query().Get("precision") != "ns" {
		t.Errorf("request %s", req.URL)
	}
	if got := req.Header.Get("Authorization"); got != "Token s3cr3t-token" {
		t.Errorf("Authorization %q", got)
	}
	if n := strings.Count(rc.bodies[0], "\n"); n != b.Len() {
		t.Errorf("%d lines, want %d", n, b.Len())
	}
}

func TestVersion1BasicAuth(t *testing.T) {
	var rc receiver
	srv := httptest.NewServer(rc.handler(t, nil))
	defer srv.Close()
	pw := t.TempDir() + "/pw"
	if err := os.WriteFile(pw, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, Config{URL: srv.URL, Database: "db", RetentionPolicy: "rp1", Username: "les", PasswordFile: pw}, deps("v1"))
	b, _ := sinktest.Batch()
	if err := s.Send(context.Background(), b, sink.Meta{}); err != nil {
		t.Fatal(err)
	}
	req := rc.reqs[0]
	u, p, ok := req.BasicAuth()
	if !ok || u != "les" || p != "hunter2" || req.URL.Path != "/write" || req.URL.Query().Get("db") != "db" || req.URL.Query().Get("rp") != "rp1" || req.URL.Query().Has("p") {
		t.Errorf("request %s, basic auth %q %q %v", req.URL, u, p, ok)
	}
}

func TestMaxBodySplits(t *testing.T) {
	var rc receiver
	srv := httptest.NewServer(rc.handler(t, nil))
	defer srv.Close()
	s := newSink(t, Config{URL: srv.URL, Database: "db", MaxBody: 1024}, deps("split"))
	b := &model.Batch{}
	for i := range 100 {
		b.Metrics = append(b.Metrics, model.Metric{Name: fmt.Sprintf("metric.number.%03d", i), Value: float64(i), Timestamp: 1e18, Source: "host-1"})
	}
	if err := s.Send(context.Background(), b, sink.Meta{}); err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, body := range rc.bodies {
		if len(body) > 1024 || !strings.HasSuffix(body, "\n") {
			t.Errorf("body of %d bytes, ends %q", len(body), body[len(body)-5:])
		}
		all.WriteString(body)
	}
	want, _ := (&Encoder{Version: 1}).AppendBatch(nil, b)
	if len(rc.bodies) < 4 || all.String() != string(want) {
		t.Errorf("%d bodies; joined equal to the encoding: %v", len(rc.bodies), all.String() == string(want))
	}
}

func TestBadAnswers(t *testing.T) {
	const token = "tok-do-not-print"
	for _, tc := range []struct {
		name      string
		answer    func(w http.ResponseWriter)
		permanent bool
		after     time.Duration
		want      string
	}{
		{"400", func(w http.ResponseWriter) {
			w.WriteHeader(400)
			io.WriteString(w, `{"error":"unable to parse 'x': invalid field format"}`)
		}, true, 0, "invalid field format"},
		{"401 wrong token", func(w http.ResponseWriter) {
			w.WriteHeader(401)
			io.WriteString(w, `{"code":"unauthorized","message":"unauthorized access"}`)
		}, true, 0, "401"},
		{"413", func(w http.ResponseWriter) { w.WriteHeader(413) }, true, 0, "413"},
		{"429", func(w http.ResponseWriter) { w.Header().Set("Retry-After", "7"); w.WriteHeader(429) }, false, 7 * time.Second, "429"},
		{"503", func(w http.ResponseWriter) { w.WriteHeader(503) }, false, 0, "503"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rc receiver
			srv := httptest.NewServer(rc.handler(t, func(w http.ResponseWriter, _ int) bool { tc.answer(w); return true }))
			defer srv.Close()
			t.Setenv("LES_TEST_TOKEN", token)
			s := newSink(t, Config{URL: srv.URL, Version: 2, Org: "o", Bucket: "b", TokenEnv: "LES_TEST_TOKEN"}, deps("influx-prod"))
			b, _ := sinktest.Batch()
			err := s.Send(context.Background(), b, sink.Meta{})
			if err == nil {
				t.Fatal("Send succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, `influxdb sink "influx-prod"`) || !strings.Contains(msg, tc.want) || strings.Contains(msg, token) {
				t.Errorf("error %q: want the sink's name and %q, never the token", msg, tc.want)
			}
			if errors.Is(err, sink.ErrPermanent) != tc.permanent {
				t.Errorf("permanent = %v, want %v", !tc.permanent, tc.permanent)
			}
			ra, ok := errors.AsType[*sink.RetryAfterError](err)
			if (tc.after != 0) != ok || (ok && ra.After != tc.after) {
				t.Errorf("retry after: %v %v, want %v", ra, ok, tc.after)
			}
		})
	}
}

func TestPartialWriteCountsDropped(t *testing.T) {
	var rc receiver
	srv := httptest.NewServer(rc.handler(t, func(w http.ResponseWriter, _ int) bool {
		w.WriteHeader(400)
		io.WriteString(w, `{"error":"partial write: field type conflict: input field \"value\" on measurement \"m\" is type integer, already exists as type float dropped=2"}`)
		return true
	}))
	defer srv.Close()
	d := deps("partial")
	s := newSink(t, Config{URL: srv.URL, Database: "db"}, d)
	b, _ := sinktest.Batch()
	if err := s.Send(context.Background(), b, sink.Meta{}); err != nil {
		t.Fatalf("partial write: %v", err)
	}
	var out bytes.Buffer
	d.Metrics.WritePrometheus(&out)
	if !strings.Contains(out.String(), `les_sink_dropped_items_total{sink="partial",reason="backend_refused"} 2`) {
		t.Errorf("dropped counter not found in\n%s", out.String()[:min(out.Len(), 2000)])
	}
	if c := s.Counts(); c.Dropped != 2 {
		t.Errorf("counts %+v", c)
	}
}

func TestSlowServerAndReset(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	s := newSink(t, Config{URL: slow.URL, Database: "db"}, deps("slow"))
	b, _ := sinktest.Batch()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Send(ctx, b, sink.Meta{}); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sink.ErrPermanent) {
		t.Errorf("slow server: %v, want a retryable deadline error", err)
	}

	reset := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.(interface{ SetLinger(int) error }).SetLinger(0)
		conn.Close()
	}))
	defer reset.Close()
	s = newSink(t, Config{URL: reset.URL, Database: "db"}, deps("reset"))
	if err := s.Send(context.Background(), b, sink.Meta{}); err == nil || errors.Is(err, sink.ErrPermanent) || !strings.Contains(err.Error(), `influxdb sink "reset"`) {
		t.Errorf("connection reset: %v, want a retryable error naming the sink", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "url: required"},
		{Config{URL: "ftp://x"}, "url:"},
		{Config{URL: "http://u:p@x"}, "url: must not hold credentials"},
		{Config{URL: "http://x"}, "database: required"},
		{Config{URL: "http://x", Version: 2}, "org, bucket: required"},
		{Config{URL: "http://x", Version: 3}, "version:"},
		{Config{URL: "http://x", Database: "d", Compression: "zstd"}, "compression:"},
		{Config{URL: "http://x", Database: "d", LogAttrs: "labels"}, "log_attrs:"},
		{Config{URL: "http://x", Database: "d", PasswordEnv: "X"}, "username: required"},
		{Config{URL: "http://x", Database: "d", Org: "o"}, "org, bucket, token_env and token_file are for version 2"},
		{Config{URL: "http://x", Database: "d", MaxBody: 10}, "max_body:"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), strings.SplitN(tc.want, ":", 2)[0]) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := New(Config{URL: "http://x", Version: 2, Org: "o", Bucket: "b", TokenEnv: "LES_TEST_UNSET_VAR"}, deps("x")); err == nil ||
		!strings.Contains(err.Error(), "LES_TEST_UNSET_VAR") {
		t.Errorf("unset token variable: %v", err)
	}
}

func TestSendAfterClose(t *testing.T) {
	s := newSink(t, Config{URL: "http://127.0.0.1:1", Database: "d"}, deps("c"))
	s.Close()
	if err := s.Send(context.Background(), &model.Batch{}, sink.Meta{}); err == nil {
		t.Fatal("Send after Close succeeded")
	}
}
