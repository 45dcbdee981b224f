package consumer

import (
	"log/slog"
	"sync"
	"time"
)

// failSummaryEvery is how often a failing sink's log repeats.
const failSummaryEvery = time.Minute

// failLog logs a sink's failures without flooding the log: the first
// failure at once, then at most one summary per failSummaryEvery with the
// failures since the last line, and one line when a send succeeds again.
type failLog struct {
	log     *slog.Logger
	mu      sync.Mutex
	failing bool
	since   time.Time // first failure of this episode
	logged  time.Time // last line written
	total   int       // failures in this episode
	unsaid  int       // failures since the last line
}

// failure records one failed send attempt (that will be retried).
func (f *failLog) failure(err error) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.failing {
		f.failing, f.since, f.logged, f.total, f.unsaid = true, now, now, 1, 0
		f.log.Warn("sink failing; retrying with backoff (a summary follows every minute while it fails)", "err", err)
		return
	}
	f.total++
	f.unsaid++
	if now.Sub(f.logged) >= failSummaryEvery {
		f.log.Warn("sink still failing", "failures", f.unsaid, "failures_total", f.total,
			"failing_for", now.Sub(f.since).Round(time.Second), "last_err", err)
		f.logged, f.unsaid = now, 0
	}
}

// success records a send that went through.
func (f *failLog) success() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.failing {
		return
	}
	f.log.Info("sink recovered", "failures_total", f.total, "failed_for", time.Since(f.since).Round(time.Second))
	f.failing = false
}
