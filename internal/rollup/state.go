package rollup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/les-streams/les/internal/model"
)

// State format (all integers uvarint unless noted, strings as uvarint
// length + bytes, floats as 8-byte little-endian IEEE 754):
//
//	"LESR" version(byte = 1)
//	stats: 8 counters
//	closed (varint)
//	nbuckets, then per bucket: window(byte) start(varint) corr deadline(varint) nseries,
//	  then per series: key kind(byte) name source ntags (key value)* and
//	    dist:    sketch (Sketch.MarshalBinary bytes, length-prefixed)
//	    counter: value
//	    gauge:   value ts(varint) hasVal(byte)
//	    set:     mode(byte 0 exact|1 hll) then n member* | 2^14 register bytes
//	nlastCorr, then window(byte) start(varint) corr
//	nrecent, then per series: key name source window(byte) ntags (key value)* ndists,
//	  then per distribution: ts(varint) corr count sum min max ncentroids (value count)* nquantiles (q value)*
const stateVersion = 1

var errState = errors.New("rollup: corrupt state")

type enc struct{ b []byte }

func (e *enc) u(v uint64)   { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) i(v int64)    { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) f(v float64)  { e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(v)) }
func (e *enc) s(v string)   { e.u(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) byte(v uint8) { e.b = append(e.b, v) }
func (e *enc) tags(t model.Tags) {
	e.u(uint64(len(t)))
	for _, tag := range t {
		e.s(tag.Key)
		e.s(tag.Value)
	}
}

// MarshalState encodes all open windows, corrections, correction numbers,
// recent windows and stats. The result is the caller's.
//
// It is made in one allocation of about the last state's size (growing
// it by appending made ~20 of them, twice the state's bytes, every
// checkpoint: 13 % of a loaded les's allocations), and the entries and
// sketches are gathered in scratch space the Rollup keeps.
func (r *Rollup) MarshalState() ([]byte, error) {
	e := &enc{b: make([]byte, 0, r.stateSize+r.stateSize/8+64)}
	e.b = append(append(e.b, "LESR"...), stateVersion)
	defer func() {
		r.stateSize = len(e.b)
		clear(r.stateEnts) // no entry kept alive by the scratch
	}()
	st := r.stats
	for _, v := range [...]uint64{st.SamplesIn, st.DistsIn, st.LateSamples, st.SeriesRejected, st.WindowsEmitted, st.CorrectionsEmitted, st.Invalid, st.SetsApproximated} {
		e.u(v)
	}
	e.i(r.closed)
	e.u(uint64(len(r.open) + len(r.corr)))
	for _, m := range [...]map[winKey]*bucket{r.open, r.corr} {
		for _, bk := range m {
			e.byte(uint8(bk.w))
			e.i(bk.start)
			e.u(uint64(bk.corr))
			e.i(bk.deadline)
			e.u(uint64(bk.n))
			r.stateEnts = bk.appendEntries(r.stateEnts[:0])
			for _, en := range r.stateEnts {
				e.s(en.key)
				e.byte(uint8(en.kind))
				e.s(en.name)
				e.s(en.source)
				e.tags(en.tags)
				switch en.kind {
				case aggDist:
					r.stateSketch = en.sketch.appendBinary(r.stateSketch[:0], &r.stateBody)
					e.u(uint64(len(r.stateSketch)))
					e.b = append(e.b, r.stateSketch...)
				case aggCounter:
					e.f(en.value)
				case aggGauge:
					e.f(en.value)
					e.i(en.ts)
					if en.hasVal {
						e.byte(1)
					} else {
						e.byte(0)
					}
				case aggSet:
					if en.set.hll != nil {
						e.byte(1)
						e.b = append(e.b, en.set.hll...)
					} else {
						e.byte(0)
						e.u(uint64(len(en.set.exact)))
						for m := range en.set.exact {
							e.u(m)
						}
					}
				}
			}
		}
	}
	e.u(uint64(len(r.lastCorr)))
	for wk, c := range r.lastCorr {
		e.byte(uint8(wk.w))
		e.i(wk.start)
		e.u(uint64(c))
	}
	n := 0
	for _, by := range r.recent {
		n += len(by)
	}
	e.u(uint64(n))
	for qk, by := range r.recent {
		for k, rs := range by {
			e.s(k)
			e.s(qk.name)
			e.s(qk.source)
			e.byte(uint8(qk.w))
			e.tags(rs.dists[0].Tags)
			e.u(uint64(len(rs.dists)))
			for _, d := range rs.dists {
				e.i(d.Timestamp)
				e.u(uint64(d.Correction))
				e.f(d.Count)
				e.f(d.Sum)
				e.f(d.Min)
				e.f(d.Max)
				e.u(uint64(len(d.Centroids)))
				for _, c := range d.Centroids {
					e.f(c.Value)
					e.f(c.Count)
				}
				e.u(uint64(len(d.Quantiles)))
				for _, q := range d.Quantiles {
					e.f(q.Q)
					e.f(q.Value)
				}
			}
		}
	}
	return e.b, nil
}

type dec struct {
	b   []byte
	err error
}

func (d *dec) fail() {
	if d.err == nil {
		d.err = errState
	}
	d.b = nil
}

func (d *dec) u() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// n reads a count and checks that at least min bytes per item remain.
func (d *dec) n(min int) int {
	v := d.u()
	if v > uint64(len(d.b)/min) {
		d.fail()
		return 0
	}
	return int(v)
}

func (d *dec) i() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) f() float64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

func (d *dec) bytes(n int) []byte {
	if n < 0 || n > len(d.b) {
		d.fail()
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) s() string { return string(d.bytes(d.n(1))) }

func (d *dec) byte() uint8 {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) window() model.Window {
	w := model.Window(d.byte())
	if w.Nanos() == 0 {
		d.fail()
	}
	return w
}

func (d *dec) tags() model.Tags {
	n := d.n(2)
	if n == 0 {
		return nil
	}
	t := make(model.Tags, n)
	for i := range t {
		t[i] = model.Tag{Key: d.s(), Value: d.s()}
	}
	return t
}

// UnmarshalState replaces r's state with one encoded by MarshalState. The
// configuration is r's own; on error r is unchanged.
func (r *Rollup) UnmarshalState(b []byte) error {
	if len(b) < 5 || string(b[:4]) != "LESR" {
		return errState
	}
	if b[4] != stateVersion {
		return fmt.Errorf("rollup: unsupported state version %d", b[4])
	}
	d := &dec{b: b[5:]}
	var st Stats
	for _, p := range [...]*uint64{&st.SamplesIn, &st.DistsIn, &st.LateSamples, &st.SeriesRejected, &st.WindowsEmitted, &st.CorrectionsEmitted, &st.Invalid, &st.SetsApproximated} {
		*p = d.u()
	}
	closed := d.i()
	open := make(map[winKey]*bucket)
	corr := make(map[winKey]*bucket)
	for range d.n(5) {
		bk := &bucket{winKey: winKey{w: d.window(), start: d.i()}, corr: uint32(d.u()), deadline: d.i()}
		ns := d.n(5)
		bk.series = make(map[uint64]*entry, ns)
		for range ns {
			k := d.s()
			en := &entry{key: k, kind: aggKind(d.byte()), name: d.s(), source: d.s(), tags: d.tags()}
			if d.err == nil && k != string(appendKey(nil, en.kind, en.name, en.source, en.tags)) {
				d.fail() // the key must be the identity, as Add builds it
			}
			switch en.kind {
			case aggDist:
				en.sketch = &Sketch{}
				if err := en.sketch.UnmarshalBinary(d.bytes(d.n(1))); err != nil && d.err == nil {
					d.err = err
				}
			case aggCounter:
				en.value = d.f()
			case aggGauge:
				en.value, en.ts, en.hasVal = d.f(), d.i(), d.byte() == 1
			case aggSet:
				en.set = &distinct{}
				if d.byte() == 1 {
					en.set.hll = append([]uint8(nil), d.bytes(1<<hllP)...)
				} else {
					nm := d.n(1)
					en.set.exact = make(map[uint64]struct{}, nm)
					for range nm {
						en.set.exact[d.u()] = struct{}{}
					}
				}
			default:
				d.fail()
			}
			if d.err != nil {
				return d.err
			}
			h := seriesHash(r.seed, []byte(k))
			for o := bk.series[h]; o != nil; o = o.next {
				if o.key == k {
					return fmt.Errorf("%w: series twice in a window", errState)
				}
			}
			en.next = bk.series[h]
			bk.series[h] = en
			bk.n++
		}
		target := open
		if bk.corr > 0 {
			target = corr
		}
		if target[bk.winKey] != nil {
			d.fail()
		}
		target[bk.winKey] = bk
	}
	lastCorr := make(map[winKey]uint32)
	for range d.n(3) {
		lastCorr[winKey{w: d.window(), start: d.i()}] = uint32(d.u())
	}
	recent := make(map[queryKey]map[string]*recentSeries)
	for range d.n(5) {
		k := d.s()
		qk := queryKey{name: d.s(), source: d.s(), w: d.window()}
		tags := d.tags()
		rs := &recentSeries{}
		nd := d.n(10)
		if nd == 0 {
			d.fail()
		}
		for range nd {
			dist := model.Distribution{Name: qk.name, Source: qk.source, Window: qk.w, Tags: tags,
				Timestamp: d.i(), Correction: uint32(d.u()), Count: d.f(), Sum: d.f(), Min: d.f(), Max: d.f()}
			nc := d.n(16)
			dist.Centroids = make([]model.Centroid, nc)
			for i := range dist.Centroids {
				dist.Centroids[i] = model.Centroid{Value: d.f(), Count: d.f()}
			}
			if nq := d.n(16); nq > 0 {
				dist.Quantiles = make([]model.Quantile, nq)
				for i := range dist.Quantiles {
					dist.Quantiles[i] = model.Quantile{Q: d.f(), Value: d.f()}
				}
			}
			rs.dists = append(rs.dists, dist)
		}
		if d.err != nil {
			return d.err
		}
		by := recent[qk]
		if by == nil {
			by = make(map[string]*recentSeries)
			recent[qk] = by
		}
		by[k] = rs
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errState, len(d.b))
	}
	r.stats, r.closed, r.open, r.corr, r.lastCorr, r.recent = st, closed, open, corr, lastCorr, recent
	r.clearHot()
	return nil
}
