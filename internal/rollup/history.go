package rollup

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/les-streams/les/internal/model"
)

// HistoryConfig bounds a History. Validate fills in defaults.
type HistoryConfig struct {
	// Retention is how long closed windows are kept after their end
	// (default 24h).
	Retention time.Duration
	// MaxSeries bounds the series kept (a series is a name, source, tag
	// set, kind and window); windows of further series are refused and
	// counted in HistoryStats.SeriesRejected (default 20,000).
	MaxSeries int
}

// Validate fills in defaults.
func (c *HistoryConfig) Validate() {
	if c.Retention <= 0 {
		c.Retention = 24 * time.Hour
	}
	if c.MaxSeries <= 0 {
		c.MaxSeries = 20_000
	}
}

// HistKind is the kind of a history series: what the rollup emitted.
type HistKind uint8

const (
	// HistCounter: the window's counter sum (corrections add to it).
	HistCounter HistKind = iota
	// HistGauge: the window's last gauge value, or a set's distinct count.
	HistGauge
	// HistDist: the window's distribution (corrections merge into it).
	HistDist
)

var histKindNames = [...]string{HistCounter: "counter", HistGauge: "gauge", HistDist: "distribution"}

func (k HistKind) String() string { return histKindNames[k] }

// HistoryStats counts what a History did.
type HistoryStats struct {
	Series         int    // series kept now
	Windows        int    // windows kept now
	SeriesRejected uint64 // windows refused by MaxSeries
	Duplicates     uint64 // distribution windows (or corrections) seen before and ignored
}

// History keeps the closed windows the rollup emitted (model.Distribution
// and windowed model.Metric items, as they travel under origin rollup) for
// Retention, bounded by MaxSeries, and answers queries over them: time
// ranges, coarser steps and merged sources (distributions merge exactly,
// as sketches). Corrections are folded into their window: counters add,
// gauges take the late value, distributions merge. Feed each emitted
// record once (de-duplicate by record id): a distribution window or
// correction seen twice is recognised by its correction number and
// ignored, but metric items carry none, so a counter window added twice
// counts twice.
//
// History is not safe for concurrent use. It starts no goroutines and does
// no I/O.
type History struct {
	cfg     HistoryConfig
	mapping mapping.IndexMapping
	series  map[string]*histSeries
	byName  map[string][]*histSeries
	stats   HistoryStats
	key     []byte
	lastPru int64
}

type histSeries struct {
	name, source string
	tags         model.Tags
	kind         HistKind
	window       model.Window
	mapping      mapping.IndexMapping // the sketches' (shared)
	scal         []scalarWin          // counters and gauges, by start
	dist         []distWin            // distributions, by start
}

// scalarWin is one window of a counter or gauge: 16 bytes.
type scalarWin struct {
	start uint32 // window start, Unix seconds
	value float64
}

// distWin is one window of a distribution: 64 bytes plus its bins.
type distWin struct {
	start                uint32
	corrs                uint32
	count, sum, min, max float64
	bins                 []byte // encodeBins
}

// NewHistory returns an empty History.
func NewHistory(cfg HistoryConfig) *History {
	cfg.Validate()
	return &History{cfg: cfg, mapping: newMapping(), series: make(map[string]*histSeries), byName: make(map[string][]*histSeries)}
}

// Config returns the configuration with defaults filled in.
func (h *History) Config() HistoryConfig { return h.cfg }

// Stats returns the counters so far.
func (h *History) Stats() HistoryStats {
	st := h.stats
	st.Series = len(h.series)
	st.Windows = 0
	for _, s := range h.series {
		st.Windows += len(s.scal) + len(s.dist)
	}
	return st
}

func corrBit(c uint32) uint32 {
	if c > 31 {
		return 0 // not tracked: applied every time (corrections past 31 are rare)
	}
	return 1 << c
}

// Add folds the windowed metrics and distributions of b in (items without
// a window, or that ended more than Retention before now, are ignored). It keeps no
// reference to b.
func (h *History) Add(b *model.Batch, now int64) {
	cutoff := now - int64(h.cfg.Retention)
	for i := range b.Metrics {
		m := &b.Metrics[i]
		if m.Window == model.WindowNone || m.Timestamp+m.Window.Nanos() < cutoff || !model.IsFinite(m.Value) {
			continue
		}
		kind := HistGauge
		if m.Kind == model.Counter {
			kind = HistCounter
		}
		s := h.lookup(kind, m.Name, m.Source, m.Tags, m.Window)
		if s == nil {
			continue
		}
		s.addScalar(uint32(m.Timestamp/1e9), m.Value)
	}
	for i := range b.Dists {
		d := &b.Dists[i]
		if d.Window == model.WindowNone || d.Timestamp+d.Window.Nanos() < cutoff || d.Count <= 0 {
			continue
		}
		s := h.lookup(HistDist, d.Name, d.Source, d.Tags, d.Window)
		if s == nil {
			continue
		}
		s.addDist(d, &h.stats)
	}
	if now-h.lastPru >= int64(time.Minute) {
		h.Prune(now)
	}
}

func (h *History) lookup(kind HistKind, name, source string, tags model.Tags, w model.Window) *histSeries {
	h.key = appendKey(h.key[:0], aggKind(kind), name, source, tags)
	h.key = append(h.key, byte(w))
	if s := h.series[string(h.key)]; s != nil {
		return s
	}
	if len(h.series) >= h.cfg.MaxSeries {
		h.stats.SeriesRejected++
		return nil
	}
	s := &histSeries{name: strings.Clone(name), source: strings.Clone(source), tags: tags.Clone(), kind: kind, window: w, mapping: h.mapping}
	h.series[string(h.key)] = s
	h.byName[s.name] = append(h.byName[s.name], s)
	return s
}

func (s *histSeries) addScalar(start uint32, v float64) {
	n := len(s.scal)
	i := n
	if n > 0 && s.scal[n-1].start >= start {
		i, _ = slices.BinarySearchFunc(s.scal, start, func(w scalarWin, t uint32) int { return cmp.Compare(w.start, t) })
	}
	if i < n && s.scal[i].start == start {
		// A correction (metric items carry no correction number, so the
		// caller feeds each record once): counters add, gauges take the
		// later value.
		if s.kind == HistCounter {
			s.scal[i].value += v
		} else {
			s.scal[i].value = v
		}
		return
	}
	s.scal = slices.Insert(s.scal, i, scalarWin{start: start, value: v})
}

func (s *histSeries) addDist(d *model.Distribution, st *HistoryStats) {
	start := uint32(d.Timestamp / 1e9)
	n := len(s.dist)
	i := n
	if n > 0 && s.dist[n-1].start >= start {
		i, _ = slices.BinarySearchFunc(s.dist, start, func(w distWin, t uint32) int { return cmp.Compare(w.start, t) })
	}
	if i < n && s.dist[i].start == start {
		w := &s.dist[i]
		bit := corrBit(d.Correction)
		if w.corrs&bit != 0 {
			st.Duplicates++
			return
		}
		w.corrs |= bit
		sk := NewSketch()
		w.mergeInto(sk)
		sk.mergeCentroids(d.Centroids, d.Sum, d.Min, d.Max)
		*w = distWin{start: start, corrs: w.corrs, count: sk.count, sum: sk.sum, min: sk.min, max: sk.max,
			bins: encodeBins(nil, nil, sk)}
		return
	}
	// The fast path (every window but corrections): the centroids are the
	// rollup sketch's bins, encoded as they are.
	bins, count, sum, mn, mx, ok := encodeCentroids(nil, d.Centroids, s.mapping)
	if !ok {
		return
	}
	if d.Count > 0 && model.IsFinite(d.Sum) && model.IsFinite(d.Min) && model.IsFinite(d.Max) {
		sum, mn, mx = d.Sum, d.Min, d.Max
	}
	w := distWin{start: start, corrs: corrBit(d.Correction), count: count, sum: sum, min: mn, max: mx, bins: bins}
	s.dist = slices.Insert(s.dist, i, w)
}

// encodeCentroids encodes cs (any order) like encodeBins, mapping each
// value to its bin; it returns the centroids' count, sum, min and max, and
// false if no centroid is valid.
func encodeCentroids(dst []byte, cs []model.Centroid, m mapping.IndexMapping) (b []byte, count, sum, mn, mx float64, ok bool) {
	integral := true
	mn, mx = math.Inf(1), math.Inf(-1)
	lim, top := m.MinIndexableValue(), m.MaxIndexableValue()
	var pos, neg int
	var zero float64
	for _, c := range cs {
		if !(c.Count > 0) || !model.IsFinite(c.Count) || !model.IsFinite(c.Value) || math.Abs(c.Value) > top {
			continue
		}
		if c.Count != math.Trunc(c.Count) || c.Count > 1<<53 {
			integral = false
		}
		count += c.Count
		sum += c.Value * c.Count
		mn, mx = math.Min(mn, c.Value), math.Max(mx, c.Value)
		switch {
		case c.Value > lim:
			pos++
		case c.Value < -lim:
			neg++
		default:
			zero += c.Count
		}
	}
	if count == 0 {
		return dst, 0, 0, 0, 0, false
	}
	flag := byte(0)
	if !integral {
		flag = 1
	}
	dst = append(dst, flag)
	putCount := func(c float64) {
		if integral {
			dst = binary.AppendUvarint(dst, uint64(c))
		} else {
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(c))
		}
	}
	for _, sign := range [2]float64{1, -1} {
		n := pos
		if sign < 0 {
			n = neg
		}
		dst = binary.AppendUvarint(dst, uint64(n))
		prev := 0
		for _, c := range cs {
			if !(c.Count > 0) || !model.IsFinite(c.Count) || !model.IsFinite(c.Value) || math.Abs(c.Value) > top || sign*c.Value <= lim {
				continue
			}
			idx := m.Index(sign * c.Value)
			dst = binary.AppendVarint(dst, int64(idx-prev))
			prev = idx
			putCount(c.Count)
		}
	}
	putCount(zero)
	return dst, count, sum, mn, mx, true
}

// Prune forgets windows that ended more than Retention before now, and
// series left without windows.
func (h *History) Prune(now int64) {
	h.lastPru = now
	for k, s := range h.series {
		cutoff := uint32(max(0, (now-int64(h.cfg.Retention)-s.window.Nanos())/1e9))
		if n := countBefore(s.scal, cutoff, func(w scalarWin) uint32 { return w.start }); n > 0 {
			s.scal = s.scal[n:]
		}
		if n := countBefore(s.dist, cutoff, func(w distWin) uint32 { return w.start }); n > 0 {
			clear(s.dist[:n]) // let the bins go now
			s.dist = s.dist[n:]
		}
		if len(s.scal)+len(s.dist) == 0 {
			delete(h.series, k)
			byName := slices.DeleteFunc(h.byName[s.name], func(x *histSeries) bool { return x == s })
			if len(byName) == 0 {
				delete(h.byName, s.name)
			} else {
				h.byName[s.name] = byName
			}
		}
	}
}

func countBefore[W any](ws []W, cutoff uint32, start func(W) uint32) int {
	if len(ws) == 0 || start(ws[0]) >= cutoff {
		return 0
	}
	i, _ := slices.BinarySearchFunc(ws, cutoff, func(w W, t uint32) int { return cmp.Compare(start(w), t) })
	return i
}

// mergeInto adds the window's bins to sk and folds its exact count, sum,
// min and max in.
func (w *distWin) mergeInto(sk *Sketch) {
	decodeBins(w.bins, sk)
	sk.count += w.count
	sk.sum += w.sum
	sk.min = math.Min(sk.min, w.min)
	sk.max = math.Max(sk.max, w.max)
}

// Bin encoding: a flag byte (0: integral counts as uvarint, 1: float64
// counts), then for the positive and the negative store: uvarint n and n
// pairs (varint index delta, count); then the zero count. Indexes are the
// sketch mapping's, so decoding reproduces identical bins.
func encodeBins(dst []byte, scratch []model.Centroid, sk *Sketch) []byte {
	dst, _, _, _, _, _ = encodeCentroids(dst, sk.Centroids(scratch[:0]), sk.dd.IndexMapping)
	return dst
}

// decodeBins adds encoded bins to sk's sketch only (not its count, sum,
// min and max). Bins were written by encodeBins, so input is trusted.
func decodeBins(b []byte, sk *Sketch) {
	if len(b) == 0 {
		return
	}
	integral := b[0] == 0
	b = b[1:]
	getCount := func() float64 {
		if integral {
			v, n := binary.Uvarint(b)
			b = b[n:]
			return float64(v)
		}
		v := math.Float64frombits(binary.LittleEndian.Uint64(b))
		b = b[8:]
		return v
	}
	m := sk.dd.IndexMapping
	for _, sign := range [2]float64{1, -1} {
		n, k := binary.Uvarint(b)
		b = b[k:]
		idx := 0
		for range n {
			d, k := binary.Varint(b)
			b = b[k:]
			idx += int(d)
			_ = sk.dd.AddWithCount(sign*m.Value(idx), getCount())
		}
	}
	if z := getCount(); z > 0 {
		_ = sk.dd.AddWithCount(0, z)
	}
}

// HistQuery selects series and windows of a History.
type HistQuery struct {
	Name string
	// Source selects one source unless AllSources.
	Source     string
	AllSources bool
	// Tags, when not empty, keeps series that carry every one of them.
	Tags model.Tags
	// Window is the rolled-up window the series were emitted at.
	Window model.Window
	// From and To (Unix ns) select windows with From <= start < To.
	From, To int64
	// Step (ns, a multiple of the window; 0: the window) groups windows
	// into steps aligned to UTC; StepAll makes one step of the range.
	Step int64
	// Merge folds every selected series into one per kind.
	Merge bool
	// Quantiles computed for distributions.
	Quantiles []float64
	// Centroids: include each step's merged centroids.
	Centroids bool
}

// StepAll is HistQuery.Step for one step spanning the whole range.
const StepAll = math.MaxInt64

// HistSeries is one series (or one merged set of series) of a query
// answer. Merged answers have Merged set, and Source and Tags empty.
type HistSeries struct {
	Name   string
	Source string
	Tags   model.Tags
	Kind   HistKind
	Window model.Window
	Merged bool
	// Series is how many series were merged (1 unless Merged).
	Series int
	Points []HistPoint
}

// HistPoint is one step. For distributions Count, Sum, Min, Max and
// Quantiles (and Centroids if asked) describe the merged sketch; for
// counters Value is the sum over the step (and the merged series); for
// gauges Value is the last window's value, summed over merged series, and
// Min and Max the smallest and largest window value.
type HistPoint struct {
	Start                int64 // step start, Unix ns
	Windows              int   // windows folded into the step
	Count, Sum, Min, Max float64
	Value                float64
	Quantiles            []model.Quantile
	Centroids            []model.Centroid
}

// Query answers q: series sorted by kind, source and tags, points by
// start. The result shares nothing with the History except Name, Source
// and Tags, which must not be modified.
func (h *History) Query(q HistQuery) []HistSeries {
	var sel []*histSeries
	for _, s := range h.byName[q.Name] {
		if s.window != q.Window || (!q.AllSources && s.source != q.Source) || !hasTags(s.tags, q.Tags) {
			continue
		}
		sel = append(sel, s)
	}
	slices.SortFunc(sel, cmpSeries)
	step := q.Step
	if step <= 0 {
		step = q.Window.Nanos()
	}
	var out []HistSeries
	if q.Merge {
		for _, kind := range [...]HistKind{HistCounter, HistGauge, HistDist} {
			var group []*histSeries
			for _, s := range sel {
				if s.kind == kind {
					group = append(group, s)
				}
			}
			if len(group) > 0 {
				hs := HistSeries{Name: q.Name, Kind: kind, Window: q.Window, Merged: true, Series: len(group)}
				hs.Points = h.points(group, q, step)
				out = append(out, hs)
			}
		}
		return out
	}
	for _, s := range sel {
		hs := HistSeries{Name: s.name, Source: s.source, Tags: s.tags, Kind: s.kind, Window: s.window, Series: 1}
		hs.Points = h.points([]*histSeries{s}, q, step)
		if len(hs.Points) > 0 {
			out = append(out, hs)
		}
	}
	return out
}

func cmpSeries(a, b *histSeries) int {
	if c := cmp.Or(cmp.Compare(a.kind, b.kind), strings.Compare(a.source, b.source)); c != 0 {
		return c
	}
	return slices.CompareFunc(a.tags, b.tags, func(x, y model.Tag) int {
		return cmp.Or(strings.Compare(x.Key, y.Key), strings.Compare(x.Value, y.Value))
	})
}

func hasTags(have, want model.Tags) bool {
	for _, t := range want {
		if v, ok := have.Get(t.Key); !ok || v != t.Value {
			return false
		}
	}
	return true
}

func stepStart(ts, from, step int64) int64 {
	if step == StepAll {
		return from
	}
	return windowStartN(ts, step)
}

func windowStartN(ts, n int64) int64 {
	s := ts - ts%n
	if ts%n < 0 {
		s -= n
	}
	return s
}

// points folds the windows of group (all of one kind) in [From, To) into
// steps.
func (h *History) points(group []*histSeries, q HistQuery, step int64) []HistPoint {
	kind := group[0].kind
	type acc struct {
		p       HistPoint
		sk      *Sketch
		lastTS  []int64 // gauges: per series, the start of the window in Value
		lastVal []float64
	}
	steps := map[int64]*acc{}
	get := func(start int64) *acc {
		a := steps[start]
		if a == nil {
			a = &acc{p: HistPoint{Start: start, Min: math.Inf(1), Max: math.Inf(-1)}}
			if kind == HistDist {
				a.sk = NewSketch()
			}
			if kind == HistGauge {
				a.lastTS = make([]int64, len(group))
				for i := range a.lastTS {
					a.lastTS[i] = math.MinInt64
				}
				a.lastVal = make([]float64, len(group))
			}
			steps[start] = a
		}
		return a
	}
	from, to := q.From, q.To
	lo, hi := uint32(max(0, from/1e9)), uint32(min(math.MaxUint32, (to+1e9-1)/1e9))
	for gi, s := range group {
		switch kind {
		case HistDist:
			i, _ := slices.BinarySearchFunc(s.dist, lo, func(w distWin, t uint32) int { return cmp.Compare(w.start, t) })
			for ; i < len(s.dist) && s.dist[i].start < hi; i++ {
				w := &s.dist[i]
				ts := int64(w.start) * 1e9
				if ts < from || ts >= to {
					continue
				}
				a := get(stepStart(ts, from, step))
				a.p.Windows++
				w.mergeInto(a.sk)
			}
		default:
			i, _ := slices.BinarySearchFunc(s.scal, lo, func(w scalarWin, t uint32) int { return cmp.Compare(w.start, t) })
			for ; i < len(s.scal) && s.scal[i].start < hi; i++ {
				w := s.scal[i]
				ts := int64(w.start) * 1e9
				if ts < from || ts >= to {
					continue
				}
				a := get(stepStart(ts, from, step))
				a.p.Windows++
				a.p.Count++
				a.p.Sum += w.value
				a.p.Min = math.Min(a.p.Min, w.value)
				a.p.Max = math.Max(a.p.Max, w.value)
				if kind == HistCounter {
					a.p.Value += w.value
				} else if ts >= a.lastTS[gi] {
					a.lastTS[gi], a.lastVal[gi] = ts, w.value
				}
			}
		}
	}
	out := make([]HistPoint, 0, len(steps))
	for _, a := range steps {
		p := a.p
		switch kind {
		case HistDist:
			p.Count, p.Sum, p.Min, p.Max = a.sk.count, a.sk.sum, a.sk.min, a.sk.max
			for _, qq := range q.Quantiles {
				p.Quantiles = append(p.Quantiles, model.Quantile{Q: qq, Value: a.sk.Quantile(qq)})
			}
			if q.Centroids {
				p.Centroids = a.sk.Centroids(nil)
			}
		case HistGauge:
			for i, ts := range a.lastTS {
				if ts != math.MinInt64 {
					p.Value += a.lastVal[i]
				}
			}
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b HistPoint) int { return cmp.Compare(a.Start, b.Start) })
	return out
}

// NameInfo describes the series of one name and kind.
type NameInfo struct {
	Name    string
	Kind    HistKind
	Windows []model.Window
	Sources int // distinct sources
	TagSets int // distinct tag sets
	Series  int
	Last    int64 // start of the newest window, Unix ns
}

// Names lists, sorted by name then kind, the names containing substr
// (case-insensitive; "" matches all), at most limit (0: all); more reports
// whether some were left out.
func (h *History) Names(substr string, limit int) (out []NameInfo, more bool) {
	sub := strings.ToLower(substr)
	names := make([]string, 0, len(h.byName))
	for n := range h.byName {
		if sub == "" || strings.Contains(strings.ToLower(n), sub) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		for _, kind := range [...]HistKind{HistCounter, HistGauge, HistDist} {
			info := NameInfo{Name: n, Kind: kind}
			sources, tagSets := map[string]bool{}, map[string]bool{}
			var key []byte
			for _, s := range h.byName[n] {
				if s.kind != kind {
					continue
				}
				info.Series++
				sources[s.source] = true
				key = appendKey(key[:0], 0, "", "", s.tags)
				tagSets[string(key)] = true
				if !slices.Contains(info.Windows, s.window) {
					info.Windows = append(info.Windows, s.window)
				}
				info.Last = max(info.Last, s.last())
			}
			if info.Series == 0 {
				continue
			}
			if limit > 0 && len(out) == limit {
				return out, true
			}
			slices.Sort(info.Windows)
			info.Sources, info.TagSets = len(sources), len(tagSets)
			out = append(out, info)
		}
	}
	return out, false
}

func (s *histSeries) last() int64 {
	if n := len(s.scal); n > 0 {
		return int64(s.scal[n-1].start) * 1e9
	}
	if n := len(s.dist); n > 0 {
		return int64(s.dist[n-1].start) * 1e9
	}
	return 0
}

// SeriesInfo describes one series of a name.
type SeriesInfo struct {
	Source      string
	Tags        model.Tags // shared with the History: read-only
	Kind        HistKind
	Window      model.Window
	Windows     int
	First, Last int64 // window starts, Unix ns
}

// Series lists the series named name, sorted by kind, source and tags.
func (h *History) Series(name string) []SeriesInfo {
	sel := slices.Clone(h.byName[name])
	slices.SortFunc(sel, cmpSeries)
	out := make([]SeriesInfo, 0, len(sel))
	for _, s := range sel {
		si := SeriesInfo{Source: s.source, Tags: s.tags, Kind: s.kind, Window: s.window, Windows: len(s.scal) + len(s.dist), Last: s.last()}
		if len(s.scal) > 0 {
			si.First = int64(s.scal[0].start) * 1e9
		} else if len(s.dist) > 0 {
			si.First = int64(s.dist[0].start) * 1e9
		}
		out = append(out, si)
	}
	return out
}
