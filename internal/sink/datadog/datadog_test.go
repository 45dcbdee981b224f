package datadog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/rollup"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/sink/sinktest"
	"github.com/les-streams/les/internal/sink/sinktest/backendtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testKey = "0123456789abcdef0123456789abcdef"

func newSink(t *testing.T, cfg Config, reg *selfmetric.Registry) *Sink {
	t.Helper()
	if reg == nil {
		reg = selfmetric.New()
	}
	if cfg.APIKeyEnv == "" && cfg.APIKeyFile == "" {
		t.Setenv("LES_TEST_DD_KEY", testKey)
		cfg.APIKeyEnv = "LES_TEST_DD_KEY"
	}
	client := &http.Client{Transport: sink.NewTransport()}
	s, err := New(cfg, sink.Deps{Name: "dd", Metrics: reg, HTTP: client})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		client.CloseIdleConnections()
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

// fakeItems turns what the fake received into sinktest items. Series of
// a distribution in "series" mode (.count, .sum, .min, .max, .median,
// .<p>percentile) are put back together; .avg is checked elsewhere.
func fakeItems(f *fakeDatadog) []sinktest.Item {
	series, sketches, logs := f.snapshot()
	var ss []vmSeries
	for _, s := range series {
		labels := map[string]string{"__name__": s.Metric}
		for k, v := range tagMap(s.Tags) {
			labels[k] = v
		}
		for _, r := range s.Resources {
			if r.Type == "host" {
				labels["host"] = r.Name
			}
		}
		vs := vmSeries{labels: labels}
		for _, p := range s.Points {
			vs.points = append(vs.points, [2]float64{float64(p.Timestamp * 1000), p.Value})
		}
		ss = append(ss, vs)
	}
	out := seriesItems(ss)
	for _, sk := range sketches {
		for _, d := range sk.dogs {
			out = append(out, sinktest.Item{Signal: "distributions", Name: sk.metric, Source: sk.host, Tags: tagMap(sk.tags),
				Time: time.Unix(d.ts, 0), Count: float64(d.cnt), Sum: d.sum, Min: d.min, Max: d.max})
		}
	}
	for _, l := range logs {
		it := sinktest.Item{Signal: "logs", Tags: map[string]string{}}
		for k, v := range l {
			switch k {
			case "hostname":
				it.Source = v.(string)
			case "status":
				it.Level = strings.ToUpper(v.(string))
			case "message":
				it.Message = v.(string)
			case "timestamp":
				it.Time = time.UnixMilli(int64(v.(float64)))
			case "request_id":
				it.RequestID = v.(string)
			case "ddsource", "ddtags", "service":
			default:
				it.Tags[k] = fmt.Sprint(v)
			}
		}
		if len(it.Tags) == 0 {
			it.Tags = nil
		}
		out = append(out, it)
	}
	return out
}

type vmSeries struct {
	labels map[string]string
	points [][2]float64 // ms, value
}

// seriesItems turns series (labels incl. __name__ and host) into items.
func seriesItems(ss []vmSeries) []sinktest.Item {
	type dkey struct {
		name, tags string
		ms         float64
	}
	dm := map[dkey]*sinktest.Item{}
	var keys []dkey
	var out []sinktest.Item
	for _, s := range ss {
		name := s.labels["__name__"]
		tags := map[string]string{}
		for k, v := range s.labels {
			if k != "__name__" && k != "host" && k != "run" {
				tags[k] = v
			}
		}
		if len(tags) == 0 {
			tags = nil
		}
		base, field := name, ""
		for _, suf := range []string{".count", ".sum", ".min", ".max", ".avg", ".median"} {
			if b, ok := strings.CutSuffix(name, suf); ok {
				base, field = b, suf
			}
		}
		if b, ok := strings.CutSuffix(name, "percentile"); ok {
			i := strings.LastIndexByte(b, '.')
			base, field = b[:i], b[i+1:]
		}
		for _, p := range s.points {
			if field == "" {
				out = append(out, sinktest.Item{Signal: "metrics", Name: name, Source: s.labels["host"], Tags: tags, Time: time.UnixMilli(int64(p[0])), Value: p[1]})
				continue
			}
			k := dkey{base, fmt.Sprint(tags), p[0]}
			d := dm[k]
			if d == nil {
				d = &sinktest.Item{Signal: "distributions", Name: base, Source: s.labels["host"], Tags: tags, Time: time.UnixMilli(int64(p[0]))}
				dm[k] = d
				keys = append(keys, k)
			}
			switch field {
			case ".count":
				d.Count = p[1]
			case ".sum":
				d.Sum = p[1]
			case ".min":
				d.Min = p[1]
			case ".max":
				d.Max = p[1]
			case ".avg":
			default:
				q := 0.5
				if field != ".median" {
					pct, _ := strconv.ParseFloat(strings.ReplaceAll(field, "_", "."), 64)
					q = pct / 100
				}
				if d.Quantiles == nil {
					d.Quantiles = map[float64]float64{}
				}
				d.Quantiles[q] = p[1]
			}
		}
	}
	for _, k := range keys {
		out = append(out, *dm[k])
	}
	return out
}

// recent is a base time Datadog accepts (points at most an hour old).
func recent() time.Time { return time.Now().UTC().Truncate(time.Minute).Add(-30 * time.Minute) }

func TestConformanceFake(t *testing.T) {
	for _, tc := range []struct {
		dists  string
		ignore []string
	}{{"sketches", []string{"Kind", "Quantiles"}}, {"series", []string{"Kind"}}} {
		t.Run(tc.dists, func(t *testing.T) {
			var f *fakeDatadog
			sinktest.Run(t, func(t *testing.T) sink.Sink {
				f = newFakeDatadog(t, testKey)
				return newSink(t, Config{APIURL: f.srv.URL, LogsURL: f.srv.URL, Distributions: tc.dists}, nil)
			}, func(t *testing.T) []sinktest.Item {
				return fakeItems(f)
			}, sinktest.Options{Skips: []string{"spans"}, Ignore: tc.ignore, Time: recent()})
		})
	}
}

// vmExport reads every series with run=<run> from VictoriaMetrics.
func vmExport(t *testing.T, vm *backendtest.Server, run int) []vmSeries {
	t.Helper()
	var out []vmSeries
	for _, line := range vm.Export(t, fmt.Sprintf(`{run="%d"}`, run)) {
		s := vmSeries{labels: line.Metric}
		for i, v := range line.Values {
			s.points = append(s.points, [2]float64{float64(line.Timestamps[i]), v})
		}
		out = append(out, s)
	}
	return out
}

// TestConformanceVictoriaMetrics: series_api v1 into VictoriaMetrics'
// /datadog/api/v1/series (1.79 takes neither v2 series, sketches nor
// logs), distributions as series; values read back with /api/v1/export.
func TestConformanceVictoriaMetrics(t *testing.T) {
	vm := backendtest.VictoriaMetrics(t)
	run := 0
	sinktest.Run(t, func(t *testing.T) sink.Sink {
		run++
		return metricsOnly{newSink(t, Config{APIURL: vm.URL + "/datadog", SeriesAPI: "v1", Distributions: "series", Tags: []string{"run:" + strconv.Itoa(run)}}, nil)}
	}, func(t *testing.T) []sinktest.Item {
		return seriesItems(vmExport(t, vm, run))
	}, sinktest.Options{Skips: []string{"logs", "spans"}, Ignore: []string{"Kind"}, Time: recent()})
}

// metricsOnly hands the sink only metrics and distributions, as the
// runner does for a sink with `signals: [metrics, distributions]`.
type metricsOnly struct{ *Sink }

func (m metricsOnly) Send(ctx context.Context, b *model.Batch, meta sink.Meta) error {
	c := *b
	c.Logs, c.Spans = nil, nil
	return m.Sink.Send(ctx, &c, meta)
}

// TestRequestFormat: what the series, sketch and log requests hold.
func TestRequestFormat(t *testing.T) {
	f := newFakeDatadog(t, testKey)
	reg := selfmetric.New()
	s := newSink(t, Config{APIURL: f.srv.URL, LogsURL: f.srv.URL, Tags: []string{"team:core"}, Service: "checkout"}, reg)
	at := recent()
	ts := at.UnixNano()
	b := &model.Batch{
		Metrics: []model.Metric{
			{Name: "lambda.invocations", Kind: model.Counter, Value: 3, Timestamp: ts, Source: "fn-a", Window: model.WindowMinute, Tags: model.Tags{{Key: "env", Value: "prod"}}},
			{Name: "queue depth", Kind: model.Gauge, Value: 7, Timestamp: ts, Source: "fn-a"},
			{Name: "5xx.rate", Value: 1, Timestamp: ts},
			{Name: "nan", Value: math.NaN(), Timestamp: ts},
			{Name: "delta", Kind: model.GaugeDelta, Value: 1, Timestamp: ts},
			{Name: strings.Repeat("x", 201), Value: 1, Timestamp: ts},
		},
		Logs: []model.Log{{Timestamp: ts + 5e6, Source: "fn-a", RequestID: "r-1", Level: "WARNING", Message: []byte("slow \"db\""),
			Attrs: model.Tags{{Key: "status", Value: "200"}, {Key: "cold", Value: "true"}}}},
	}
	send(t, s, b)
	got := map[string]string{}
	for _, r := range f.requests {
		got[r.URL.Path] = r.Header.Get("Content-Type") + " " + r.Header.Get("Content-Encoding")
		if r.Header.Get("DD-API-KEY") != testKey {
			t.Errorf("%s: no API key", r.URL.Path)
		}
	}
	if d := cmp.Diff(map[string]string{"/api/v2/series": "application/json gzip", "/api/v2/logs": "application/json gzip"}, got); d != "" {
		t.Errorf("requests (-want +got)\n%s", d)
	}
	series, _, logs := f.snapshot()
	var lines []string
	for _, s := range series {
		j, _ := json.Marshal(s)
		lines = append(lines, string(j))
	}
	sec := at.Unix()
	want := []string{
		fmt.Sprintf(`{"metric":"lambda.invocations","type":1,"points":[{"timestamp":%d,"value":3}],"resources":[{"name":"fn-a","type":"host"}],"tags":["env:prod","team:core"],"interval":60,"unit":""}`, sec),
		fmt.Sprintf(`{"metric":"queue_depth","type":3,"points":[{"timestamp":%d,"value":7}],"resources":[{"name":"fn-a","type":"host"}],"tags":["team:core"],"interval":0,"unit":""}`, sec),
	}
	if d := cmp.Diff(want, lines); d != "" {
		t.Errorf("series (-want +got)\n%s", d)
	}
	wantLog := map[string]any{"ddsource": "les", "ddtags": "team:core", "hostname": "fn-a", "service": "checkout", "status": "warn",
		"message": `slow "db"`, "timestamp": float64(at.UnixMilli() + 5), "request_id": "r-1", "attr_status": "200", "cold": "true"}
	if len(logs) != 1 {
		t.Fatalf("%d logs", len(logs))
	}
	if d := cmp.Diff(wantLog, logs[0]); d != "" {
		t.Errorf("log (-want +got)\n%s", d)
	}
	var text bytes.Buffer
	reg.WritePrometheus(&text)
	for _, r := range []string{"invalid_name", "non_finite_value", "unaggregated_gauge_delta", "name_too_long"} {
		if !strings.Contains(text.String(), `les_sink_dropped_items_total{sink="dd",reason="`+r+`"} 1`) {
			t.Errorf("no drop counted with reason %s", r)
		}
	}
}

func TestSourceAsTag(t *testing.T) {
	f := newFakeDatadog(t, testKey)
	s := newSink(t, Config{APIURL: f.srv.URL, LogsURL: f.srv.URL, SourceAs: "tag"}, nil)
	b, _ := sinktest.BatchAt(recent(), 0)
	send(t, s, b)
	series, sketches, logs := f.snapshot()
	if len(series[0].Resources) != 0 || !slices.Contains(series[0].Tags, "source:host-1") {
		t.Errorf("series %+v", series[0])
	}
	if sketches[0].host != "" || !slices.Contains(sketches[0].tags, "source:fn-checkout") {
		t.Errorf("sketch %+v", sketches[0])
	}
	if _, ok := logs[0]["hostname"]; ok || logs[0]["ddtags"] != "source:fn-checkout" {
		t.Errorf("log %v", logs[0])
	}
}

// TestSketchAccuracy: a sketch of known samples, read back with the
// agent's quantile algorithm, is within 1% (the les sketch) + 1.6% (an
// agent bin) of the samples' own quantiles; count, sum, min and max are
// exact.
func TestSketchAccuracy(t *testing.T) {
	f := newFakeDatadog(t, testKey)
	s := newSink(t, Config{APIURL: f.srv.URL, LogsURL: f.srv.URL}, nil)
	rng := rand.New(rand.NewPCG(3, 4))
	cases := map[string][]float64{}
	var pos, mixed []float64
	for range 5000 {
		pos = append(pos, math.Exp(rng.NormFloat64()*1.5+3))
	}
	for range 2000 {
		v := rng.NormFloat64() * 100
		if rng.IntN(20) == 0 {
			v = 0
		}
		mixed = append(mixed, v)
	}
	cases["latency_ms"], cases["delta"] = pos, mixed
	b := &model.Batch{}
	at := recent()
	for name, vals := range cases {
		sk := rollup.NewSketch()
		for _, v := range vals {
			sk.Add(v)
		}
		c := len(b.CentroidArena)
		b.CentroidArena = sk.Centroids(b.CentroidArena)
		b.Dists = append(b.Dists, model.Distribution{Name: name, Timestamp: at.UnixNano(), Window: model.WindowMinute, Source: "fn",
			Count: sk.Count(), Sum: sk.Sum(), Min: sk.Min(), Max: sk.Max(), Centroids: b.CentroidArena[c:]})
	}
	send(t, s, b)
	_, sketches, _ := f.snapshot()
	if len(sketches) != 2 {
		t.Fatalf("%d sketches", len(sketches))
	}
	for _, sk := range sketches {
		vals := cases[sk.metric]
		sorted := slices.Sorted(slices.Values(vals))
		d := sk.dogs[0]
		sum := 0.0
		for _, v := range vals {
			sum += v
		}
		if d.cnt != int64(len(vals)) || math.Abs(d.sum-sum) > 1e-9*math.Abs(sum) || d.min != sorted[0] || d.max != sorted[len(sorted)-1] || d.ts != at.Unix() {
			t.Errorf("%s: cnt %d sum %v min %v max %v ts %d", sk.metric, d.cnt, d.sum, d.min, d.max, d.ts)
		}
		if !slices.IsSorted(d.k) {
			t.Errorf("%s: keys not sorted", sk.metric)
		}
		for _, q := range []float64{0.1, 0.25, 0.5, 0.75, 0.9, 0.99} {
			want := sorted[int(math.RoundToEven(q*float64(len(sorted)-1)))]
			got := agentQuantile(d, q)
			if math.Abs(got-want) > 0.026*math.Abs(want)+1e-9 {
				t.Errorf("%s: q%v = %v, want %v ±2.6%%", sk.metric, q, got, want)
			}
		}
	}
}

// TestAnswers: how each answer ends a Send. A refused API key names the
// sink and the variable, never the key.
func TestAnswers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		code      int
		permanent bool
		retryIn   bool
		contains  string
	}{
		{"forbidden", 403, true, false, "LES_TEST_DD_KEY"},
		{"bad request", 400, true, false, "400"},
		{"too large", 413, true, false, "413"},
		{"rate limited", 429, false, true, "429"},
		{"server error", 500, false, false, "500"},
		{"unavailable", 503, false, false, "503"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeDatadog(t, testKey)
			f.before = func(w http.ResponseWriter, r *http.Request) bool {
				if tc.code == 403 {
					return false // the fake refuses the wrong key itself
				}
				if tc.retryIn {
					w.Header().Set("Retry-After", "3")
				}
				ddError(w, tc.code, http.StatusText(tc.code))
				return true
			}
			key := testKey
			if tc.code == 403 {
				key = "wrong-key-abcdef"
			}
			t.Setenv("LES_TEST_DD_KEY", key)
			s := newSink(t, Config{APIURL: f.srv.URL, LogsURL: f.srv.URL, APIKeyEnv: "LES_TEST_DD_KEY"}, nil)
			b, _ := sinktest.BatchAt(recent(), 0)
			err := s.Send(context.Background(), b, sink.Meta{})
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, sink.ErrPermanent) != tc.permanent {
				t.Errorf("%v: permanent %v, want %v", err, !tc.permanent, tc.permanent)
			}
			if !strings.Contains(err.Error(), `datadog sink "dd"`) || strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q: want the sink's name and %q, never the key", err, tc.contains)
			}
			if ra, ok := errors.AsType[*sink.RetryAfterError](err); tc.retryIn != ok || ok && ra.After != 3*time.Second {
				t.Errorf("retry after %v %v", ra, ok)
			}
		})
	}
	if _, err := New(Config{APIKeyEnv: "LES_DD_UNSET"}, sink.Deps{}); err == nil || !strings.Contains(err.Error(), "LES_DD_UNSET") {
		t.Errorf("unset key variable: %v", err)
	}
}

// TestRetrySkipsAcceptedRequests: the series request is accepted, the
// sketches answered 503 once; the retry by sink.Deliver does not send the
// series again.
func TestRetrySkipsAcceptedRequests(t *testing.T) {
	f := newFakeDatadog(t, testKey)
	failed := false
	f.before = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/api/beta/sketches" && !failed {
			failed = true
			ddError(w, 503, "busy")
			return true
		}
		return false
	}
	s := newSink(t, Config{APIURL: f.srv.URL, LogsURL: f.srv.URL}, nil)
	b, _ := sinktest.BatchAt(recent(), 0)
	retries := 0
	if err := sink.Deliver(context.Background(), s, b, sink.Meta{}, sink.RetryConfig{InitialBackoff: time.Millisecond}, func(error) { retries++ }); err != nil || retries != 1 {
		t.Fatalf("Deliver: %v after %d retries", err, retries)
	}
	series, sketches, logs := f.snapshot()
	if len(series) != sinktest.NumMetrics || len(sketches) != sinktest.NumDistributions || len(logs) != sinktest.NumLogs {
		t.Errorf("%d series, %d sketches, %d logs", len(series), len(sketches), len(logs))
	}
	if c := s.Counts(); c.Skipped != 1 {
		t.Errorf("counts %+v", c)
	}
}

// TestLogLimits: more than 1000 logs, or more than max_log_request_bytes,
// go in several requests; the fake refuses a request over the limits.
func TestLogLimits(t *testing.T) {
	f := newFakeDatadog(t, testKey)
	s := newSink(t, Config{APIURL: f.srv.URL, LogsURL: f.srv.URL, MaxLogRequestBytes: 200_000}, nil)
	b := &model.Batch{}
	ts := recent().UnixNano()
	for i := range 2500 {
		b.Logs = append(b.Logs, model.Log{Timestamp: ts + int64(i), Source: "fn", Message: []byte(fmt.Sprintf("line %d %s", i, strings.Repeat("z", i%200)))})
	}
	send(t, s, b)
	_, _, logs := f.snapshot()
	if len(logs) != 2500 {
		t.Errorf("%d logs stored", len(logs))
	}
	if n := len(f.requests); n < 3 {
		t.Errorf("%d requests", n)
	}
	seen := map[string]bool{}
	for _, l := range logs {
		seen[l["message"].(string)] = true
	}
	if len(seen) != 2500 {
		t.Errorf("%d distinct logs", len(seen))
	}
}

func TestSiteURLs(t *testing.T) {
	for site, want := range map[string][3]string{
		"":                  {"https://api.datadoghq.com/api/v2/series", "https://api.datadoghq.com/api/beta/sketches", "https://http-intake.logs.datadoghq.com/api/v2/logs"},
		"datadoghq.eu":      {"https://api.datadoghq.eu/api/v2/series", "https://api.datadoghq.eu/api/beta/sketches", "https://http-intake.logs.datadoghq.eu/api/v2/logs"},
		"us3.datadoghq.com": {"https://api.us3.datadoghq.com/api/v2/series", "https://api.us3.datadoghq.com/api/beta/sketches", "https://http-intake.logs.us3.datadoghq.com/api/v2/logs"},
	} {
		s := newSink(t, Config{Site: site}, nil)
		if s.urls != want {
			t.Errorf("site %q: %v", site, s.urls)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Site: "app.datadoghq.com"}, "site:"},
		{Config{Site: "data dog"}, "site:"},
		{Config{APIURL: "ftp://x"}, "api_url:"},
		{Config{APIKeyEnv: "A", APIKeyFile: "f"}, "give one"},
		{Config{SeriesAPI: "v3"}, "series_api:"},
		{Config{Distributions: "histograms"}, "distributions:"},
		{Config{SourceAs: "label"}, "source_as:"},
		{Config{Tags: []string{"a,b"}}, "tags:"},
		{Config{MaxLogRequestBytes: 6_000_000}, "5 MB"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	c := Config{}
	if err := c.Validate(); err != nil || c.APIKeyEnv != "DD_API_KEY" || c.SeriesAPI != "v2" || c.Distributions != "sketches" {
		t.Errorf("defaults %+v %v", c, err)
	}
}

// TestEncodeDoesNotAllocate: a warm encode of a realistic batch allocates
// (almost) nothing.
func TestEncodeDoesNotAllocate(t *testing.T) {
	b := mixBatch()
	e := newEncoder(encOptions{sketches: true, maxBytes: DefaultMaxRequestBytes, maxLogBytes: DefaultMaxLogRequestBytes, maxLogLength: DefaultMaxLogLength, logSource: "les"})
	e.encode(b)
	if n := testing.AllocsPerRun(5, func() { e.encode(b) }); n > 5 {
		t.Errorf("%v allocations per encode of %d items", n, b.Len())
	}
}
