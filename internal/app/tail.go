package app

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/les-streams/les/internal/format/jsonl"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// tailAPI serves /api/v1/tail: what arrives on the stream, as server-sent
// events, filtered here. Each open tail is one stream consumer (from the
// newest record) that ends when the client goes away, a write stalls for
// tailWriteTimeout, the tail has run tailMaxDuration, or les shuts down.
// At most tailMaxOpen run at once and each sends at most tailMaxRate items
// a second; more are skipped and counted in a "skipped" event.
type tailAPI struct {
	st      stream.Stream
	slots   chan struct{}
	mu      sync.Mutex
	cancels map[*context.CancelFunc]struct{}
	closed  bool
	open    *metrics.Counter
	skipped *metrics.Counter
}

const (
	tailMaxOpen      = 4
	tailMaxRate      = 200
	tailWriteTimeout = 10 * time.Second
	tailMaxDuration  = 30 * time.Minute
	tailHeartbeat    = 15 * time.Second
)

func newTailAPI(st stream.Stream, reg *selfmetric.Registry) *tailAPI {
	t := &tailAPI{st: st, slots: make(chan struct{}, tailMaxOpen), cancels: map[*context.CancelFunc]struct{}{},
		open: reg.Counter("les_api_tails_total"), skipped: reg.Counter("les_api_tail_skipped_items_total")}
	reg.Gauge("les_api_tails_open", func() float64 { return float64(len(t.slots)) })
	return t
}

func (t *tailAPI) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for c := range t.cancels {
		(*c)()
	}
}

type tailFilter struct {
	name, source, text string
}

func (f *tailFilter) match(name, source string, line []byte) bool {
	if f.name != "" && !strings.Contains(strings.ToLower(name), f.name) {
		return false
	}
	if f.source != "" && !strings.Contains(strings.ToLower(source), f.source) {
		return false
	}
	if f.text != "" && !bytes.Contains(bytes.ToLower(line), []byte(f.text)) {
		return false
	}
	return true
}

func (t *tailAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	var o stream.ConsumeOptions
	for _, s := range splitList(v.Get("signal")) {
		sig, err := wire.ParseSignal(s)
		if err != nil {
			badRequest(w, err)
			return
		}
		o.Signals = append(o.Signals, sig)
	}
	for _, s := range splitList(v.Get("origin")) {
		if !stream.ValidOrigin(s) {
			badRequest(w, fmt.Errorf("origin %q is not one of %s", s, strings.Join(stream.AllOrigins(), ", ")))
			return
		}
		o.Origins = append(o.Origins, s)
	}
	if len(o.Origins) == 0 {
		o.Origins = []string{stream.OriginIngest, stream.OriginAgg, stream.OriginRollup, stream.OriginDerived}
	}
	o.Batch, o.MaxWait = 32, 100*time.Millisecond
	f := tailFilter{name: strings.ToLower(v.Get("name")), source: strings.ToLower(v.Get("source")), text: strings.ToLower(v.Get("text"))}
	rc := http.NewResponseController(w)

	select {
	case t.slots <- struct{}{}:
		defer func() { <-t.slots }()
	default:
		w.Header().Set("Retry-After", "5")
		http.Error(w, fmt.Sprintf("%d live tails are open already", tailMaxOpen), http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), tailMaxDuration)
	defer cancel()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	t.cancels[&cancel] = struct{}{}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.cancels, &cancel)
		t.mu.Unlock()
	}()
	t.open.Inc()

	// A live tail outlasts agent.http.read_timeout, whose deadline would
	// otherwise end the request.
	_ = rc.SetReadDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var wmu sync.Mutex
	write := func(b []byte) bool {
		wmu.Lock()
		defer wmu.Unlock()
		_ = rc.SetWriteDeadline(time.Now().Add(tailWriteTimeout))
		if _, err := w.Write(b); err != nil {
			cancel()
			return false
		}
		if err := rc.Flush(); err != nil {
			cancel()
			return false
		}
		return true
	}
	if !write([]byte(": les live tail\nretry: 3000\n\n")) {
		return
	}
	go func() {
		tk := time.NewTicker(tailHeartbeat)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				write([]byte(": ping\n\n"))
			}
		}
	}()

	var dec wire.Decoder
	var b model.Batch
	var line, ev []byte
	sec, sent, skipped := time.Now(), 0, 0
	emit := func(origin, name, source string) {
		if !f.match(name, source, line) {
			return
		}
		if now := time.Now(); now.Sub(sec) >= time.Second {
			if skipped > 0 {
				write(fmt.Appendf(nil, "event: skipped\ndata: {\"skipped\":%d}\n\n", skipped))
			}
			sec, sent, skipped = now, 0, 0
		}
		if sent >= tailMaxRate {
			skipped++
			t.skipped.Inc()
			return
		}
		sent++
		ev = append(ev[:0], `data: {"origin":`...)
		ev = jsonl.AppendString(ev, origin)
		ev = append(ev, `,"item":`...)
		ev = append(ev, bytes.TrimSuffix(line, []byte{'\n'})...)
		ev = append(ev, "}\n\n"...)
		write(ev)
	}
	_ = t.st.Consume(ctx, o, func(ctx context.Context, ds []stream.Delivery) error {
		for _, d := range ds {
			if ctx.Err() != nil {
				return nil
			}
			b.Reset()
			if _, err := dec.Decode(&b, d.Data); err != nil {
				continue
			}
			for i := range b.Metrics {
				m := &b.Metrics[i]
				line = jsonl.AppendMetric(line[:0], m, jsonl.Options{})
				emit(d.Origin, m.Name, m.Source)
			}
			for i := range b.Dists {
				dd := b.Dists[i]
				dd.Centroids = nil // compact: the summary and percentiles
				line = jsonl.AppendDistribution(line[:0], &dd, jsonl.Options{})
				emit(d.Origin, dd.Name, dd.Source)
			}
			for i := range b.Logs {
				l := &b.Logs[i]
				line = jsonl.AppendLog(line[:0], l, jsonl.Options{})
				emit(d.Origin, "", l.Source)
			}
			for i := range b.Spans {
				s := &b.Spans[i]
				line = jsonl.AppendSpan(line[:0], s, jsonl.Options{})
				emit(d.Origin, s.Name, s.Source)
			}
		}
		return nil
	})
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
