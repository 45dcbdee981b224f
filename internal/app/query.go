package app

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/les-streams/les/internal/format/jsonl"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/rollup"
)

// queryAPI serves the read side of les' HTTP API (docs/api.md): /query,
// /api/v1/names and /api/v1/series, answered from the history.
type queryAPI struct {
	hist        *historyStore
	percentiles []float64
	now         func() time.Time
	// maxPoints bounds the steps × series one /query answers
	// (ui.history.max_query_points; 0: the default).
	maxPoints int
}

// maxQueryRange bounds to − from (an absurd range is refused, not clamped).
const maxQueryRange = 400 * 24 * time.Hour

// parseTime reads an RFC 3339 time, Unix seconds, "now", or a duration
// relative to now ("-1h", "-90m").
func parseTime(s string, now time.Time) (time.Time, error) {
	switch {
	case s == "now":
		return now, nil
	case strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+"):
		d, err := time.ParseDuration(s)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is not a duration like -1h", s)
		}
		return now.Add(d), nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		if math.Abs(f) > 1e11 {
			return time.Time{}, fmt.Errorf("%q: Unix seconds expected", s)
		}
		return time.Unix(0, int64(f*1e9)), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time, Unix seconds, now or a duration like -1h", s)
	}
	return t, nil
}

// parseQuantiles reads "0.5,0.99" or "p50,p99.9".
func parseQuantiles(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		scale := 1.0
		if strings.HasPrefix(f, "p") {
			f, scale = f[1:], 100
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || !(v/scale >= 0 && v/scale <= 1) {
			return nil, fmt.Errorf("percentile %q: want 0.5 (a quantile in [0,1]) or p50", f)
		}
		out = append(out, v/scale)
	}
	if len(out) > 20 {
		return nil, errors.New("at most 20 percentiles")
	}
	return out, nil
}

type queryParams struct {
	q      rollup.HistQuery
	stepW  model.Window // the window written on each line (WindowNone for step=all)
	merged bool
}

func (api *queryAPI) parse(v url.Values, h *rollup.History) (queryParams, error) {
	var p queryParams
	q := &p.q
	q.Name = v.Get("name")
	if q.Name == "" {
		return p, errors.New("name is required")
	}
	q.Source, q.AllSources = v.Get("source"), !v.Has("source")
	for _, t := range v["tag"] {
		k, val, ok := strings.Cut(t, ":")
		if !ok || k == "" {
			return p, fmt.Errorf("tag %q: want key:value", t)
		}
		q.Tags = append(q.Tags, model.Tag{Key: k, Value: val})
	}
	if s := v.Get("window"); s != "" {
		w, ok := model.ParseWindow(s)
		if !ok {
			return p, errors.New("window must be minute, hour or day")
		}
		q.Window = w
	} else {
		q.Window = defaultWindow(h, q.Name)
	}
	now := api.now()
	retention := h.Config().Retention
	from, to := now.Add(-retention-time.Duration(q.Window.Nanos())), now
	var err error
	if s := v.Get("from"); s != "" {
		if from, err = parseTime(s, now); err != nil {
			return p, fmt.Errorf("from: %v", err)
		}
	}
	if s := v.Get("to"); s != "" {
		if to, err = parseTime(s, now); err != nil {
			return p, fmt.Errorf("to: %v", err)
		}
	}
	if !from.Before(to) {
		return p, fmt.Errorf("empty range: from %s is not before to %s", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	if to.Sub(from) > maxQueryRange {
		return p, fmt.Errorf("range of %v is more than %v", to.Sub(from).Round(time.Hour), maxQueryRange)
	}
	q.From, q.To = from.UnixNano(), to.UnixNano()
	p.stepW = q.Window
	switch s := v.Get("step"); s {
	case "":
	case "all":
		q.Step, p.stepW = rollup.StepAll, model.WindowNone
	default:
		w, ok := model.ParseWindow(s)
		if !ok {
			return p, errors.New("step must be minute, hour, day or all")
		}
		if w < q.Window {
			return p, fmt.Errorf("step %s is finer than the window %s", w, q.Window)
		}
		q.Step, p.stepW = w.Nanos(), w
	}
	if q.Step != rollup.StepAll {
		step := cmp.Or(q.Step, q.Window.Nanos())
		if n, most := (q.To-q.From)/step, int64(cmp.Or(api.maxPoints, defaultQueryPoints)); n > most {
			return p, fmt.Errorf("%d steps of %s: more than %d; use a coarser step or a shorter range", n, p.stepW, most)
		}
	}
	switch m := v.Get("merge"); m {
	case "", "0", "false", "no":
	case "1", "true", "sources", "yes":
		q.Merge, p.merged = true, true
	default:
		return p, fmt.Errorf("merge=%q: want merge=sources", m)
	}
	q.Quantiles = api.percentiles
	if v.Has("q") {
		if q.Quantiles, err = parseQuantiles(v.Get("q")); err != nil {
			return p, err
		}
	}
	switch c := v.Get("centroids"); c {
	case "", "1", "true", "yes":
		q.Centroids = true
	case "0", "false", "no":
	default:
		return p, fmt.Errorf("centroids=%q: want 0 or 1", c)
	}
	return p, nil
}

// defaultWindow is minute if name has minute series, else the finest
// window it has (minute when it has none).
func defaultWindow(h *rollup.History, name string) model.Window {
	w := model.WindowNone
	for _, s := range h.Series(name) {
		if w == model.WindowNone || s.Window < w {
			w = s.Window
		}
	}
	if w == model.WindowNone {
		return model.WindowMinute
	}
	return w
}

func badRequest(w http.ResponseWriter, err error) {
	http.Error(w, err.Error(), http.StatusBadRequest)
}

// serveQuery answers /query: NDJSON, one object per series and step in the
// format of `les tail` (internal/format/jsonl), ordered by time.
func (api *queryAPI) serveQuery(w http.ResponseWriter, r *http.Request) {
	var buf []byte
	var err error
	var nSeries int
	api.hist.read(func(h *rollup.History) {
		var p queryParams
		if p, err = api.parse(r.URL.Query(), h); err != nil {
			return
		}
		res := h.Query(p.q)
		nSeries = len(res)
		buf = appendQueryLines(buf, res, p)
	})
	if err != nil {
		badRequest(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Les-Series", strconv.Itoa(nSeries))
	_, _ = w.Write(buf)
}

func appendQueryLines(buf []byte, res []rollup.HistSeries, p queryParams) []byte {
	type ref struct{ s, i int }
	var refs []ref
	for si := range res {
		for pi := range res[si].Points {
			refs = append(refs, ref{si, pi})
		}
	}
	// Time first, then the series order of the answer.
	slices.SortStableFunc(refs, func(a, b ref) int {
		return cmp.Compare(res[a.s].Points[a.i].Start, res[b.s].Points[b.i].Start)
	})
	var opts jsonl.Options
	for _, rf := range refs {
		s, pt := &res[rf.s], &res[rf.s].Points[rf.i]
		src := s.Source
		if s.Merged {
			src = "*"
		}
		switch s.Kind {
		case rollup.HistDist:
			d := model.Distribution{Name: s.Name, Timestamp: pt.Start, Window: p.stepW, Source: src, Tags: s.Tags,
				Count: pt.Count, Sum: pt.Sum, Min: pt.Min, Max: pt.Max, Quantiles: pt.Quantiles, Centroids: pt.Centroids}
			buf = jsonl.AppendDistribution(buf, &d, opts)
		default:
			m := model.Metric{Name: s.Name, Value: pt.Value, Timestamp: pt.Start, Source: src, Tags: s.Tags, Window: p.stepW, Kind: model.Counter}
			if s.Kind == rollup.HistGauge {
				m.Kind = model.Gauge
			}
			buf = jsonl.AppendMetric(buf, &m, opts)
		}
	}
	return buf
}

type nameJSON struct {
	Name    string   `json:"name"`
	Kind    string   `json:"kind"`
	Windows []string `json:"windows"`
	Sources int      `json:"sources"`
	TagSets int      `json:"tag_sets"`
	Series  int      `json:"series"`
	Last    string   `json:"last"`
}

type historyJSON struct {
	Series         int    `json:"series"`
	MaxSeries      int    `json:"max_series"`
	SeriesRejected uint64 `json:"series_rejected"`
	Retention      string `json:"retention"`
	Rebuilding     bool   `json:"rebuilding"`
}

func (api *queryAPI) historyInfo(h *rollup.History) historyJSON {
	st, cfg := h.Stats(), h.Config()
	return historyJSON{Series: st.Series, MaxSeries: cfg.MaxSeries, SeriesRejected: st.SeriesRejected,
		Retention: cfg.Retention.String(), Rebuilding: !api.hist.rebuilt.Load()}
}

func rfc3339(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339) }

// serveNames answers /api/v1/names?match=&limit=.
func (api *queryAPI) serveNames(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	limit := 1000
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100_000 {
			badRequest(w, errors.New("limit must be 1 … 100000"))
			return
		}
		limit = n
	}
	var out struct {
		Names   []nameJSON  `json:"names"`
		More    bool        `json:"more"`
		History historyJSON `json:"history"`
	}
	out.Names = []nameJSON{}
	api.hist.read(func(h *rollup.History) {
		names, more := h.Names(v.Get("match"), limit)
		for _, n := range names {
			nj := nameJSON{Name: n.Name, Kind: n.Kind.String(), Sources: n.Sources, TagSets: n.TagSets, Series: n.Series, Last: rfc3339(n.Last)}
			for _, w := range n.Windows {
				nj.Windows = append(nj.Windows, w.String())
			}
			out.Names = append(out.Names, nj)
		}
		out.More, out.History = more, api.historyInfo(h)
	})
	writeJSON(w, out)
}

type seriesJSON struct {
	Source  string            `json:"source"`
	Tags    map[string]string `json:"tags"`
	Kind    string            `json:"kind"`
	Window  string            `json:"window"`
	Windows int               `json:"windows"`
	First   string            `json:"first"`
	Last    string            `json:"last"`
}

// serveSeries answers /api/v1/series?name=.
func (api *queryAPI) serveSeries(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if name == "" {
		badRequest(w, errors.New("name is required"))
		return
	}
	var out struct {
		Name    string       `json:"name"`
		Series  []seriesJSON `json:"series"`
		History historyJSON  `json:"history"`
	}
	out.Name, out.Series = name, []seriesJSON{}
	api.hist.read(func(h *rollup.History) {
		for _, s := range h.Series(name) {
			tags := make(map[string]string, len(s.Tags))
			for _, t := range s.Tags {
				tags[t.Key] = t.Value
			}
			out.Series = append(out.Series, seriesJSON{Source: s.Source, Tags: tags, Kind: s.Kind.String(), Window: s.Window.String(),
				Windows: s.Windows, First: rfc3339(s.First), Last: rfc3339(s.Last)})
		}
		out.History = api.historyInfo(h)
	})
	writeJSON(w, out)
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n'))
}
