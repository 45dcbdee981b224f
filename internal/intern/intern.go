// Package intern is the index of a decoder's series cache: the raw
// series part of a line (its name and tag bytes) to the entry decoded
// from it, in a compact open-addressed table.
//
// On a cache of thousands of series a lookup waits on memory more than it
// computes. A Go map with string keys and wide values touches the group's
// control word, the slot with the key header and the value (88 bytes a
// slot for a series entry), and the key's bytes; here the probe reads
// 8-byte slots (a quarter of the memory, so they stay in the core's cache
// longer), then the entry with its key's header beside it (one place,
// not two arrays), and the key's bytes once (BenchmarkGet: 60-100 ns over
// the line's other work instead of 135-185 when that work evicts the
// cache). Entries are numbered from 1 in the order they were put: a
// decoder gives that number out as model.Metric.Ref's entry number.
//
// A table made by NewSplit(sep) hashes a key in two parts (up to and
// including its first sep, and the rest), each with maphash.Bytes and a
// seed of its own, so that GetParts finds a key from two pieces of the
// caller's memory without putting them together (a statsd line's name
// and its tag section lie apart, its values between them).
package intern

import (
	"bytes"
	"hash/maphash"
	"unsafe"
)

// Table maps byte keys to entries of type E. It is not safe for
// concurrent use.
type Table[E any] struct {
	seedA, seedB maphash.Seed
	sep          int        // NewSplit's sep, or -1
	slots        []uint64   // hash tag << 32 | entry number; 0: empty
	ents         []entry[E] // by entry number - 1
}

// entry is a key and its entry side by side: the probe reads the key's
// header and the caller the entry from the same memory.
type entry[E any] struct {
	key string
	e   E
}

// hashMask keeps the bits of a key's hash; tests clear it to make every
// key's hash collide (such tests must not run in parallel).
var hashMask = ^uint64(0)

// minSlots is the smallest table: a TCP connection that sends a few
// series keeps a small one.
const minSlots = 64

// New returns an empty table.
func New[E any]() *Table[E] {
	return &Table[E]{seedA: maphash.MakeSeed(), seedB: maphash.MakeSeed(), sep: -1}
}

// NewSplit returns an empty table whose keys are hashed in two parts, so
// that a caller can look a key up without putting it together
// (GetParts): a key's first part is its bytes up to and including its
// first sep, or all of it when it holds none, and the second the rest.
func NewSplit[E any](sep byte) *Table[E] {
	t := New[E]()
	t.sep = int(sep)
	return t
}

// Len is the number of entries.
func (t *Table[E]) Len() int { return len(t.ents) }

// split is the length of key's first part.
func (t *Table[E]) split(key []byte) int {
	if t.sep >= 0 {
		if i := bytes.IndexByte(key, byte(t.sep)); i >= 0 {
			return i + 1
		}
	}
	return len(key)
}

// hash is the hash of the key a followed by b, a its first part: each
// part hashed on its own (the runtime's AES hash, maphash.Bytes) with a
// seed of its own, the two xored.
func (t *Table[E]) hash(a, b []byte) uint64 {
	h := maphash.Bytes(t.seedA, a)
	if len(b) > 0 {
		h ^= maphash.Bytes(t.seedB, b)
	}
	return h & hashMask
}

// Get returns key's entry and number (from 1), or nil and 0. The
// pointer is valid until the next Put or Reset.
func (t *Table[E]) Get(key []byte) (*E, int) {
	n := t.split(key)
	return t.GetParts(key[:n], key[n:])
}

// GetParts is Get of the key a followed by b, where a is the key's first
// part (NewSplit; with New, a is the whole key and b empty).
func (t *Table[E]) GetParts(a, b []byte) (*E, int) {
	if len(t.slots) == 0 {
		return nil, 0
	}
	h := t.hash(a, b)
	tag := h >> 32
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return nil, 0
		}
		if s>>32 == tag {
			n := int(uint32(s))
			if en := &t.ents[n-1]; len(en.key) == len(a)+len(b) && en.key[:len(a)] == string(a) && en.key[len(a):] == string(b) {
				return &en.e, n
			}
		}
	}
}

// Put adds key, which is not in the table, with e, and returns its
// number. The table keeps key: its bytes must not change while it is in
// the table.
func (t *Table[E]) Put(key string, e E) int {
	if 2*(len(t.ents)+1) > len(t.slots) { // at most half full
		t.grow(max(minSlots, 2*len(t.slots)))
	}
	t.ents = append(t.ents, entry[E]{key, e})
	n := len(t.ents)
	t.place(t.hashKey(key), n)
	return n
}

func (t *Table[E]) hashKey(key string) uint64 {
	b := unsafe.Slice(unsafe.StringData(key), len(key)) // only read
	n := t.split(b)
	return t.hash(b[:n], b[n:])
}

func (t *Table[E]) place(h uint64, n int) {
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for t.slots[i] != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = h>>32<<32 | uint64(n)
}

func (t *Table[E]) grow(size int) {
	t.slots = make([]uint64, size)
	for i := range t.ents {
		t.place(t.hashKey(t.ents[i].key), i+1)
	}
}

// Reset empties the table, keeping its memory but letting go of the keys
// and entries.
func (t *Table[E]) Reset() {
	clear(t.slots)
	clear(t.ents)
	t.ents = t.ents[:0]
}
