package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/les-streams/les/internal/model"
)

// EncodingSeries (docs/wire-format.md, "Series encoding"): a metrics
// record's body is
//
//	uvarint n, then n series entries: u8 kind, u8 window, str name,
//	str source, tags
//	count items: uvarint series index (< n), varint timestamp delta from
//	the previous item's timestamp (the first from 0), f64 value
//
// A series is sent once per record instead of once per point: on the loads
// les sees (a few thousand series, points every few ms) an item shrinks
// from about 94 bytes to 11–14, which is smaller uncompressed than the
// item encoding is with zstd, and each consumer resolves a series once per
// record. Entries are in first-use order and unique: a writer MUST NOT
// repeat an entry, and readers MAY rely on that.

// seriesTable is the encoder side: the table being built and the index of
// its entries.
type seriesTable struct {
	entries []byte // the encoded entries, in first-use order
	n       uint32
	// index maps an entry's bytes to its position. Its keys alias
	// entries (unsafe.String): they are only appended to until reset,
	// which clears the map before the bytes are reused, so a key never
	// changes while the map holds it (a grown entries keeps the old array
	// alive for the keys that point into it).
	index map[string]uint32
	prevT int64
	// joined is Finish's scratch: table and items in one buffer for the
	// compressors.
	joined []byte
}

func newSeriesTable() *seriesTable {
	return &seriesTable{index: make(map[string]uint32)}
}

func (t *seriesTable) reset() {
	clear(t.index)
	t.entries = t.entries[:0]
	t.n = 0
	t.prevT = 0
}

// size is the table's share of the body: the entry count and the entries.
func (t *seriesTable) size() int {
	return uvarintLen(uint64(t.n)) + len(t.entries)
}

func (t *seriesTable) appendTable(dst []byte) []byte {
	return append(binary.AppendUvarint(dst, uint64(t.n)), t.entries...)
}

// appendMetric appends m's item to items, adding its series to the table
// when it is new. Once warm (entries and index grown) it allocates
// nothing: the entry is encoded where it would go, and either kept (new)
// or cut off again (known).
func (t *seriesTable) appendMetric(items []byte, m *model.Metric) []byte {
	start := len(t.entries)
	b := append(t.entries, byte(m.Kind), byte(m.Window))
	b = appendString(b, m.Name)
	b = appendString(b, m.Source)
	b = appendTags(b, m.Tags)
	key := unsafe.String(&b[start], len(b)-start)
	idx, ok := t.index[key]
	if ok {
		t.entries = b[:start]
	} else {
		idx = t.n
		t.n++
		t.entries = b
		t.index[key] = idx
	}
	items = binary.AppendUvarint(items, uint64(idx))
	items = binary.AppendVarint(items, m.Timestamp-t.prevT)
	t.prevT = m.Timestamp
	return binary.LittleEndian.AppendUint64(items, math.Float64bits(m.Value))
}

// seriesMark is the state an append can be undone to (Split).
type seriesMark struct {
	entries int
	n       uint32
	prevT   int64
}

func (t *seriesTable) mark() seriesMark {
	return seriesMark{entries: len(t.entries), n: t.n, prevT: t.prevT}
}

// undo forgets what the appends since mk added. Only the entries added
// since are removed from the index, before their bytes are given back.
func (t *seriesTable) undo(mk seriesMark) {
	if t.n > mk.n {
		r := reader{b: t.entries, off: mk.entries}
		for r.off < len(t.entries) && !r.bad {
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
			delete(t.index, unsafe.String(&t.entries[s], r.off-s))
		}
	}
	t.entries = t.entries[:mk.entries]
	t.n = mk.n
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
	r := reader{b: body}
	n := r.count(5) // an entry is at least 5 bytes: kind, window, 3 lengths
	if r.bad {
		return fmt.Errorf("%w: series table length", ErrCorrupt)
	}
	tab := d.series[:0]
	for i := 0; i < n; i++ {
		var e seriesEntry
		e.kind = model.Kind(r.byte())
		e.window = model.Window(r.byte())
		e.name = r.string()
		e.source = r.string()
		e.tags = r.tags(dst)
		if r.bad {
			d.series = tab
			return fmt.Errorf("%w: series %d of %d", ErrCorrupt, i, n)
		}
		tab = append(tab, e)
	}
	d.series = tab
	// Each item is at least 10 bytes (index, delta, value), so a corrupt
	// count cannot make the batch grow past what the body holds.
	if uint64(count)*10 > uint64(len(r.b)-r.off) {
		return fmt.Errorf("%w: %d items cannot fit in %d bytes", ErrCorrupt, count, len(r.b)-r.off)
	}
	dst.Metrics = growMetrics(dst.Metrics, int(count))
	base := dst.SeriesN + 1
	dst.SeriesN += uint32(len(tab))
	var ts int64
	for i := uint32(0); i < count; i++ {
		idx := r.uvarint()
		ts += r.varint()
		v := r.float()
		if r.bad || idx >= uint64(len(tab)) {
			return fmt.Errorf("%w: item %d of %d", ErrCorrupt, i, count)
		}
		e := &tab[idx]
		dst.Metrics = append(dst.Metrics, model.Metric{Name: e.name, Value: v, Timestamp: ts,
			Source: e.source, Tags: e.tags, Kind: e.kind, Window: e.window, Series: base + uint32(idx)})
	}
	if r.off != len(r.b) {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(r.b)-r.off)
	}
	return nil
}

// growMetrics makes room for n more metrics in one step.
func growMetrics(ms []model.Metric, n int) []model.Metric {
	if cap(ms)-len(ms) >= n {
		return ms
	}
	out := make([]model.Metric, len(ms), len(ms)+n)
	copy(out, ms)
	return out
}
