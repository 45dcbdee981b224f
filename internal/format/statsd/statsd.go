// Package statsd decodes StatsD and DogStatsD datagrams into model items.
//
// The decoder is a pure function over []byte: it appends to a model.Batch,
// starts no goroutines, logs nothing and keeps no global state. Every string
// it produces (names, sources, tag keys and values, log messages) aliases the
// payload passed to Decode through unsafe.String: the caller must not modify
// or reuse the payload while the batch items are in use, and must Clone items
// that outlive it. See README.md for the grammar and the mapping.
//
// A decoder made with Options.SeriesCache keeps the decoded name, source
// and tags of the series it has seen (cache.go) and is for one goroutine.
// The metrics it appends alias either the payload or its cache, whose
// strings and tags are never written again once handed out; their Tags
// are then not in dst.Arena. Events and service checks always alias the
// payload.
package statsd

import (
	"bytes"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"unsafe"

	"github.com/les-streams/les/internal/model"
)

// Rejection reasons recorded in model.Reject.Reason.
const (
	ReasonInvalidLine       = "invalid_line"
	ReasonUnknownType       = "unknown_type"
	ReasonInvalidValue      = "invalid_value"
	ReasonNonFiniteValue    = "non_finite_value"
	ReasonInvalidSampleRate = "invalid_sample_rate"
	ReasonTooManyTags       = "too_many_tags"
	ReasonLineTooLong       = "line_too_long"
	ReasonInvalidUTF8       = "invalid_utf8"
	ReasonEmptyName         = "empty_name"
	ReasonInvalidEvent      = "invalid_event"
	ReasonInvalidTimestamp  = "invalid_timestamp"
)

// MaxSampleCopies bounds how many copies of a sampled timer/histogram value
// are emitted for a sample rate r < 1 (round(1/r) copies, at most this many).
const MaxSampleCopies = 100

// Flavor selects how a signed gauge value ("g:-5|g", "g:+3|g") is read.
type Flavor uint8

const (
	// FlavorDogStatsD (the default) reads a signed gauge value as the
	// value itself, as the Datadog agent does: DogStatsD has no gauge
	// deltas, and datadog-go's Gauge("g", -5) writes "g:-5|g".
	FlavorDogStatsD Flavor = iota
	// FlavorEtsy reads a leading '+' or '-' on a gauge value as a change
	// of the current value (model.GaugeDelta), as Etsy's statsd, Telegraf
	// and hot-shots' gaugeDelta mean it.
	FlavorEtsy
)

// Flavor names as configuration spells them.
const (
	FlavorNameDogStatsD = "dogstatsd"
	FlavorNameEtsy      = "etsy"
)

// ParseFlavor maps "dogstatsd" or "etsy" ("" is dogstatsd) to a Flavor.
func ParseFlavor(s string) (Flavor, bool) {
	switch s {
	case "", FlavorNameDogStatsD:
		return FlavorDogStatsD, true
	case FlavorNameEtsy:
		return FlavorEtsy, true
	}
	return 0, false
}

func (f Flavor) String() string {
	if f == FlavorEtsy {
		return FlavorNameEtsy
	}
	return FlavorNameDogStatsD
}

// Options configures a Decoder. Zero values take the documented defaults.
type Options struct {
	// Flavor: FlavorDogStatsD (default) or FlavorEtsy.
	Flavor Flavor
	// MaxLineLen is the longest accepted line in bytes (default 8192).
	MaxLineLen int
	// MaxTags is the most tags accepted on one line (default 100).
	MaxTags int
	// DefaultSource is the Source of items that carry no source tag.
	DefaultSource string
	// SourceTags are tag keys whose value becomes the item's Source, in
	// order of preference (default ["source", "host"]). Such tags are not
	// kept as tags.
	SourceTags []string
	// SeriesCache, when above 0, gives the decoder a series cache of at
	// most that many series (cache.go, README.md "Series cache"): a line
	// whose name and tag sections repeat an earlier accepted line's, byte
	// for byte, takes that line's decoded name, source and tags instead
	// of reading its tags again. A decoder with a cache is not safe for
	// concurrent use (one per goroutine), and the metrics it appends may
	// alias the cache instead of the payload (Decode). 0 (the default) is
	// no cache.
	SeriesCache int
	// SeriesCacheBytes bounds the memory the series cache accounts for
	// (its keys, tags and an estimate of its index per series; default
	// DefaultSeriesCacheBytes). Ignored without SeriesCache.
	SeriesCacheBytes int
}

// Decoder decodes StatsD lines. Without Options.SeriesCache it holds only
// its options and is safe for concurrent use; with one it holds the cache
// and must be used by one goroutine at a time.
type Decoder struct {
	flavor        Flavor
	maxLineLen    int
	maxTags       int
	defaultSource string
	sourceTags    []string
	sourcePre     []uint64     // keyPrefix of each of sourceTags
	cache         *seriesCache // nil: no series cache
}

// NewDecoder returns a decoder with o's defaults filled in.
func NewDecoder(o Options) *Decoder {
	d := &Decoder{flavor: o.Flavor, maxLineLen: o.MaxLineLen, maxTags: o.MaxTags, defaultSource: o.DefaultSource}
	if d.maxLineLen <= 0 {
		d.maxLineLen = 8192
	}
	if d.maxTags <= 0 {
		d.maxTags = 100
	}
	if o.SourceTags == nil {
		d.sourceTags = []string{"source", "host"}
	} else {
		d.sourceTags = append([]string(nil), o.SourceTags...)
	}
	for _, st := range d.sourceTags {
		var pre uint64
		if st != "" {
			pre = keyPrefix([]byte(st), 0, len(st))
		}
		d.sourcePre = append(d.sourcePre, pre)
	}
	if o.SeriesCache > 0 {
		d.cache = newSeriesCache(o.SeriesCache, o.SeriesCacheBytes)
	}
	return d
}

// Decode appends to dst one model.Metric per accepted metric value (one per
// line, several for DogStatsD packed values "a:1:2|ms" and for sampled
// timers), one model.Log per event or service check, and one model.Reject per
// refused line. Lines are separated by '\n' ("\r\n" is accepted); empty lines
// are skipped. now (Unix ns) is the timestamp of items without "|T" or "d:".
//
// All strings and byte slices in the appended items alias payload (no copy);
// they are valid only while payload is unchanged. Tags are sub-slices of
// dst.Arena, in model.SortTags order. With a series cache, a metric's
// Name, Source and Tags may instead alias the cache (its Tags then not in
// dst.Arena, their capacity clipped): the items are the same, and stay
// valid while payload is unchanged; the caller must not modify a Tags
// element in place.
func (d *Decoder) Decode(dst *model.Batch, payload []byte, now int64) {
	// Clients write ASCII: one check of the whole payload spares each of
	// its lines a utf8.Valid. A decoder with a cache checks instead each
	// line it does not decode in decodeHit, which proves its lines valid
	// without reading them again.
	ascii := d.cache == nil && isASCII(payload)
	for len(payload) > 0 {
		var line []byte
		if i := bytes.IndexByte(payload, '\n'); i >= 0 {
			line, payload = payload[:i], payload[i+1:]
		} else {
			line, payload = payload, nil
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			continue
		}
		looked := false
		if c := d.cache; c != nil && c.skip == 0 {
			var hit bool
			if hit, looked = d.decodeHit(dst, line, now, ascii); hit {
				continue
			}
		}
		d.decodeLine(dst, line, now, ascii, looked)
	}
}

func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// decodeLine decodes one line; ascii says the line is known to be ASCII
// (and so valid UTF-8), looked that decodeHit looked its series up and
// did not find it.
//
// A metric line is read in one pass from left to right: the name up to the
// first ':' (a '|' before it makes the line invalid), the values up to the
// next '|', the type, then each section. Every rejection is decided in the
// same order as the grammar's checks in README.md (line length, UTF-8,
// name, type, then the sections in order, then the values), which
// TestDifferential holds against a straightforward reference decoder.
func (d *Decoder) decodeLine(dst *model.Batch, line []byte, now int64, ascii, looked bool) {
	if len(line) > d.maxLineLen {
		dst.Reject(ReasonLineTooLong, line)
		return
	}
	if !ascii && !validUTF8(line) {
		dst.Reject(ReasonInvalidUTF8, line)
		return
	}
	if line[0] == '_' {
		if bytes.HasPrefix(line, []byte("_e{")) {
			d.decodeEvent(dst, line, now)
			return
		}
		if bytes.HasPrefix(line, []byte("_sc|")) {
			d.decodeServiceCheck(dst, line, now)
			return
		}
	}
	// The values end at the first '|', the name part at the first ':'
	// before it (no ':' before it makes the line invalid), and a ','
	// before that starts Telegraf-style tags. Three bytes.IndexByte:
	// these spans are long enough for the call to pay, and a line the
	// cache decodes needs no ','.
	bar, colon := bytes.IndexByte(line, '|'), -1
	if bar > 0 {
		colon = bytes.IndexByte(line[:bar], ':')
	}
	if colon < 0 {
		dst.Reject(ReasonInvalidLine, line)
		return
	}
	if colon == 0 || line[0] == ',' {
		dst.Reject(ReasonEmptyName, line)
		return
	}
	values := line[colon+1 : bar]
	kind, rest, ok := parseType(line[bar+1:])
	if !ok {
		dst.Reject(ReasonUnknownType, line)
		return
	}
	if c := d.cache; c != nil {
		if c.skip == 0 {
			if d.decodeCached(dst, line, colon, kind, values, rest, now, looked) {
				return
			}
		} else {
			c.skip-- // bypassed (seriesCache.reset)
		}
	}
	nameb := line[:colon]
	var telegrafTags []byte
	if comma := bytes.IndexByte(nameb, ','); comma >= 0 {
		// Telegraf-style tags in the name: "name,k1=v1,k2=v2:1|c".
		nameb, telegrafTags = line[:comma], line[comma+1:colon]
	}
	name := str(nameb)

	rate := 1.0
	ts := now
	lt := lineTags{source: d.defaultSource, prio: len(d.sourceTags)}
	mark := dst.TagMark()
	if len(telegrafTags) > 0 {
		if _, reason := d.parseTagList(dst, telegrafTags, '=', &lt); reason != "" {
			d.reject(dst, reason, line, mark)
			return
		}
	}
	// rest is empty or "|<section>...".
	for len(rest) > 1 {
		sec := rest[1:]
		switch sec[0] {
		case '|': // empty section
			rest = sec
			continue
		case '#':
			n, reason := d.parseTagList(dst, sec[1:], ':', &lt)
			if reason != "" {
				d.reject(dst, reason, line, mark)
				return
			}
			rest = sec[1+n:]
			continue
		}
		end := bytes.IndexByte(sec, '|')
		if end < 0 {
			end = len(sec)
		}
		sec, rest = sec[:end], sec[end:]
		if reason := pointSection(sec, &rate, &ts); reason != "" {
			d.reject(dst, reason, line, mark)
			return
		}
	}
	tags := finishTags(dst, mark, lt.prefixes())
	d.appendValues(dst, line, mark, model.Metric{Name: name, Timestamp: ts, Source: lt.source, Tags: tags, Kind: kind}, values, rate)
}

// appendValues appends the metrics of a line whose name, type and sections
// were accepted: m carries the line's Name, Timestamp, Source, Tags and
// type (Kind), values its values and rate its sample rate. A bad value
// rejects the whole line (truncating dst's tags to mark) and leaves no
// metric of it; appendValues reports whether the line was accepted.
func (d *Decoder) appendValues(dst *model.Batch, line []byte, mark int, m model.Metric, values []byte, rate float64) bool {
	kind := m.Kind
	if kind == model.Set {
		if len(values) == 0 {
			d.reject(dst, ReasonInvalidValue, line, mark)
			return false
		}
		m.Value = SetValue(values)
		dst.Metrics = append(dst.Metrics, m)
		return true
	}

	// Validate every packed value before appending any, so a bad line
	// contributes nothing.
	start := len(dst.Metrics)
	for v := values; ; {
		// Values are a few bytes: a loop beats bytes.IndexByte's call.
		i := 0
		for i < len(v) && v[i] != ':' {
			i++
		}
		one := v[:i]
		k := kind
		if kind == model.Gauge && d.flavor == FlavorEtsy && len(one) > 0 && (one[0] == '+' || one[0] == '-') {
			k = model.GaugeDelta
		}
		f, reason := parseValue(one)
		if reason != "" {
			clear(dst.Metrics[start:])
			dst.Metrics = dst.Metrics[:start]
			d.reject(dst, reason, line, mark)
			return false
		}
		m.Value, m.Kind = f, k
		switch k {
		case model.Counter:
			m.Value = f / rate
			if !model.IsFinite(m.Value) {
				clear(dst.Metrics[start:])
				dst.Metrics = dst.Metrics[:start]
				d.reject(dst, ReasonNonFiniteValue, line, mark)
				return false
			}
			dst.Metrics = append(dst.Metrics, m)
		case model.Sample:
			for range sampleCopies(rate) {
				dst.Metrics = append(dst.Metrics, m)
			}
		default:
			dst.Metrics = append(dst.Metrics, m)
		}
		if i == len(v) {
			return true
		}
		v = v[i+1:]
	}
}

// pointSection reads a "@rate" or "T<seconds>" section of a metric line
// into rate or ts and returns the reject reason of a bad one. Other
// sections ("c:<container>" for origin detection, "e:", "card:") are
// accepted and ignored.
func pointSection(sec []byte, rate *float64, ts *int64) string {
	switch sec[0] {
	case '@':
		r, err := parseFloat(sec[1:])
		if err != nil || !(r > 0 && r <= 1) {
			return ReasonInvalidSampleRate
		}
		*rate = r
	case 'T':
		t, ok := parseSeconds(sec[1:])
		if !ok {
			return ReasonInvalidTimestamp
		}
		*ts = t
	}
	return ""
}

// parseType reads the metric type at the start of b ("c", "g", "ms", "h",
// "d" or "s", ending at '|' or the end of b) and returns it with the rest
// of b after it; ok is false for any other type.
func parseType(b []byte) (kind model.Kind, rest []byte, ok bool) {
	if len(b) == 0 {
		return 0, nil, false
	}
	n := 1
	switch b[0] {
	case 'c':
		kind = model.Counter
	case 'g':
		kind = model.Gauge
	case 'h', 'd':
		kind = model.Sample
	case 's':
		kind = model.Set
	case 'm':
		if len(b) < 2 || b[1] != 's' {
			return 0, nil, false
		}
		kind, n = model.Sample, 2
	default:
		return 0, nil, false
	}
	if n < len(b) && b[n] != '|' {
		return 0, nil, false
	}
	return kind, b[n:], true
}

// sampleCopies is how many copies of a sampled value stand for the
// unsampled stream: round(1/rate), between 1 and MaxSampleCopies.
func sampleCopies(rate float64) int {
	if rate >= 1 {
		return 1
	}
	n := math.Round(1 / rate)
	if n > MaxSampleCopies {
		return MaxSampleCopies
	}
	if n < 1 {
		return 1
	}
	return int(n)
}

func parseValue(b []byte) (float64, string) {
	if len(b) == 0 {
		return 0, ReasonInvalidValue
	}
	f, err := parseFloat(b)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, ReasonNonFiniteValue
		}
		return 0, ReasonInvalidValue
	}
	if !model.IsFinite(f) {
		return 0, ReasonNonFiniteValue
	}
	return f, ""
}

// parseFloat is strconv.ParseFloat(b, 64), with a fast path for the plain
// decimals clients write ("3", "-12", "20.25").
func parseFloat(b []byte) (float64, error) {
	if f, ok := parseDecimal(b); ok {
		return f, nil
	}
	return strconv.ParseFloat(str(b), 64)
}

// parseDecimal reads b = [+-]digits[.digits] with at most 15 digits in
// all, and returns ok false for anything else. The digits are an integer
// below 2^53 and the divisor a power of ten below 2^53, both exact in a
// float64, so the one division is correctly rounded: the same float64 as
// strconv.ParseFloat (TestParseDecimal, FuzzParseDecimal).
func parseDecimal(b []byte) (float64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 16 {
		return 0, false // more than 15 digits and a point
	}
	var mant uint64
	point := -1 // index of the '.'
	for i, c := range b {
		switch {
		case c-'0' <= 9: // a digit (the byte subtraction wraps below '0')
			mant = mant*10 + uint64(c-'0')
		case c == '.' && point < 0:
			point = i
		default:
			return 0, false
		}
	}
	digits := len(b)
	if point >= 0 {
		digits--
		if point == 0 || point == len(b)-1 {
			return 0, false // ".5", "5.": left to strconv
		}
	}
	if digits > 15 {
		return 0, false
	}
	f := float64(mant)
	if point >= 0 {
		f /= math.Pow10(len(b) - 1 - point)
	}
	if neg {
		f = -f
	}
	return f, true
}

func parseSeconds(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 12 {
		return 0, false
	}
	var s int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		s = s*10 + int64(c-'0')
	}
	return s * 1e9, true
}

func (d *Decoder) reject(dst *model.Batch, reason string, line []byte, mark int) {
	dst.TruncateTags(mark)
	dst.Reject(reason, line)
}

// lineTags is what the tags of one line have decided so far.
type lineTags struct {
	n      int    // tags counted against maxTags
	source string // the Source so far
	prio   int    // index in sourceTags of the tag that set source
	// pre holds keyPrefix of the first len(pre) tags' keys, for
	// sortUniquePrefixed.
	pre [8]uint64
}

// prefixes returns the key prefixes of the tags of lt, or nil when some
// have none.
func (lt *lineTags) prefixes() []uint64 {
	if lt.n > len(lt.pre) {
		return nil
	}
	return lt.pre[:lt.n]
}

// parseTags appends the comma-separated DogStatsD tags ("k:v") of b to
// dst's arena, diverting source tags into source. It returns the updated tag
// count, source and source priority, and a rejection reason or "".
func (d *Decoder) parseTags(dst *model.Batch, b []byte, ntags int, source string, prio int) (int, string, int, string) {
	lt := lineTags{n: ntags, source: source, prio: prio}
	_, reason := d.parseTagList(dst, b, ':', &lt)
	return lt.n, lt.source, lt.prio, reason
}

// parseTagList appends the comma-separated tags of b up to its first '|'
// (or its end) to dst's arena, sep between key and value (':' for
// DogStatsD "#k:v", '=' for Telegraf's "name,k=v"), diverting source tags
// into lt. It returns how many bytes of b it read and a rejection reason
// or "". It reads b once, 8 bytes at a time, visiting only the delimiters.
func (d *Decoder) parseTagList(dst *model.Batch, b []byte, sep byte, lt *lineTags) (int, string) {
	start, kv := 0, -1 // the current tag's first byte and its first sep
	for base := 0; base < len(b); base += 8 {
		for m := delims(word(b, base), sep); m != 0; m &= m - 1 {
			p := base + bits.TrailingZeros64(m)/8
			switch b[p] {
			case sep:
				if kv < 0 {
					kv = p
				}
			case ',':
				if reason := d.addTag(dst, b, start, kv, p, lt); reason != "" {
					return p, reason
				}
				start, kv = p+1, -1
			default: // '|'
				return p, d.addTag(dst, b, start, kv, p, lt)
			}
		}
	}
	return len(b), d.addTag(dst, b, start, kv, len(b), lt)
}

// addTag adds the tag b[start:end], its key ending at kv (-1: no value):
// nothing when the key is empty, a source tag to lt, any other to dst's
// arena. It returns ReasonTooManyTags or "".
func (d *Decoder) addTag(dst *model.Batch, b []byte, start, kv, end int, lt *lineTags) string {
	k, v := b[start:end], []byte(nil)
	if kv >= 0 {
		k, v = b[start:kv], b[kv+1:end]
	}
	if len(k) == 0 {
		return ""
	}
	ks := str(k)
	pre := keyPrefix(b, start, len(k))
	if p := d.sourceIndex(ks, pre); p >= 0 {
		if p < lt.prio && len(v) > 0 {
			lt.source, lt.prio = str(v), p
		}
		return ""
	}
	lt.n++
	if lt.n > d.maxTags {
		return ReasonTooManyTags
	}
	if lt.n <= len(lt.pre) {
		lt.pre[lt.n-1] = pre
	}
	dst.AddTag(ks, str(v))
	return ""
}

// sourceIndex is the index of key in d.sourceTags, or -1; pre is
// keyPrefix of key, which decides for keys of up to 8 bytes.
func (d *Decoder) sourceIndex(key string, pre uint64) int {
	for p, st := range d.sourceTags {
		if d.sourcePre[p] == pre && len(st) == len(key) && (len(key) <= 8 || st == key) {
			return p
		}
	}
	return -1
}

// finishTags sorts the tags added since mark and drops repeated keys (the
// first value in sort order is kept): the order of model.SortTags. pre is
// nil or the keyPrefix of each tag's key.
func finishTags(dst *model.Batch, mark int, pre []uint64) model.Tags {
	tags := dst.TagsSince(mark)
	if len(tags) < 2 {
		return tags
	}
	var n int
	if len(pre) == len(tags) {
		n = sortUniquePrefixed(tags, pre)
	} else {
		n = sortUnique(tags)
	}
	if n < len(tags) {
		dst.TruncateTags(mark + n)
		tags = dst.TagsSince(mark)
	}
	return tags
}

// sortUnique sorts t by key then value, moves the first tag of each key to
// the front and returns how many there are. Insertion sort: a line carries
// a handful of tags, and tags that arrive sorted cost one comparison each.
// TestSortUnique holds it to model.SortTags.
func sortUnique(t model.Tags) int {
	for i := 1; i < len(t); i++ {
		x, j := t[i], i
		for j > 0 && tagLess(x, t[j-1]) {
			t[j] = t[j-1]
			j--
		}
		if j != i {
			t[j] = x
		}
	}
	n := 1
	for i := 1; i < len(t); i++ {
		if t[i].Key != t[n-1].Key {
			if n != i {
				t[n] = t[i]
			}
			n++
		}
	}
	return n
}

// sortUniquePrefixed is sortUnique given pre[i] = keyPrefix of t[i].Key:
// it compares the prefixes, numbers ordered as the keys are, and only
// keys with equal prefixes as strings. It reorders pre with t.
func sortUniquePrefixed(t model.Tags, pre []uint64) int {
	pre = pre[:len(t)]
	for i := 1; i < len(t); i++ {
		x, px, j := t[i], pre[i], i
		for j > 0 && (px < pre[j-1] || px == pre[j-1] && tagLess(x, t[j-1])) {
			t[j], pre[j] = t[j-1], pre[j-1]
			j--
		}
		if j != i {
			t[j], pre[j] = x, px
		}
	}
	n := 1
	for i := 1; i < len(t); i++ {
		if pre[i] != pre[n-1] || t[i].Key != t[n-1].Key {
			if n != i {
				t[n], pre[n] = t[i], pre[i]
			}
			n++
		}
	}
	return n
}

// tagLess orders by key, then value.
func tagLess(a, b model.Tag) bool {
	if c := compareKeys(a.Key, b.Key); c != 0 {
		return c < 0
	}
	return a.Value < b.Value
}

// compareKeys is strings.Compare(a, b), deciding in line on the first 8
// bytes where it can: tag keys mostly differ there, and the call costs
// more than the bytes.
func compareKeys(a, b string) int {
	for i := range min(len(a), len(b), 8) {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return strings.Compare(a, b)
}

// SetValue maps a set member to model.Set's Value: the low 53 bits of the
// member's 64-bit FNV-1a hash, stable across processes and restarts.
func SetValue(member []byte) float64 {
	h := uint64(14695981039346656037)
	for _, c := range member {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return float64(h & (1<<53 - 1))
}

// nextField cuts rest at its next '|': the field before it and the rest
// after it (nil when there is none).
func nextField(rest []byte) (field, tail []byte) {
	if i := bytes.IndexByte(rest, '|'); i >= 0 {
		return rest[:i], rest[i+1:]
	}
	return rest, nil
}
