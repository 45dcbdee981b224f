package promrw

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/rollup"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/sink/sinktest"
	"github.com/les-streams/les/internal/sink/sinktest/backendtest"
)

// promName is the expected Prometheus name of a sinktest item, written
// out here: the suite's names only have dots to replace.
func promName(_, name string) string { return strings.ReplaceAll(name, ".", "_") }

// series is one series read back from a backend: labels and samples.
type series struct {
	labels     map[string]string
	values     []wSample
	histograms []histPoint
}

type histPoint struct {
	Ms         int64
	Count, Sum float64
}

// promSeries reads every raw sample of the series matching selector from
// Prometheus (a range query over the last day).
func promSeries(t *testing.T, p *backendtest.Server, selector string) []series {
	t.Helper()
	var res struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Metric     map[string]string
				Values     [][2]any
				Histograms [][2]any
			}
		}
	}
	p.Query(t, selector+"[1d]", time.Now(), &res)
	var out []series
	for _, r := range res.Data.Result {
		s := series{labels: r.Metric}
		for _, v := range r.Values {
			s.values = append(s.values, wSample{Ms: msOf(t, v[0]), V: floatOf(t, v[1])})
		}
		for _, h := range r.Histograms {
			hm := h[1].(map[string]any)
			s.histograms = append(s.histograms, histPoint{Ms: msOf(t, h[0]), Count: floatOf(t, hm["count"]), Sum: floatOf(t, hm["sum"])})
		}
		out = append(out, s)
	}
	return out
}

// promScalar returns the single value of an instant vector query.
func promScalar(t *testing.T, p *backendtest.Server, query string, at time.Time) float64 {
	t.Helper()
	var res struct {
		Data struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	p.Query(t, query, at, &res)
	if len(res.Data.Result) != 1 {
		t.Fatalf("query %s: %d results, want 1", query, len(res.Data.Result))
	}
	return floatOf(t, res.Data.Result[0].Value[1])
}

func msOf(t *testing.T, v any) int64 {
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("timestamp %v", v)
	}
	return int64(math.Round(f * 1000))
}

func floatOf(t *testing.T, v any) float64 {
	s, ok := v.(string)
	if !ok {
		t.Fatalf("value %v is not a string", v)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// vmSeries reads every raw sample of the series matching selector from
// VictoriaMetrics' /api/v1/export (after a flush).
func vmSeries(t *testing.T, vm *backendtest.Server, selector string) []series {
	t.Helper()
	var out []series
	for _, line := range vm.Export(t, selector) {
		s := series{labels: line.Metric}
		for i, v := range line.Values {
			s.values = append(s.values, wSample{V: v, Ms: line.Timestamps[i]})
		}
		out = append(out, s)
	}
	return out
}

// toItems turns series read back into sinktest items: a series with a
// quantile label, or a histogram, names a distribution; its _count,
// _sum, _min and _max series fill in that distribution; every other
// series holds metric points. The run label is left out.
func toItems(ss []series) []sinktest.Item {
	dists := map[string]bool{}
	for _, s := range ss {
		if _, ok := s.labels["quantile"]; ok || len(s.histograms) > 0 {
			dists[s.labels["__name__"]] = true
		}
	}
	type dkey struct {
		name, labels string
		ms           int64
	}
	dm := map[dkey]*sinktest.Item{}
	dist := func(name string, tags map[string]string, source string, ms int64) *sinktest.Item {
		k := dkey{name, fmt.Sprint(tags), ms}
		if dm[k] == nil {
			dm[k] = &sinktest.Item{Signal: "distributions", Name: name, Source: source, Tags: tags, Time: time.UnixMilli(ms)}
		}
		return dm[k]
	}
	var out []sinktest.Item
	for _, s := range ss {
		tags := map[string]string{}
		for k, v := range s.labels {
			if k != "__name__" && k != "run" && k != "source" && k != "quantile" {
				tags[k] = v
			}
		}
		if len(tags) == 0 {
			tags = nil
		}
		name, source := s.labels["__name__"], s.labels["source"]
		base, field := name, ""
		for _, suf := range []string{"_count", "_sum", "_min", "_max"} {
			if b, ok := strings.CutSuffix(name, suf); ok && dists[b] {
				base, field = b, suf
			}
		}
		q, isQ := s.labels["quantile"]
		for _, h := range s.histograms {
			d := dist(name, tags, source, h.Ms)
			d.Count, d.Sum = h.Count, h.Sum
		}
		for _, v := range s.values {
			switch {
			case isQ:
				d := dist(name, tags, source, v.Ms)
				if d.Quantiles == nil {
					d.Quantiles = map[float64]float64{}
				}
				qf, _ := strconv.ParseFloat(q, 64)
				d.Quantiles[qf] = v.V
			case field != "":
				d := dist(base, tags, source, v.Ms)
				switch field {
				case "_count":
					d.Count = v.V
				case "_sum":
					d.Sum = v.V
				case "_min":
					d.Min = v.V
				case "_max":
					d.Max = v.V
				}
			default:
				out = append(out, sinktest.Item{Signal: "metrics", Name: name, Source: source, Tags: tags, Time: time.UnixMilli(v.Ms), Value: v.V})
			}
		}
	}
	for _, d := range dm {
		out = append(out, *d)
	}
	return out
}

// conformance runs sinktest against one backend; each new sink writes
// with its own run label, so the sinks of the suite do not see each other.
func conformance(t *testing.T, url string, read func(selector string) []series, dists []string, ignore []string) {
	run := 0
	sinktest.Run(t, func(t *testing.T) sink.Sink {
		run++
		s, err := New(Config{URL: url, Labels: map[string]string{"run": strconv.Itoa(run)}, Distributions: dists},
			sink.Deps{Name: "prom", Metrics: selfmetric.New()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, func(t *testing.T) []sinktest.Item {
		return toItems(read(fmt.Sprintf(`{run="%d"}`, run)))
	}, sinktest.Options{Skips: []string{"logs", "spans"}, Name: promName, CumulativeCounters: true, Ignore: append([]string{"Kind"}, ignore...)})
}

func TestConformancePrometheus(t *testing.T) {
	p := backendtest.Prometheus(t)
	t.Run("summary", func(t *testing.T) {
		conformance(t, p.URL+"/api/v1/write", func(sel string) []series { return promSeries(t, p, sel) }, nil, nil)
	})
	// Native histograms carry count and sum (and min/max as gauges); the
	// quantiles are Prometheus' estimate, checked in TestNativeHistogram.
	t.Run("native", func(t *testing.T) {
		conformance(t, p.URL+"/api/v1/write", func(sel string) []series {
			return promSeries(t, p, `{__name__!~".*_(count|sum)",`+sel[1:])
		}, []string{"native", "min_max"}, []string{"Quantiles"})
	})
}

func TestConformanceVictoriaMetrics(t *testing.T) {
	vm := backendtest.VictoriaMetrics(t)
	conformance(t, vm.URL+"/api/v1/write", func(sel string) []series { return vmSeries(t, vm, sel) }, nil, nil)
}

func send(t *testing.T, s *Sink, b *model.Batch, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Send(ctx, b, sink.Meta{RecordID: id}); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

func newSink(t *testing.T, cfg Config, reg *selfmetric.Registry) *Sink {
	t.Helper()
	if reg == nil {
		reg = selfmetric.New()
	}
	s, err := New(cfg, sink.Deps{Name: "prom", Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestNativeHistogram sends sketches of known samples as native
// histograms and asks Prometheus for their count, sum and quantiles; the
// quantiles must be within 1% (the sketch) + 0.27% (a schema-8 bucket) of
// the samples' own quantiles (sorted here).
func TestNativeHistogram(t *testing.T) {
	p := backendtest.Prometheus(t)
	s := newSink(t, Config{URL: p.URL + "/api/v1/write", Distributions: []string{"native"}}, nil)
	at := time.Now().Truncate(time.Minute).Add(-10 * time.Minute)
	rng := rand.New(rand.NewPCG(1, 2))
	cases := map[string][]float64{}
	var pos, mixed []float64
	for range 5000 {
		pos = append(pos, math.Exp(rng.NormFloat64()*1.5+3)) // lognormal latencies, ~1…2000
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
	send(t, s, b, "h1")
	for name, vals := range cases {
		sorted := slices.Sorted(slices.Values(vals))
		sum := 0.0
		for _, v := range vals {
			sum += v
		}
		if got := promScalar(t, p, "histogram_count("+name+")", at); got != float64(len(vals)) {
			t.Errorf("%s: histogram_count %v, want %d", name, got, len(vals))
		}
		if got := promScalar(t, p, "histogram_sum("+name+")", at); math.Abs(got-sum) > 1e-9*math.Abs(sum)+1e-9 {
			t.Errorf("%s: histogram_sum %v, want %v", name, got, sum)
		}
		for _, q := range []float64{0.1, 0.5, 0.9, 0.99} {
			want := sorted[int(q*float64(len(sorted)-1))]
			got := promScalar(t, p, fmt.Sprintf("histogram_quantile(%g, %s)", q, name), at)
			if math.Abs(got-want) > 0.013*math.Abs(want)+ZeroThreshold {
				t.Errorf("%s: histogram_quantile(%g) = %v, want %v ±1.3%%", name, q, got, want)
			}
		}
	}
}

// TestCounterResetAcrossRestart: a new sink (a restarted les) starts
// every counter again from its first delta, which Prometheus counts as a
// reset.
func TestCounterResetAcrossRestart(t *testing.T) {
	p := backendtest.Prometheus(t)
	cfg := Config{URL: p.URL + "/api/v1/write"}
	t0 := time.Now().Truncate(time.Minute).Add(-30 * time.Minute)
	counter := func(min int, v float64) *model.Batch {
		return &model.Batch{Metrics: []model.Metric{{Name: "invocations", Source: "fn", Kind: model.Counter, Value: v,
			Timestamp: t0.Add(time.Duration(min) * time.Minute).UnixNano()}}}
	}
	s := newSink(t, cfg, nil)
	send(t, s, counter(0, 2), "a-1")
	send(t, s, counter(1, 3), "a-2")
	send(t, s, counter(1, 3), "a-2") // delivered again: not added twice
	s.Close()
	s = newSink(t, cfg, nil)
	send(t, s, counter(2, 4), "b-1")
	send(t, s, counter(3, 1), "b-2")
	got := promSeries(t, p, "invocations")
	if len(got) != 1 {
		t.Fatalf("%d series", len(got))
	}
	want := []wSample{{2, t0.UnixMilli()}, {5, t0.Add(time.Minute).UnixMilli()}, {4, t0.Add(2 * time.Minute).UnixMilli()}, {5, t0.Add(3 * time.Minute).UnixMilli()}}
	if !slices.Equal(got[0].values, want) {
		t.Errorf("samples %v, want %v", got[0].values, want)
	}
	end := t0.Add(3 * time.Minute)
	if r := promScalar(t, p, "resets(invocations[10m])", end); r != 1 {
		t.Errorf("resets = %v, want 1", r)
	}
}

// TestSanitisingPrometheus: names and labels Prometheus would refuse
// arrive as the README says.
func TestSanitisingPrometheus(t *testing.T) {
	p := backendtest.Prometheus(t)
	reg := selfmetric.New()
	s := newSink(t, Config{URL: p.URL + "/api/v1/write", MaxLabelValueLength: 64}, reg)
	ts := time.Now().Truncate(time.Minute).Add(-5 * time.Minute)
	tags := model.Tags{{Key: "5xx", Value: "a"}, {Key: "Zone", Value: "up"}, {Key: "__name__", Value: "evil"}, {Key: "a.b", Value: "1"},
		{Key: "a_b", Value: "2"}, {Key: "bad", Value: "x\xffy"}, {Key: "empty", Value: ""}, {Key: "ünï", Value: "çödé"}}
	b := &model.Batch{Metrics: []model.Metric{
		{Name: "http.requests-total", Value: 1, Timestamp: ts.UnixNano(), Source: "h", Tags: tags},
		{Name: "5xx.rate", Value: math.Inf(1), Timestamp: ts.UnixNano()},
		{Name: "ratio:nan", Value: math.NaN(), Timestamp: ts.UnixNano()},
		{Name: "long", Value: 1, Timestamp: ts.UnixNano(), Tags: model.Tags{{Key: "k", Value: strings.Repeat("v", 65)}}},
		{Name: "", Value: 1, Timestamp: ts.UnixNano()},
		{Name: "c", Kind: model.Counter, Value: math.NaN(), Timestamp: ts.UnixNano()},
		{Name: "members", Kind: model.Set, Value: 12345, Timestamp: ts.UnixNano()},
	}}
	send(t, s, b, "")
	got := promSeries(t, p, `{__name__=~".+"}`)
	var lines []string
	for _, s := range got {
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range s.labels {
				if !yield(k) {
					return
				}
			}
		})
		var parts []string
		for _, k := range keys {
			parts = append(parts, k+"="+strconv.Quote(s.labels[k]))
		}
		for _, v := range s.values {
			lines = append(lines, strings.Join(parts, ",")+" "+strconv.FormatFloat(v.V, 'g', -1, 64))
		}
	}
	sort.Strings(lines)
	want := []string{
		"Zone=\"up\",_5xx=\"a\",__name__=\"http_requests_total\",_n_=\"çödé\",_name__=\"evil\",a_b=\"1;2\",bad=\"x\uFFFDy\",source=\"h\" 1",
		`__name__="_5xx_rate" +Inf`,
		`__name__="ratio:nan" NaN`,
	}
	if !slices.Equal(lines, want) {
		t.Errorf("Prometheus holds\n  %s\nwant\n  %s", strings.Join(lines, "\n  "), strings.Join(want, "\n  "))
	}
	var text bytes.Buffer
	reg.WritePrometheus(&text)
	for _, r := range []string{"label_value_too_long", "empty_name", "non_finite_counter", "unaggregated_set"} {
		if !strings.Contains(text.String(), `les_sink_dropped_items_total{sink="prom",reason="`+r+`"} 1`) {
			t.Errorf("no drop counted with reason %s", r)
		}
	}
}

// TestOutOfOrderPrometheus: Prometheus refuses a whole request with 400
// when one sample in it is out of order; the sink isolates that sample,
// delivers the rest and counts the drop, without an error.
func TestOutOfOrderPrometheus(t *testing.T) {
	p := backendtest.Prometheus(t)
	reg := selfmetric.New()
	s := newSink(t, Config{URL: p.URL + "/api/v1/write"}, reg)
	ts := time.Now().Truncate(time.Minute).Add(-5 * time.Minute)
	gauge := func(name string, at time.Time, v float64) model.Metric {
		return model.Metric{Name: name, Value: v, Timestamp: at.UnixNano(), Source: "h"}
	}
	send(t, s, &model.Batch{Metrics: []model.Metric{gauge("g", ts, 1)}}, "")
	b := &model.Batch{}
	for i := range 100 {
		b.Metrics = append(b.Metrics, gauge(fmt.Sprintf("m%03d", i), ts, float64(i)))
	}
	b.Metrics = append(b.Metrics[:50], append([]model.Metric{gauge("g", ts.Add(-time.Minute), 2)}, b.Metrics[50:]...)...)
	send(t, s, b, "")
	got := promSeries(t, p, `{__name__=~"m.*"}`)
	if len(got) != 100 {
		t.Errorf("Prometheus holds %d of the 100 good series", len(got))
	}
	var text bytes.Buffer
	reg.WritePrometheus(&text)
	if !strings.Contains(text.String(), `les_sink_dropped_items_total{sink="prom",reason="out_of_order"} 1`) {
		t.Errorf("out-of-order sample not counted:\n%s", text.String())
	}
	if c := s.Counts(); c.Refused != 1 || c.Splits == 0 {
		t.Errorf("counts %+v", c)
	}
}
