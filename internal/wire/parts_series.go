package wire

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/les-streams/les/internal/model"
)

// SeriesPart is one part of a series-encoded metrics record as
// DecodeSeriesParts hands it over: the record's series once, and per
// point only its series, timestamp and value, instead of a whole
// model.Metric per point (about 100 bytes written and read back per
// point, against 20).
type SeriesPart struct {
	// Series are the record's series, in the order of its series table:
	// each one's Name, Source, Tags, Kind, Window and Series (the number
	// DecodeParts gives its points); Value, Timestamp and Ref are zero.
	// Every part of a record has the same slice, unchanged.
	Series []model.Metric
	// Point i of the part is Series[Index[i]] with Timestamp[i] and
	// Value[i]; the three have the same length, and every Index is
	// below len(Series).
	Index     []uint32
	Timestamp []int64
	Value     []float64
	// Continues is set on every part after the first, More on every part
	// but the last (as model.Batch's for DecodeParts).
	Continues, More bool
}

// DecodeSeriesParts decodes rec as DecodeParts does, except that a
// series-encoded metrics record goes to points instead of fn, in parts
// of at most n points (DefaultPartSize if n ≤ 0) as SeriesParts: what
// fn would have seen of its metrics, point for point, is each
// SeriesPart's Series[Index[i]] with Timestamp[i] and Value[i]. Every
// other record goes to fn in one part, as DecodeParts hands it over.
//
// dst must be empty; for a series-encoded record it holds the record's
// series (dst.Metrics is SeriesPart.Series, their tags in dst.Arena,
// dst.SeriesN counts them) during the calls and on return. Neither fn
// nor points may keep what they are given past their return, nor change
// it: the SeriesPart and its point slices are the decoder's, reused for
// the next part, and the strings alias the record or the decoder's
// buffer, as Decode's do.
//
// A corrupt record is found before anything is handed over: on error,
// neither fn nor points has been called.
func (d *Decoder) DecodeSeriesParts(dst *model.Batch, rec []byte, n int, fn func(*model.Batch), points func(*SeriesPart)) (Header, error) {
	h, p, done, err := d.startParts(dst, rec, fn)
	if done {
		return h, err
	}
	start := len(dst.Metrics) // 0: dst is empty
	for i := range d.series {
		e := &d.series[i]
		dst.Metrics = append(dst.Metrics, model.Metric{Name: e.name, Source: e.source, Tags: e.tags,
			Kind: e.kind, Window: e.window, Series: p.base + uint32(i)})
	}
	dst.SeriesN += uint32(len(d.series))
	if n <= 0 {
		n = DefaultPartSize
	}
	sp := &d.part
	sp.Series = dst.Metrics[start:]
	size := min(n, int(h.Count))
	if cap(sp.Index) < size {
		sp.Index, sp.Timestamp, sp.Value = make([]uint32, size), make([]int64, size), make([]float64, size)
	}
	for first := true; first || p.i < p.count; first = false {
		k := min(uint32(n), p.count-p.i)
		sp.Index, sp.Timestamp, sp.Value = sp.Index[:k], sp.Timestamp[:k], sp.Value[:k]
		if err := p.decode(len(d.series), sp.Index, sp.Timestamp, sp.Value); err != nil {
			return h, err // checkPoints passed: cannot happen
		}
		sp.Continues, sp.More = !first, p.i < p.count
		points(sp)
	}
	*sp = SeriesPart{Index: sp.Index[:0], Timestamp: sp.Timestamp[:0], Value: sp.Value[:0]}
	return h, nil
}

// decode reads the next len(idx) items of p, of a table of ntab series,
// into idx, ts and v (the same length, at most the items left); after
// the last item it checks that nothing trails them.
func (p *seriesPoints) decode(ntab int, idx []uint32, ts []int64, v []float64) error {
	b, off, t := p.r.b, p.r.off, p.ts
	n := uint64(ntab)
	ts = ts[:len(idx)]
	v = v[:len(idx)]
	for j := range idx {
		// uvarintAt twice, its one-byte case written out (the
		// function is over the inlining budget), and for the index
		// the two-byte one (tables of 128 to 16,384 series).
		var x, dx uint64
		o := off
		if uint(o+1) < uint(len(b)) {
			if x = uint64(b[o]); x < 0x80 {
				o++
			} else if c := b[o+1]; c < 0x80 {
				x, o = x&0x7f|uint64(c)<<7, o+2
			} else {
				x, o = uvarintLongAt(b, o)
			}
		} else {
			x, o = uvarintLongAt(b, o)
		}
		if uint(o) < uint(len(b)) && b[o] < 0x80 {
			dx, o = uint64(b[o]), o+1
		} else {
			dx, o = uvarintLongAt(b, o)
		}
		if o < 0 || len(b)-o < 8 || x >= n {
			p.r.off = off
			return fmt.Errorf("%w: item %d of %d", ErrCorrupt, p.i+uint32(j), p.count)
		}
		t += int64(dx>>1) ^ -int64(dx&1) // zig-zag, as binary.Varint
		idx[j], ts[j] = uint32(x), t
		v[j] = math.Float64frombits(binary.LittleEndian.Uint64(b[o:]))
		off = o + 8
	}
	p.r.off, p.ts = off, t
	p.i += uint32(len(idx))
	if p.i == p.count && off != len(b) {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(b)-off)
	}
	return nil
}

// uvarintAt reads the uvarint at b[off:] and returns it and the offset
// after it, or a negative offset if there is none (off < 0 included, so
// that reads can be chained). One-byte values (series indexes below 128,
// timestamp deltas below 64 ns) are read inline, two-byte ones (below
// 2^14) by a short path, the rest by binary.Uvarint.
func uvarintAt(b []byte, off int) (uint64, int) {
	if uint(off) < uint(len(b)) {
		if c := b[off]; c < 0x80 {
			return uint64(c), off + 1
		}
	}
	return uvarintLongAt(b, off)
}

func uvarintLongAt(b []byte, off int) (uint64, int) {
	if off < 0 || off >= len(b) {
		return 0, -1
	}
	if off+1 < len(b) && b[off] >= 0x80 && b[off+1] < 0x80 {
		return uint64(b[off]&0x7f) | uint64(b[off+1])<<7, off + 2
	}
	v, k := binary.Uvarint(b[off:])
	if k <= 0 {
		return 0, -1
	}
	return v, off + k
}
