package app

import (
	"cmp"
	"context"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// errorLogs keeps the most recent error-level log records of each source
// (for Lambda: each function) for /api/v1/errors and the function page.
// Like the history (ADR 0007) it is fed by one reader of the stream's logs
// — from the oldest record retained at start (the rebuild; records stored
// before now − max_age are skipped without decoding), then as they arrive
// — so a restart shows the same records. Memory is bounded: per_source records
// per source, max_total over all (the oldest go first), each message cut
// to max_message bytes.
type errorLogs struct {
	cfg   UIErrorLogsConfig
	st    stream.Stream
	parts []int
	log   *slog.Logger
	now   func() time.Time

	mu      sync.RWMutex
	bySrc   map[string]*errRing
	order   []*errEntry // every entry kept, oldest first (a FIFO over all sources)
	head    int         // order[head:] are live
	n       int         // entries kept
	seen    map[string]int64
	pos     map[string]stream.Position
	rebuilt atomic.Bool
	kept    atomic.Uint64 // records kept so far (les_ui_error_logs_total)
	dropped atomic.Uint64 // records pushed out by max_total
}

type errRing struct {
	entries []*errEntry // oldest first, at most per_source
}

type errEntry struct {
	Timestamp int64
	Source    string
	RequestID string
	Level     string
	Message   string
	// Truncated: the message was longer than max_message; Size is its
	// length in bytes.
	Truncated bool
	Size      int
	Attrs     model.Tags
	gone      bool // pushed out of its source's ring already
}

func newErrorLogs(cfg UIErrorLogsConfig, st stream.Stream, parts []int, reg *selfmetric.Registry, log *slog.Logger) *errorLogs {
	e := &errorLogs{cfg: cfg, st: st, parts: parts, log: log.With("component", "error_logs"), now: time.Now,
		bySrc: map[string]*errRing{}, seen: map[string]int64{}, pos: map[string]stream.Position{}}
	if reg != nil {
		reg.Gauge("les_ui_error_logs_kept", func() float64 { return float64(e.len()) })
		reg.Gauge("les_ui_error_logs_total", func() float64 { return float64(e.kept.Load()) })
	}
	return e
}

// isErrorLevel reports whether a log level names an error or worse, in any
// casing: ERROR (and ERR, OTLP's ERROR2…4), FATAL, CRITICAL, ALERT,
// EMERGENCY, PANIC, SEVERE.
func isErrorLevel(level string) bool {
	if len(level) < 3 {
		return false
	}
	for _, p := range [...]string{"ERR", "FATAL", "CRIT", "ALERT", "EMERG", "PANIC", "SEVERE"} {
		if len(level) >= len(p) && strings.EqualFold(level[:len(p)], p) {
			return true
		}
	}
	return false
}

// add keeps the error-level records of b that are not older than max_age.
// It copies what it keeps.
func (e *errorLogs) add(b *model.Batch, now int64) {
	oldest := now - int64(e.cfg.MaxAge)
	for i := range b.Logs {
		l := &b.Logs[i]
		if !isErrorLevel(l.Level) || l.Timestamp < oldest {
			continue
		}
		msg := l.Message
		trunc := len(msg) > e.cfg.MaxMessage
		if trunc {
			cut := e.cfg.MaxMessage
			for k := 0; k < 3 && cut > 0 && !utf8.RuneStart(msg[cut]); k++ {
				cut-- // do not cut a character in two
			}
			msg = msg[:cut]
		}
		ent := &errEntry{Timestamp: l.Timestamp, Source: strings.Clone(l.Source), RequestID: strings.Clone(l.RequestID),
			Level: strings.Clone(l.Level), Message: strings.ToValidUTF8(string(msg), "\uFFFD"), Truncated: trunc, Size: len(l.Message),
			Attrs: l.Attrs.Clone()}
		e.push(ent)
	}
}

func (e *errorLogs) push(ent *errEntry) {
	r := e.bySrc[ent.Source]
	if r == nil {
		r = &errRing{}
		e.bySrc[ent.Source] = r
	}
	if len(r.entries) == e.cfg.PerSource {
		r.entries[0].gone = true
		r.entries = slices.Delete(r.entries, 0, 1)
		e.n--
	}
	r.entries = append(r.entries, ent)
	e.n++
	e.order = append(e.order, ent)
	e.kept.Add(1)
	// Past max_total, the oldest entry over all sources goes; it is the
	// oldest of its own source too (both are in arrival order).
	for e.n > e.cfg.MaxTotal {
		old := e.order[e.head]
		e.order[e.head] = nil
		e.head++
		if old.gone {
			continue
		}
		e.dropped.Add(1)
		or := e.bySrc[old.Source]
		or.entries = slices.Delete(or.entries, 0, 1)
		e.n--
		if len(or.entries) == 0 {
			delete(e.bySrc, old.Source)
		}
	}
	// Compact the FIFO: drop entries already gone from their ring, and
	// the consumed head, once they are most of it.
	if e.head > len(e.order)/2 || len(e.order) > 2*e.cfg.MaxTotal {
		live := e.order[:0]
		for _, x := range e.order[e.head:] {
			if x != nil && !x.gone {
				live = append(live, x)
			}
		}
		clear(e.order[len(live):])
		e.order, e.head = live, 0
	}
}

// len is the number of entries kept.
func (e *errorLogs) len() int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.n
}

// Run reads the stream's logs until ctx is cancelled. A failing stream is
// logged, not fatal: the endpoint answers from what it has.
func (e *errorLogs) Run(ctx context.Context) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	go e.watchRebuild(ctx)
	var dec wire.Decoder
	var b model.Batch
	err := e.st.Consume(ctx, stream.ConsumeOptions{
		Origins: []string{stream.OriginIngest}, Signals: []wire.Signal{wire.SignalLogs},
		Partitions: e.parts, FromStart: true,
		Batch: 64, MaxWait: 20 * time.Millisecond,
	}, func(ctx context.Context, ds []stream.Delivery) error {
		now := e.now()
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, d := range ds {
			e.pos[d.Partition] = d.Pos
			if !d.Time.IsZero() && now.Sub(d.Time) < 5*time.Second {
				e.rebuilt.Store(true)
			}
			if !d.Time.IsZero() && d.Time.Before(now.Add(-e.cfg.MaxAge)) {
				continue
			}
			h, err := wire.ParseHeader(d.Data)
			if err != nil {
				continue
			}
			id := h.ID()
			if _, dup := e.seen[id]; dup {
				continue
			}
			b.Reset()
			if _, err := dec.Decode(&b, d.Data); err != nil {
				continue
			}
			e.seen[id] = now.UnixNano()
			e.add(&b, now.UnixNano())
		}
		for id, t := range e.seen {
			if now.UnixNano()-t > int64(historyDedup) {
				delete(e.seen, id)
			}
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		e.log.Warn("error log reader stopped; /api/v1/errors answers from what it has", "err", err)
	}
	return nil
}

// watchRebuild marks the rebuild done once the reader has caught up.
func (e *errorLogs) watchRebuild(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for !e.rebuilt.Load() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		e.mu.RLock()
		after := maps.Clone(e.pos)
		e.mu.RUnlock()
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := e.st.Lag(qctx, stream.LagQuery{After: after, Partitions: e.parts,
			Origins: []string{stream.OriginIngest}, Signals: []wire.Signal{wire.SignalLogs}})
		cancel()
		if err == nil && n > 0 {
			continue
		}
		if err != nil && ctx.Err() != nil {
			return
		}
		e.rebuilt.Store(true)
	}
}

type errLogJSON struct {
	Timestamp time.Time         `json:"timestamp"`
	Source    string            `json:"source"`
	RequestID string            `json:"request_id,omitempty"`
	Level     string            `json:"level"`
	Message   string            `json:"message"`
	Truncated bool              `json:"truncated,omitempty"`
	Size      int               `json:"size"`
	Attrs     map[string]string `json:"attrs"`
}

type errSourceJSON struct {
	Source string    `json:"source"`
	Kept   int       `json:"kept"`
	Last   time.Time `json:"last"`
}

// serveErrors answers GET /api/v1/errors (docs/api.md).
func (e *errorLogs) serveErrors(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	limit := e.cfg.PerSource
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > e.cfg.MaxTotal {
			http.Error(w, "limit must be an integer in 1…"+strconv.Itoa(e.cfg.MaxTotal), http.StatusBadRequest)
			return
		}
		limit = n
	}
	var out struct {
		Errors  []errLogJSON    `json:"errors"`
		Sources []errSourceJSON `json:"sources,omitempty"`
		Store   map[string]any  `json:"store"`
	}
	var sel []*errEntry
	e.mu.RLock()
	if v.Has("source") {
		if rg := e.bySrc[v.Get("source")]; rg != nil {
			sel = slices.Clone(rg.entries)
		}
	} else {
		for src, rg := range e.bySrc {
			sel = append(sel, rg.entries...)
			out.Sources = append(out.Sources, errSourceJSON{Source: src, Kept: len(rg.entries), Last: time.Unix(0, rg.entries[len(rg.entries)-1].Timestamp).UTC()})
		}
	}
	out.Store = map[string]any{"kept": e.n, "sources": len(e.bySrc), "per_source": e.cfg.PerSource, "max_total": e.cfg.MaxTotal,
		"max_message": e.cfg.MaxMessage, "max_age": e.cfg.MaxAge.String(), "dropped": e.dropped.Load(), "rebuilding": !e.rebuilt.Load()}
	e.mu.RUnlock()
	// Newest first (by the record's timestamp); entries are immutable once
	// kept, so they are read outside the lock.
	slices.SortStableFunc(sel, func(a, b *errEntry) int { return cmp.Compare(b.Timestamp, a.Timestamp) })
	slices.SortFunc(out.Sources, func(a, b errSourceJSON) int { return strings.Compare(a.Source, b.Source) })
	out.Errors = make([]errLogJSON, 0, min(limit, len(sel)))
	for _, x := range sel[:min(limit, len(sel))] {
		attrs := make(map[string]string, len(x.Attrs))
		for _, t := range x.Attrs {
			attrs[t.Key] = t.Value
		}
		out.Errors = append(out.Errors, errLogJSON{Timestamp: time.Unix(0, x.Timestamp).UTC(), Source: x.Source, RequestID: x.RequestID,
			Level: x.Level, Message: x.Message, Truncated: x.Truncated, Size: x.Size, Attrs: attrs})
	}
	writeJSON(w, out)
}
