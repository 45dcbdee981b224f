package otlp

import (
	"sync"
)

// DeltasConfig bounds a Deltas.
type DeltasConfig struct {
	// MaxSeries bounds the cumulative series (series × start time) whose
	// last point is kept (default 100,000). When it is reached the least
	// recently seen half is forgotten.
	MaxSeries int
	// Since is when the agent started, Unix nanoseconds. The first point
	// seen of a series whose start time is at or after Since counts in
	// full (everything since its start is new); one that started before
	// (or has no start time) may have been counted by an earlier run, so it
	// only sets the baseline.
	Since int64
}

// DeltasStats are counters for self-metrics.
type DeltasStats struct {
	Series    int    // series kept now
	Baselines uint64 // first points that only set a baseline
	Resets    uint64 // decreases (or bucket layout changes) taken as resets
	Forgotten uint64 // series dropped to stay within MaxSeries
}

// Deltas turns cumulative points into deltas per series and start time.
// It is safe for concurrent use.
//
// A series is keyed by (metric type, name, source, tags, start time): a new
// start time is a new key, so a restarted process (or another Lambda
// sandbox with the same series) never subtracts from another's values. For
// a known key the delta is the current value minus the last one; a value
// below the last (any bucket, for histograms) is a reset and the current
// value is the delta. A point not newer than the last one is out of order
// and rejected (a retried export must not count twice).
type Deltas struct {
	mu        sync.Mutex
	max       int
	since     int64
	maxSeen   int64
	cur, old  map[string]*cumState
	baselines uint64
	resets    uint64
	forgotten uint64
}

type cumState struct {
	ts    int64
	value float64 // sums
	hist  *histState
}

// NewDeltas returns an empty tracker.
func NewDeltas(c DeltasConfig) *Deltas {
	if c.MaxSeries <= 0 {
		c.MaxSeries = 100_000
	}
	return &Deltas{max: c.MaxSeries, since: c.Since, cur: map[string]*cumState{}}
}

// Stats returns the current counters.
func (t *Deltas) Stats() DeltasStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return DeltasStats{Series: len(t.cur) + len(t.old), Baselines: t.baselines, Resets: t.resets, Forgotten: t.forgotten}
}

// lookup returns the state of key (creating it; fresh reports that) under
// t.mu, which the caller holds.
func (t *Deltas) lookup(key []byte, ts int64) (st *cumState, fresh bool) {
	if ts > t.maxSeen {
		t.maxSeen = ts
	}
	if st, ok := t.cur[string(key)]; ok {
		return st, false
	}
	if st, ok := t.old[string(key)]; ok {
		delete(t.old, string(key))
		t.cur[string(key)] = st
		return st, false
	}
	if len(t.cur) >= t.max/2 {
		// Forget the generation not seen since the last rotation. Series
		// that started before now may have been counted: from here on their
		// first point again only sets a baseline.
		t.forgotten += uint64(len(t.old))
		t.old, t.cur = t.cur, make(map[string]*cumState, len(t.cur))
		if t.maxSeen > t.since {
			t.since = t.maxSeen
		}
	}
	st = &cumState{}
	t.cur[string(key)] = st
	return st, true
}

// countsInFull reports whether the first point of a series with this start
// time counts from zero.
func (t *Deltas) countsInFull(start int64) bool { return start != 0 && start >= t.since }

// sumDelta returns the delta of a cumulative sum point. emit is false when
// the point only sets the baseline; reason is set when it is rejected.
func (t *Deltas) sumDelta(key []byte, start, ts int64, v float64) (delta float64, emit bool, reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, fresh := t.lookup(key, ts)
	switch {
	case fresh:
		st.ts, st.value = ts, v
		if t.countsInFull(start) {
			return v, true, ""
		}
		t.baselines++
		return 0, false, ""
	case ts <= st.ts:
		return 0, false, ReasonOutOfOrder
	case v < st.value:
		t.resets++
		st.ts, st.value = ts, v
		return v, true, ""
	}
	delta = v - st.value
	st.ts, st.value = ts, v
	return delta, true, ""
}

// histDelta turns the cumulative histogram point h into its delta in
// place. emit is false when it only sets the baseline.
func (t *Deltas) histDelta(key []byte, h *histPoint) (emit bool, reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, fresh := t.lookup(key, h.ts)
	if fresh {
		st.ts = h.ts
		st.hist = new(histState)
		st.hist.save(h)
		if t.countsInFull(h.start) {
			return true, ""
		}
		t.baselines++
		return false, ""
	}
	if h.ts <= st.ts {
		return false, ReasonOutOfOrder
	}
	st.ts = h.ts
	prev := st.hist
	if prev == nil {
		prev = new(histState)
		st.hist = prev
	}
	ok := h.subtract(prev)
	prev.save(h) // h's cumulative values (subtract kept them)
	if !ok {
		t.resets++
		h.restoreCumulative()
		h.exactMin, h.exactMax = h.hasMin, h.hasMax
	}
	return true, ""
}
