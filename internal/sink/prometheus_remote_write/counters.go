package promrw

// counterExpiry is how long (in event time) a counter series may go
// without a point before its total may be forgotten to make room for a
// new series; if it comes back it starts again from its next delta,
// which Prometheus reads as a counter reset.
const counterExpiry = 3600_000 // ms

// counterState is the running total of one counter series. The p fields
// are the total while a Send is in progress; they become the committed
// fields when the Send is done (commit) or are forgotten when it will be
// retried (discard), so a retried batch adds its deltas once.
type counterState struct {
	total  float64
	lastMs int64
	set    bool // a point was written

	gen    uint64 // the Send the p fields belong to
	pTotal float64
	pMs    int64
	pSet   bool
	// req and off locate the value of the series' last sample in this
	// Send: request number and byte offset.
	req, off int
}

// counters holds the totals of every counter series, keyed by the series'
// encoded labels.
type counters struct {
	m       map[string]*counterState
	max     int
	gen     uint64
	touched []*counterState
	newest  int64 // newest committed point, ms
	sweptAt int64
}

func newCounters(max int) *counters {
	return &counters{m: map[string]*counterState{}, max: max, gen: 1}
}

// begin starts staging a Send.
func (c *counters) begin() {
	c.gen++
	c.touched = c.touched[:0]
}

// get returns the state of the series with encoded labels key (copied if
// new), staged for this Send; nil when the series is new and max series
// are held.
func (c *counters) get(key []byte, ms int64) *counterState {
	st := c.m[string(key)]
	if st == nil {
		if len(c.m) >= c.max && !c.sweep() {
			return nil
		}
		st = &counterState{}
		c.m[string(key)] = st
	}
	if st.gen != c.gen {
		st.gen = c.gen
		st.pTotal, st.pMs, st.pSet = st.total, st.lastMs, st.set
		st.req = -1
		c.touched = append(c.touched, st)
	}
	return st
}

// commit makes the staged totals the series' totals.
func (c *counters) commit() {
	for _, st := range c.touched {
		st.total, st.lastMs, st.set = st.pTotal, st.pMs, st.pSet
		c.newest = max(c.newest, st.lastMs)
	}
	c.touched = c.touched[:0]
	c.gen++
}

// discard forgets the staged totals.
func (c *counters) discard() {
	c.touched = c.touched[:0]
	c.gen++
}

// sweep forgets series without a point for counterExpiry (at most once
// per 10 minutes of event time) and reports whether there is room now.
func (c *counters) sweep() bool {
	if c.sweptAt != 0 && c.newest-c.sweptAt < 600_000 {
		return len(c.m) < c.max
	}
	c.sweptAt = c.newest
	for k, st := range c.m {
		if st.gen != c.gen && st.lastMs < c.newest-counterExpiry {
			delete(c.m, k)
		}
	}
	return len(c.m) < c.max
}

// len is the number of series held.
func (c *counters) len() int { return len(c.m) }
