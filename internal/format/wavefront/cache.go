package wavefront

import (
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/les-streams/les/internal/intern"
	"github.com/les-streams/les/internal/model"
)

// Series cache (Options.SeriesCache): every point of a series repeats the
// name and the tag section byte for byte; only the value and the
// timestamp change. For a metric line whose raw name token and raw tag
// section equal those of a line accepted before, the decoder emits the
// name, source and sorted tags it decoded then, and only parses the value
// and the timestamp and does the per-line checks. See README.md "Series
// cache" for why this is exact.

const (
	// DefaultSeriesCache is the cache size the les listeners use: more
	// series than one UDP reader or TCP connection usually sends.
	DefaultSeriesCache = 16384
	// DefaultSeriesCacheBytes bounds a cache's counted bytes when
	// Options.SeriesCacheBytes is 0.
	DefaultSeriesCacheBytes = 8 << 20

	// cacheEntryOverhead is what an entry costs beside its key bytes and
	// tags, counted against SeriesCacheBytes: the index's slots, key header
	// and seriesEntry (internal/intern), their spare capacity and
	// the arenas' unused tails: measured heap ≤ counted bytes
	// (BenchmarkSeriesCacheMemory: 372 of 403 bytes a series).
	cacheEntryOverhead = 160
	tagSize            = int(unsafe.Sizeof(model.Tag{}))

	// Chunk sizes of the cache's arenas: they start small (a TCP connection
	// that sends a few series keeps a small cache) and double up to the max.
	minByteChunk, maxByteChunk = 4 << 10, 64 << 10
	minTagChunk, maxTagChunk   = 128, 2048
)

// CacheBudget bounds the series caches of several decoders together: the
// counted bytes (as SeriesCacheBytes counts them) of every cache that
// shares it. les gives one to the decoders of each TCP listener, one per
// connection, so that many connections, each sending many series, hold
// at most the budget between them rather than SeriesCacheBytes each. A
// cache that would take more than is left begins anew (giving back what
// it held) and, if the budget still has no room, decodes the line
// without caching it. Decoder.Release gives a decoder's bytes back when
// its connection ends. Safe for concurrent use.
type CacheBudget struct {
	max  int64
	used atomic.Int64
}

// DefaultCacheBudget is the budget les gives the connections of one TCP
// listener: eight full caches (DefaultSeriesCacheBytes each) instead of
// 8 MiB for each of up to max_connections (8 GiB at the default 1024).
const DefaultCacheBudget = 8 * DefaultSeriesCacheBytes

// NewCacheBudget returns a budget of bytes.
func NewCacheBudget(bytes int) *CacheBudget { return &CacheBudget{max: int64(bytes)} }

// Used is the bytes the sharing caches hold now.
func (b *CacheBudget) Used() int { return int(b.used.Load()) }

// take reserves n bytes if they fit.
func (b *CacheBudget) take(n int) bool {
	if b.used.Add(int64(n)) > b.max {
		b.used.Add(-int64(n))
		return false
	}
	return true
}

func (b *CacheBudget) give(n int) { b.used.Add(-int64(n)) }

// seriesEntry is the decoded series part of an accepted metric line. Its
// strings and tags are owned by the cache and never written again.
type seriesEntry struct {
	name, src string
	tags      model.Tags // nil when the line had none; capacity clipped
	delta     bool       // the name is a ∆/Δ delta counter
}

// seriesCache maps a line's series key (see seriesScan) to its entry.
// When full it is dropped and replaced by a fresh one: items of earlier
// batches may still alias an entry, so nothing is reused or overwritten.
//
// A cache that filled up with fewer hits than entries (mostly series seen
// once: a flood of new series, or more series than it holds) pauses
// instead, so that such traffic mostly skips the cost of filling it: it
// is kept as it is, read-only, for pauseFactor×maxEntries further misses;
// if fewer than a quarter of the pause's first maxEntries lookups hit (a
// full cache's worth: the series right after the fill are the ones it
// missed), it is not even looked up for pauseFactor×maxEntries lines.
// Then it is dropped and begun anew.
type seriesCache struct {
	maxEntries, maxBytes int
	budget               *CacheBudget // nil: none but maxBytes
	id                   uint32       // model.NewInternID of the current map
	m                    *intern.Table[seriesEntry]
	bytes                int // counted bytes of the current map's entries
	genHits              int // hits since the current map began
	pause                int // misses left to let pass without caching
	pauseLooks           int // lookups and hits since the pause began
	pauseHits            int
	off                  int // lines left to decode without the cache

	// Append-only arenas for keys and strings, and for tags. A full chunk
	// is replaced by a new one, never rewound.
	buf            []byte
	tags           model.Tags
	byteChunk      int
	tagChunk       int
	key            []byte // scratch: the key of the line being decoded
	hits, misses   uint64 // for tests and benchmarks
	resets, pauses uint64
}

// pauseFactor: see seriesCache.
const pauseFactor = 32

// skip reports whether the cache is off for this line (see seriesCache).
func (c *seriesCache) skip() bool {
	return c.off != 0 && c.skipOff() // inlined: mostly the cache is on
}

//go:noinline
func (c *seriesCache) skipOff() bool {
	if c.off--; c.off == 0 {
		c.resets++
		c.fresh()
	}
	return true
}

func newSeriesCache(entries, bytes int, budget *CacheBudget) *seriesCache {
	if bytes <= 0 {
		bytes = DefaultSeriesCacheBytes
	}
	c := &seriesCache{maxEntries: entries, maxBytes: bytes, budget: budget}
	c.fresh()
	return c
}

// fresh starts an empty cache with new memory, sized for as many entries
// as the one it replaces held (a cache that filled up fills up again).
func (c *seriesCache) fresh() {
	if c.m == nil {
		c.m = intern.New[seriesEntry]()
	}
	c.m.Reset() // items alias the entries' strings, not the table
	c.id = model.NewInternID()
	if c.budget != nil {
		c.budget.give(c.bytes)
	}
	c.bytes, c.genHits = 0, 0
	c.pause, c.pauseLooks, c.pauseHits, c.off = 0, 0, 0, 0
	c.buf, c.tags = nil, nil
	c.byteChunk, c.tagChunk = minByteChunk, minTagChunk
}

// seriesScan locates the series parts of a metric line: the raw name token
// line[:nameEnd] and the raw tag section line[tagStart:], with the value
// line[v0:v1] and the optional timestamp line[t0:t1] (t0 == t1: none)
// between them. ok is false for lines the cache does not take; they are
// decoded as without the cache. When fast is set the value is a simple
// decimal (parseSimpleFloat's syntax), parsed while it was scanned: v is
// what parseValue gives for it.
type seriesScan struct {
	nameEnd, v0, v1, t0, t1, tagStart int
	v                                 float64
	ok, fast                          bool
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// wordEnd is the end of the unquoted token at line[i:].
func wordEnd(line string, i int) int {
	for i < len(line) && charClass[line[i]]&cWordEnd == 0 {
		i++
	}
	return i
}

// scanSeries splits line into s the way tokenize and metric do, for the
// lines where that split is certain without tokenizing the tags: a name
// token (unquoted, or quoted as tokenize reads it) followed by
// whitespace, an unquoted value token, an optional unquoted timestamp
// token (it begins with a digit), each ending at whitespace or the end of
// the line. The tag section starts at the next token. Its tokens are then
// exactly the tokens tokenize gives for it (a token's extent never
// depends on what precedes it), and metric takes them as tags. A quoted
// token whose content begins with a digit where the timestamp may be is a
// timestamp to metric: not taken. s.ok says whether the line was taken;
// the other fields are meaningful only then.
func (d *Decoder) scanSeries(line string, s *seriesScan) {
	s.ok = false
	n := len(line)
	if n > d.o.MaxLineLen || d.o.Mode == ModeTrace || d.o.Mode == ModeDistOnly {
		return
	}
	i := 0
	switch c := line[0]; c {
	case '@', '{', '[', '!', '=', '#':
		return
	case '"', '\'':
		j := 1
		for {
			k := strings.IndexByte(line[j:], c)
			if k < 0 {
				return
			}
			j += k
			if line[j-1] == '\\' {
				j++
				continue
			}
			break
		}
		i = j + 1
	default:
		i = wordEndFast(line, 0)
	}
	if i >= n || !isSpace(line[i]) {
		return
	}
	s.nameEnd = i
	for i++; i < n && isSpace(line[i]); i++ {
	}
	if i >= n {
		return
	}
	if c := line[i]; c == '"' || c == '\'' || c == '=' || c == '#' {
		return
	}
	s.v0 = i
	// The value, parsed as parseSimpleFloat does while it is scanned: it
	// ends at the first byte that is not a digit or the first '.' (after
	// an optional '-'); if that byte is whitespace or the line's end, the
	// token is exactly line[v0:i] (no byte before it ends a token) and
	// parseSimpleFloat's steps were taken on it. Anything else is scanned
	// and parsed as before.
	neg := line[i] == '-'
	if neg {
		i++
	}
	var mant uint64
	digits, frac, dot := 0, 0, false
	for ; i < n; i++ {
		if c := line[i] - '0'; c < 10 {
			mant = mant*10 + uint64(c)
			digits++
			if dot {
				frac++
			}
		} else if line[i] == '.' && !dot {
			dot = true
		} else {
			break
		}
	}
	if s.fast = (i == n || isSpace(line[i])) && digits > 0 && digits <= 15; s.fast {
		s.v = simpleFloat(mant, frac, neg)
	} else {
		i = wordEnd(line, s.v0)
		if i < n && !isSpace(line[i]) {
			return
		}
	}
	s.v1 = i
	for i < n && isSpace(line[i]) {
		i++
	}
	s.t0, s.t1 = i, i
	if i < n {
		switch c := line[i]; {
		case isDigit(c):
			i = wordEnd(line, i)
			if i < n && !isSpace(line[i]) {
				return
			}
			s.t1 = i
			for i < n && isSpace(line[i]) {
				i++
			}
		case (c == '"' || c == '\'') && i+1 < n && isDigit(line[i+1]):
			return
		}
	}
	s.tagStart = i
	s.ok = true
}

// setKey builds the series key of line in c.key: the raw name token, one
// space, the raw tag section. The name token's extent is found again from
// the key's start (an unquoted name holds no whitespace, a quoted one ends
// at its closing quote), so different (name, tags) give different keys.
func (c *seriesCache) setKey(line string, s *seriesScan) {
	k := append(c.key[:0], line[:s.nameEnd]...)
	k = append(k, ' ')
	c.key = append(k, line[s.tagStart:]...)
}

// cachedMetric decodes line from the cache when its series is there and
// every per-line check passes, and reports whether it did. When it did
// not, the caller decodes the line as without the cache, which also finds
// the reject reason; s.ok is then cleared if the series is already cached.
func (d *Decoder) cachedMetric(dst *model.Batch, line string, s *seriesScan, now int64) bool {
	c := d.cache
	c.setKey(line, s)
	e, num := c.m.Get(c.key)
	found := e != nil
	if c.pause > 0 {
		if c.pauseLooks++; found {
			c.pauseHits++
		}
		if c.pauseLooks == c.maxEntries && 4*c.pauseHits < c.maxEntries {
			c.pause, c.off = 0, pauseFactor*c.maxEntries
		}
	}
	if !found {
		c.misses++
		return false
	}
	s.ok = false // never cache it twice
	v, r := s.v, ""
	if !s.fast {
		if v, r = parseValue(line[s.v0:s.v1]); r != "" {
			return false
		}
	}
	ts := now
	if s.t1 > s.t0 {
		if ts, r = parseTimestamp(line[s.t0:s.t1]); r != "" {
			return false
		}
	}
	kind, win, r := d.metricKind(e.delta, v, ts, now)
	if r != "" {
		return false
	}
	c.hits++
	c.genHits++
	// The point is written in place: a literal appended is built on the
	// stack and copied 16 bytes at a time from 8-byte stores, and a CPU
	// profile put a stall on that copy (likely failed store forwarding).
	ms := dst.Metrics
	if len(ms) == cap(ms) {
		ms = append(ms, model.Metric{})[:len(ms)]
	}
	ms = ms[:len(ms)+1]
	m := &ms[len(ms)-1]
	*m = model.Metric{}
	m.Name, m.Value, m.Timestamp, m.Source, m.Tags = e.name, v, ts, e.src, e.tags
	m.Kind, m.Window = kind, win
	m.Ref = uint64(c.id)<<32 | uint64(num) // the cache's memory is never written again
	dst.Metrics = ms
	return true
}

// remember caches the series of m, just decoded from line without the
// cache; c.key is line's key (cachedMetric built it).
func (c *seriesCache) remember(m *model.Metric, line string, s *seriesScan) {
	if c.off > 0 {
		return
	}
	if c.pause > 0 {
		if c.pause--; c.pause == 0 {
			c.resets++
			c.fresh()
		}
		return
	}
	need := len(c.key) + len(m.Tags)*tagSize + cacheEntryOverhead
	extra := func(str string) {
		if !inside(str, line) {
			need += len(str) // an unescaped copy (or a constant) the entry keeps
		}
	}
	extra(m.Name)
	extra(m.Source)
	for _, t := range m.Tags {
		extra(t.Key)
		extra(t.Value)
	}
	if need > c.maxBytes {
		return
	}
	if c.m.Len() >= c.maxEntries || c.bytes+need > c.maxBytes {
		if c.genHits < c.m.Len() {
			c.pauses++
			c.pause, c.pauseLooks, c.pauseHits = pauseFactor*c.maxEntries, 0, 0
			return
		}
		c.resets++
		c.fresh()
	}
	if c.budget != nil && !c.budget.take(need) {
		// The budget is spent by this cache and the others sharing it:
		// begin anew, and cache the line only if that made room.
		if c.bytes == 0 {
			return
		}
		c.resets++
		c.fresh()
		if !c.budget.take(need) {
			return
		}
	}
	kb := c.alloc(len(c.key))
	copy(kb, c.key)
	key := unsafe.String(unsafe.SliceData(kb), len(kb))
	e := seriesEntry{name: own(m.Name, line, s, key), src: own(m.Source, line, s, key), delta: isDelta(m.Name)}
	if len(m.Tags) > 0 {
		e.tags = c.allocTags(len(m.Tags))
		for i, t := range m.Tags {
			e.tags[i] = model.Tag{Key: own(t.Key, line, s, key), Value: own(t.Value, line, s, key)}
		}
	}
	c.m.Put(key, e)
	c.bytes += need
}

// alloc returns n new bytes from the byte arena.
func (c *seriesCache) alloc(n int) []byte {
	if cap(c.buf)-len(c.buf) < n {
		c.buf = make([]byte, 0, max(n, c.byteChunk))
		c.byteChunk = min(2*c.byteChunk, maxByteChunk)
	}
	start := len(c.buf)
	c.buf = c.buf[:start+n]
	return c.buf[start : start+n : start+n]
}

// allocTags returns n new tags from the tag arena, capacity clipped.
func (c *seriesCache) allocTags(n int) model.Tags {
	if cap(c.tags)-len(c.tags) < n {
		c.tags = make(model.Tags, 0, max(n, c.tagChunk))
		c.tagChunk = min(2*c.tagChunk, maxTagChunk)
	}
	start := len(c.tags)
	c.tags = c.tags[:start+n]
	return c.tags[start : start+n : start+n]
}

// inside reports whether str's bytes lie in line's memory.
func inside(str, line string) bool {
	if str == "" {
		return false
	}
	p := uintptr(unsafe.Pointer(unsafe.StringData(str)))
	lp := uintptr(unsafe.Pointer(unsafe.StringData(line)))
	return p >= lp && p < lp+uintptr(len(line))
}

// own returns str as the entry keeps it: a string that aliases line's name
// token or tag section becomes the same bytes of key (the cache's copy of
// both); any other (a constant, the default source, an unescaped copy) is
// not the payload's and is kept as it is.
func own(str, line string, s *seriesScan, key string) string {
	if str == "" {
		return ""
	}
	if !inside(str, line) {
		return str
	}
	off := int(uintptr(unsafe.Pointer(unsafe.StringData(str))) - uintptr(unsafe.Pointer(unsafe.StringData(line))))
	switch {
	case off+len(str) <= s.nameEnd:
		return key[off : off+len(str)]
	case off >= s.tagStart:
		o := s.nameEnd + 1 + off - s.tagStart
		return key[o : o+len(str)]
	}
	// Not reached: names and tags come from the name token and the tag
	// section. Copy rather than alias the payload.
	return string([]byte(str))
}
