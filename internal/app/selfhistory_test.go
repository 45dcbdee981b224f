package app

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/les-streams/les/internal/selfmetric"
)

// TestSelfHistory: les keeps the charted families' series, sample by
// sample, at most an hour of them, and serves them oldest first; other
// families are not kept.
func TestSelfHistory(t *testing.T) {
	reg := selfmetric.New()
	got := reg.Counter("les_ingest_received_total", "format", "statsd", "transport", "udp")
	reg.Counter("les_ingest_received_bytes_total_other", "format", "statsd").Add(9) // not charted (a prefix only)
	reg.Gauge("les_stream_spool_bytes", func() float64 { return 4096 })
	h := newSelfHistory(reg)
	clock := time.UnixMilli(1_000_000)
	h.now = func() time.Time { return clock }
	for range selfHistoryKeep + 5 {
		got.Add(10)
		clock = clock.Add(5 * time.Second)
		h.sample()
	}
	rec := httptest.NewRecorder()
	h.servePipeline(rec, httptest.NewRequest("GET", "/api/v1/pipeline", nil))
	var out struct {
		EverySeconds float64 `json:"every_seconds"`
		Samples      []struct {
			T int64              `json:"t"`
			M map[string]float64 `json:"m"`
		} `json:"samples"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if out.EverySeconds != 5 || len(out.Samples) != selfHistoryKeep {
		t.Fatalf("every %v s, %d samples; want 5 s, %d", out.EverySeconds, len(out.Samples), selfHistoryKeep)
	}
	first, last := out.Samples[0], out.Samples[len(out.Samples)-1]
	// The 5 oldest samples were dropped: the first kept one is the 6th.
	if want := time.UnixMilli(1_000_000).Add(6 * 5 * time.Second).UnixMilli(); first.T != want {
		t.Errorf("first sample at %d, want %d", first.T, want)
	}
	key := `les_ingest_received_total{format="statsd",transport="udp"}`
	if first.M[key] != 60 || last.M[key] != float64(10*(selfHistoryKeep+5)) {
		t.Errorf("received: first %v, last %v; want 60, %d", first.M[key], last.M[key], 10*(selfHistoryKeep+5))
	}
	if last.M["les_stream_spool_bytes"] != 4096 {
		t.Errorf("spool bytes %v, want 4096 (in %v)", last.M["les_stream_spool_bytes"], last.M)
	}
	if len(last.M) != 2 {
		t.Errorf("kept %d series, want the 2 charted ones: %v", len(last.M), last.M)
	}
}
