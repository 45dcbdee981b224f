package model

import "unsafe"

// SeriesMemo remembers one value per series within one batch, found by the
// memory of the series' name, source and tags rather than their bytes.
// The wire series encoding (docs/wire-format.md) decodes every point of a
// series with its table entry's strings and tags slice, so within a batch
// the same memory is the same series, and work done per series (a key and
// its hash, encoded labels) is done once per record instead of once per
// point. With items that do not share memory it simply misses.
//
// Call Next at the start of every batch: a decoder reuses its memory for
// other series in the next one, so what was remembered before is
// forgotten. The memo is direct-mapped: two series of one batch that map
// to one slot take turns, which costs a miss, never a wrong value. It is
// not safe for concurrent use.
type SeriesMemo[V any] struct {
	gen   uint32
	slots *[memoSlots]memoSlot[V]
	// numbered are the slots of series the decoder numbered
	// (Metric.Series): one per number, so they never take turns.
	numbered []memoSlot[V]
}

const (
	memoBits  = 10
	memoSlots = 1 << memoBits
	// memoNumbered bounds the numbered slots (a batch of more series
	// uses the shared slots for the rest).
	memoNumbered = 1 << 16
)

type memoSlot[V any] struct {
	gen               uint32
	extra             uint8
	name, source      *byte
	tags              *Tag
	nlen, slen, ntags int
	v                 V
}

// Next forgets every value: a new batch begins.
func (m *SeriesMemo[V]) Next() {
	m.gen++
	if m.slots == nil || m.gen == 0 { // first use, or the generation wrapped
		m.slots, m.gen = new([memoSlots]memoSlot[V]), 1
	}
}

// Slot returns the value of the series (name, source, tags) and extra (a
// kind, say), and whether it was remembered in this batch. number is the
// point's Metric.Series (0: none). When it was not remembered, the slot
// now belongs to this series and the caller fills *v (its previous
// content is a stale value of another series, kept so that its buffers
// can be reused).
func (m *SeriesMemo[V]) Slot(number uint32, name, source string, tags Tags, extra uint8) (v *V, hit bool) {
	if m.slots == nil {
		m.Next()
	}
	np, sp, tp := unsafe.StringData(name), unsafe.StringData(source), unsafe.SliceData(tags)
	var s *memoSlot[V]
	if i := int(number) - 1; i >= 0 && i < memoNumbered {
		if i >= len(m.numbered) {
			m.numbered = append(m.numbered, make([]memoSlot[V], i+1-len(m.numbered))...)
		}
		s = &m.numbered[i]
	} else {
		// Chosen by the name's memory alone: the series encoding gives
		// every table entry its own name, so names spread the slots.
		s = &m.slots[uint64(uintptr(unsafe.Pointer(np)))*0x9e3779b97f4a7c15>>(64-memoBits)]
	}
	if s.gen == m.gen && s.name == np && s.source == sp && s.tags == tp && s.extra == extra &&
		s.nlen == len(name) && s.slen == len(source) && s.ntags == len(tags) {
		return &s.v, true
	}
	s.gen, s.extra, s.name, s.source, s.tags = m.gen, extra, np, sp, tp
	s.nlen, s.slen, s.ntags = len(name), len(source), len(tags)
	return &s.v, false
}
