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
// indexes.
type seriesTable struct {
	// keys are the identities of the record's series (kind, window, then
	// name, source and tags as str, in encoding 1's layout), in
	// first-use order. index maps an identity to its series number; its
	// keys alias keys (unsafe.String), and strIndex's alias strs: both
	// buffers are only appended to until reset, which clears the maps
	// before the bytes are reused, so a key never changes while a map
	// holds it (a grown buffer keeps the old array alive for the keys
	// that point into it).
	keys  []byte
	index map[string]uint32 // as many as entries
	// entries are the encoded series entries (string numbers).
	entries []byte
	// strs is the string table, strAt its strings (aliasing it) by
	// number, strIndex their numbers.
	strs     []byte
	strIndex map[string]uint32
	strAt    []string
	// recent is the last string at each place of an entry (name, source,
	// then each tag's key and value): Lambda-like series share most of
	// them in order (the same tag keys, often the same source), and a
	// comparison is cheaper than a map lookup.
	recent [recentStrs]recentStr
	// refs find the series of interned points by their decoder's
	// reference (model.Metric.Ref), one table per series cache seen in
	// the record.
	refs  [refCaches]refTable
	nextR int // the table to give to the next cache
	prevT int64
	// joined is Finish's scratch: tables and items in one buffer for the
	// compressors.
	joined []byte
}

const recentStrs = 16

type recentStr struct {
	i   uint32
	set bool
}

func newSeriesTable() *seriesTable {
	return &seriesTable{index: make(map[string]uint32), strIndex: make(map[string]uint32)}
}

func (t *seriesTable) reset() {
	t.forget()
	clear(t.index)
	clear(t.strIndex)
	t.recent = [recentStrs]recentStr{}
	t.keys, t.entries, t.strs = t.keys[:0], t.entries[:0], t.strs[:0]
	clear(t.strAt)
	t.strAt = t.strAt[:0]
	t.prevT = 0
}

// size is the tables' share of the body.
func (t *seriesTable) size() int {
	return uvarintLen(uint64(len(t.strAt))) + len(t.strs) + uvarintLen(uint64(len(t.index))) + len(t.entries)
}

func (t *seriesTable) appendTable(dst []byte) []byte {
	dst = append(binary.AppendUvarint(dst, uint64(len(t.strAt))), t.strs...)
	return append(binary.AppendUvarint(dst, uint64(len(t.index))), t.entries...)
}

// appendMetric appends m's item to items, adding its series to the tables
// when it is new. Once warm (buffers and maps grown) it allocates
// nothing: the identity is encoded where it would go, and either kept
// (new) or cut off again (known).
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

// lookup returns the number of m's series, adding it when it is new.
func (t *seriesTable) lookup(m *model.Metric) uint32 {
	start := len(t.keys)
	b := append(t.keys, byte(m.Kind), byte(m.Window))
	b = appendString(b, m.Name)
	b = appendString(b, m.Source)
	b = appendTags(b, m.Tags)
	key := unsafe.String(&b[start], len(b)-start)
	idx, ok := t.index[key]
	if ok {
		t.keys = b[:start]
		return idx
	}
	idx = uint32(len(t.index))
	t.keys = b
	t.index[key] = idx
	t.addEntry(m)
	return idx
}

// refTable maps the entries of one decoder series cache (the high half
// of model.Metric.Ref) to the record's series numbers: slot e-1 is entry
// e's series number + 1 (0: not seen in this record), with the point's
// kind and window, which an entry does not fix (a StatsD name sent as a
// counter and as a gauge). An index instead of a hash: the slots are 4
// bytes and dense, so they stay in the core's cache.
type refTable struct {
	cache uint32 // 0: free
	hi    int    // slots[:hi] may be set
	slots []uint32
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

func refSlot(idx uint32, m *model.Metric) uint32 {
	return (idx+1)<<8 | uint32(m.Kind&0xf)<<4 | uint32(m.Window&0xf)
}

// byRef returns the number of m's series (m.Ref != 0), adding it when it
// is new.
func (t *seriesTable) byRef(m *model.Metric) uint32 {
	e := int(uint32(m.Ref)) - 1
	if e < 0 || e >= refMaxEntry || m.Kind > 0xf || m.Window > 0xf || len(t.index) >= 1<<24-1 {
		return t.lookup(m)
	}
	rt := t.refTable(uint32(m.Ref >> 32))
	if e < len(rt.slots) {
		if v := rt.slots[e]; v != 0 && v&0xff == refSlot(0, m)&0xff {
			return v>>8 - 1
		}
	}
	idx := t.lookup(m)
	if e >= len(rt.slots) {
		rt.slots = slices.Grow(rt.slots[:cap(rt.slots)], e+1-cap(rt.slots))
		rt.slots = rt.slots[:cap(rt.slots)]
	}
	rt.slots[e] = refSlot(idx, m)
	rt.hi = max(rt.hi, e+1)
	return idx
}

// refTable is the table of the series cache numbered cache, taking one
// (the oldest) when the record has not seen it.
func (t *seriesTable) refTable(cache uint32) *refTable {
	for i := range t.refs {
		if rt := &t.refs[i]; rt.cache == cache {
			return rt
		}
	}
	rt := &t.refs[t.nextR]
	t.nextR = (t.nextR + 1) % refCaches
	clear(rt.slots[:rt.hi])
	rt.cache, rt.hi = cache, 0
	return rt
}

// forget empties the reference tables (the series numbers they hold are
// given back).
func (t *seriesTable) forget() {
	for i := range t.refs {
		rt := &t.refs[i]
		clear(rt.slots[:rt.hi])
		rt.cache, rt.hi = 0, 0
	}
	t.nextR = 0
}

// addEntry appends the entry of m's series, adding its strings.
func (t *seriesTable) addEntry(m *model.Metric) {
	e := append(t.entries, byte(m.Kind), byte(m.Window))
	e = binary.AppendUvarint(e, uint64(t.str(0, m.Name)))
	e = binary.AppendUvarint(e, uint64(t.str(1, m.Source)))
	e = binary.AppendUvarint(e, uint64(len(m.Tags)))
	for j, tg := range m.Tags {
		e = binary.AppendUvarint(e, uint64(t.str(2+2*j, tg.Key)))
		e = binary.AppendUvarint(e, uint64(t.str(3+2*j, tg.Value)))
	}
	t.entries = e
}

// str returns the number of s in the string table, adding it; place is
// where s is in the entry (for recent).
func (t *seriesTable) str(place int, s string) uint32 {
	var r *recentStr
	if place < recentStrs {
		r = &t.recent[place]
		if r.set && t.strAt[r.i] == s {
			return r.i
		}
	}
	i, ok := t.strIndex[s]
	if !ok {
		i = uint32(len(t.strAt))
		t.strs = appendString(t.strs, s)
		k := t.lastStr(len(s))
		t.strIndex[k] = i
		t.strAt = append(t.strAt, k)
	}
	if r != nil {
		*r = recentStr{i: i, set: true}
	}
	return i
}

// lastStr is the string of n bytes that ends strs, aliasing it.
func (t *seriesTable) lastStr(n int) string {
	if n == 0 {
		return ""
	}
	return unsafe.String(&t.strs[len(t.strs)-n], n)
}

// seriesMark is the state an append can be undone to (Split).
type seriesMark struct {
	keys, entries, strs int
	n, nstr             int // series and strings
	prevT               int64
}

func (t *seriesTable) mark() seriesMark {
	return seriesMark{keys: len(t.keys), entries: len(t.entries), strs: len(t.strs), n: len(t.index), nstr: len(t.strAt), prevT: t.prevT}
}

// undo forgets what the appends since mk added. Only the series and
// strings added since are removed from the indexes, before their bytes
// are given back.
func (t *seriesTable) undo(mk seriesMark) {
	if len(t.index) > mk.n {
		r := reader{b: t.keys, off: mk.keys}
		for r.off < len(t.keys) && !r.bad {
			s := r.off
			r.byte()
			r.byte()
			r.bytes()
			r.bytes()
			n := r.count(2)
			for i := 0; i < n && !r.bad; i++ {
				r.bytes()
				r.bytes()
			}
			delete(t.index, unsafe.String(&t.keys[s], r.off-s))
		}
	}
	if len(t.strAt) > mk.nstr {
		r := reader{b: t.strs, off: mk.strs}
		for r.off < len(t.strs) && !r.bad {
			delete(t.strIndex, r.string())
		}
	}
	t.forget()
	t.keys, t.entries, t.strs = t.keys[:mk.keys], t.entries[:mk.entries], t.strs[:mk.strs]
	t.strAt = t.strAt[:mk.nstr]
	t.recent = [recentStrs]recentStr{} // may name a string given back
	t.prevT = mk.prevT
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
	r := &p.r
	end := p.i + min(n, p.count-p.i)
	for ; p.i < end; p.i++ {
		idx := r.uvarint()
		p.ts += r.varint()
		v := r.float()
		if r.bad || idx >= uint64(len(tab)) {
			return fmt.Errorf("%w: item %d of %d", ErrCorrupt, p.i, p.count)
		}
		e := &tab[idx]
		dst.Metrics = append(dst.Metrics, model.Metric{Name: e.name, Value: v, Timestamp: p.ts,
			Source: e.source, Tags: e.tags, Kind: e.kind, Window: e.window, Series: p.base + uint32(idx)})
	}
	if p.i == p.count && r.off != len(r.b) {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(r.b)-r.off)
	}
	return nil
}

// checkPoints reports whether the items of p would all decode, without
// decoding them (DecodeParts hands nothing over from a corrupt record).
func (d *Decoder) checkPoints(p seriesPoints) error {
	r := &p.r
	for ; p.i < p.count; p.i++ {
		idx := r.uvarint()
		r.varint()
		r.float()
		if r.bad || idx >= uint64(len(d.series)) {
			return fmt.Errorf("%w: item %d of %d", ErrCorrupt, p.i, p.count)
		}
	}
	if r.off != len(r.b) {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(r.b)-r.off)
	}
	return nil
}
