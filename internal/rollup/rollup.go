package rollup

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"path"
	"slices"
	"time"

	"github.com/les-streams/les/internal/model"
)

// Rule rolls gauges and counters whose name matches Match (path.Match
// syntax) up as Samples at Window, in addition to their own aggregation.
type Rule struct {
	Match  string
	Window model.Window
}

// Config configures a Rollup. Validate fills in defaults.
type Config struct {
	// Windows are the windows counters, gauges and sets are aggregated at
	// (default [minute]); each point is aggregated at every one of them.
	Windows []model.Window
	// DefaultWindow is the window of Samples and Distributions whose Window
	// is WindowNone (default minute).
	DefaultWindow model.Window
	// Grace: a window [start,end) closes at the first Advance with
	// now >= end+Grace (default 30s).
	Grace time.Duration
	// MaxSeriesPerWindow bounds the series of one window (or correction);
	// points of further series are refused and counted in
	// Stats.SeriesRejected (default 100000).
	MaxSeriesPerWindow int
	// Percentiles are precomputed into Distribution.Quantiles (default
	// 0.5, 0.9, 0.95, 0.99, 0.999).
	Percentiles []float64
	// Rules: matching gauges/counters are also rolled up as Samples.
	Rules []Rule
	// RecentPerSeries is how many closed windows (and corrections) per
	// series and window Query keeps (default 60).
	RecentPerSeries int
}

// Validate checks c and fills in defaults.
func (c *Config) Validate() error {
	if len(c.Windows) == 0 {
		c.Windows = []model.Window{model.WindowMinute}
	}
	for _, w := range c.Windows {
		if w.Nanos() == 0 {
			return fmt.Errorf("rollup: invalid window %v in windows", w)
		}
	}
	c.Windows = slices.Compact(slices.Sorted(slices.Values(c.Windows)))
	if c.DefaultWindow == model.WindowNone {
		c.DefaultWindow = model.WindowMinute
	}
	if c.DefaultWindow.Nanos() == 0 {
		return fmt.Errorf("rollup: invalid default window %v", c.DefaultWindow)
	}
	if c.Grace == 0 {
		c.Grace = 30 * time.Second
	}
	if c.Grace < 0 {
		return fmt.Errorf("rollup: negative grace %v", c.Grace)
	}
	if c.MaxSeriesPerWindow == 0 {
		c.MaxSeriesPerWindow = 100_000
	}
	if c.MaxSeriesPerWindow < 0 {
		return errors.New("rollup: negative max series per window")
	}
	if c.Percentiles == nil {
		c.Percentiles = []float64{0.5, 0.9, 0.95, 0.99, 0.999}
	}
	for _, q := range c.Percentiles {
		if !(q >= 0 && q <= 1) {
			return fmt.Errorf("rollup: percentile %v outside [0,1]", q)
		}
	}
	for _, r := range c.Rules {
		if _, err := path.Match(r.Match, ""); err != nil {
			return fmt.Errorf("rollup: rule %q: %w", r.Match, err)
		}
		if r.Window.Nanos() == 0 {
			return fmt.Errorf("rollup: rule %q: invalid window %v", r.Match, r.Window)
		}
	}
	if c.RecentPerSeries == 0 {
		c.RecentPerSeries = 60
	}
	if c.RecentPerSeries < 0 {
		return errors.New("rollup: negative recent per series")
	}
	return nil
}

// Stats counts what a Rollup did. Every point handed to Add is either
// aggregated, counted late (and still aggregated into a correction), or
// counted in SeriesRejected or Invalid.
type Stats struct {
	SamplesIn          uint64 // Sample points and rule-matched points aggregated (per window)
	DistsIn            uint64 // Distributions merged
	LateSamples        uint64 // points and distributions that went into a correction
	SeriesRejected     uint64 // points refused by MaxSeriesPerWindow
	WindowsEmitted     uint64 // (series, window) items emitted on first close
	CorrectionsEmitted uint64 // (series, window) items emitted by corrections
	Invalid            uint64 // non-finite values, distributions without valid centroids
	SetsApproximated   uint64 // set windows that exceeded MaxExactSetMembers
}

type aggKind uint8

const (
	aggDist aggKind = iota
	aggCounter
	aggGauge
	aggSet
)

type winKey struct {
	w     model.Window
	start int64
}

type bucket struct {
	winKey
	corr     uint32 // 0: the window itself; 1..: a correction
	deadline int64  // Advance closes the bucket when now >= deadline
	// series indexes the entries by seriesHash; entries whose hashes
	// collide chain through entry.next and are told apart by entry.key.
	series map[uint64]*entry
	n      int // entries in series (chains included)
}

// entry is the aggregate of one series in one bucket. key is the series
// identity (appendKey), owned; name, source and the tags' strings are
// substrings of it, so a new series costs one string, one tag slice, the
// entry and its sketch or set.
type entry struct {
	key    string
	next   *entry // next entry of the bucket with the same series hash
	kind   aggKind
	name   string
	source string
	tags   model.Tags
	sketch *Sketch
	value  float64 // counter sum, gauge value
	ts     int64   // gauge timestamp
	hasVal bool    // gauge: an absolute value was seen
	set    *distinct
}

type recentSeries struct {
	dists []model.Distribution // oldest first, at most RecentPerSeries
}

type queryKey struct {
	name, source string
	w            model.Window
}

// Rollup aggregates points into windows. It is not safe for concurrent use.
type Rollup struct {
	cfg      Config
	grace    int64
	open     map[winKey]*bucket
	corr     map[winKey]*bucket // the open correction of a closed window
	lastCorr map[winKey]uint32  // last correction number assigned per closed window
	closed   int64              // windows with end+grace <= closed are closed
	recent   map[queryKey]map[string]*recentSeries
	stats    Stats
	key      []byte                    // reused buffer: the key of a series' first point in an Add
	distKey  []byte                    // reused buffer: a rule's (aggDist) key of a new entry
	memo     model.SeriesMemo[keyMemo] // series keys of the current Add
	// cur is the key of the current point's series: key on the
	// series' first point in the Add (a buffer hot in cache, where
	// building it is cheap), its memo's copy on later points (no copy).
	cur []byte
	// found are the entries found so far in this Add, per series (a run
	// of slots starting at keyMemo.found) and window it is aggregated
	// at; cleared at the end of every Add, so no bucket or entry is kept
	// alive by it.
	found []foundEntry
	// ruleSlot is the slot of each rule window in a series' run, after
	// those of cfg.Windows; ruleSlots is their number.
	ruleSlot  [4]uint8
	ruleSlots int
	// tab is AddPoints' table of the current record's series, by index
	// (its keys' buffers kept across records).
	tab  []tabSeries
	seed maphash.Seed
	// MarshalState's last size and scratch (state.go).
	stateSize   int
	stateEnts   []*entry
	stateSketch []byte
	stateBody   []byte
	// hot caches the bucket last used per window, open ([0]) or
	// correction ([1]): a batch's items mostly fall into one window, and
	// hashing the winKey per item cost as much as the series lookup.
	// Cleared whenever buckets are removed (Advance, Flush, UnmarshalState).
	hot [2][4]hotBucket
	// bucketGen numbers the times clearHot was called: the entries found
	// (foundEntry) under another are not taken by their window alone.
	bucketGen uint32
	// pending are the samples of this Add not yet added to their
	// sketches, in the order of the points (addSample, flushSamples).
	pending  [pendingMax]pendingSample
	npending int
	queue    int     // samples queued before flushSamples: pendingMax (tests: fewer)
	touch    float64 // keeps flushSamples' loads of the sketches' lines
}

// pendingMax is how many samples Add queues before it adds them to their
// sketches (flushSamples).
const pendingMax = 256

// pendingSample is a sample queued for the sketch of e; s, st and idx are
// worked out by flushSamples.
type pendingSample struct {
	e   *entry
	v   float64
	s   *Sketch
	idx int
	st  int8
}

// addSample queues v for e's sketch.
func (r *Rollup) addSample(e *entry, v float64) {
	r.pending[r.npending] = pendingSample{e: e, v: v}
	r.npending++
	if r.npending >= r.queue {
		r.flushSamples()
	}
}

// flushSamples adds the queued samples to their sketches, each sketch's in
// the order they were queued (the order of the points, as Sketch.Add would
// have added them one by one: the same bins, and sums rounded the same).
// The entries, sketches and bins of a record's series are mostly not in
// cache; in three tight loops (load each entry's sketch; work out each
// sample's bin, loading the sketch's lines; add) the misses of many
// samples are in flight at once, instead of one chain of dependent misses
// per point between the lookups.
func (r *Rollup) flushSamples() {
	q := r.pending[:r.npending]
	for i := range q {
		q[i].s = q[i].e.sketch
	}
	var touch float64
	for i := range q {
		p := &q[i]
		p.st, p.idx = binOf(p.v)
		// Load the sketch's lines (its store's header), so that
		// addBin's loads of them hit and only the bins miss.
		touch += p.s.pos.TotalCount()
	}
	r.touch = touch
	for i := range q {
		p := &q[i]
		p.s.addBin(p.v, 1, p.st, p.idx)
	}
	clear(q)
	r.npending = 0
}

type hotBucket struct {
	start int64
	bk    *bucket
}

// New validates cfg (filling defaults) and returns an empty Rollup.
func New(cfg Config) (*Rollup, error) {
	cfg.Windows = slices.Clone(cfg.Windows)
	cfg.Percentiles = slices.Clone(cfg.Percentiles)
	cfg.Rules = slices.Clone(cfg.Rules)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Rollup{
		cfg:      cfg,
		grace:    int64(cfg.Grace),
		open:     make(map[winKey]*bucket),
		corr:     make(map[winKey]*bucket),
		lastCorr: make(map[winKey]uint32),
		closed:   math.MinInt64,
		recent:   make(map[queryKey]map[string]*recentSeries),
		seed:     maphash.MakeSeed(),
		queue:    pendingMax,
	}
	var seen [4]bool
	for _, rule := range cfg.Rules {
		if !seen[rule.Window] {
			seen[rule.Window] = true
			r.ruleSlot[rule.Window] = uint8(len(cfg.Windows) + r.ruleSlots)
			r.ruleSlots++
		}
	}
	return r, nil
}

// Stats returns the counters so far.
func (r *Rollup) Stats() Stats { return r.stats }

func windowStart(ts int64, w model.Window) int64 {
	n := w.Nanos()
	s := ts - ts%n
	if ts%n < 0 {
		s -= n
	}
	return s
}

// Add folds b's Metrics and Dists in, by event time (Timestamp). It keeps no
// reference to b: names, sources and tags of new series are cloned; existing
// series are found without allocating. Logs and Spans are ignored.
//
// The parts of one record (wire.Decoder.DecodeParts: b.Continues,
// b.More) count as one Add for the per-series work remembered (see
// seriesKey and entry): it is kept from a record's first part to its last.
func (r *Rollup) Add(b *model.Batch, now int64) {
	if !b.Continues {
		r.memo.Next()
		r.forgetFound()
		r.tab = r.tab[:0] // an AddPoints record is over too
	}
	if !b.More {
		defer r.forgetFound()
	}
	for i := range b.Metrics {
		m := &b.Metrics[i]
		if !model.IsFinite(m.Value) {
			r.stats.Invalid++
			continue
		}
		switch m.Kind {
		case model.Sample:
			w := m.Window
			if w.Nanos() == 0 {
				w = r.cfg.DefaultWindow
			}
			km := r.seriesKey(m.Series, aggDist, m.Name, m.Source, m.Tags)
			if e := r.entry(km, 0, aggDist, km.hash, w, m.Timestamp, now, 1); e != nil {
				r.addSample(e, m.Value)
				r.stats.SamplesIn++
			}
		case model.Counter, model.Gauge, model.GaugeDelta, model.Set:
			kind := aggCounter
			switch m.Kind {
			case model.Gauge, model.GaugeDelta:
				kind = aggGauge
			case model.Set:
				kind = aggSet
			}
			km := r.seriesKey(m.Series, kind, m.Name, m.Source, m.Tags)
			r.addScalar(km, m.Kind, kind, m.Name, m.Timestamp, m.Value, now)
		default:
			r.stats.Invalid++
		}
	}
	r.flushSamples() // before the distributions: a sketch's samples stay in order
	for i := range b.Dists {
		d := &b.Dists[i]
		w := d.Window
		if w.Nanos() == 0 {
			w = r.cfg.DefaultWindow
		}
		var n float64
		for _, c := range d.Centroids {
			if c.Count > 0 && model.IsFinite(c.Count) && model.IsFinite(c.Value) {
				n += c.Count
			}
		}
		if n == 0 {
			r.stats.Invalid++
			continue
		}
		km := r.seriesKey(0, aggDist, d.Name, d.Source, d.Tags)
		if e := r.entry(km, 0, aggDist, km.hash, w, d.Timestamp, now, n); e != nil {
			mn, mx := d.Min, d.Max
			if d.Count == 0 { // no summary: derive from centroids
				mn, mx = math.NaN(), math.NaN()
			}
			e.sketch.mergeCentroids(d.Centroids, d.Sum, mn, mx)
			r.stats.DistsIn++
		}
	}
}

// addScalar folds the counter, gauge, gauge delta or set point (kind k,
// aggregated as kind; name, ts, v) of series km (r.cur is its key) in at
// every window, and into the distributions its rules ask for.
func (r *Rollup) addScalar(km *keyMemo, k model.Kind, kind aggKind, name string, ts int64, v float64, now int64) {
	for i, w := range r.cfg.Windows {
		// entry, its first case written out (as in AddPoints).
		var e *entry
		if f := r.foundAt(km, i); f != nil && f.at(r.bucketGen, w, ts) {
			if e = f.e; f.late {
				r.stats.LateSamples++
			}
		} else if e = r.findEntry(km, i, kind, km.hash, w, ts, now, 1); e == nil {
			continue
		}
		switch k {
		case model.Counter:
			e.value += v
		case model.Gauge:
			if !e.hasVal || ts >= e.ts {
				e.value, e.ts, e.hasVal = v, ts, true
			}
		case model.GaugeDelta:
			e.value += v
		case model.Set:
			if e.set.add(uint64(v) & (1<<53 - 1)) {
				r.stats.SetsApproximated++
			}
		}
	}
	if k == model.Set {
		return
	}
	r.applyRules(name, ts, v, km, now)
}

// applyRules folds the point (name, ts, v) into the distributions its
// rules ask for; km is its series (its own kind). Which rule windows match
// the name, and the hash of its identity as a distribution, are worked out
// once per series per Add and kept in km.
func (r *Rollup) applyRules(name string, ts int64, v float64, km *keyMemo, now int64) {
	if len(r.cfg.Rules) == 0 {
		return
	}
	if !km.rulesKnown {
		km.ruleWins = 0
		for _, rule := range r.cfg.Rules {
			if km.ruleWins&(1<<rule.Window) != 0 {
				continue
			}
			if ok, _ := path.Match(rule.Match, name); ok {
				km.ruleWins |= 1 << rule.Window
			}
		}
		if km.ruleWins != 0 { // same identity, kind aggDist
			km.distHash = identityHash(r.seed, aggDist, r.cur[1:])
		}
		km.rulesKnown = true
	}
	for w := model.WindowMinute; w <= model.WindowDay; w++ {
		if km.ruleWins&(1<<w) == 0 {
			continue
		}
		if e := r.entry(km, int(r.ruleSlot[w]), aggDist, km.distHash, w, ts, now, 1); e != nil {
			r.addSample(e, v)
			r.stats.SamplesIn++
		}
	}
}

// appendKey encodes a series identity unambiguously (length-prefixed).
func appendKey(b []byte, kind aggKind, name, source string, tags model.Tags) []byte {
	n := 1 + 2*binary.MaxVarintLen16 + len(name) + len(source)
	for _, t := range tags {
		n += 2*binary.MaxVarintLen16 + len(t.Key) + len(t.Value)
	}
	b = slices.Grow(b, n) // one capacity check for the lot, mostly
	b = append(b, byte(kind))
	b = appendStr(b, name)
	b = appendStr(b, source)
	for _, t := range tags {
		b = appendStr(b, t.Key)
		b = appendStr(b, t.Value)
	}
	return b
}

// appendStr appends s, length-prefixed (uvarint).
func appendStr(b []byte, s string) []byte {
	if len(s) < 0x80 {
		return append(append(b, byte(len(s))), s...)
	}
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// kindMix spreads an aggKind over the hash, so that series of different
// kinds with the same name, source and tags rarely share a hash.
func kindMix(k aggKind) uint64 { return uint64(k) * 0x9e3779b97f4a7c15 }

// seriesHash is the in-memory hash of a series key (appendKey): maphash of
// the identity after the kind byte, mixed with the kind. It is never
// stored: the seed is per Rollup.
func seriesHash(seed maphash.Seed, key []byte) uint64 {
	return identityHash(seed, aggKind(key[0]), key[1:])
}

// identityHash is seriesHash of the key of kind kind and identity ident
// (the key after its kind byte).
func identityHash(seed maphash.Seed, kind aggKind, ident []byte) uint64 {
	return (maphash.Bytes(seed, ident) ^ kindMix(kind)) & hashMask
}

// hashMask is all ones; tests clear bits to make series collide (such
// tests must not run in parallel with others of this package).
var hashMask = ^uint64(0)

// seriesKey returns the memo of the series (its key and hash, and where
// the entries it was found in are remembered), building the key and
// hashing it only for the first point of the series in this Add; once
// per item, however many windows the item is aggregated at. The pointer
// is valid until the next seriesKey call.
func (r *Rollup) seriesKey(number uint32, kind aggKind, name, source string, tags model.Tags) *keyMemo {
	m, hit := r.memo.Slot(number, name, source, tags, uint8(kind))
	if hit {
		r.cur = m.key
		if m.found < 0 { // its second point: remember its entries from now on
			n := 1 // Samples and Distributions: one window per point
			if kind != aggDist {
				n = len(r.cfg.Windows) + r.ruleSlots
			}
			m.found = int32(len(r.found))
			r.found = append(r.found, make([]foundEntry, n)...)
		}
		return m
	}
	r.key = appendKey(r.key[:0], kind, name, source, tags)
	r.cur = r.key
	m.hash = seriesHash(r.seed, r.key)
	m.key = append(m.key[:0], r.key...)
	m.ntags = int32(len(tags))
	m.rulesKnown = false
	// Nothing to remember for a series' first point: with items that
	// do not share memory, every point is a first point.
	m.found = -1
	return m
}

// keyMemo is a series' key (appendKey) and hash, remembered for the
// points of one Add that share the series' memory (model.SeriesMemo): the
// wire series encoding decodes a record that way, so the key is built and
// hashed once per series per record instead of once per point, and each
// window's entry is looked up once (see entry).
type keyMemo struct {
	hash  uint64
	key   []byte
	ntags int32 // tags in key
	// found is the series' first slot in Rollup.found (-1: none yet,
	// until its second point): slot i of the run is cfg.Windows[i] for
	// counters, gauges and sets, 0 for Samples and Distributions, then
	// Rollup.ruleSlot for rule windows.
	found int32
	// rulesKnown: ruleWins (a bit per rule window matching the name)
	// and distHash (the hash of the series as a distribution, when
	// ruleWins != 0) are set for this Add.
	rulesKnown bool
	ruleWins   uint8
	distHash   uint64
}

// foundEntry is the entry a series was last found (or created) in, and
// the bucket it belongs to: the bucket of the points at window w with
// timestamps in [lo, hi) (late: the window's correction) while
// Rollup.bucketGen is gen. (A slot is one window for counters, gauges
// and sets, but a Sample's points may each ask for another.)
type foundEntry struct {
	bk     *bucket
	e      *entry
	lo, hi int64
	gen    uint32
	w      model.Window
	late   bool
}

// foundAt returns the found slot slot of series km, nil if it has none.
func (r *Rollup) foundAt(km *keyMemo, slot int) *foundEntry {
	if km.found < 0 {
		return nil
	}
	return &r.found[int(km.found)+slot]
}

// at reports whether f holds the entry of a point at window w and ts
// while Rollup.bucketGen is gen.
func (f *foundEntry) at(gen uint32, w model.Window, ts int64) bool {
	return f.e != nil && f.gen == gen && f.w == w && ts >= f.lo && ts < f.hi
}

// forgetFound clears the entries found in this Add (r.found keeps its
// capacity, not the buckets and entries).
func (r *Rollup) forgetFound() {
	clear(r.found)
	r.found = r.found[:0]
}

// entry finds or creates the aggregate of series km, as kind kind (its own,
// or aggDist for a rule; h is that key's hash), in the window w holding ts,
// or in that window's correction if it is closed. slot is the window's
// slot in the series' run of r.found: a series found in the same bucket
// before, in this Add (from its second point on), gets the entry from
// there without a lookup. weight
// is the number of samples the caller is about to add (for LateSamples).
// It returns nil if the series cap refused a new series.
//
// A remembered entry stays right for the whole Add, and for the parts of
// a record (see Add) even if windows close between them: it is taken
// only for the bucket it was found in, entries are removed only with
// their bucket, and a bucket removed (Advance, Flush, UnmarshalState) or
// created later is another pointer; a refusal is never remembered, so
// every refused point is looked up (and counted) again.
func (r *Rollup) entry(km *keyMemo, slot int, kind aggKind, h uint64, w model.Window, ts, now int64, weight float64) *entry {
	if km.found >= 0 {
		// A point in the window of the entry found before, with the
		// same buckets (no Advance, Flush or UnmarshalState since):
		// the same bucket, so the same entry.
		f := &r.found[int(km.found)+slot]
		if f.at(r.bucketGen, w, ts) {
			if f.late {
				r.stats.LateSamples += uint64(weight)
			}
			return f.e
		}
	}
	return r.findEntry(km, slot, kind, h, w, ts, now, weight)
}

// findEntry is entry past the window of the entry found before.
func (r *Rollup) findEntry(km *keyMemo, slot int, kind aggKind, h uint64, w model.Window, ts, now int64, weight float64) *entry {
	var f *foundEntry
	if km.found >= 0 {
		f = &r.found[int(km.found)+slot]
	}
	bk, late := r.bucket(w, ts, now)
	if late {
		r.stats.LateSamples += uint64(weight)
	}
	if f != nil && f.bk == bk {
		f.gen = r.bucketGen // the same bucket after an Advance
		return f.e
	}
	e := r.lookup(bk, km, kind, h)
	if e == nil {
		if late {
			r.stats.LateSamples -= uint64(weight)
		}
		r.stats.SeriesRejected++
		return nil
	}
	if f != nil {
		*f = foundEntry{bk: bk, e: e, lo: bk.start, hi: bk.start + w.Nanos(), gen: r.bucketGen, w: w, late: late}
	}
	return e
}

// bucket returns the bucket of the window w holding ts: the open window,
// or, if it is closed (late), its open correction; either is created if
// missing.
func (r *Rollup) bucket(w model.Window, ts, now int64) (bk *bucket, late bool) {
	start := windowStart(ts, w)
	late = start+w.Nanos()+r.grace <= r.closed
	var hot *hotBucket
	if int(w) < len(r.hot[0]) {
		if late {
			hot = &r.hot[1][w]
		} else {
			hot = &r.hot[0][w]
		}
	}
	if hot != nil && hot.bk != nil && hot.start == start {
		return hot.bk, late
	}
	wk := winKey{w: w, start: start}
	if late {
		bk = r.corr[wk]
		if bk == nil {
			c := r.lastCorr[wk] + 1
			r.lastCorr[wk] = c
			bk = &bucket{winKey: wk, corr: c, deadline: now + r.grace, series: make(map[uint64]*entry)}
			r.corr[wk] = bk
		}
	} else {
		bk = r.open[wk]
		if bk == nil {
			bk = &bucket{winKey: wk, deadline: wk.start + w.Nanos() + r.grace, series: make(map[uint64]*entry)}
			r.open[wk] = bk
		}
	}
	if hot != nil {
		*hot = hotBucket{start: start, bk: bk}
	}
	return bk, late
}

// lookup finds the entry of the series in r.cur as kind kind (hash h) in
// bk, or creates it unless the series cap refuses it (nil). Entries whose
// hashes collide are told apart by their full key.
func (r *Rollup) lookup(bk *bucket, km *keyMemo, kind aggKind, h uint64) *entry {
	first := bk.series[h]
	for e := first; e != nil; e = e.next {
		if e.kind == kind && e.key[1:] == string(r.cur[1:]) {
			return e
		}
	}
	if bk.n >= r.cfg.MaxSeriesPerWindow {
		return nil
	}
	key := r.cur
	if aggKind(key[0]) != kind { // a rule's distribution of a counter or gauge
		r.distKey = append(append(r.distKey[:0], byte(kind)), key[1:]...)
		key = r.distKey
	}
	e := newEntry(string(key), int(km.ntags))
	e.next = first
	bk.series[h] = e
	bk.n++
	r.initEntry(e)
	return e
}

// newEntry returns an entry for the series key (appendKey's encoding,
// owned by the entry), its name, source and tags sliced from key.
// ntags is the number of tags in key.
func newEntry(key string, ntags int) *entry {
	e := &entry{key: key, kind: aggKind(key[0])}
	off := 1
	next := func() string {
		var n, shift uint
		for ; key[off] >= 0x80; off++ { // appendKey wrote a valid uvarint
			n |= uint(key[off]&0x7f) << shift
			shift += 7
		}
		n |= uint(key[off]) << shift
		off++
		s := key[off : off+int(n)]
		off += int(n)
		return s
	}
	e.name = next()
	e.source = next()
	if ntags > 0 {
		e.tags = make(model.Tags, ntags)
		for i := range e.tags {
			e.tags[i] = model.Tag{Key: next(), Value: next()}
		}
	}
	return e
}

// clearHot forgets the cached buckets; called whenever buckets go away
// or the watermark moves.
func (r *Rollup) clearHot() {
	r.hot = [2][4]hotBucket{}
	r.bucketGen++
}

func (r *Rollup) initEntry(e *entry) {
	switch e.kind {
	case aggDist:
		e.sketch = NewSketch()
	case aggSet:
		e.set = &distinct{}
	}
}

// Advance closes every window with end+Grace <= now and every correction
// whose first late arrival is at least Grace before now, and appends their
// items to out: a model.Distribution per (series, window) of samples and
// distributions, and model.Metric points (Timestamp = window start, Window =
// the window) for counters (Kind Counter, the sum), gauges (Kind Gauge, the
// last value) and sets (Kind Gauge, the distinct count). Names, sources and
// Quantiles are owned by the Rollup's former state and safe to keep; tags
// and centroids are appended to out.Arena and out.CentroidArena.
func (r *Rollup) Advance(now int64, out *model.Batch) {
	r.clearHot()
	r.closed = max(r.closed, now)
	var ready []*bucket
	for k, bk := range r.open {
		if bk.deadline <= now {
			ready = append(ready, bk)
			delete(r.open, k)
		}
	}
	for k, bk := range r.corr {
		if bk.deadline <= now {
			ready = append(ready, bk)
			delete(r.corr, k)
		}
	}
	r.emit(ready, out)
	r.prune(now)
}

// Flush closes every open window and correction regardless of time and
// appends them to out as Advance does. Later points for those windows go
// into corrections.
func (r *Rollup) Flush(out *model.Batch) {
	r.clearHot()
	var ready []*bucket
	for k, bk := range r.open {
		ready = append(ready, bk)
		r.closed = max(r.closed, bk.start+bk.w.Nanos()+r.grace)
		delete(r.open, k)
	}
	for k, bk := range r.corr {
		ready = append(ready, bk)
		delete(r.corr, k)
	}
	r.emit(ready, out)
}

func (r *Rollup) emit(ready []*bucket, out *model.Batch) {
	slices.SortFunc(ready, func(a, b *bucket) int {
		return cmp.Or(cmp.Compare(a.w, b.w), cmp.Compare(a.start, b.start), cmp.Compare(a.corr, b.corr))
	})
	var entries []*entry
	for _, bk := range ready {
		entries = bk.appendEntries(entries[:0])
		slices.SortFunc(entries, func(a, b *entry) int { return cmp.Compare(a.key, b.key) })
		for _, e := range entries {
			r.emitEntry(bk, e.key, e, out)
			if bk.corr > 0 {
				r.stats.CorrectionsEmitted++
			} else {
				r.stats.WindowsEmitted++
			}
		}
	}
}

// appendEntries appends the bucket's entries (chains included) to dst.
func (bk *bucket) appendEntries(dst []*entry) []*entry {
	for _, e := range bk.series {
		for ; e != nil; e = e.next {
			dst = append(dst, e)
		}
	}
	return dst
}

func (r *Rollup) emitEntry(bk *bucket, key string, e *entry, out *model.Batch) {
	mark := out.TagMark()
	for _, t := range e.tags {
		out.AddTag(t.Key, t.Value)
	}
	tags := out.TagsSince(mark)
	if e.kind != aggDist {
		m := model.Metric{Name: e.name, Timestamp: bk.start, Source: e.source, Tags: tags, Window: bk.w, Value: e.value}
		switch e.kind {
		case aggCounter:
			m.Kind = model.Counter
		case aggGauge:
			m.Kind = model.Gauge
		case aggSet:
			m.Kind = model.Gauge
			m.Value = e.set.count()
		}
		out.Metrics = append(out.Metrics, m)
		return
	}
	s := e.sketch
	cm := len(out.CentroidArena)
	out.CentroidArena = s.Centroids(out.CentroidArena)
	d := model.Distribution{
		Name: e.name, Timestamp: bk.start, Window: bk.w, Source: e.source, Tags: tags,
		Count: s.Count(), Sum: s.Sum(), Min: s.Min(), Max: s.Max(),
		Centroids:  out.CentroidArena[cm:len(out.CentroidArena):len(out.CentroidArena)],
		Correction: bk.corr,
	}
	if len(r.cfg.Percentiles) > 0 {
		d.Quantiles = make([]model.Quantile, len(r.cfg.Percentiles))
		for i, q := range r.cfg.Percentiles {
			d.Quantiles[i] = model.Quantile{Q: q, Value: s.Quantile(q)}
		}
	}
	out.Dists = append(out.Dists, d)
	r.remember(key, e, d)
}

// remember keeps a copy of d (owning its centroids and tags) for Query.
func (r *Rollup) remember(key string, e *entry, d model.Distribution) {
	if r.cfg.RecentPerSeries == 0 {
		return
	}
	d.Tags = e.tags
	d.Centroids = slices.Clone(d.Centroids)
	qk := queryKey{name: e.name, source: e.source, w: d.Window}
	bySeries := r.recent[qk]
	if bySeries == nil {
		bySeries = make(map[string]*recentSeries)
		r.recent[qk] = bySeries
	}
	rs := bySeries[key]
	if rs == nil {
		rs = &recentSeries{}
		bySeries[key] = rs
	}
	rs.add(d, r.cfg.RecentPerSeries)
}

func (rs *recentSeries) add(d model.Distribution, limit int) {
	i, _ := slices.BinarySearchFunc(rs.dists, d, cmpDist)
	rs.dists = slices.Insert(rs.dists, i, d)
	if n := len(rs.dists) - limit; n > 0 {
		rs.dists = slices.Delete(rs.dists, 0, n)
	}
}

func cmpDist(a, b model.Distribution) int {
	return cmp.Or(cmp.Compare(a.Timestamp, b.Timestamp), cmp.Compare(a.Correction, b.Correction))
}

// prune forgets correction numbers and recent windows older than
// RecentPerSeries windows (at least one day) before now.
func (r *Rollup) prune(now int64) {
	horizon := func(w model.Window) int64 {
		return max(int64(r.cfg.RecentPerSeries)*w.Nanos(), model.WindowDay.Nanos()) + r.grace
	}
	for wk := range r.lastCorr {
		if _, open := r.corr[wk]; !open && wk.start+wk.w.Nanos() < now-horizon(wk.w) {
			delete(r.lastCorr, wk)
		}
	}
	for qk, bySeries := range r.recent {
		for k, rs := range bySeries {
			if rs.dists[len(rs.dists)-1].Timestamp+qk.w.Nanos() < now-horizon(qk.w) {
				delete(bySeries, k)
			}
		}
		if len(bySeries) == 0 {
			delete(r.recent, qk)
		}
	}
}

// Sources returns, sorted, the sources that have recent closed windows of
// the distributions named name at window w (for Query without a source).
// It walks every queried series: meant for the query API, not hot paths.
func (r *Rollup) Sources(name string, w model.Window) []string {
	var out []string
	for k := range r.recent {
		if k.name == name && k.w == w {
			out = append(out, k.source)
		}
	}
	slices.Sort(out)
	return out
}

// Query returns the recent closed windows (and corrections, as separate
// items with Correction > 0) of the distributions named name from source at
// window w, across all tag sets, oldest first (newest last). The returned
// slice is the caller's; its Tags and Centroids are shared with the Rollup
// and must not be modified.
func (r *Rollup) Query(name, source string, w model.Window) []model.Distribution {
	var out []model.Distribution
	for _, rs := range r.recent[queryKey{name: name, source: source, w: w}] {
		out = append(out, rs.dists...)
	}
	slices.SortStableFunc(out, cmpDist)
	return out
}
