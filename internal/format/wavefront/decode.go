// Package wavefront decodes and encodes the Wavefront proxy line protocol:
// metric lines, !M/!H/!D distribution lines and span lines.
//
// The grammar follows the proxy's tokenizer (java-lib StringParser) and its
// validation defaults (java-lib Validation); see README.md for the grammar,
// the modes, every reject reason and the limits. The package is pure: no
// goroutines, no logging, no mutable package state.
//
// Decoded strings alias the payload (see Decoder.Decode). With
// Options.SeriesCache a Decoder remembers the series of accepted metric
// lines, and a later line of the same series gets the remembered name,
// source and tags: owned by the Decoder, not in the payload or the
// batch's Arena, shared by every point of the series, never modified.
//
// Reject reasons (model.Reject.Reason), one exported constant each:
//
//	line_too_long                line longer than Options.MaxLineLen
//	invalid_utf8                 the line is not valid UTF-8
//	unmatched_quote              a quoted token has no closing quote
//	unsupported_line             @SourceTag, @SourceDescription, [json] lines; @Event and {json} lines on ports that take none
//	invalid_event                an @Event line without a start time and a name
//	invalid_span_logs            a {json} line that is not a span-logs object with at least one log
//	scalar_on_distribution_port  a metric line in ModeDistOnly
//	coarser_distribution         in ModeSample, a distribution coarser than Options.Window
//	missing_name                 a distribution line without a name after its centroids
//	invalid_name                 name empty or outside [A-Za-z0-9._,/-] (plus ~, ∆, Δ prefixes); span name empty or with '*'
//	name_too_long                name over 1023 characters (span name over 128)
//	missing_value                a metric line with a name only
//	invalid_value                the value does not parse as a float
//	non_finite_value             the value is NaN or ±Inf (or overflows)
//	nonpositive_delta            a ∆/Δ delta counter whose value is ≤ 0
//	invalid_timestamp            a timestamp that does not parse as a non-negative number
//	missing_timestamp            a span line without its start and end/duration fields
//	timestamp_out_of_range       not within (now-BackfillCutoff, now+PrefillCutoff), or beyond int64 ns
//	invalid_tag                  a tag key without '=' or without a value
//	unexpected_token             a stray '=' or '#', a number where a tag key is expected, tokens after a span's times
//	invalid_tag_key              tag key empty or outside the name charset
//	empty_tag_value              tag value (or source) empty or blank
//	tag_too_long                 key+value ≥ 255 characters (span annotation key over 128)
//	too_many_tags                more than Options.MaxTags tags after source/host extraction
//	source_too_long              source over 1023 characters
//	invalid_centroid             '#' not followed by count > 0 and a finite mean
//	empty_histogram              a distribution without centroids
//	too_many_centroids           more than 10000 centroids
//	missing_span_id              span without a non-empty spanId
//	missing_trace_id             span without a non-empty traceId
package wavefront

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/les-streams/les/internal/model"
)

// Reject reasons; see the package comment.
const (
	ReasonLineTooLong              = "line_too_long"
	ReasonInvalidUTF8              = "invalid_utf8"
	ReasonUnmatchedQuote           = "unmatched_quote"
	ReasonUnsupportedLine          = "unsupported_line"
	ReasonScalarOnDistributionPort = "scalar_on_distribution_port"
	ReasonCoarserDistribution      = "coarser_distribution"
	ReasonMissingName              = "missing_name"
	ReasonInvalidName              = "invalid_name"
	ReasonNameTooLong              = "name_too_long"
	ReasonMissingValue             = "missing_value"
	ReasonInvalidValue             = "invalid_value"
	ReasonNonFiniteValue           = "non_finite_value"
	ReasonNonPositiveDelta         = "nonpositive_delta"
	ReasonInvalidTimestamp         = "invalid_timestamp"
	ReasonMissingTimestamp         = "missing_timestamp"
	ReasonTimestampOutOfRange      = "timestamp_out_of_range"
	ReasonInvalidTag               = "invalid_tag"
	ReasonUnexpectedToken          = "unexpected_token"
	ReasonInvalidTagKey            = "invalid_tag_key"
	ReasonEmptyTagValue            = "empty_tag_value"
	ReasonTagTooLong               = "tag_too_long"
	ReasonTooManyTags              = "too_many_tags"
	ReasonSourceTooLong            = "source_too_long"
	ReasonInvalidCentroid          = "invalid_centroid"
	ReasonEmptyHistogram           = "empty_histogram"
	ReasonTooManyCentroids         = "too_many_centroids"
	ReasonMissingSpanID            = "missing_span_id"
	ReasonMissingTraceID           = "missing_trace_id"
)

// Limits that are not configurable.
const (
	MaxNameLen       = 1023  // metric and distribution names, in characters
	MaxSpanNameLen   = 128   // span names, in characters
	MaxSourceLen     = 1023  // source, in characters
	MaxTagKeyLen     = 253   // tag key, in characters
	MaxTagValueLen   = 255   // tag value, in characters
	MaxTagLen        = 255   // key+value must be shorter than this
	MaxSpanTagKeyLen = 128   // span annotation key, in characters
	MaxCentroids     = 10000 // centroids per distribution line

	DefaultMaxLineLen     = 32768
	DefaultMaxTags        = 100
	DefaultBackfillCutoff = 8760 * time.Hour
	DefaultPrefillCutoff  = 24 * time.Hour
	DefaultSource         = "unknown"
)

// Mode selects what a payload may contain.
type Mode uint8

const (
	// ModeMetrics (port 2878, f=wavefront): metric lines and !M/!H/!D
	// distribution lines, detected by the prefixes "!M ", "!H ", "!D ".
	// Metrics are model.Gauge, or model.Counter for ∆/Δ delta names.
	ModeMetrics Mode = iota
	// ModeHistogram (f=histogram): distribution lines; metric lines are
	// auto-detected and decoded as in ModeMetrics, like the proxy does.
	ModeHistogram
	// ModeDistOnly (port 40000): distribution lines only; metric lines are
	// rejected with ReasonScalarOnDistributionPort.
	ModeDistOnly
	// ModeSample (ports 40001/2/3): metric lines become model.Sample with
	// Window = Options.Window; distributions not coarser than Options.Window
	// are re-binned to Options.Window, coarser ones are rejected with
	// ReasonCoarserDistribution.
	ModeSample
	// ModeTrace (f=trace): span lines.
	ModeTrace
)

// Options configure a Decoder. Zero values select the defaults.
type Options struct {
	Mode Mode
	// Window is the port granularity of ModeSample; WindowNone (or an
	// unknown value) means minute.
	Window model.Window
	// DefaultSource is used when a line has no source or host tag; "" means
	// "unknown".
	DefaultSource string
	// MaxLineLen is the longest accepted line in bytes after trimming
	// (default 32768).
	MaxLineLen int
	// MaxTags is the most tags an item may carry (default 100).
	MaxTags int
	// BackfillCutoff and PrefillCutoff bound timestamps to the open interval
	// (now-BackfillCutoff, now+PrefillCutoff); defaults 8760h and 24h.
	BackfillCutoff, PrefillCutoff time.Duration
	// SeriesCache, when > 0, is the most series the Decoder remembers:
	// a metric line whose name token and tag section are byte for byte
	// those of a line accepted before takes that line's name, source and
	// tags instead of tokenizing, validating and sorting them again (the
	// value, the timestamp and every per-line check are done as always).
	// Items decoded so alias the cache, not the payload (see Decode). When
	// full, the cache is dropped and begun anew in new memory (after a
	// pause if it earned few hits: README.md "Series cache"). 0: no
	// cache; ModeTrace and ModeDistOnly have none either. Worth it
	// for a long-lived Decoder (one per UDP reader or TCP connection);
	// DefaultSeriesCache is the size les uses.
	SeriesCache int
	// SeriesCacheBytes bounds the cache's memory as counted in README.md
	// "Series cache" (default DefaultSeriesCacheBytes, 8 MiB).
	SeriesCacheBytes int
	// SeriesCacheBudget, when set, bounds this cache and the others
	// sharing it together as well (see CacheBudget); call Release when
	// the Decoder is no longer used.
	SeriesCacheBudget *CacheBudget
}

// Decoder decodes Wavefront payloads. It keeps reusable scratch space and is
// not safe for concurrent use; use one per goroutine.
type Decoder struct {
	o     Options
	toks  []token
	cache *seriesCache // nil unless Options.SeriesCache > 0
}

// NewDecoder returns a Decoder for o with defaults filled in.
func NewDecoder(o Options) *Decoder {
	if o.DefaultSource == "" {
		o.DefaultSource = DefaultSource
	}
	if o.MaxLineLen <= 0 {
		o.MaxLineLen = DefaultMaxLineLen
	}
	if o.MaxTags <= 0 {
		o.MaxTags = DefaultMaxTags
	}
	if o.BackfillCutoff <= 0 {
		o.BackfillCutoff = DefaultBackfillCutoff
	}
	if o.PrefillCutoff <= 0 {
		o.PrefillCutoff = DefaultPrefillCutoff
	}
	if o.Mode == ModeSample && (o.Window == model.WindowNone || o.Window > model.WindowDay) {
		o.Window = model.WindowMinute
	}
	d := &Decoder{o: o, toks: make([]token, 0, 64)}
	if o.SeriesCache > 0 && o.Mode != ModeTrace && o.Mode != ModeDistOnly { // modes without metric lines
		d.cache = newSeriesCache(o.SeriesCache, o.SeriesCacheBytes, o.SeriesCacheBudget)
	}
	return d
}

// Release empties the series cache and gives its bytes back to
// Options.SeriesCacheBudget. The Decoder still works after it (its cache
// fills again).
func (d *Decoder) Release() {
	if d.cache != nil {
		d.cache.fresh()
	}
}

// Decode splits payload on '\n', trims each line of surrounding whitespace
// (including '\r') and skips empty lines. Each accepted line appends one
// item to dst (Metrics, Dists or Spans, with tags in dst.Arena and centroids
// in dst.CentroidArena); each rejected line appends a model.Reject whose Line
// aliases payload. A bad line never stops the rest of the payload.
//
// now is the receive time in Unix nanoseconds: it stands in for missing
// timestamps and anchors the timestamp range check.
//
// Ownership: the strings of appended items (names, sources, tag keys and
// values, span ids) alias payload without copying, except quoted tokens that
// contained an escaped quote, which are copied. The caller must not modify
// payload while dst's items are in use, or must Clone them first.
//
// With Options.SeriesCache, a metric line of a series the cache holds
// (a hit) appends a Metric with Ref set (model.Metric.Ref) whose Name,
// Source and Tags are the cache's: they alias neither payload nor dst.Arena, stay valid
// and unchanged for as long as the item is referenced (the cache never
// rewrites its memory; when full it starts over in new memory), and are
// shared with every other hit of that series, in this batch and later
// ones, so their Tags must never be modified in place. Their capacity is
// clipped: appending copies. Other items are as above.
func (d *Decoder) Decode(dst *model.Batch, payload []byte, now int64) {
	if len(payload) == 0 {
		return
	}
	s := unsafe.String(unsafe.SliceData(payload), len(payload))
	for start := 0; start < len(s); {
		end := strings.IndexByte(s[start:], '\n')
		next := len(s)
		if end < 0 {
			end = len(s)
		} else {
			end += start
			next = end + 1
		}
		a, b := start, end
		start = next
		for a < b && isSpace(s[a]) {
			a++
		}
		for b > a && isSpace(s[b-1]) {
			b--
		}
		if a == b {
			continue
		}
		tmark, cmark := len(dst.Arena), len(dst.CentroidArena)
		if r := d.line(dst, s[a:b], now); r != "" {
			dst.TruncateTags(tmark)
			dst.CentroidArena = dst.CentroidArena[:cmark]
			dst.Reject(r, payload[a:b:b])
		}
	}
}

// line decodes one trimmed, non-empty line and returns a reject reason or "".
func (d *Decoder) line(dst *model.Batch, line string, now int64) string {
	var sc seriesScan
	if d.cache != nil && !d.cache.skip() {
		if d.scanSeries(line, &sc); sc.ok && d.cachedMetric(dst, line, &sc, now) {
			return ""
		}
	}
	if len(line) > d.o.MaxLineLen {
		return ReasonLineTooLong
	}
	if !utf8.ValidString(line) {
		return ReasonInvalidUTF8
	}
	if c := line[0]; c == '@' || c == '{' || c == '[' {
		return d.special(dst, line, now)
	}
	if d.o.Mode == ModeTrace {
		if !d.tokenize(line) {
			return ReasonUnmatchedQuote
		}
		return d.span(dst, now)
	}
	isDist := len(line) > 2 && line[0] == '!' && (line[1] == 'M' || line[1] == 'H' || line[1] == 'D') && isSpace(line[2])
	if !isDist && d.o.Mode == ModeDistOnly {
		return ReasonScalarOnDistributionPort
	}
	if !d.tokenize(line) {
		return ReasonUnmatchedQuote
	}
	if isDist {
		return d.dist(dst, now)
	}
	r := d.metric(dst, now)
	if r == "" && sc.ok {
		d.cache.remember(&dst.Metrics[len(dst.Metrics)-1], line, &sc)
	}
	return r
}

// special decodes a line that starts with '@', '{' or '[': an event or span
// logs where the mode takes them, else a command or log format les does not
// take.
func (d *Decoder) special(dst *model.Batch, line string, now int64) string {
	if isJSONObject(line) && (d.o.Mode == ModeMetrics || d.o.Mode == ModeHistogram || d.o.Mode == ModeTrace) {
		return d.spanLogs(dst, line, now)
	}
	if d.o.Mode == ModeMetrics || d.o.Mode == ModeHistogram {
		if strings.HasPrefix(line, "@Event") && len(line) > 6 && isSpace(line[6]) {
			if !d.tokenize(line) {
				return ReasonUnmatchedQuote
			}
			return d.event(dst, now)
		}
	}
	if unsupported(line) {
		return ReasonUnsupportedLine
	}
	if d.o.Mode == ModeTrace {
		if !d.tokenize(line) {
			return ReasonUnmatchedQuote
		}
		return d.span(dst, now)
	}
	if d.o.Mode == ModeDistOnly {
		return ReasonScalarOnDistributionPort
	}
	if !d.tokenize(line) {
		return ReasonUnmatchedQuote
	}
	return d.metric(dst, now)
}

func unsupported(line string) bool {
	switch line[0] {
	case '@':
		return strings.HasPrefix(line, "@SourceTag") || strings.HasPrefix(line, "@SourceDescription") || strings.HasPrefix(line, "@Event")
	case '{':
		return line[len(line)-1] == '}'
	case '[':
		return line[len(line)-1] == ']'
	}
	return false
}

// Token kinds.
const (
	tWord   uint8 = iota // unquoted
	tQuoted              // single- or double-quoted
	tEq                  // the '=' token
	tHash                // the '#' token (a token that began with '#')
)

type token struct {
	s    string
	kind uint8
	name bool // unquoted and every byte in [A-Za-z0-9._,/-]
}

// isSpace reports Java Character.isWhitespace for ASCII: TAB, LF, VT, FF,
// CR, FS, GS, RS, US and space.
func isSpace(c byte) bool { return charClass[c]&cSpace != 0 }

// Character classes for the tokenizer (a constant table).
const (
	cSpace   = 1 << iota // whitespace
	cWordEnd             // ends an unquoted token: whitespace or '='
	cName                // allowed in names and tag keys: [A-Za-z0-9._,/-]
)

var charClass = [256]uint8{
	'\t': cSpace | cWordEnd, '\n': cSpace | cWordEnd, '\v': cSpace | cWordEnd, '\f': cSpace | cWordEnd, '\r': cSpace | cWordEnd,
	0x1c: cSpace | cWordEnd, 0x1d: cSpace | cWordEnd, 0x1e: cSpace | cWordEnd, 0x1f: cSpace | cWordEnd, ' ': cSpace | cWordEnd,
	'=': cWordEnd,
	',': cName, '-': cName, '.': cName, '/': cName,
	'0': cName, '1': cName, '2': cName, '3': cName, '4': cName, '5': cName, '6': cName, '7': cName, '8': cName, '9': cName,
	'A': cName, 'B': cName, 'C': cName, 'D': cName, 'E': cName, 'F': cName, 'G': cName, 'H': cName, 'I': cName, 'J': cName, 'K': cName, 'L': cName, 'M': cName,
	'N': cName, 'O': cName, 'P': cName, 'Q': cName, 'R': cName, 'S': cName, 'T': cName, 'U': cName, 'V': cName, 'W': cName, 'X': cName, 'Y': cName, 'Z': cName,
	'_': cName,
	'a': cName, 'b': cName, 'c': cName, 'd': cName, 'e': cName, 'f': cName, 'g': cName, 'h': cName, 'i': cName, 'j': cName, 'k': cName, 'l': cName, 'm': cName,
	'n': cName, 'o': cName, 'p': cName, 'q': cName, 'r': cName, 's': cName, 't': cName, 'u': cName, 'v': cName, 'w': cName, 'x': cName, 'y': cName, 'z': cName,
}

// tokenize splits line into d.toks the way StringParser does. It reports
// false on an unmatched quote.
func (d *Decoder) tokenize(line string) bool {
	toks := d.toks[:0]
	n := len(line)
	i := 0
	for {
		for i < n && isSpace(line[i]) {
			i++
		}
		if i >= n {
			break
		}
		switch c := line[i]; c {
		case '"', '\'':
			start := i + 1
			j := start
			esc := false
			for {
				k := strings.IndexByte(line[j:], c)
				if k < 0 {
					d.toks = toks
					return false
				}
				j += k
				if line[j-1] == '\\' {
					esc = true
					j++
					continue
				}
				break
			}
			s := line[start:j]
			if esc {
				s = unescape(s, c)
			}
			toks = append(toks, token{s: s, kind: tQuoted})
			i = j + 1
		case '=':
			toks = append(toks, token{s: line[i : i+1], kind: tEq})
			i++
		case '#':
			toks = append(toks, token{s: line[i : i+1], kind: tHash})
			i++
		default:
			j, cls := i, uint8(cName)
			for j < len(line) {
				c := charClass[line[j]]
				if c&cWordEnd != 0 {
					break
				}
				cls &= c
				j++
			}
			toks = append(toks, token{s: line[i:j], kind: tWord, name: cls != 0})
			i = j
		}
	}
	d.toks = toks
	return true
}

// unescape replaces \q with q (q is the quote character); other backslashes
// are kept. It allocates: escaped quotes are rare.
func unescape(s string, q byte) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && s[i+1] == q {
			b = append(b, q)
			i++
			continue
		}
		b = append(b, s[i])
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func startsDigit(s string) bool { return s != "" && s[0] >= '0' && s[0] <= '9' }

// metricKind is the kind and window of a metric line's point (a delta
// counter's name, the port's mode) and the reject reason of its value or
// timestamp, the checks after the tags; the cached path makes them too.
func (d *Decoder) metricKind(delta bool, v float64, ts, now int64) (model.Kind, model.Window, string) {
	kind, win := model.Gauge, model.WindowNone
	if delta {
		if v <= 0 {
			return 0, 0, ReasonNonPositiveDelta
		}
		kind = model.Counter
	}
	if d.o.Mode == ModeSample {
		kind, win = model.Sample, d.o.Window
	}
	if !d.inRange(ts, now) {
		return 0, 0, ReasonTimestampOutOfRange
	}
	return kind, win, ""
}

func (d *Decoder) inRange(ts, now int64) bool {
	return ts > now-int64(d.o.BackfillCutoff) && ts < now+int64(d.o.PrefillCutoff)
}

func (d *Decoder) metric(dst *model.Batch, now int64) string {
	toks := d.toks
	name := toks[0].s
	if len(toks) < 2 {
		return ReasonMissingValue
	}
	v, r := parseValue(toks[1].s)
	if r != "" {
		return r
	}
	ts, i := now, 2
	if i < len(toks) && startsDigit(toks[i].s) {
		if ts, r = parseTimestamp(toks[i].s); r != "" {
			return r
		}
		i++
	}
	mark := dst.TagMark()
	if r = parseTags(dst, toks[i:]); r != "" {
		return r
	}
	if r = checkNameTok(toks[0], ReasonInvalidName, MaxNameLen); r != "" {
		return r
	}
	src, r := d.finishTags(dst, mark)
	if r != "" {
		return r
	}
	kind, win, r := d.metricKind(isDelta(name), v, ts, now)
	if r != "" {
		return r
	}
	dst.Metrics = append(dst.Metrics, model.Metric{
		Name:      name,
		Value:     v,
		Timestamp: ts,
		Source:    src,
		Tags:      dst.TagsSince(mark),
		Kind:      kind,
		Window:    win,
	})
	return ""
}

func (d *Decoder) dist(dst *model.Batch, now int64) string {
	toks := d.toks
	var win model.Window
	switch toks[0].s[1] {
	case 'M':
		win = model.WindowMinute
	case 'H':
		win = model.WindowHour
	default:
		win = model.WindowDay
	}
	ts, i := now, 1
	var r string
	if i < len(toks) && startsDigit(toks[i].s) {
		if ts, r = parseTimestamp(toks[i].s); r != "" {
			return r
		}
		i++
	}
	cmark := len(dst.CentroidArena)
	for i < len(toks) && toks[i].kind == tHash {
		if i+2 >= len(toks) {
			return ReasonInvalidCentroid
		}
		c, err := strconv.ParseFloat(toks[i+1].s, 64)
		if err != nil || !(c > 0) || math.IsInf(c, 0) {
			return ReasonInvalidCentroid
		}
		m, err := strconv.ParseFloat(toks[i+2].s, 64)
		if err != nil || !model.IsFinite(m) {
			return ReasonInvalidCentroid
		}
		if len(dst.CentroidArena)-cmark >= MaxCentroids {
			return ReasonTooManyCentroids
		}
		dst.CentroidArena = append(dst.CentroidArena, model.Centroid{Value: m, Count: c})
		i += 3
	}
	if len(dst.CentroidArena) == cmark {
		return ReasonEmptyHistogram
	}
	if i >= len(toks) {
		return ReasonMissingName
	}
	nameTok := toks[i]
	name := nameTok.s
	i++
	mark := dst.TagMark()
	if r = parseTags(dst, toks[i:]); r != "" {
		return r
	}
	if r = checkNameTok(nameTok, ReasonInvalidName, MaxNameLen); r != "" {
		return r
	}
	src, r := d.finishTags(dst, mark)
	if r != "" {
		return r
	}
	if d.o.Mode == ModeSample {
		if win > d.o.Window {
			return ReasonCoarserDistribution
		}
		win = d.o.Window
	}
	w := win.Nanos()
	rem := ts % w
	if rem < 0 {
		rem += w
	}
	ts -= rem
	if !d.inRange(ts, now) {
		return ReasonTimestampOutOfRange
	}
	cs := dst.CentroidArena[cmark:len(dst.CentroidArena):len(dst.CentroidArena)]
	if !slices.IsSortedFunc(cs, cmpCentroid) {
		slices.SortStableFunc(cs, cmpCentroid)
	}
	var count, sum float64
	for _, c := range cs {
		count += c.Count
		sum += c.Count * c.Value
	}
	dst.Dists = append(dst.Dists, model.Distribution{
		Name:      name,
		Timestamp: ts,
		Window:    win,
		Source:    src,
		Tags:      dst.TagsSince(mark),
		Count:     count,
		Sum:       sum,
		Min:       cs[0].Value,
		Max:       cs[len(cs)-1].Value,
		Centroids: cs,
	})
	return ""
}

func cmpCentroid(a, b model.Centroid) int { return cmp.Compare(a.Value, b.Value) }

func cmpTagKey(a, b model.Tag) int { return strings.Compare(a.Key, b.Key) }

// keyLess is a < b with the first byte compared inline.
func keyLess(a, b string) bool {
	if a != "" && b != "" && a[0] != b[0] {
		return a[0] < b[0]
	}
	return a < b
}

// sortTagKeys sorts tags by key only, stably, so that among equal keys the
// last one written stays last.
func sortTagKeys(t model.Tags) {
	if len(t) > 24 {
		slices.SortStableFunc(t, cmpTagKey)
		return
	}
	for i := 1; i < len(t); i++ {
		for j := i; j > 0 && keyLess(t[j].Key, t[j-1].Key); j-- {
			t[j], t[j-1] = t[j-1], t[j]
		}
	}
}

// parseTags appends the key=value pairs of toks to dst.Arena.
func parseTags(dst *model.Batch, toks []token) string {
	for i := 0; i < len(toks); i += 3 {
		k := toks[i]
		if k.kind == tEq || k.kind == tHash {
			return ReasonUnexpectedToken
		}
		if i+1 >= len(toks) || toks[i+1].kind != tEq {
			if k.kind == tWord && isNumber(k.s) {
				return ReasonUnexpectedToken
			}
			return ReasonInvalidTag
		}
		if i+2 >= len(toks) {
			return ReasonInvalidTag
		}
		if r := checkNameTok(k, ReasonInvalidTagKey, MaxTagKeyLen); r != "" {
			if r == ReasonNameTooLong {
				r = ReasonTagTooLong
			}
			return r
		}
		dst.AddTag(k.s, toks[i+2].s)
	}
	return ""
}

// checkNameTok is checkName with a fast path for plain unquoted tokens.
func checkNameTok(t token, invalid string, max int) string {
	if t.name {
		if len(t.s) > max {
			return ReasonNameTooLong
		}
		return ""
	}
	return checkName(t.s, invalid, max)
}

// finishTags resolves duplicate keys (last wins), extracts source/host,
// renames tag to _tag, sorts and validates the tags added since mark.
func (d *Decoder) finishTags(dst *model.Batch, mark int) (string, string) {
	tags := dst.Arena[mark:]
	sortTagKeys(tags)
	// One pass: drop all but the last of equal keys, take out source, host
	// and tag, validate the rest (_host and _tag later: they may be replaced).
	var src, host, tagv string
	var hasSrc, hasHost, hasTag, hasUnder bool
	w := 0
	for r := range tags {
		t := tags[r]
		if r+1 < len(tags) && tags[r+1].Key == t.Key {
			continue
		}
		switch t.Key {
		case "source":
			src, hasSrc = t.Value, true
			continue
		case "host":
			host, hasHost = t.Value, true
			continue
		case "tag":
			tagv, hasTag = t.Value, true
			continue
		case "_host", "_tag":
			hasUnder = true
		default:
			if r := checkTag(t); r != "" {
				return "", r
			}
		}
		tags[w] = t
		w++
	}
	moveHost := hasSrc && hasHost
	if hasUnder || moveHost || hasTag {
		tags = tags[:w]
		w = 0
		for _, t := range tags {
			if (moveHost && t.Key == "_host") || (hasTag && t.Key == "_tag") {
				continue
			}
			if t.Key == "_host" || t.Key == "_tag" {
				if r := checkTag(t); r != "" {
					return "", r
				}
			}
			tags[w] = t
			w++
		}
	}
	dst.TruncateTags(mark + w)
	if moveHost || hasTag {
		if moveHost {
			dst.AddTag("_host", host)
		}
		if hasTag {
			dst.AddTag("_tag", tagv)
		}
		for _, t := range dst.Arena[mark+w:] {
			if r := checkTag(t); r != "" {
				return "", r
			}
		}
		model.SortTags(dst.Arena[mark:])
	}
	if len(dst.Arena)-mark > d.o.MaxTags {
		return "", ReasonTooManyTags
	}
	switch {
	case hasSrc:
	case hasHost:
		src = host
	default:
		return d.o.DefaultSource, ""
	}
	return src, checkSource(src)
}

// checkTag validates one metric or distribution tag whose key charset and
// key length parseTags already checked.
func checkTag(t model.Tag) string {
	if isBlank(t.Value) {
		return ReasonEmptyTagValue
	}
	if len(t.Key)+len(t.Value) >= MaxTagLen {
		kl, vl := utf8.RuneCountInString(t.Key), utf8.RuneCountInString(t.Value)
		if kl+vl >= MaxTagLen || vl > MaxTagValueLen {
			return ReasonTagTooLong
		}
	}
	return ""
}

func checkSource(src string) string {
	if isBlank(src) {
		return ReasonEmptyTagValue
	}
	if len(src) > MaxSourceLen && utf8.RuneCountInString(src) > MaxSourceLen {
		return ReasonSourceTooLong
	}
	return ""
}

func isBlank(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isSpace(s[i]) {
			return false
		}
	}
	return true
}

func validNameChar(c byte) bool { return charClass[c]&cName != 0 }

const (
	deltaInc   = "∆" // U+2206 INCREMENT
	deltaGreek = "Δ" // U+0394 GREEK CAPITAL LETTER DELTA
)

func isDelta(name string) bool {
	return strings.HasPrefix(name, deltaInc) || strings.HasPrefix(name, deltaGreek)
}

// checkName validates a metric name or tag key: charset [A-Za-z0-9._,/-],
// first char may also be ~, ∆ or Δ, and ∆~ / Δ~ prefixes; at most max
// characters. It returns invalid (the caller's reason) or ReasonNameTooLong.
func checkName(s, invalid string, max int) string {
	if s == "" {
		return invalid
	}
	i, extra := 0, 0 // extra: bytes beyond one per character
	switch {
	case s[0] == '~':
		i = 1
	case strings.HasPrefix(s, deltaInc):
		i, extra = len(deltaInc), len(deltaInc)-1
	case strings.HasPrefix(s, deltaGreek):
		i, extra = len(deltaGreek), len(deltaGreek)-1
	}
	if extra > 0 && i < len(s) && s[i] == '~' {
		i++
	}
	for ; i < len(s); i++ {
		if !validNameChar(s[i]) {
			return invalid
		}
	}
	if len(s)-extra > max {
		return ReasonNameTooLong
	}
	return ""
}

// pow10 holds the powers of ten that float64 represents exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseSimpleFloat parses [-]digits[.digits] with at most 15 significant
// digits exactly (mantissa and power of ten are both exact, so one division
// rounds correctly). ok is false for anything else.
func parseSimpleFloat(s string) (f float64, ok bool) {
	i, neg := 0, false
	if s != "" && s[0] == '-' {
		neg, i = true, 1
	}
	var mant uint64
	digits, frac, dot := 0, 0, false
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			mant = mant*10 + uint64(c-'0')
			digits++
			if dot {
				frac++
			}
		case c == '.' && !dot:
			dot = true
		default:
			return 0, false
		}
	}
	if digits == 0 || digits > 15 {
		return 0, false
	}
	return simpleFloat(mant, frac, neg), true
}

// simpleFloat is the value of a simple decimal parsed by
// parseSimpleFloat (or scanSeries): mant with frac of its at most 15
// digits after the point, negated if neg.
func simpleFloat(mant uint64, frac int, neg bool) float64 {
	f := float64(mant) / pow10[frac]
	if neg {
		f = -f
	}
	return f
}

func parseValue(s string) (float64, string) {
	if s == "" {
		return 0, ReasonInvalidValue
	}
	if f, ok := parseSimpleFloat(s); ok {
		return f, ""
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange && math.IsInf(f, 0) {
			return 0, ReasonNonFiniteValue
		}
		return 0, ReasonInvalidValue
	}
	if !model.IsFinite(f) {
		return 0, ReasonNonFiniteValue
	}
	return f, ""
}

// num is a non-negative decimal number digits[.digits], kept exact.
type num struct {
	whole uint64
	frac  string // digits after the point, possibly empty
}

// parseNum parses digits[.digits] (at most 19 integer digits).
func parseNum(s string) (num, bool) {
	var n num
	i := 0
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		if i >= 19 {
			return n, false
		}
		n.whole = n.whole*10 + uint64(s[i]-'0')
	}
	if i == 0 {
		return n, false
	}
	if i == len(s) {
		return n, true
	}
	if s[i] != '.' {
		return n, false
	}
	for j := i + 1; j < len(s); j++ {
		if s[j] < '0' || s[j] > '9' {
			return n, false
		}
	}
	n.frac = s[i+1:]
	return n, true
}

func isNumber(s string) bool {
	_, ok := parseNum(s)
	return ok
}

// nanos converts n in units of unit nanoseconds to nanoseconds; false if
// the result does not fit in int64.
func (n num) nanos(unit uint64) (int64, bool) {
	if n.whole > math.MaxInt64/unit {
		return 0, false
	}
	v := n.whole * unit
	m := unit
	for i := 0; i < len(n.frac); i++ {
		m /= 10
		if m == 0 {
			break
		}
		v += uint64(n.frac[i]-'0') * m
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}

// less reports n < o.
func (n num) less(o num) bool {
	if n.whole != o.whole {
		return n.whole < o.whole
	}
	for i := 0; i < len(n.frac) || i < len(o.frac); i++ {
		a, b := byte('0'), byte('0')
		if i < len(n.frac) {
			a = n.frac[i]
		}
		if i < len(o.frac) {
			b = o.frac[i]
		}
		if a != b {
			return a < b
		}
	}
	return false
}

// metricUnit returns the unit of a metric timestamp from its magnitude:
// < 1e12 seconds, < 1e13 milliseconds, < 1e16 microseconds, else ns.
func metricUnit(v float64) uint64 {
	switch {
	case v < 1e12:
		return 1e9
	case v < 1e13:
		return 1e6
	case v < 1e16:
		return 1e3
	}
	return 1
}

// parseTimestamp parses a metric or distribution timestamp to Unix ns.
func parseTimestamp(s string) (int64, string) {
	if n, ok := parseNum(s); ok {
		ns, ok := n.nanos(metricUnit(float64(n.whole)))
		if !ok {
			return 0, ReasonTimestampOutOfRange
		}
		return ns, ""
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !model.IsFinite(f) || f < 0 {
		return 0, ReasonInvalidTimestamp
	}
	x := f * float64(metricUnit(f))
	if x >= math.MaxInt64 {
		return 0, ReasonTimestampOutOfRange
	}
	return int64(math.Round(x)), ""
}

// spanUnit returns the unit of span times from the start value: > 999999999999999999
// ns, > 999999999999999 µs, > 999999999999 ms, else seconds.
func spanUnit(start uint64) uint64 {
	switch {
	case start > 999999999999999999:
		return 1
	case start > 999999999999999:
		return 1e3
	case start > 999999999999:
		return 1e6
	}
	return 1e9
}

func (d *Decoder) span(dst *model.Batch, now int64) string {
	toks := d.toks
	name := toks[0].s
	i := 1
	mark := dst.TagMark()
	for i < len(toks) {
		t := toks[i]
		if t.kind == tWord && isNumber(t.s) {
			break
		}
		if t.kind == tEq || t.kind == tHash {
			return ReasonUnexpectedToken
		}
		if i+2 >= len(toks) || toks[i+1].kind != tEq {
			return ReasonInvalidTag
		}
		if r := checkNameTok(t, ReasonInvalidTagKey, MaxSpanTagKeyLen); r != "" {
			if r == ReasonNameTooLong {
				r = ReasonTagTooLong
			}
			return r
		}
		dst.AddTag(t.s, toks[i+2].s)
		i += 3
	}
	if i+1 >= len(toks) {
		return ReasonMissingTimestamp
	}
	if i+2 < len(toks) {
		return ReasonUnexpectedToken
	}
	sn, ok := parseNum(toks[i].s)
	if !ok {
		return ReasonInvalidTimestamp
	}
	en, ok := parseNum(toks[i+1].s)
	if !ok {
		return ReasonInvalidTimestamp
	}
	unit := spanUnit(sn.whole)
	start, ok := sn.nanos(unit)
	if !ok {
		return ReasonTimestampOutOfRange
	}
	second, ok := en.nanos(unit)
	if !ok {
		return ReasonTimestampOutOfRange
	}
	dur := second
	if !en.less(sn) {
		dur = second - start
	}
	if name == "" || strings.IndexByte(name, '*') >= 0 {
		return ReasonInvalidName
	}
	if len(name) > MaxSpanNameLen && utf8.RuneCountInString(name) > MaxSpanNameLen {
		return ReasonNameTooLong
	}

	tags := dst.Arena[mark:]
	var spanID, traceID, parent, src, host string
	var hasParent, hasSrc, hasHost bool
	w := 0
	for _, t := range tags {
		switch t.Key {
		case "spanId":
			spanID = t.Value
			continue
		case "traceId":
			traceID = t.Value
			continue
		case "source":
			src, hasSrc = t.Value, true
			continue
		case "host":
			host, hasHost = t.Value, true
			continue
		case "parent":
			if isBlank(t.Value) {
				continue // an empty parent means none
			}
			if !hasParent {
				parent, hasParent = t.Value, true
				continue
			}
		}
		tags[w] = t
		w++
	}
	dst.TruncateTags(mark + w)
	if hasSrc && hasHost {
		dst.AddTag("_host", host)
	}
	if spanID == "" {
		return ReasonMissingSpanID
	}
	if traceID == "" {
		return ReasonMissingTraceID
	}
	tags = dst.Arena[mark:]
	if len(tags) > d.o.MaxTags {
		return ReasonTooManyTags
	}
	for _, t := range tags {
		if isBlank(t.Value) {
			return ReasonEmptyTagValue
		}
	}
	switch {
	case hasSrc:
	case hasHost:
		src = host
	default:
		src = d.o.DefaultSource
	}
	if hasSrc || hasHost {
		if r := checkSource(src); r != "" {
			return r
		}
	}
	if !d.inRange(start, now) {
		return ReasonTimestampOutOfRange
	}
	model.SortTags(tags)
	dst.Spans = append(dst.Spans, model.Span{
		Name:     name,
		TraceID:  traceID,
		SpanID:   spanID,
		ParentID: parent,
		Start:    start,
		Duration: dur,
		Source:   src,
		Tags:     dst.TagsSince(mark),
	})
	return ""
}
