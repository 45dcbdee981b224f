// Package intern is the index of a decoder's series cache: the raw
// series part of a line (its name and tag bytes) to the entry decoded
// from it, in a compact open-addressed table.
//
// On a cache of thousands of series a lookup waits on memory more than it
// computes. A Go map with string keys and wide values touches the group's
// control word, the slot with the key header and the value (88 bytes a
// slot for a series entry), and the key's bytes; here the probe reads
// 8-byte slots (a quarter of the memory, so they stay in the core's cache
// longer), the key's header in a dense array, and the key's bytes once
// (BenchmarkGet: 60-100 ns over the line's other work instead of 135-185
// when that work evicts the cache). Entries are numbered from 1 in the
// order they were put: a decoder gives that number out as
// model.Metric.Ref's entry number.
package intern

import "hash/maphash"

// Table maps byte keys to entries of type E. It is not safe for
// concurrent use.
type Table[E any] struct {
	seed  maphash.Seed
	slots []uint64 // hash tag << 32 | entry number; 0: empty
	keys  []string // by entry number - 1
	ents  []E
}

// tagMask keeps the bits of a hash that a slot stores; tests clear it to
// make every key's tag collide (such tests must not run in parallel).
var tagMask = ^uint64(0)

// minSlots is the smallest table: a TCP connection that sends a few
// series keeps a small one.
const minSlots = 64

// New returns an empty table.
func New[E any]() *Table[E] {
	return &Table[E]{seed: maphash.MakeSeed()}
}

// Len is the number of entries.
func (t *Table[E]) Len() int { return len(t.keys) }

// Get returns key's entry and number (from 1), or nil and 0. The
// pointer is valid until the next Put or Reset.
func (t *Table[E]) Get(key []byte) (*E, int) {
	if len(t.slots) == 0 {
		return nil, 0
	}
	h := maphash.Bytes(t.seed, key)
	tag := h >> 32 & tagMask
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return nil, 0
		}
		if s>>32 == tag {
			if n := int(uint32(s)); t.keys[n-1] == string(key) {
				return &t.ents[n-1], n
			}
		}
	}
}

// Put adds key, which is not in the table, with e, and returns its
// number. The table keeps key: its bytes must not change while it is in
// the table.
func (t *Table[E]) Put(key string, e E) int {
	if 2*(len(t.keys)+1) > len(t.slots) { // at most half full
		t.grow(max(minSlots, 2*len(t.slots)))
	}
	t.keys = append(t.keys, key)
	t.ents = append(t.ents, e)
	n := len(t.keys)
	t.place(maphash.String(t.seed, key), n)
	return n
}

func (t *Table[E]) place(h uint64, n int) {
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for t.slots[i] != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = (h>>32&tagMask)<<32 | uint64(n)
}

func (t *Table[E]) grow(size int) {
	t.slots = make([]uint64, size)
	for i, k := range t.keys {
		t.place(maphash.String(t.seed, k), i+1)
	}
}

// Reset empties the table, keeping its memory but letting go of the keys
// and entries.
func (t *Table[E]) Reset() {
	clear(t.slots)
	clear(t.keys)
	clear(t.ents)
	t.keys, t.ents = t.keys[:0], t.ents[:0]
}
