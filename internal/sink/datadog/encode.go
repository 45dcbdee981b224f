package datadog

import (
	"encoding/binary"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/les-streams/les/internal/format/jsonl"
	"github.com/les-streams/les/internal/model"
)

// Drop reasons (les_sink_dropped_items_total{reason}).
const (
	reasonInvalidName  = "invalid_name"
	reasonNameTooLong  = "name_too_long"
	reasonNonFinite    = "non_finite_value"
	reasonGaugeDelta   = "unaggregated_gauge_delta"
	reasonSet          = "unaggregated_set"
	reasonUnknownKind  = "unknown_kind"
	reasonEmptyDist    = "empty_distribution"
	reasonNoCentroids  = "no_centroids"
	reasonItemTooLarge = "item_too_large"
	maxNameLen         = 200
	maxLogEntries      = 1000 // per /api/v2/logs request
	datadogTypeCount   = 1    // MetricIntakeType COUNT (v2)
	datadogTypeGauge   = 3    // MetricIntakeType GAUGE (v2)
	sketchSketches     = 0x0a // SketchPayload.sketches = 1
	sketchMetric       = 0x0a // Sketch.metric = 1
	sketchHost         = 0x12 // Sketch.host = 2
	sketchTags         = 0x22 // Sketch.tags = 4
	sketchDogsketches  = 0x3a // Sketch.dogsketches = 7
	dogTs              = 0x08 // Dogsketch.ts = 1
	dogCnt             = 0x10 // Dogsketch.cnt = 2
	dogMin             = 0x19 // Dogsketch.min = 3, double
	dogMax             = 0x21 // Dogsketch.max = 4, double
	dogAvg             = 0x29 // Dogsketch.avg = 5, double
	dogSum             = 0x31 // Dogsketch.sum = 6, double
	dogK               = 0x3a // Dogsketch.k = 7, packed sint32
	dogN               = 0x42 // Dogsketch.n = 8, packed uint32
)

// encOptions are the encoder's share of Config.
type encOptions struct {
	seriesV1     bool
	sketches     bool // distributions as sketches (else as series)
	sourceAsTag  bool // source → a source: tag, not the host
	tags         []string
	logSource    string
	service      string
	maxBytes     int // per series/sketch request, uncompressed
	maxLogBytes  int // per logs request, uncompressed
	maxLogLength int // per log message
}

// request is one request body (uncompressed) and the items in it.
type request struct {
	raw   []byte
	items int
}

// requests is a growing list of requests of one endpoint; its buffers are
// reused from batch to batch.
type requests struct {
	reqs []request
	n    int
	// open, sep and close frame a request's items.
	open, sep, close string
	max              int
	maxItems         int
	tmp              []byte
}

func (r *requests) reset() { r.n = 0 }

func (r *requests) all() []request { return r.reqs[:r.n] }

// begin returns the buffer to append one item to: the current request
// with a separator appended, or a new request when the current one is
// full. Write the item, then call end with the buffer and the item's
// start (len of what begin returned).
func (r *requests) begin() []byte {
	if r.n > 0 {
		c := &r.reqs[r.n-1]
		if len(c.raw)+len(r.close) < r.max && (r.maxItems == 0 || c.items < r.maxItems) {
			if c.items > 0 {
				c.raw = append(c.raw, r.sep...)
			}
			return c.raw
		}
	}
	return r.next()
}

func (r *requests) next() []byte {
	if r.n == len(r.reqs) {
		r.reqs = append(r.reqs, request{})
	}
	c := &r.reqs[r.n]
	r.n++
	if cap(c.raw) > 4*r.max {
		c.raw = nil // do not pin one huge batch's buffer
	}
	c.raw, c.items = append(c.raw[:0], r.open...), 0
	return c.raw
}

// end stores the item written into buf from itemStart on. An item that
// makes its request exceed max moves to a request of its own; one that
// exceeds max alone is taken out again and end returns false.
func (r *requests) end(buf []byte, itemStart int) bool {
	c := &r.reqs[r.n-1]
	c.raw = buf
	if len(buf)+len(r.close) <= r.max {
		c.items++
		return true
	}
	if c.items == 0 {
		r.n-- // a request of its own is too small for it
		return false
	}
	r.tmp = append(r.tmp[:0], buf[itemStart:]...)
	c.raw = buf[:itemStart-len(r.sep)]
	if len(r.open)+len(r.tmp)+len(r.close) > r.max {
		return false
	}
	nb := append(r.next(), r.tmp...)
	r.reqs[r.n-1].raw, r.reqs[r.n-1].items = nb, 1
	return true
}

// finish appends the closing bracket of every request.
func (r *requests) finish() {
	for i := range r.reqs[:r.n] {
		r.reqs[i].raw = append(r.reqs[i].raw, r.close...)
	}
}

// encoder turns batches into series, sketch and log requests. Not safe
// for concurrent use.
type encoder struct {
	opt                    encOptions
	series, sketches, logs requests
	drops                  map[string]int
	name, base             []byte
	suffixes               map[float64]string // percentile → metric name suffix
	bins                   []bin
	sk                     []byte
	nbuf                   []byte
	items                  int // items encoded (metrics, distributions, logs)
	// memo holds each metric series' parts within one encode
	// (model.SeriesMemo): the wire series encoding gives the points of a
	// series one memory, so a name is checked and a host and tags are
	// written once per batch instead of once per point.
	memo model.SeriesMemo[seriesParts]
	// useMemo says whether this batch was decoded from the series
	// encoding with at least two points per series: other batches'
	// points share no memory and skip the memo.
	useMemo bool
	// mp is a metric's parts when the memo is not used.
	mp seriesParts
	// dp is the parts of the distribution being written (its series
	// share them).
	dp seriesParts
}

// seriesParts is what a series' points share in a series request: its
// Datadog name (or why it is dropped), its host member (`,"host":…` or
// `,"resources":[…]`, or nothing) and the inside of its tags array.
type seriesParts struct {
	name, host, tags []byte
	drop             string
}

func newEncoder(opt encOptions) *encoder {
	e := &encoder{opt: opt, drops: map[string]int{}, suffixes: map[float64]string{}}
	e.series = requests{open: `{"series":[`, sep: ",", close: "]}", max: opt.maxBytes}
	e.sketches = requests{max: opt.maxBytes}
	e.logs = requests{open: "[", sep: ",", close: "]", max: opt.maxLogBytes, maxItems: maxLogEntries}
	return e
}

// encode turns b into e.series, e.sketches and e.logs. It does not keep
// b: everything is copied into the request buffers.
func (e *encoder) encode(b *model.Batch) {
	e.series.reset()
	e.sketches.reset()
	e.logs.reset()
	clear(e.drops)
	e.items = 0
	// Batches of fewer than two points per series skip the memo too:
	// their parts are mostly written once anyway (docs/performance.md).
	if e.useMemo = b.SeriesRepeat(2); e.useMemo {
		e.memo.Next()
	}
	for i := range b.Metrics {
		e.metric(&b.Metrics[i])
	}
	for i := range b.Dists {
		e.dist(&b.Dists[i])
	}
	for i := range b.Logs {
		e.log(&b.Logs[i])
	}
	e.series.finish()
	e.logs.finish()
}

// metricName sets e.name to name as Datadog takes it: ASCII letters,
// digits, '_' and '.', every other character (a rune, or a byte of
// invalid UTF-8) '_'. A name not starting with a letter, or longer than
// 200 bytes, is refused with its reason.
func (e *encoder) metricName(name, suffix string) string {
	e.name = e.name[:0]
	for i := 0; i < len(name); {
		c := name[i]
		if c < utf8.RuneSelf {
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' {
				e.name = append(e.name, c)
			} else {
				e.name = append(e.name, '_')
			}
			i++
			continue
		}
		_, n := utf8.DecodeRuneInString(name[i:])
		e.name = append(e.name, '_')
		i += n
	}
	e.name = append(e.name, suffix...)
	if len(e.name) == 0 || !(e.name[0] >= 'a' && e.name[0] <= 'z' || e.name[0] >= 'A' && e.name[0] <= 'Z') {
		return reasonInvalidName
	}
	if len(e.name) > maxNameLen {
		return reasonNameTooLong
	}
	return ""
}

func (e *encoder) drop(reason string) { e.drops[reason]++ }

func (e *encoder) metric(m *model.Metric) {
	typ := datadogTypeGauge
	switch m.Kind {
	case model.Gauge, model.Sample:
	case model.Counter:
		typ = datadogTypeCount
	case model.GaugeDelta:
		e.drop(reasonGaugeDelta)
		return
	case model.Set:
		e.drop(reasonSet)
		return
	default:
		e.drop(reasonUnknownKind)
		return
	}
	if !model.IsFinite(m.Value) {
		e.drop(reasonNonFinite)
		return
	}
	sp, hit := &e.mp, false
	if e.useMemo {
		sp, hit = e.memo.Slot(m.Series, m.Name, m.Source, m.Tags, 0)
	}
	if !hit {
		sp.drop = e.metricName(m.Name, "")
		sp.name = append(sp.name[:0], e.name...)
		e.parts(sp, m.Source, m.Tags)
	}
	if sp.drop != "" {
		e.drop(sp.drop)
		return
	}
	if !e.point(sp.name, sp, typ, m.Timestamp/1e9, m.Value, m.Window.Nanos()/1e9) {
		e.drop(reasonItemTooLarge)
		return
	}
	e.items++
}

// parts writes the host member and tags of a series with source and
// tags into sp (its name is the caller's).
func (e *encoder) parts(sp *seriesParts, source string, tags model.Tags) {
	sp.host = sp.host[:0]
	if source != "" && !e.opt.sourceAsTag {
		if e.opt.seriesV1 {
			sp.host = jsonl.AppendString(append(sp.host, `,"host":`...), source)
		} else {
			sp.host = jsonl.AppendString(append(sp.host, `,"resources":[{"name":`...), source)
			sp.host = append(sp.host, `,"type":"host"}]`...)
		}
	}
	sp.tags = e.appendTags(sp.tags[:0], source, tags)
}

// point writes one series of one point named name, with the host and
// tags of sp.
func (e *encoder) point(name []byte, sp *seriesParts, typ int, ts int64, v float64, interval int64) bool {
	r := &e.series
	buf := r.begin()
	start := len(buf)
	buf = append(buf, `{"metric":"`...)
	buf = append(buf, name...)
	if e.opt.seriesV1 {
		buf = append(buf, `","type":"`...)
		if typ == datadogTypeCount {
			buf = append(buf, "count"...)
		} else {
			buf = append(buf, "gauge"...)
		}
		buf = append(buf, `","points":[[`...)
		buf = strconv.AppendInt(buf, ts, 10)
		buf = append(buf, ',')
		buf = strconv.AppendFloat(buf, v, 'g', -1, 64)
		buf = append(buf, "]]"...)
	} else {
		buf = append(buf, `","type":`...)
		buf = strconv.AppendInt(buf, int64(typ), 10)
		buf = append(buf, `,"points":[{"timestamp":`...)
		buf = strconv.AppendInt(buf, ts, 10)
		buf = append(buf, `,"value":`...)
		buf = strconv.AppendFloat(buf, v, 'g', -1, 64)
		buf = append(buf, "}]"...)
	}
	buf = append(buf, sp.host...)
	if interval > 0 && typ == datadogTypeCount {
		buf = append(buf, `,"interval":`...)
		buf = strconv.AppendInt(buf, interval, 10)
	}
	buf = append(append(buf, `,"tags":[`...), sp.tags...)
	buf = append(buf, "]}"...)
	return r.end(buf, start)
}

// eachTag calls f with the tags of an item: its own (k alone for an
// empty value), the configured ones, and source:<source> when the source
// is a tag.
func (e *encoder) eachTag(source string, tags model.Tags, f func(k, v string)) {
	for _, t := range tags {
		f(t.Key, t.Value)
	}
	for _, t := range e.opt.tags {
		f(t, "")
	}
	if e.opt.sourceAsTag && source != "" {
		f("source", source)
	}
}

// appendTags writes the tags of an item as JSON strings, comma-separated
// (the inside of the series' "tags" array).
func (e *encoder) appendTags(buf []byte, source string, tags model.Tags) []byte {
	n := 0
	e.eachTag(source, tags, func(k, v string) {
		if n > 0 {
			buf = append(buf, ',')
		}
		n++
		buf = append(buf, '"')
		buf = jsonl.AppendStringContent(buf, k)
		if v != "" {
			buf = jsonl.AppendStringContent(append(buf, ':'), v)
		}
		buf = append(buf, '"')
	})
	return buf
}

// appendDDTags writes the tags as the inside of a ddtags string:
// comma-separated, commas inside a tag (the separator) replaced by '_'.
func (e *encoder) appendDDTags(buf []byte, source string, tags model.Tags) []byte {
	n := 0
	e.eachTag(source, tags, func(k, v string) {
		if n > 0 {
			buf = append(buf, ',')
		}
		n++
		buf = appendTagText(buf, k)
		if v != "" {
			buf = appendTagText(append(buf, ':'), v)
		}
	})
	return buf
}

func appendTagText(buf []byte, s string) []byte {
	for {
		i := strings.IndexByte(s, ',')
		if i < 0 {
			return jsonl.AppendStringContent(buf, s)
		}
		buf = append(jsonl.AppendStringContent(buf, s[:i]), '_')
		s = s[i+1:]
	}
}

// appendProtoTags writes each tag as a protobuf string field (valid UTF-8).
func (e *encoder) appendProtoTags(buf []byte, source string, tags model.Tags) []byte {
	e.eachTag(source, tags, func(k, v string) {
		k, v = validUTF8(k), validUTF8(v)
		n := len(k)
		if v != "" {
			n += 1 + len(v)
		}
		buf = appendVarint(append(buf, sketchTags), uint64(n))
		buf = append(buf, k...)
		if v != "" {
			buf = append(append(buf, ':'), v...)
		}
	})
	return buf
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func (e *encoder) dist(d *model.Distribution) {
	if !(d.Count > 0) {
		e.drop(reasonEmptyDist)
		return
	}
	if r := e.metricName(d.Name, ""); r != "" {
		e.drop(r)
		return
	}
	if e.opt.sketches {
		if len(d.Centroids) == 0 {
			e.drop(reasonNoCentroids)
			return
		}
		if !e.sketch(d) {
			e.drop(reasonItemTooLarge)
			return
		}
		e.items++
		return
	}
	// As series: .count and .sum (counts over the window), .min, .max,
	// .avg and one gauge per percentile.
	ts := d.Timestamp/1e9 + int64(d.Correction)
	interval := d.Window.Nanos() / 1e9
	e.base = append(e.base[:0], e.name...)
	base := unsafeString(e.base) // metricName writes e.name, not e.base
	e.parts(&e.dp, d.Source, d.Tags)
	ok := true
	emit := func(suffix string, typ int, v float64) {
		if !model.IsFinite(v) {
			return
		}
		if e.metricName(base, suffix) != "" {
			return
		}
		ok = e.point(e.name, &e.dp, typ, ts, v, interval) && ok
	}
	emit(".count", datadogTypeCount, d.Count)
	emit(".sum", datadogTypeCount, d.Sum)
	emit(".min", datadogTypeGauge, d.Min)
	emit(".max", datadogTypeGauge, d.Max)
	emit(".avg", datadogTypeGauge, d.Sum/d.Count)
	for _, q := range d.Quantiles {
		suffix, ok := e.suffixes[q.Q]
		if !ok {
			if len(e.suffixes) > 64 {
				clear(e.suffixes)
			}
			suffix = percentileSuffix(q.Q)
			e.suffixes[q.Q] = suffix
		}
		emit(suffix, datadogTypeGauge, q.Value)
	}
	if !ok {
		e.drop(reasonItemTooLarge)
		return
	}
	e.items++
}

// percentileSuffix names a percentile as the agent names histogram
// aggregates: .median, .95percentile; 0.999 → .99_9percentile.
func percentileSuffix(q float64) string {
	if q == 0.5 {
		return ".median"
	}
	p := strconv.FormatFloat(q*100, 'f', -1, 64)
	return "." + strings.ReplaceAll(p, ".", "_") + "percentile"
}

// sketch writes one Sketch with one Dogsketch for d (named e.name).
func (e *encoder) sketch(d *model.Distribution) bool {
	var total uint64
	e.bins, total = appendBins(e.bins[:0], d)
	if total == 0 {
		return false
	}
	ds := e.sk[:0]
	ds = appendVarintField(ds, dogTs, uint64(d.Timestamp/1e9))
	ds = appendVarintField(ds, dogCnt, total)
	ds = appendDouble(ds, dogMin, d.Min)
	ds = appendDouble(ds, dogMax, d.Max)
	ds = appendDouble(ds, dogAvg, d.Sum/d.Count)
	ds = appendDouble(ds, dogSum, d.Sum)
	n := 0
	for _, b := range e.bins {
		n += varintLen(uint64(uint32(b.k<<1) ^ uint32(b.k>>31)))
	}
	ds = appendVarint(append(ds, dogK), uint64(n))
	for _, b := range e.bins {
		ds = appendVarint(ds, uint64(uint32(b.k<<1)^uint32(b.k>>31))) // zigzag
	}
	n = 0
	for _, b := range e.bins {
		n += varintLen(uint64(b.n))
	}
	ds = appendVarint(append(ds, dogN), uint64(n))
	for _, b := range e.bins {
		ds = appendVarint(ds, uint64(b.n))
	}
	e.sk = ds

	r := &e.sketches
	buf := r.begin()
	start := len(buf)
	// Sketch message: metric, host, tags, dogsketches; its length first.
	size := 1 + varintLen(uint64(len(e.name))) + len(e.name)
	host := d.Source
	if e.opt.sourceAsTag {
		host = ""
	}
	host = validUTF8(host)
	if host != "" {
		size += 1 + varintLen(uint64(len(host))) + len(host)
	}
	e.nbuf = e.appendProtoTags(e.nbuf[:0], d.Source, d.Tags)
	size += len(e.nbuf)
	size += 1 + varintLen(uint64(len(ds))) + len(ds)
	buf = appendVarint(append(buf, sketchSketches), uint64(size))
	buf = appendVarint(append(buf, sketchMetric), uint64(len(e.name)))
	buf = append(buf, e.name...)
	if host != "" {
		buf = appendVarint(append(buf, sketchHost), uint64(len(host)))
		buf = append(buf, host...)
	}
	buf = append(buf, e.nbuf...)
	buf = appendVarint(append(buf, sketchDogsketches), uint64(len(ds)))
	buf = append(buf, ds...)
	return r.end(buf, start)
}

// levelStatuses maps log levels (any case) to Datadog log statuses.
var levelStatuses = [...]struct{ level, status string }{
	{"error", "error"}, {"err", "error"}, {"warn", "warn"}, {"warning", "warn"}, {"info", "info"}, {"information", "info"},
	{"debug", "debug"}, {"trace", "debug"}, {"fatal", "critical"}, {"critical", "critical"}, {"crit", "critical"},
	{"emerg", "emergency"}, {"emergency", "emergency"}, {"alert", "alert"}, {"notice", "notice"},
}

// levelStatus maps a log level to a Datadog log status; an unknown level
// is sent lower-cased.
func levelStatus(level string) string {
	if level == "" {
		return ""
	}
	for _, l := range levelStatuses {
		if strings.EqualFold(level, l.level) {
			return l.status
		}
	}
	return strings.ToLower(level)
}

// reservedLogKeys are the attributes the sink sets; an attribute of that
// name is written as attr_<name>.
var reservedLogKeys = []string{"ddsource", "ddtags", "hostname", "service", "status", "message", "timestamp", "request_id"}

func (e *encoder) log(l *model.Log) {
	r := &e.logs
	buf := r.begin()
	start := len(buf)
	buf = append(buf, `{"ddsource":`...)
	buf = jsonl.AppendString(buf, e.opt.logSource)
	mark := len(buf)
	buf = e.appendDDTags(append(buf, `,"ddtags":"`...), l.Source, nil)
	if len(buf) == mark+len(`,"ddtags":"`) {
		buf = buf[:mark]
	} else {
		buf = append(buf, '"')
	}
	if l.Source != "" && !e.opt.sourceAsTag {
		buf = jsonl.AppendString(append(buf, `,"hostname":`...), l.Source)
	}
	service := e.opt.service
	if v, ok := l.Attrs.Get("service"); ok && v != "" {
		service = v
	} else if service == "" {
		service = l.Source
	}
	if service != "" {
		buf = jsonl.AppendString(append(buf, `,"service":`...), service)
	}
	if st := levelStatus(l.Level); st != "" {
		buf = jsonl.AppendString(append(buf, `,"status":`...), st)
	}
	msg := l.Message
	if len(msg) > e.opt.maxLogLength {
		n := e.opt.maxLogLength
		for n > 0 && !utf8.RuneStart(msg[n]) {
			n--
		}
		msg = msg[:n]
	}
	buf = appendJSONBytes(append(buf, `,"message":`...), msg)
	buf = strconv.AppendInt(append(buf, `,"timestamp":`...), l.Timestamp/1e6, 10)
	if l.RequestID != "" {
		buf = jsonl.AppendString(append(buf, `,"request_id":`...), l.RequestID)
	}
	for _, a := range l.Attrs {
		if a.Key == "service" {
			continue
		}
		buf = append(buf, ',')
		if isReserved(a.Key) {
			buf = jsonl.AppendStringContent(append(buf, `"attr_`...), a.Key)
			buf = append(buf, '"')
		} else {
			buf = jsonl.AppendString(buf, a.Key)
		}
		buf = jsonl.AppendString(append(buf, ':'), a.Value)
	}
	buf = append(buf, '}')
	if !r.end(buf, start) {
		e.drop(reasonItemTooLarge)
		return
	}
	e.items++
}

func isReserved(k string) bool {
	for _, r := range reservedLogKeys {
		if k == r {
			return true
		}
	}
	return false
}

// Protobuf helpers.

func appendVarint(dst []byte, v uint64) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

func varintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func appendVarintField(dst []byte, tag byte, v uint64) []byte {
	if v == 0 {
		return dst
	}
	return appendVarint(append(dst, tag), v)
}

func appendDouble(dst []byte, tag byte, v float64) []byte {
	if v == 0 {
		return dst
	}
	return binary.LittleEndian.AppendUint64(append(dst, tag), math.Float64bits(v))
}

// JSON helpers.

func appendJSONBytes(dst, b []byte) []byte {
	return jsonl.AppendString(dst, unsafeString(b))
}

func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
