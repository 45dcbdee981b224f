package app

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/rollup"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// historyStore keeps the closed windows of the last day for /query and the
// UI (ADR 0007): a rollup.History fed by one reader of the stream's rollup
// records — from the oldest record retained at start (the rebuild), then
// as they arrive. Each record is folded in once (by record id), so a
// rollup outbox published twice after a crash counts once.
type historyStore struct {
	// percentiles answered when a query names none (rollup.percentiles).
	percentiles []float64
	st          stream.Stream
	parts       []int
	log         *slog.Logger
	now         func() time.Time

	mu   sync.RWMutex
	h    *rollup.History
	seen map[string]int64 // record id → when seen (Unix ns)
	pos  map[string]stream.Position

	rebuilt  atomic.Bool
	records  atomic.Uint64
	rejected atomic.Uint64
}

// historyDedup is how long record ids are remembered: longer than any
// stream's de-duplication window and the rollup's re-publish after a crash.
const historyDedup = 15 * time.Minute

func newHistoryStore(st stream.Stream, parts []int, percentiles []float64, cfg rollup.HistoryConfig, reg *selfmetric.Registry, log *slog.Logger) *historyStore {
	if percentiles == nil {
		percentiles = []float64{0.5, 0.9, 0.95, 0.99, 0.999} // the rollup's default
	}
	hs := &historyStore{percentiles: percentiles, st: st, parts: parts, log: log.With("component", "history"), now: time.Now,
		h: rollup.NewHistory(cfg), seen: map[string]int64{}, pos: map[string]stream.Position{}}
	reg.Gauge("les_history_series", func() float64 {
		hs.mu.RLock()
		defer hs.mu.RUnlock()
		return float64(hs.h.Stats().Series)
	})
	reg.Gauge("les_history_series_rejected_total", func() float64 {
		hs.mu.RLock()
		defer hs.mu.RUnlock()
		return float64(hs.h.Stats().SeriesRejected)
	})
	reg.Gauge("les_history_records_total", func() float64 { return float64(hs.records.Load()) })
	return hs
}

// Run reads the rollup's records until ctx is cancelled. A failing stream
// is logged, not fatal: /query then answers from what it has.
func (hs *historyStore) Run(ctx context.Context) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	go hs.watchRebuild(ctx)
	var dec wire.Decoder
	var b model.Batch
	retention := hs.h.Config().Retention
	err := hs.st.Consume(ctx, stream.ConsumeOptions{
		Origins: []string{stream.OriginRollup}, Signals: []wire.Signal{wire.SignalMetrics, wire.SignalDistributions},
		Partitions: hs.parts, FromStart: true, Batch: 64, MaxWait: 20 * time.Millisecond,
	}, func(ctx context.Context, ds []stream.Delivery) error {
		now := hs.now()
		hs.mu.Lock()
		defer hs.mu.Unlock()
		for _, d := range ds {
			hs.pos[d.Partition] = d.Pos
			if !d.Time.IsZero() && now.Sub(d.Time) < 5*time.Second {
				hs.rebuilt.Store(true) // reading what was just stored
			}
			// Records are stored after the windows they carry end, so
			// one stored before the retention holds nothing to keep.
			if !d.Time.IsZero() && d.Time.Before(now.Add(-retention-time.Hour)) {
				continue
			}
			h, err := wire.ParseHeader(d.Data)
			if err != nil {
				continue
			}
			id := h.ID()
			if _, dup := hs.seen[id]; dup {
				continue
			}
			b.Reset()
			if _, err := dec.Decode(&b, d.Data); err != nil {
				continue
			}
			hs.seen[id] = now.UnixNano()
			hs.records.Add(1)
			hs.h.Add(&b, now.UnixNano())
		}
		for id, t := range hs.seen {
			if now.UnixNano()-t > int64(historyDedup) {
				delete(hs.seen, id)
			}
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		hs.log.Warn("history reader stopped; /query answers from what it has", "err", err)
	}
	return nil
}

// watchRebuild marks the rebuild done once the reader has caught up with
// the stream (or the stream cannot say).
func (hs *historyStore) watchRebuild(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hs.mu.RLock()
		after := maps.Clone(hs.pos)
		hs.mu.RUnlock()
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := hs.st.Lag(qctx, stream.LagQuery{After: after, Partitions: hs.parts,
			Origins: []string{stream.OriginRollup}, Signals: []wire.Signal{wire.SignalMetrics, wire.SignalDistributions}})
		cancel()
		if err == nil && n > 0 {
			continue
		}
		if err != nil && ctx.Err() != nil {
			return
		}
		hs.rebuilt.Store(true)
		hs.mu.RLock()
		st := hs.h.Stats()
		hs.mu.RUnlock()
		hs.log.Info("history rebuilt from the stream", "series", st.Series, "windows", st.Windows, "records", hs.records.Load())
		return
	}
}

// read runs f with the history locked for reading.
func (hs *historyStore) read(f func(h *rollup.History)) {
	hs.mu.RLock()
	defer hs.mu.RUnlock()
	f(hs.h)
}
