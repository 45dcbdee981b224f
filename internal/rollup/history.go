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
	// chunks hold the older windows, sealed (compact, ordered, all before
	// the open windows); scal or dist the newest ones, where nearly every
	// append and correction lands.
	chunks []histChunk
	scal   []scalarWin // counters and gauges, by start
	dist   []distWin   // distributions, by start
}

// histChunk is up to chunkWindows consecutive windows of a series, sealed:
// encoded back to back (appendScalarWin, appendDistWin) in one exactly
// sized slice. The first dead windows have passed the retention and are
// skipped.
type histChunk struct {
	first, last uint32 // window starts
	n, dead     uint16
	data        []byte
}

const (
	chunkWindows = 30 // windows sealed into one chunk
	openWindows  = 4  // newest windows left open when sealing
)

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
		st.Windows += s.windows()
	}
	return st
}

func (s *histSeries) windows() int {
	n := len(s.scal) + len(s.dist)
	for i := range s.chunks {
		n += int(s.chunks[i].n - s.chunks[i].dead)
	}
	return n
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
	if ci := s.sealedAt(start); ci >= 0 {
		// A correction of a sealed window (rare): unseal, apply, reseal.
		ws := insertScalar(s.unsealScalars(ci), s.kind, start, v)
		s.chunks[ci] = sealScalars(ws)
		return
	}
	s.scal = insertScalar(s.scal, s.kind, start, v)
	if len(s.scal) >= chunkWindows+openWindows {
		s.chunks = append(s.chunks, sealScalars(s.scal[:chunkWindows]))
		n := copy(s.scal, s.scal[chunkWindows:])
		s.scal = s.scal[:n]
	}
}

// insertScalar folds (start, v) into ws (ordered by start).
func insertScalar(ws []scalarWin, kind HistKind, start uint32, v float64) []scalarWin {
	n := len(ws)
	i := n
	if n > 0 && ws[n-1].start >= start {
		i, _ = slices.BinarySearchFunc(ws, start, func(w scalarWin, t uint32) int { return cmp.Compare(w.start, t) })
	}
	if i < n && ws[i].start == start {
		// A correction (metric items carry no correction number, so the
		// caller feeds each record once): counters add, gauges take the
		// later value.
		if kind == HistCounter {
			ws[i].value += v
		} else {
			ws[i].value = v
		}
		return ws
	}
	return slices.Insert(ws, i, scalarWin{start: start, value: v})
}

func (s *histSeries) addDist(d *model.Distribution, st *HistoryStats) {
	start := uint32(d.Timestamp / 1e9)
	if ci := s.sealedAt(start); ci >= 0 {
		ws := insertDist(s.unsealDists(ci), d, s.mapping, st)
		s.chunks[ci] = sealDists(ws)
		return
	}
	s.dist = insertDist(s.dist, d, s.mapping, st)
	if len(s.dist) >= chunkWindows+openWindows {
		s.chunks = append(s.chunks, sealDists(s.dist[:chunkWindows]))
		n := copy(s.dist, s.dist[chunkWindows:])
		clear(s.dist[n:]) // let the sealed bins go
		s.dist = s.dist[:n]
	}
}

// insertDist folds d into ws (ordered by start): a new window, or a
// correction merged into its window once.
func insertDist(ws []distWin, d *model.Distribution, m mapping.IndexMapping, st *HistoryStats) []distWin {
	start := uint32(d.Timestamp / 1e9)
	n := len(ws)
	i := n
	if n > 0 && ws[n-1].start >= start {
		i, _ = slices.BinarySearchFunc(ws, start, func(w distWin, t uint32) int { return cmp.Compare(w.start, t) })
	}
	if i < n && ws[i].start == start {
		w := &ws[i]
		bit := corrBit(d.Correction)
		if w.corrs&bit != 0 {
			st.Duplicates++
			return ws
		}
		w.corrs |= bit
		sk := NewSketch()
		w.mergeInto(sk)
		sk.mergeCentroids(d.Centroids, d.Sum, d.Min, d.Max)
		*w = distWin{start: start, corrs: w.corrs, count: sk.count, sum: sk.sum, min: sk.min, max: sk.max,
			bins: encodeBins(nil, nil, sk)}
		return ws
	}
	// The fast path (every window but corrections): the centroids are the
	// rollup sketch's bins, encoded as they are.
	bins, count, sum, mn, mx, ok := encodeCentroids(nil, d.Centroids, m)
	if !ok {
		return ws
	}
	if d.Count > 0 && model.IsFinite(d.Sum) && model.IsFinite(d.Min) && model.IsFinite(d.Max) {
		sum, mn, mx = d.Sum, d.Min, d.Max
	}
	w := distWin{start: start, corrs: corrBit(d.Correction), count: count, sum: sum, min: mn, max: mx, bins: bins}
	return slices.Insert(ws, i, w)
}

// sealedAt returns the index of the chunk a window starting at start
// belongs in (the first whose last window starts at or after it), or -1
// when it belongs with the open windows.
func (s *histSeries) sealedAt(start uint32) int {
	n := len(s.chunks)
	if n == 0 || start > s.chunks[n-1].last {
		return -1
	}
	i, _ := slices.BinarySearchFunc(s.chunks, start, func(c histChunk, t uint32) int { return cmp.Compare(c.last, t) })
	return i
}

// Sealed windows. A scalar window is uvarint(start − previous start) and
// the value: uvarint(zigzag(v)<<1) for an integer |v| < 2^52 (one byte for
// a counter of 1), else 0x01 and its float64 bits. A distribution window
// is the start delta, uvarint(corrections<<1 | c) (c: the count follows as
// a float64; else it is the sum of the bin counts), sum, min and max as
// float64, uvarint(len(bins)) and the bins (encodeBins). Nothing is lost:
// decoding gives back the very windows sealed.

func appendF64(b []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
}

func readF64(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) }

func appendValue(b []byte, v float64) []byte {
	if v == math.Trunc(v) && math.Abs(v) < 1<<52 && !(v == 0 && math.Signbit(v)) {
		i := int64(v)
		return binary.AppendUvarint(b, (uint64(i<<1)^uint64(i>>63))<<1)
	}
	return appendF64(append(b, 1), v)
}

func readValue(b []byte) (float64, int) {
	u, k := binary.Uvarint(b)
	if u&1 == 0 {
		u >>= 1
		return float64(int64(u>>1) ^ -int64(u&1)), k
	}
	return readF64(b[k:]), k + 8
}

func sealScalars(ws []scalarWin) histChunk {
	var buf []byte
	prev := ws[0].start
	for _, w := range ws {
		buf = binary.AppendUvarint(buf, uint64(w.start-prev))
		buf = appendValue(buf, w.value)
		prev = w.start
	}
	return histChunk{first: ws[0].start, last: ws[len(ws)-1].start, n: uint16(len(ws)), data: slices.Clone(buf)}
}

func sealDists(ws []distWin) histChunk {
	var buf []byte
	prev := ws[0].start
	for i := range ws {
		w := &ws[i]
		buf = binary.AppendUvarint(buf, uint64(w.start-prev))
		explicit := binsCount(w.bins) != w.count
		h := uint64(w.corrs) << 1
		if explicit {
			h |= 1
		}
		buf = binary.AppendUvarint(buf, h)
		if explicit {
			buf = appendF64(buf, w.count)
		}
		buf = appendF64(appendF64(appendF64(buf, w.sum), w.min), w.max)
		buf = binary.AppendUvarint(buf, uint64(len(w.bins)))
		buf = append(buf, w.bins...)
		prev = w.start
	}
	return histChunk{first: ws[0].start, last: ws[len(ws)-1].start, n: uint16(len(ws)), data: slices.Clone(buf)}
}

// readScalar decodes the window at the start of b (written after a
// window starting at prev) and returns its length.
func readScalar(b []byte, prev uint32, w *scalarWin) int {
	d, k := binary.Uvarint(b)
	v, k2 := readValue(b[k:])
	*w = scalarWin{start: prev + uint32(d), value: v}
	return k + k2
}

// readDist decodes the window at the start of b into w, whose bins then
// alias b, and returns its length.
func readDist(b []byte, prev uint32, w *distWin) int {
	d, k := binary.Uvarint(b)
	o := k
	h, k := binary.Uvarint(b[o:])
	o += k
	w.start, w.corrs = prev+uint32(d), uint32(h>>1)
	explicit := h&1 != 0
	if explicit {
		w.count = readF64(b[o:])
		o += 8
	}
	w.sum, w.min, w.max = readF64(b[o:]), readF64(b[o+8:]), readF64(b[o+16:])
	o += 24
	l, k := binary.Uvarint(b[o:])
	o += k
	w.bins = b[o : o+int(l) : o+int(l)]
	if !explicit {
		w.count = binsCount(w.bins)
	}
	return o + int(l)
}

// unsealScalars returns the live windows of chunk ci, decoded.
func (s *histSeries) unsealScalars(ci int) []scalarWin {
	c := &s.chunks[ci]
	ws := make([]scalarWin, 0, c.n+1)
	b, prev := c.data, c.first
	for i := range int(c.n) {
		var w scalarWin
		b = b[readScalar(b, prev, &w):]
		prev = w.start
		if i >= int(c.dead) {
			ws = append(ws, w)
		}
	}
	return ws
}

// unsealDists returns the live windows of chunk ci, decoded (bins copied).
func (s *histSeries) unsealDists(ci int) []distWin {
	c := &s.chunks[ci]
	ws := make([]distWin, 0, c.n+1)
	b, prev := c.data, c.first
	for i := range int(c.n) {
		var w distWin
		b = b[readDist(b, prev, &w):]
		prev = w.start
		if i >= int(c.dead) {
			w.bins = slices.Clone(w.bins)
			ws = append(ws, w)
		}
	}
	return ws
}

// eachScalar calls f for the live windows with lo <= start < hi, in order.
func (s *histSeries) eachScalar(lo, hi uint32, f func(w scalarWin)) {
	for ci := range s.chunks {
		c := &s.chunks[ci]
		if c.last < lo {
			continue
		}
		if c.first >= hi {
			return
		}
		b, prev := c.data, c.first
		for i := range int(c.n) {
			var w scalarWin
			b = b[readScalar(b, prev, &w):]
			prev = w.start
			if i < int(c.dead) || w.start < lo {
				continue
			}
			if w.start >= hi {
				return
			}
			f(w)
		}
	}
	i, _ := slices.BinarySearchFunc(s.scal, lo, func(w scalarWin, t uint32) int { return cmp.Compare(w.start, t) })
	for ; i < len(s.scal) && s.scal[i].start < hi; i++ {
		f(s.scal[i])
	}
}

// eachDist calls f for the live windows with lo <= start < hi, in order;
// *w (and its bins) is valid during the call only.
func (s *histSeries) eachDist(lo, hi uint32, f func(w *distWin)) {
	var w distWin
	for ci := range s.chunks {
		c := &s.chunks[ci]
		if c.last < lo {
			continue
		}
		if c.first >= hi {
			return
		}
		b, prev := c.data, c.first
		for i := range int(c.n) {
			b = b[readDist(b, prev, &w):]
			prev = w.start
			if i < int(c.dead) || w.start < lo {
				continue
			}
			if w.start >= hi {
				return
			}
			f(&w)
		}
	}
	i, _ := slices.BinarySearchFunc(s.dist, lo, func(w distWin, t uint32) int { return cmp.Compare(w.start, t) })
	for ; i < len(s.dist) && s.dist[i].start < hi; i++ {
		f(&s.dist[i])
	}
}

// first returns the start of the oldest live window (0 if none).
func (s *histSeries) first() uint32 {
	if len(s.chunks) > 0 {
		c := &s.chunks[0]
		b, prev := c.data, c.first
		for range int(c.dead) + 1 {
			if s.kind == HistDist {
				var w distWin
				b = b[readDist(b, prev, &w):]
				prev = w.start
			} else {
				var w scalarWin
				b = b[readScalar(b, prev, &w):]
				prev = w.start
			}
		}
		return prev
	}
	if len(s.scal) > 0 {
		return s.scal[0].start
	}
	if len(s.dist) > 0 {
		return s.dist[0].start
	}
	return 0
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
			d := int64(idx - prev)
			u := (uint64(d<<1) ^ uint64(d>>63)) << 1
			prev = idx
			if c.Count == 1 {
				dst = binary.AppendUvarint(dst, u|1) // the common case: one sample
				continue
			}
			dst = binary.AppendUvarint(dst, u)
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
		s.pruneChunks(cutoff)
		if n := countBefore(s.scal, cutoff, func(w scalarWin) uint32 { return w.start }); n > 0 {
			s.scal = s.scal[n:]
		}
		if n := countBefore(s.dist, cutoff, func(w distWin) uint32 { return w.start }); n > 0 {
			clear(s.dist[:n]) // let the bins go now
			s.dist = s.dist[n:]
		}
		if s.windows() == 0 {
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

// pruneChunks drops the chunks whose windows all start before cutoff and
// marks the windows before it dead in the first one left.
func (s *histSeries) pruneChunks(cutoff uint32) {
	n := 0
	for n < len(s.chunks) && s.chunks[n].last < cutoff {
		n++
	}
	if n > 0 {
		clear(s.chunks[:n])
		s.chunks = s.chunks[n:]
	}
	if len(s.chunks) == 0 || s.chunks[0].first >= cutoff {
		return
	}
	c := &s.chunks[0]
	b, prev := c.data, c.first
	dead := 0
	for i := range int(c.n) {
		var start uint32
		if s.kind == HistDist {
			var w distWin
			b = b[readDist(b, prev, &w):]
			start = w.start
		} else {
			var w scalarWin
			b = b[readScalar(b, prev, &w):]
			start = w.start
		}
		prev = start
		if start >= cutoff {
			break
		}
		dead = i + 1
	}
	c.dead = uint16(max(int(c.dead), dead))
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
// bins, each uvarint(zigzag(index delta)<<1 | one) followed, unless one
// (a count of exactly 1, the common case), by the count; then the zero
// count. Indexes are the sketch mapping's, so decoding reproduces
// identical bins.
func encodeBins(dst []byte, scratch []model.Centroid, sk *Sketch) []byte {
	dst, _, _, _, _, _ = encodeCentroids(dst, sk.Centroids(scratch[:0]), sk.dd.IndexMapping)
	return dst
}

// walkBins calls f for each bin of an encoding (sign 0: the zero count).
// Bins were written by encodeBins, so input is trusted.
func walkBins(b []byte, f func(sign float64, idx int, count float64)) {
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
	for _, sign := range [2]float64{1, -1} {
		n, k := binary.Uvarint(b)
		b = b[k:]
		idx := 0
		for range n {
			u, k := binary.Uvarint(b)
			b = b[k:]
			z := u >> 1
			idx += int(int64(z>>1) ^ -int64(z&1))
			c := 1.0
			if u&1 == 0 {
				c = getCount()
			}
			f(sign, idx, c)
		}
	}
	if z := getCount(); z > 0 {
		f(0, 0, z)
	}
}

// decodeBins adds encoded bins to sk's sketch only (not its count, sum,
// min and max).
func decodeBins(b []byte, sk *Sketch) {
	m := sk.dd.IndexMapping
	walkBins(b, func(sign float64, idx int, c float64) {
		if sign == 0 {
			_ = sk.dd.AddWithCount(0, c)
			return
		}
		_ = sk.dd.AddWithCount(sign*m.Value(idx), c)
	})
}

// binsCount is the sum of the counts of encoded bins.
func binsCount(b []byte) float64 {
	var n float64
	walkBins(b, func(_ float64, _ int, c float64) { n += c })
	return n
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
			s.eachDist(lo, hi, func(w *distWin) {
				ts := int64(w.start) * 1e9
				if ts < from || ts >= to {
					return
				}
				a := get(stepStart(ts, from, step))
				a.p.Windows++
				w.mergeInto(a.sk)
			})
		default:
			s.eachScalar(lo, hi, func(w scalarWin) {
				ts := int64(w.start) * 1e9
				if ts < from || ts >= to {
					return
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
			})
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
	if n := len(s.chunks); n > 0 {
		return int64(s.chunks[n-1].last) * 1e9
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
		si := SeriesInfo{Source: s.source, Tags: s.tags, Kind: s.kind, Window: s.window, Windows: s.windows(), Last: s.last()}
		if si.Windows > 0 {
			si.First = int64(s.first()) * 1e9
		}
		out = append(out, si)
	}
	return out
}
