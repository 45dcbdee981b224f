package rollup

import (
	"github.com/les-streams/les/internal/model"
)

// Points is one part of a record whose points name their series by
// index, as the wire series encoding has them
// (wire.Decoder.DecodeSeriesParts): point i is Series[Index[i]] with
// Timestamp[i] and Value[i].
type Points struct {
	// Series are the record's series, of which Name, Source, Tags, Kind
	// and Window are read (Value, Timestamp, Ref and Series are not).
	// Every part of a record has the same series.
	Series []model.Metric
	// Skip, if not nil, has an entry per series: the points of series i
	// are left out (not folded, not counted) when Skip[i]. It is read at
	// a series' first point in the record.
	Skip []bool
	// Index, Timestamp and Value have an entry per point; every Index is
	// below len(Series).
	Index     []uint32
	Timestamp []int64
	Value     []float64
	// Continues is set on every part of a record after the first, More
	// on every part but the last (as model.Batch's).
	Continues, More bool
}

// AddPoints folds p in exactly as Add folds a batch of p's points as
// whole metrics (in the same order, without the skipped ones, with the
// same Continues and More): the same aggregates, bit for bit, the same
// stats and the same emitted windows. It keeps no reference to p.
//
// What Add does per point to find the series (the memo's slot, and the
// key and hash at its first point in a record) is done once per series
// per record here, at its first point: its kind, window, key and hash are
// kept in a table by the series' index, which every point then reads
// directly, and its entries are remembered from that first point on (Add
// remembers them from the second), so a series is looked up in each
// bucket once per record instead of twice.
func (r *Rollup) AddPoints(p *Points, now int64) {
	if !p.Continues || len(r.tab) != len(p.Series) {
		r.forgetFound()
		r.startTable(len(p.Series))
	}
	if !p.More {
		defer r.forgetFound()
	}
	tab := r.tab
	n := len(p.Index)
	ts, vs := p.Timestamp[:n], p.Value[:n]
	for i, ix := range p.Index {
		s := &tab[ix]
		if s.op == opUnseen {
			r.resolve(s, &p.Series[ix], p.Skip != nil && p.Skip[ix])
		}
		if s.op == opSkip {
			continue
		}
		v := vs[i]
		if v-v != 0 { // NaN or ±Inf (model.IsFinite)
			r.stats.Invalid++
			continue
		}
		switch s.op {
		case opSample:
			// entry, its first case written out: a series'
			// samples are in the same window mostly.
			var e *entry
			if f := &r.found[s.km.found]; f.at(r.bucketGen, s.w, ts[i]) {
				if e = f.e; f.late {
					r.stats.LateSamples++
				}
			} else {
				r.cur = s.km.key
				e = r.findEntry(&s.km, 0, aggDist, s.km.hash, s.w, ts[i], now, 1)
			}
			if e != nil {
				r.addSample(e, v)
				r.stats.SamplesIn++
			}
		case opScalar:
			r.cur = s.km.key
			r.addScalar(&s.km, s.kind, s.agg, s.name, ts[i], v, now)
		default:
			r.stats.Invalid++
		}
	}
	r.flushSamples()
}

// tabSeries is what AddPoints knows of a series of the current record.
type tabSeries struct {
	km   keyMemo // its key, hash and remembered entries (found)
	name string  // its name (for rules; a table entry's is cold)
	op   pointOp
	kind model.Kind
	agg  aggKind
	w    model.Window // opSample: the window its samples go to
}

// pointOp is what AddPoints does with a point of a series.
type pointOp uint8

const (
	opUnseen  pointOp = iota // no point of the series yet in this record
	opSkip                   // Points.Skip
	opInvalid                // an unknown kind: counted in Invalid
	opSample                 // into the sketch of window w
	opScalar                 // a counter, gauge, gauge delta or set, at every window (addScalar)
)

// startTable starts a record of n series: none is seen yet. The table's
// key buffers are kept for the next records' series.
func (r *Rollup) startTable(n int) {
	if cap(r.tab) < n {
		r.tab = append(r.tab[:cap(r.tab)], make([]tabSeries, n-cap(r.tab))...)
	}
	r.tab = r.tab[:n]
	for i := range r.tab {
		r.tab[i].op = opUnseen
	}
}

// resolve works out, at the first point of series m in the record, what
// its points do (s.op), and for those folded in its key and hash (as
// seriesKey does) and the run of r.found its entries are remembered in.
func (r *Rollup) resolve(s *tabSeries, m *model.Metric, skip bool) {
	s.kind = m.Kind
	switch {
	case skip:
		s.op = opSkip
		return
	case m.Kind == model.Sample:
		s.op, s.agg, s.w = opSample, aggDist, m.Window
		if s.w.Nanos() == 0 {
			s.w = r.cfg.DefaultWindow
		}
	case m.Kind == model.Counter:
		s.op, s.agg = opScalar, aggCounter
	case m.Kind == model.Gauge, m.Kind == model.GaugeDelta:
		s.op, s.agg = opScalar, aggGauge
	case m.Kind == model.Set:
		s.op, s.agg = opScalar, aggSet
	default:
		s.op = opInvalid
		return
	}
	s.name = m.Name
	km := &s.km
	km.key = appendKey(km.key[:0], s.agg, m.Name, m.Source, m.Tags)
	km.hash = seriesHash(r.seed, km.key)
	km.ntags = int32(len(m.Tags))
	km.rulesKnown = false
	n := 1 // Samples: one window per point
	if s.agg != aggDist {
		n = len(r.cfg.Windows) + r.ruleSlots
	}
	km.found = int32(len(r.found))
	r.found = append(r.found, make([]foundEntry, n)...)
}
