package app

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/les-streams/les/internal/selfmetric"
)

// pipelineFamilies are the self-metric families the Pipeline page charts.
var pipelineFamilies = []string{
	"les_ingest_received_total",
	"les_ingest_rejected_total",
	"les_ingest_udp_dropped_total",
	"les_stream_published_records_total",
	"les_stream_spool_bytes",
	"les_consumer_lag_records",
	"les_sink_delivered_items_total",
	"les_sink_retries_total",
	"les_consumer_dead_lettered_total",
}

// Bounds of the self-metrics history: one sample every selfHistoryEvery,
// selfHistoryKeep of them (an hour), of the pipelineFamilies series only.
const (
	selfHistoryEvery = 5 * time.Second
	selfHistoryKeep  = 720
	// selfHistoryMaxSeries bounds the series kept per sample (a flood of
	// label values, say sink names, cannot grow it further).
	selfHistoryMaxSeries = 512
)

// selfHistory keeps the last hour of the Pipeline page's self-metrics,
// sampled by les itself, so the page shows the hour before it was opened
// (GET /api/v1/pipeline). It reads the registry every selfHistoryEvery on
// its own goroutine: nothing on the intake path.
type selfHistory struct {
	reg   *selfmetric.Registry
	every time.Duration
	now   func() time.Time

	mu      sync.Mutex
	samples []selfSample // oldest first, at most selfHistoryKeep
	buf     bytes.Buffer
}

type selfSample struct {
	T int64              `json:"t"` // Unix milliseconds
	M map[string]float64 `json:"m"` // series (name{labels}) → value
}

func newSelfHistory(reg *selfmetric.Registry) *selfHistory {
	return &selfHistory{reg: reg, every: selfHistoryEvery, now: time.Now}
}

// Run samples until ctx is done.
func (h *selfHistory) Run(ctx context.Context) error {
	h.sample()
	t := time.NewTicker(h.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			h.sample()
		}
	}
}

// sample reads the registry once and keeps the charted series.
func (h *selfHistory) sample() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Reset()
	h.reg.WritePrometheus(&h.buf)
	m := map[string]float64{}
	sc := bufio.NewScanner(&h.buf)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() && len(m) < selfHistoryMaxSeries {
		line := sc.Text()
		if line == "" || line[0] == '#' || !charted(line) {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp <= 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		m[line[:sp]] = v
	}
	if len(h.samples) == selfHistoryKeep {
		copy(h.samples, h.samples[1:])
		h.samples = h.samples[:selfHistoryKeep-1]
	}
	h.samples = append(h.samples, selfSample{T: h.now().UnixMilli(), M: m})
}

// charted reports whether a /metrics line is a series of a charted family.
func charted(line string) bool {
	for _, f := range pipelineFamilies {
		if strings.HasPrefix(line, f) && len(line) > len(f) && (line[len(f)] == '{' || line[len(f)] == ' ') {
			return true
		}
	}
	return false
}

// servePipeline answers GET /api/v1/pipeline: the kept samples, oldest
// first (docs/api.md).
func (h *selfHistory) servePipeline(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	out := struct {
		EverySeconds float64      `json:"every_seconds"`
		Samples      []selfSample `json:"samples"`
	}{EverySeconds: h.every.Seconds(), Samples: append([]selfSample(nil), h.samples...)}
	h.mu.Unlock()
	writeJSON(w, out)
}
