package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"unsafe"

	"github.com/les-streams/les/internal/model"
)

// EncodingSeries (docs/wire-format.md, "Series encoding"): a metrics
// record's body is
//
//	uvarint ns, then ns strings (str): each distinct name, source, tag key
//	and tag value of the record once, in first-use order
//	uvarint n, then n series entries: u8 kind, u8 window, uvarint name,
//	uvarint source, uvarint ntags, ntags × (uvarint key, uvarint value),
//	the strings by their number in the string table
//	count items: uvarint series index (< n), varint timestamp delta from
//	the previous item's timestamp (the first from 0), f64 value
//
// A series is sent once per record instead of once per point, and a
// string once however many series use it: on the loads les sees (a few
// thousand series, points every few ms) an item shrinks from about 94
// bytes to 11–14, which is smaller uncompressed than the item encoding is
// with zstd, and each consumer resolves a series once per record. Strings
// and entries are in first-use order and unique: a writer MUST NOT repeat
// one, and readers MAY rely on that.

// seriesTable is the encoder side: the tables being built and their
// indexes, and what it keeps across records about the strings and the
// interned series it has seen (dict, refs), so that the first point of a
// series in each record costs a few array reads per string instead of a
// hash of its identity and one of each string.
type seriesTable struct {
	// entries are the encoded series entries (string numbers), in
	// first-use order, of n series. The string table holds each string
	// once, so two series are the same exactly when their entries' bytes
	// are: index maps an entry's bytes to its series number, for the
	// first indexed series (their entries end at indexedOff). It is
	// brought up to date (catchUp) before a lookup in it; a record of
	// points without a Ref never needs it (byKey has them all). Its keys,
	// and byKey's, alias entries and keys (unsafe.String): both buffers
	// are only appended to until reset or undo, which delete the keys
	// before the bytes are reused, so a key never changes while a map
	// holds it (a grown buffer keeps the old array alive for the keys that
	// point into it).
	entries             []byte
	n                   int
	index               map[string]uint32
	indexed, indexedOff int
	// keys are the identities (kind, window, then name, source and tags
	// as str, in encoding 1's layout) of the series points without a Ref
	// were found by, and byKey maps them to their series numbers: a
	// repeated such point costs one hash of its identity instead of a
	// lookup of each of its strings. byRefN series were added by
	// reference, without a key: while there are none, a point missing
	// from byKey is of a new series.
	keys   []byte
	byKey  map[string]uint32
	byRefN int
	// strs is the string table, and strAt[i] the dict number of string i.
	// dict.num is the other way: dict string g is string n of the record
	// when n = dict.num[g] < len(strAt) and strAt[n] == g (a sparse set:
	// neither needs clearing for a new record or an undo).
	strs  []byte
	strAt []uint32
	dict  strDict
	// recent is the number of the last string at each place of an entry
	// found by its contents (name, source, then each tag's key and value):
	// Lambda-like series share most of them in order (the same tag keys,
	// often the same source), and a comparison is cheaper than a map
	// lookup. It is checked against the table, so it is never stale.
	recent [recentStrs]uint32
	// refs find the series of interned points by their decoder's
	// reference (model.Metric.Ref), one table per series cache, kept
	// across records.
	refs  [refCaches]refTable
	nextR int // the table to give to the next cache
	// gen numbers the record (and each undo within it) for the slots of
	// refs: a slot of another gen is not of this record. Never 0.
	gen uint32
	// maxRefGids bounds each refTable's gids.
	maxRefGids int
	prevT      int64
	scratch    []uint32 // the dict numbers of an entry's strings
	// joined is Finish's scratch: tables and items in one buffer for the
	// compressors.
	joined []byte
}

const (
	recentStrs = 16
	// dictMaxStrings and dictMaxBytes bound what the dictionary keeps
	// across records: past either, reset starts it afresh.
	dictMaxStrings = 1 << 16
	dictMaxBytes   = 2 << 20
	dictChunk      = 64 << 10
	// refMaxGids bounds each reference table's copy of its entries'
	// string numbers (2 MiB: 16,384 entries of 14 tags): entries past it
	// are looked up by their strings in each record.
	refMaxGids = 1 << 19
)

func newSeriesTable() *seriesTable {
	return &seriesTable{index: make(map[string]uint32), byKey: make(map[string]uint32), gen: 1, maxRefGids: refMaxGids,
		dict: strDict{m: make(map[string]uint32), maxStrings: dictMaxStrings, maxBytes: dictMaxBytes}}
}

func (t *seriesTable) reset() {
	clear(t.index)
	clear(t.byKey)
	t.keys, t.entries, t.strs, t.strAt = t.keys[:0], t.entries[:0], t.strs[:0], t.strAt[:0]
	t.n, t.indexed, t.indexedOff, t.byRefN = 0, 0, 0, 0
	t.prevT = 0
	if t.dict.full() {
		// The references' string numbers are the dictionary's.
		t.dict.reset()
		for i := range t.refs {
			t.refs[i].take(0)
		}
		t.nextR = 0
	}
	t.nextGen()
}

// nextGen starts a new generation: no slot of refs is of it.
func (t *seriesTable) nextGen() {
	t.gen++
	if t.gen != 0 {
		return
	}
	for i := range t.refs {
		rt := &t.refs[i]
		for j := range rt.slots[:rt.hi] {
			rt.slots[j].gen = 0
		}
	}
	t.gen = 1
}

// size is the tables' share of the body.
func (t *seriesTable) size() int {
	return uvarintLen(uint64(len(t.strAt))) + len(t.strs) + uvarintLen(uint64(t.n)) + len(t.entries)
}

func (t *seriesTable) appendTable(dst []byte) []byte {
	dst = append(binary.AppendUvarint(dst, uint64(len(t.strAt))), t.strs...)
	return append(binary.AppendUvarint(dst, uint64(t.n)), t.entries...)
}

// appendMetric appends m's item to items, adding its series to the tables
// when it is new. Once warm (buffers, maps and the dictionary grown) it
// allocates nothing.
func (t *seriesTable) appendMetric(items []byte, m *model.Metric) []byte {
	var idx uint32
	if m.Ref == 0 {
		idx = t.lookup(m)
	} else {
		idx = t.byRef(m)
	}
	items = binary.AppendUvarint(items, uint64(idx))
	items = binary.AppendVarint(items, m.Timestamp-t.prevT)
	t.prevT = m.Timestamp
	return binary.LittleEndian.AppendUint64(items, math.Float64bits(m.Value))
}

// lookup returns the number of m's series, adding it when it is new, by
// its identity: the identity is encoded where it would go in keys and
// either kept (not seen by identity in this record) or cut off again.
func (t *seriesTable) lookup(m *model.Metric) uint32 {
	start := len(t.keys)
	b := append(t.keys, byte(m.Kind), byte(m.Window))
	b = appendString(b, m.Name)
	b = appendString(b, m.Source)
	b = appendTags(b, m.Tags)
	key := unsafe.String(&b[start], len(b)-start)
	if idx, ok := t.byKey[key]; ok {
		t.keys = b[:start]
		return idx
	}
	// Once a series was added by reference, index is kept current
	// (series caught it up, and every later series goes through commit
	// with find), so it can be searched as it is.
	find := t.byRefN > 0
	es := len(t.entries)
	e := append(t.entries, byte(m.Kind), byte(m.Window))
	e = binary.AppendUvarint(e, uint64(t.strOf(0, m.Name)))
	e = binary.AppendUvarint(e, uint64(t.strOf(1, m.Source)))
	e = binary.AppendUvarint(e, uint64(len(m.Tags)))
	for j, tg := range m.Tags {
		e = binary.AppendUvarint(e, uint64(t.strOf(2+2*j, tg.Key)))
		e = binary.AppendUvarint(e, uint64(t.strOf(3+2*j, tg.Value)))
	}
	idx, _ := t.commit(es, e, find)
	t.keys = b
	t.byKey[key] = idx
	return idx
}

// strOf returns the number of s in the string table, adding it; place
// is where s is in the entry (for recent).
func (t *seriesTable) strOf(place int, s string) uint32 {
	if place < recentStrs {
		if n := t.recent[place]; int(n) < len(t.strAt) && t.dict.strs[t.strAt[n]] == s {
			return n
		}
	}
	n := t.strNum(t.dict.id(s))
	if place < recentStrs {
		t.recent[place] = n
	}
	return n
}

// gids appends the dict numbers of m's name, source and each tag's key
// and value to dst, adding the strings to the dictionary.
func (t *seriesTable) gids(dst []uint32, m *model.Metric) []uint32 {
	dst = append(dst, t.dict.id(m.Name), t.dict.id(m.Source))
	for _, tg := range m.Tags {
		dst = append(dst, t.dict.id(tg.Key), t.dict.id(tg.Value))
	}
	return dst
}

// series returns the number of the series of kind, window and the dict
// strings g (name, source, then each tag's key and value), adding it and
// its strings when it is new (and then reporting true).
func (t *seriesTable) series(kind model.Kind, w model.Window, g []uint32) (uint32, bool) {
	t.catchUp()
	start := len(t.entries)
	e := append(t.entries, byte(kind), byte(w))
	e = binary.AppendUvarint(e, uint64(t.strNum(g[0])))
	e = binary.AppendUvarint(e, uint64(t.strNum(g[1])))
	e = binary.AppendUvarint(e, uint64(len(g)/2-1))
	for _, x := range g[2:] {
		e = binary.AppendUvarint(e, uint64(t.strNum(x)))
	}
	return t.commit(start, e, true)
}

// commit returns the number of the series whose entry e[start:] was
// encoded where it would go, keeping it when it is new (and then
// reporting true) or cutting it off again: a known series' strings are
// all in the table already, so only a new series adds any. Unless find,
// the caller knows the series is new; if find, index is up to date.
func (t *seriesTable) commit(start int, e []byte, find bool) (uint32, bool) {
	idx := uint32(t.n)
	if find {
		key := unsafe.String(&e[start], len(e)-start)
		if i, ok := t.index[key]; ok {
			t.entries = e[:start]
			return i, false
		}
		t.index[key] = idx
		t.indexed, t.indexedOff = t.n+1, len(e)
	}
	t.entries = e
	t.n++
	return idx, true
}

// catchUp adds the series index does not hold yet.
func (t *seriesTable) catchUp() {
	for ; t.indexed < t.n; t.indexed++ {
		end := skipEntry(t.entries, t.indexedOff)
		t.index[unsafe.String(&t.entries[t.indexedOff], end-t.indexedOff)] = uint32(t.indexed)
		t.indexedOff = end
	}
}

// strNum returns the number of dict string g in the string table, adding
// it.
func (t *seriesTable) strNum(g uint32) uint32 {
	if n := t.dict.num[g]; int(n) < len(t.strAt) && t.strAt[n] == g {
		return n
	}
	n := uint32(len(t.strAt))
	t.strAt = append(t.strAt, g)
	t.dict.num[g] = n
	t.strs = appendString(t.strs, t.dict.strs[g])
	return n
}

// strDict numbers the distinct strings the table has seen, across
// records, each an own copy: an interned series' strings are looked up by
// their contents once, not once per record.
type strDict struct {
	m    map[string]uint32 // keys alias chunks
	strs []string          // by number, aliasing chunks
	num  []uint32          // by number: see seriesTable.strAt
	// chunk is the current chunk of copies: append-only, a new one when
	// full (the maps' keys keep the old ones alive).
	chunk                []byte
	bytes                int
	maxStrings, maxBytes int
}

// id returns the number of s, adding it.
func (d *strDict) id(s string) uint32 {
	g, ok := d.m[s]
	if !ok {
		g = uint32(len(d.strs))
		c := d.own(s)
		d.m[c] = g
		d.strs = append(d.strs, c)
		d.num = append(d.num, 0)
	}
	return g
}

// own returns a copy of s in d's chunks.
func (d *strDict) own(s string) string {
	if len(s) == 0 {
		return ""
	}
	if cap(d.chunk)-len(d.chunk) < len(s) {
		d.chunk = make([]byte, 0, max(dictChunk, len(s)))
	}
	d.chunk = append(d.chunk, s...)
	d.bytes += len(s)
	return unsafe.String(&d.chunk[len(d.chunk)-len(s)], len(s))
}

func (d *strDict) full() bool { return len(d.strs) > d.maxStrings || d.bytes > d.maxBytes }

// reset forgets every string (their numbers are given back).
func (d *strDict) reset() {
	clear(d.m)
	clear(d.strs)
	d.strs, d.num = d.strs[:0], d.num[:0]
	d.chunk, d.bytes = nil, 0
}

// refTable is what the table knows of the entries of one decoder series
// cache (the high half of model.Metric.Ref), by entry number e (slot
// e-1): the entry's strings never change (model.Metric.Ref), so their
// dict numbers are kept across records; and, for the current gen, the
// series number of the entry's point with the slot's kind and window,
// which an entry does not fix (a StatsD name sent as a counter and as a
// gauge). An index instead of a hash: the slots are dense, so they stay
// in the core's cache.
type refTable struct {
	cache uint32 // 0: free
	hi    int    // slots[:hi] may be set
	slots []refSlot
	// gids holds, for each entry whose slot says where, the number of its
	// strings and their dict numbers (as seriesTable.gids).
	gids []uint32
}

type refSlot struct {
	gen uint32 // seriesTable.gen of v
	v   uint32 // (series number + 1) << 8 | kind << 4 | window
	at  uint32 // 1 + the entry's offset in gids, 0: not kept
}

const (
	// refCaches is how many caches a record tells apart by reference
	// (one per UDP reader or TCP connection feeding it); points of
	// further caches take turns.
	refCaches = 4
	// refMaxEntry bounds the entry numbers found by reference (larger
	// ones are looked up by identity).
	refMaxEntry = 1 << 20
)

// take gives rt to the cache numbered cache, forgetting its entries.
func (rt *refTable) take(cache uint32) {
	clear(rt.slots[:rt.hi])
	rt.cache, rt.hi = cache, 0
	rt.gids = rt.gids[:0]
}

// byRef returns the number of m's series (m.Ref != 0), adding it when it
// is new.
func (t *seriesTable) byRef(m *model.Metric) uint32 {
	e := int(uint32(m.Ref)) - 1
	if e < 0 || e >= refMaxEntry || m.Kind > 0xf || m.Window > 0xf || t.n >= 1<<24-1 {
		return t.lookup(m)
	}
	rt := t.refTable(uint32(m.Ref >> 32))
	kw := uint32(m.Kind&0xf)<<4 | uint32(m.Window&0xf)
	if e < len(rt.slots) {
		if s := rt.slots[e]; s.gen == t.gen && s.v&0xff == kw {
			return s.v>>8 - 1
		}
	} else {
		rt.slots = slices.Grow(rt.slots[:cap(rt.slots)], e+1-cap(rt.slots))
		rt.slots = rt.slots[:cap(rt.slots)]
	}
	rt.hi = max(rt.hi, e+1)
	s := &rt.slots[e]
	var g []uint32
	if s.at != 0 {
		n := rt.gids[s.at-1]
		g = rt.gids[s.at : s.at+n]
	} else {
		t.scratch = t.gids(t.scratch[:0], m)
		g = t.scratch
		if len(rt.gids)+1+len(g) <= t.maxRefGids {
			s.at = uint32(len(rt.gids)) + 1
			rt.gids = append(append(rt.gids, uint32(len(g))), g...)
		}
	}
	idx, added := t.series(m.Kind, m.Window, g)
	if added {
		t.byRefN++
	}
	s.gen, s.v = t.gen, (idx+1)<<8|kw
	return idx
}

// refTable is the table of the series cache numbered cache, taking one
// (the oldest) when none is that cache's.
func (t *seriesTable) refTable(cache uint32) *refTable {
	for i := range t.refs {
		if rt := &t.refs[i]; rt.cache == cache {
			return rt
		}
	}
	rt := &t.refs[t.nextR]
	t.nextR = (t.nextR + 1) % refCaches
	rt.take(cache)
	return rt
}

// seriesMark is the state an append can be undone to (Split).
type seriesMark struct {
	keys, entries, strs int
	n, nstr, byRefN     int // series, strings, series added by reference
	prevT               int64
}

func (t *seriesTable) mark() seriesMark {
	return seriesMark{keys: len(t.keys), entries: len(t.entries), strs: len(t.strs),
		n: t.n, nstr: len(t.strAt), byRefN: t.byRefN, prevT: t.prevT}
}

// undo forgets what the appends since mk added: the series added since
// are removed from the indexes before their bytes are given back; the
// strings given back leave the sparse set by the truncation of strAt, and
// the reference slots by a new gen. What the dictionary and the
// reference tables keep across records is of the strings' contents, and
// stays.
func (t *seriesTable) undo(mk seriesMark) {
	for off := mk.keys; off < len(t.keys); {
		end := skipKey(t.keys, off)
		delete(t.byKey, unsafe.String(&t.keys[off], end-off))
		off = end
	}
	if t.indexed > mk.n {
		for off := mk.entries; off < t.indexedOff; {
			end := skipEntry(t.entries, off)
			delete(t.index, unsafe.String(&t.entries[off], end-off))
			off = end
		}
		t.indexed, t.indexedOff = mk.n, mk.entries
	}
	t.keys, t.entries, t.strs = t.keys[:mk.keys], t.entries[:mk.entries], t.strs[:mk.strs]
	t.n, t.byRefN = mk.n, mk.byRefN
	t.strAt = t.strAt[:mk.nstr]
	t.nextGen()
	t.prevT = mk.prevT
}

// skipKey returns the end of the identity at b[off:] (lookup's layout:
// kind, window, name, source, then the tag count and each tag's key and
// value as str), which the table wrote.
func skipKey(b []byte, off int) int {
	off += 2
	str := func() {
		n, k := binary.Uvarint(b[off:])
		off += k + int(n)
	}
	str()
	str()
	n, k := binary.Uvarint(b[off:])
	off += k
	for range 2 * n {
		str()
	}
	return off
}

// skipEntry returns the end of the series entry at b[off:], which the
// table wrote.
func skipEntry(b []byte, off int) int {
	off += 2
	num := func() uint64 {
		v, k := binary.Uvarint(b[off:])
		off += k
		return v
	}
	num()
	num()
	for range 2 * num() {
		num()
	}
	return off
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// seriesEntry is one decoded table entry; its strings and tags alias the
// body and the batch's tag arena, as the items' do.
type seriesEntry struct {
	kind   model.Kind
	window model.Window
	name   string
	source string
	tags   model.Tags
}

// seriesItems decodes a series-encoded metrics body into dst. Every item
// of a series shares the entry's strings and tags slice: consumers must
// treat decoded items as read-only (they do; Decode's contract).
func (d *Decoder) seriesItems(dst *model.Batch, body []byte, count uint32) error {
	r, err := d.seriesTables(dst, body, count)
	if err != nil {
		return err
	}
	dst.Metrics = slices.Grow(dst.Metrics, int(count))
	p := seriesPoints{r: r, count: count, base: dst.SeriesN + 1}
	dst.SeriesN += uint32(len(d.series))
	return d.appendPoints(dst, &p, count)
}

// seriesTables decodes a series-encoded body's string and series tables
// into d.strs and d.series (their tags into dst's arena) and returns the
// reader at the first item.
func (d *Decoder) seriesTables(dst *model.Batch, body []byte, count uint32) (reader, error) {
	r := reader{b: body}
	ns := r.count(1) // a string is at least its length byte
	if r.bad {
		return r, fmt.Errorf("%w: string table length", ErrCorrupt)
	}
	strs := d.strs[:0]
	for i := 0; i < ns && !r.bad; i++ {
		strs = append(strs, r.string())
	}
	d.strs = strs
	if r.bad {
		return r, fmt.Errorf("%w: string table", ErrCorrupt)
	}
	str := func() string {
		i := r.uvarint()
		if i >= uint64(len(strs)) {
			r.bad = true
			return ""
		}
		return strs[i]
	}
	n := r.count(5) // an entry is at least 5 bytes: kind, window, name, source, tag count
	if r.bad {
		return r, fmt.Errorf("%w: series table length", ErrCorrupt)
	}
	tab := d.series[:0]
	for i := 0; i < n; i++ {
		var e seriesEntry
		e.kind = model.Kind(r.byte())
		e.window = model.Window(r.byte())
		e.name = str()
		e.source = str()
		nt := r.count(2)
		mark := dst.TagMark()
		for j := 0; j < nt && !r.bad; j++ {
			k := str()
			v := str()
			dst.AddTag(k, v)
		}
		e.tags = dst.TagsSince(mark)
		if r.bad {
			d.series = tab
			return r, fmt.Errorf("%w: series %d of %d", ErrCorrupt, i, n)
		}
		tab = append(tab, e)
	}
	d.series = tab
	// Each item is at least 10 bytes (index, delta, value), so a corrupt
	// count cannot make the batch grow past what the body holds.
	if uint64(count)*10 > uint64(len(r.b)-r.off) {
		return r, fmt.Errorf("%w: %d items cannot fit in %d bytes", ErrCorrupt, count, len(r.b)-r.off)
	}
	return r, nil
}

// seriesPoints is where the items of a series-encoded body are read:
// the reader at the next item, its number, the running timestamp, and
// the series number of table entry 0.
type seriesPoints struct {
	r     reader
	i     uint32
	count uint32
	ts    int64
	base  uint32
}

// appendPoints appends the next n items of p (at most the rest) to dst;
// after the last item it checks that nothing trails them.
func (d *Decoder) appendPoints(dst *model.Batch, p *seriesPoints, n uint32) error {
	tab := d.series
	b, off, ts := p.r.b, p.r.off, p.ts
	end := p.i + min(n, p.count-p.i)
	for ; p.i < end; p.i++ {
		idx, o := uvarintAt(b, off)
		dx, o := uvarintAt(b, o)
		if o < 0 || len(b)-o < 8 || idx >= uint64(len(tab)) {
			p.r.off, p.ts = off, ts
			return fmt.Errorf("%w: item %d of %d", ErrCorrupt, p.i, p.count)
		}
		ts += int64(dx>>1) ^ -int64(dx&1) // zig-zag, as binary.Varint
		v := math.Float64frombits(binary.LittleEndian.Uint64(b[o:]))
		off = o + 8
		e := &tab[idx]
		dst.Metrics = append(dst.Metrics, model.Metric{Name: e.name, Value: v, Timestamp: ts,
			Source: e.source, Tags: e.tags, Kind: e.kind, Window: e.window, Series: p.base + uint32(idx)})
	}
	p.r.off, p.ts = off, ts
	if p.i == p.count && off != len(b) {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(b)-off)
	}
	return nil
}

// checkPoints reports whether the items of p would all decode, without
// decoding them (DecodeParts hands nothing over from a corrupt record).
func (d *Decoder) checkPoints(p seriesPoints) error {
	b, off := p.r.b, p.r.off
	ntab := uint64(len(d.series))
	for ; p.i < p.count; p.i++ {
		// uvarintAt twice, its one-byte case written out (as in
		// seriesPoints.decode).
		var idx uint64
		o := off
		if uint(o) < uint(len(b)) && b[o] < 0x80 {
			idx, o = uint64(b[o]), o+1
		} else {
			idx, o = uvarintLongAt(b, o)
		}
		if uint(o) < uint(len(b)) && b[o] < 0x80 {
			o++
		} else {
			_, o = uvarintLongAt(b, o)
		}
		if o < 0 || len(b)-o < 8 || idx >= ntab {
			return fmt.Errorf("%w: item %d of %d", ErrCorrupt, p.i, p.count)
		}
		off = o + 8
	}
	if off != len(b) {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(b)-off)
	}
	return nil
}
