package statsd

import (
	"bytes"
	"slices"
	"unicode/utf8"
	"unsafe"

	"github.com/les-streams/les/internal/intern"
	"github.com/les-streams/les/internal/model"
)

// The series cache (Options.SeriesCache; README.md "Series cache").
//
// Every line of a series repeats its name and tag sections byte for byte;
// only the values, the sample rate and the timestamp change. A decoder
// with a cache keys each accepted metric line by its series key and
// remembers the name, source and sorted tags decoded from that key. A
// later line with the same key takes them from the cache and reads only
// its values, type, sample rate and timestamp, with every check the
// uncached decoder makes.
//
// The key has two parts, which the index (intern.NewSplit(':')) hashes
// and compares apart, so that a line's key is looked up where it lies in
// the line, without copying it: the bytes up to and including the first
// ':' (the name with any Telegraf-style tags, then the ':'), and the
// contents of the "#" sections: with one section its contents, with
// several '|' before each one's contents. The key determines the tags
// exactly: the name part holds no ':' or '|' and a section's contents no
// '|', so the key splits back into the same name part and tag lists (a
// second part that starts with '|' is of several sections, any other of
// one; the one section "#" and none both give an empty one, and no tags),
// and the decoder's options are fixed.
//
// The common layout has one "#" section and it is the line's last: the
// first "#" section is looked up as running to the end of the line
// before it is scanned for a '|'. A hit proves the layout, since no
// cached second part that does not start with '|' holds a '|' (a span
// that starts with '|' is not looked up this way); otherwise the sections
// are walked as usual and the key looked up again only if it differs.
// Decode hands each line to decodeHit first, a function of its own for
// this layout's hits (the sections before the "#" one read as
// decodeCached reads them); a line it declines, or a miss, goes on to
// decodeLine and decodeCached, which do not look the same key up again.
//
// Ownership: the cache copies each key once into chunks it owns and
// decodes the entry's strings from that copy, and copies the entry's tags
// into chunks of tags it owns; both are append-only. When the cache is full
// (entries or bytes) it forgets every entry and starts new chunks, never
// writing over the old ones, which live on while items of earlier batches
// alias them.

const (
	// DefaultSeriesCache is the cache size the les listeners use: more
	// series than one UDP reader usually receives.
	DefaultSeriesCache = 16384
	// DefaultSeriesCacheBytes is the default of Options.SeriesCacheBytes.
	DefaultSeriesCacheBytes = 8 << 20
)

const (
	// maxSeriesKey is the longest series key the cache takes: a line with
	// a longer one is decoded without it.
	maxSeriesKey = 1024
	// keyChunk and tagChunk size the owned chunks (bytes, tags).
	keyChunk = 32 << 10
	tagChunk = 1024
	// entryOverhead is what the cache accounts per entry besides its key
	// and tags: the index's entry (the key's 16-byte header beside the
	// 64-byte seriesEntry, with append's slack) and its 8-byte slots,
	// at most half full (TestSeriesCacheHeap holds the heap to the
	// account).
	entryOverhead = 168
	tagSize       = int(unsafe.Sizeof(model.Tag{}))
)

// seriesEntry is the decoded series of a key.
type seriesEntry struct {
	name, source string
	tags         model.Tags // capacity clipped
	ref          uint64     // model.Metric.Ref: the generation's id, the entry's number
}

// seriesCache is a Decoder's series cache; see above.
type seriesCache struct {
	maxEntries, maxBytes int
	bytes                int    // accounted: keys, tags, entryOverhead each
	id                   uint32 // model.NewInternID of the current generation
	m                    *intern.Table[seriesEntry]
	keys                 []byte     // current chunk of owned key bytes
	tags                 model.Tags // current chunk of owned tags
	key                  []byte     // scratch: the second part of a key of several "#" sections
	scratch              model.Batch
	// The current generation's hits and entries, and the bypass: lines
	// left to decode without the cache, and the next bypass's length in
	// generations.
	genHits, genEntries int
	skip, backoff       int
	hits, resets        int  // lines served by the cache, times it was full (for tests)
	noBypass            bool // for tests: every metric line through the cache
}

func newSeriesCache(maxEntries, maxBytes int) *seriesCache {
	if maxBytes <= 0 {
		maxBytes = DefaultSeriesCacheBytes
	}
	return &seriesCache{maxEntries: maxEntries, maxBytes: maxBytes, id: model.NewInternID(), m: intern.NewSplit[seriesEntry](':'), backoff: 1}
}

// decodeHit decodes a line of the common layout whose series the cache
// holds, "name:value|type|#tags" with any "@rate", "T" or other sections
// before the "#" one (read as decodeCached reads them), the "#" section
// the line's last, as decodeCached tries it first. It is a function of
// its own: decodeLine's frame is sized for the uncached path, and a hit
// there paid for its spills and reloads. It reports whether it decoded
// the line, and whether it looked the series up and did not find it,
// which decodeLine passes on to decodeCached, that would look it up the
// same way. A line it does not decode it leaves to decodeLine, which
// makes every check again and decides any rejection: decodeHit rejects
// nothing and changes nothing then, and it accepts only what decodeLine
// would, reading the line as decodeLine does.
//
// UTF-8: unless ascii says the line is ASCII, decodeHit proves it valid
// UTF-8 without a pass of its own. The line is valid if each of its
// pieces between ASCII bytes is, and a hit's pieces are: the key's two
// parts are byte for byte a cached key's, which came from a line that was
// checked (a valid line cut at ASCII bytes stays valid); the type is
// ASCII (parseType), and so is a value appendHit takes (digits, a sign, a
// point); the sections before the "#" one and other values are checked
// here, a few bytes.
func (d *Decoder) decodeHit(dst *model.Batch, line []byte, now int64, ascii bool) (hit, looked bool) {
	if len(line) > d.maxLineLen || line[0] == '_' {
		return false, false
	}
	bar := bytes.IndexByte(line, '|')
	if bar <= 0 {
		return false, false
	}
	colon := bytes.IndexByte(line[:bar], ':')
	if colon <= 0 || line[0] == ',' {
		return false, false
	}
	kind, rest, ok := parseType(line[bar+1:])
	if !ok {
		return false, false
	}
	// The sections before the first "#" one, as decodeCached walks them.
	rate, ts := 1.0, now
	for len(rest) > 1 && rest[1] != '#' {
		sec := rest[1:]
		if sec[0] == '|' { // empty section
			rest = sec
			continue
		}
		end := bytes.IndexByte(sec, '|')
		if end < 0 {
			return false, false // no "#" section
		}
		if !ascii && !validUTF8(sec[:end]) || pointSection(sec[:end], &rate, &ts) != "" {
			return false, false
		}
		rest = sec[end:]
	}
	if len(rest) <= 2 || rest[2] == '|' || colon+len(rest)-1 > maxSeriesKey {
		return false, false
	}
	c := d.cache
	e, _ := c.m.GetParts(line[:colon+1], rest[2:])
	if e == nil {
		return false, true
	}
	values := line[colon+1 : bar]
	if !d.appendHit(dst, e, kind, values, rate, ts) {
		if !ascii && !validUTF8(values) {
			return false, true
		}
		m := model.Metric{Name: e.name, Timestamp: ts, Source: e.source, Tags: e.tags, Kind: kind, Ref: e.ref}
		d.appendValues(dst, line, dst.TagMark(), m, values, rate)
	}
	c.hits++
	c.genHits++
	return true, false
}

// validUTF8 is utf8.Valid(b), deciding ASCII b in one pass of isASCII.
func validUTF8(b []byte) bool { return isASCII(b) || utf8.Valid(b) }

// hit appends the metrics of a line of e's series, given its type,
// values, sample rate and timestamp.
func (c *seriesCache) hit(d *Decoder, dst *model.Batch, line []byte, e *seriesEntry, kind model.Kind, values []byte, rate float64, ts int64) {
	c.hits++
	c.genHits++
	if !d.appendHit(dst, e, kind, values, rate, ts) {
		m := model.Metric{Name: e.name, Timestamp: ts, Source: e.source, Tags: e.tags, Kind: kind, Ref: e.ref}
		d.appendValues(dst, line, dst.TagMark(), m, values, rate)
	}
}

// appendHit appends the metrics of a line of e's series whose values are
// one plain decimal (parseDecimal: so not packed, and finite) and whose
// type is not a set, as clients mostly write, each metric written once
// into dst.Metrics: the metrics appendValues appends for it (the same
// value, kind and copies). It reports false, having appended nothing,
// for any other line, and for a counter whose value over the rate is not
// finite: appendValues decodes (or rejects) those.
func (d *Decoder) appendHit(dst *model.Batch, e *seriesEntry, kind model.Kind, values []byte, rate float64, ts int64) bool {
	if kind == model.Set {
		return false
	}
	f, ok := parseDecimal(values)
	if !ok {
		return false
	}
	copies := 1
	switch kind {
	case model.Counter:
		if f /= rate; !model.IsFinite(f) {
			return false
		}
	case model.Gauge:
		if d.flavor == FlavorEtsy && (values[0] == '+' || values[0] == '-') {
			kind = model.GaugeDelta
		}
	case model.Sample:
		copies = sampleCopies(rate)
	}
	n := len(dst.Metrics)
	if cap(dst.Metrics)-n < copies {
		dst.Metrics = slices.Grow(dst.Metrics, copies)
	}
	ms := dst.Metrics[n : n+copies]
	dst.Metrics = dst.Metrics[:n+copies]
	for i := range ms {
		// Field by field, every field: no composite literal built
		// aside and copied.
		p := &ms[i]
		p.Name, p.Value, p.Timestamp, p.Source, p.Tags = e.name, f, ts, e.source, e.tags
		p.Kind, p.Window, p.Ref, p.Series = kind, 0, e.ref, 0
	}
	return true
}

// maxBackoff bounds the bypass at this many generations' worth of lines.
const maxBackoff = 64

// reset forgets every entry when the cache is full. The chunks are
// dropped, not reused: items decoded earlier may still alias them.
//
// A generation that served fewer lines than it took entries (a flood of
// new series, or more series than the cache holds) paid for copying them
// and gained little: the next lines, backoff times as many as the
// generation's entries, are decoded without the cache, and the backoff
// doubles up to maxBackoff; a generation that paid for itself resets the
// backoff to 1.
func (c *seriesCache) reset() {
	if c.genHits < c.genEntries && !c.noBypass {
		c.skip = c.backoff * (c.m.Len() + 1)
		c.backoff = min(2*c.backoff, maxBackoff)
	} else {
		c.backoff = 1
	}
	c.genHits, c.genEntries = 0, 0
	c.m.Reset()                // items alias the entries' strings, not the table
	c.id = model.NewInternID() // entries are numbered afresh
	c.keys, c.tags = nil, nil
	c.bytes = 0
	c.resets++
}

// decodeCached decodes a metric line through the cache, given what
// decodeLine read: the name part line[:colon] (the name and any
// Telegraf-style tags), the type, the values and the rest after the type. It
// reports false, having changed nothing, when the uncached path must
// decode the line: a section that rejects it (the uncached path decides
// which rejection comes first) or a series key longer than maxSeriesKey.
//
// looked says decodeHit has looked the first "#" section up as below,
// with the same rate and timestamp, and not found it.
func (d *Decoder) decodeCached(dst *model.Batch, line []byte, colon int, kind model.Kind, values, rest []byte, now int64, looked bool) bool {
	c := d.cache
	name := line[:colon+1] // the key's first part
	// The key's second part, the contents of the "#" sections: with one,
	// it is looked up in place; more are put together in c.key.
	var tags []byte
	tagSecs, tried := 0, -1
	rate, ts := 1.0, now
	// The sections as decodeLine walks them.
	for len(rest) > 1 {
		sec := rest[1:]
		if sec[0] == '|' { // empty section
			rest = sec
			continue
		}
		if sec[0] == '#' && tagSecs == 0 && (len(sec) == 1 || sec[1] != '|') && colon+len(sec) <= maxSeriesKey {
			// The common layout: the first tag section is the last
			// section. Look it up as running to the end of the line:
			// a hit proves it, since no cached key's second part that
			// does not start with '|' holds one. Otherwise the key is
			// found as usual (and not looked up again if it is this).
			if !looked {
				if e, _ := c.m.GetParts(name, sec[1:]); e != nil {
					c.hit(d, dst, line, e, kind, values, rate, ts)
					return true
				}
			}
			tried = len(sec) - 1
		}
		end := bytes.IndexByte(sec, '|')
		if end < 0 {
			end = len(sec)
		}
		sec, rest = sec[:end], sec[end:]
		if sec[0] == '#' {
			switch tagSecs++; tagSecs {
			case 1:
				tags = sec[1:]
			case 2:
				c.key = append(append(append(append(c.key[:0], '|'), tags...), '|'), sec[1:]...)
			default:
				c.key = append(append(c.key, '|'), sec[1:]...)
			}
		} else if pointSection(sec, &rate, &ts) != "" {
			return false
		}
	}
	if tagSecs > 1 {
		tags = c.key
	}
	if colon+1+len(tags) > maxSeriesKey {
		return false
	}
	if tagSecs != 1 || len(tags) != tried { // else: looked up above
		if e, _ := c.m.GetParts(name, tags); e != nil {
			c.hit(d, dst, line, e, kind, values, rate, ts)
			return true
		}
	}

	// Ref: the cache's strings and tags are never written again
	// (model.Metric.Ref), on a hit and on an accepted miss alike. A miss
	// takes the next entry number of this generation, which no other
	// series of it has (if the cache is full, the generation ends with
	// it).
	m := model.Metric{Timestamp: ts, Kind: kind, Ref: uint64(c.id)<<32 | uint64(c.m.Len()+1)}
	// A miss: copy the key into the free end of the key chunk and decode
	// the series from the copy, so that its strings are the cache's. The
	// copy and the tags are committed only if the line is accepted;
	// otherwise nothing refers to them and the next miss writes over them.
	if n := colon + 1 + len(tags); cap(c.keys)-len(c.keys) < n {
		c.keys = make([]byte, 0, max(keyChunk, n))
	}
	own := append(append(c.keys[len(c.keys):], name...), tags...)
	sb := &c.scratch
	lt := lineTags{source: d.defaultSource, prio: len(d.sourceTags)}
	nameLen := bytes.IndexByte(own[:colon], ',')
	if nameLen < 0 {
		nameLen = colon
	}
	if nameLen+1 < colon { // Telegraf-style tags: name,k=v,...
		if _, reason := d.parseTagList(sb, own[nameLen+1:colon], '=', &lt); reason != "" {
			sb.TruncateTags(0)
			dst.Reject(reason, line)
			return true
		}
	}
	for p := colon; p < len(own); { // own[p] is the ':' or '|' before a tag list
		n, reason := d.parseTagList(sb, own[p+1:], ':', &lt)
		if reason != "" {
			sb.TruncateTags(0)
			dst.Reject(reason, line)
			return true
		}
		p += 1 + n
	}
	sorted := finishTags(sb, 0, lt.prefixes())
	nt := len(sorted)
	if nt > 0 {
		if cap(c.tags)-len(c.tags) < nt {
			c.tags = make(model.Tags, 0, max(tagChunk, nt))
		}
		m.Tags = append(c.tags[len(c.tags):], sorted...)[:nt:nt]
	}
	sb.TruncateTags(0)
	m.Name, m.Source = str(own[:nameLen]), lt.source
	if !d.appendValues(dst, line, dst.TagMark(), m, values, rate) {
		return true
	}
	size := len(own) + nt*tagSize + entryOverhead
	if c.m.Len() >= c.maxEntries || c.bytes+size > c.maxBytes {
		// Full: start over. This line's strings stay in the dropped
		// chunks, which nothing writes again; its series is cached
		// afresh when it next misses.
		c.reset()
		return true
	}
	c.keys = c.keys[:len(c.keys)+len(own)]
	c.tags = c.tags[:len(c.tags)+nt]
	c.m.Put(str(own), seriesEntry{name: m.Name, source: m.Source, tags: m.Tags, ref: m.Ref})
	c.bytes += size
	c.genEntries++
	return true
}
