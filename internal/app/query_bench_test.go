package app

import (
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/rollup"
)

// BenchmarkQueryDay: GET /query for one series over 24 h of minute
// distributions (25 samples each), with 10,000 other series in the
// history, answered as NDJSON without centroids — the Series page's call.
func BenchmarkQueryDay(b *testing.B) {
	now := time.Now().Truncate(time.Minute)
	h := rollup.NewHistory(rollup.HistoryConfig{})
	rng := rand.New(rand.NewPCG(1, 2))
	var batch model.Batch
	for m := 1440; m > 0; m-- {
		ts := now.Add(-time.Duration(m) * time.Minute).UnixNano()
		sk := rollup.NewSketch()
		for range 25 {
			sk.Add(math.Exp(rng.NormFloat64()) * 80)
		}
		batch.Dists = append(batch.Dists[:0], model.Distribution{Name: "aws.lambda.duration", Source: "fn", Timestamp: ts, Window: model.WindowMinute,
			Count: sk.Count(), Sum: sk.Sum(), Min: sk.Min(), Max: sk.Max(), Centroids: sk.Centroids(nil)})
		batch.Metrics = batch.Metrics[:0]
		if m <= 5 { // 10,000 other series known (a few windows each)
			for i := range 10_000 {
				batch.Metrics = append(batch.Metrics, model.Metric{Name: "other", Source: string(rune('a'+i%26)) + string(rune(i)), Kind: model.Counter, Window: model.WindowMinute, Timestamp: ts, Value: 1})
			}
		}
		h.Add(&batch, ts+90e9)
	}
	api := &queryAPI{hist: &historyStore{h: h}, percentiles: []float64{0.5, 0.9, 0.99}, now: func() time.Time { return now }}
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		api.serveQuery(w, httptest.NewRequest("GET", "/query?name=aws.lambda.duration&source=fn&from=-24h&step=minute&centroids=0&q=p50,p90,p99", nil))
		if w.Code != 200 || w.Header().Get("X-Les-Series") != "1" {
			b.Fatal(w.Code, w.Body.String())
		}
		b.SetBytes(int64(w.Body.Len()))
	}
}

// BenchmarkNames10k: GET /api/v1/names (the Series page's first call)
// with 10,000 names known, and with a search that matches 1 in 10.
func BenchmarkNames10k(b *testing.B) {
	now := time.Now().Truncate(time.Minute)
	h := rollup.NewHistory(rollup.HistoryConfig{})
	var batch model.Batch
	for i := range 10_000 {
		batch.Metrics = append(batch.Metrics, model.Metric{Name: "svc.metric." + string(rune('a'+i%10)) + "." + time.Duration(i).String(),
			Source: "fn", Kind: model.Counter, Window: model.WindowMinute, Timestamp: now.Add(-time.Hour).UnixNano(), Value: 1})
	}
	h.Add(&batch, now.UnixNano())
	api := &queryAPI{hist: &historyStore{h: h}, now: func() time.Time { return now }}
	for _, q := range []string{"limit=200", "match=metric.c&limit=200"} {
		b.Run(q, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				api.serveNames(w, httptest.NewRequest("GET", "/api/v1/names?"+q, nil))
				if w.Code != 200 {
					b.Fatal(w.Code)
				}
			}
		})
	}
}
