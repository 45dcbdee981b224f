package loki

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"
	"unsafe"

	"github.com/VictoriaMetrics/metrics"
	"github.com/les-streams/les/internal/format/jsonl"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/sink"
)

// Protobuf tags (field number << 3 | wire type 2) of logproto's push.proto
// (grafana/loki pkg/push/push.proto) and google.protobuf.Timestamp.
const (
	tagStreams   = 0x0a // PushRequest.streams = 1
	tagLabels    = 0x0a // StreamAdapter.labels = 1
	tagEntries   = 0x12 // StreamAdapter.entries = 2
	tagTimestamp = 0x0a // EntryAdapter.timestamp = 1
	tagLine      = 0x12 // EntryAdapter.line = 2
	tagMetadata  = 0x1a // EntryAdapter.structuredMetadata = 3
	tagPairName  = 0x0a // LabelPairAdapter.name = 1
	tagPairValue = 0x12 // LabelPairAdapter.value = 2
	tagSeconds   = 0x08 // Timestamp.seconds = 1, varint
	tagNanos     = 0x10 // Timestamp.nanos = 2, varint
)

// Label field kinds.
const (
	fieldSource = iota
	fieldLevel
	fieldAttr
)

// Cardinality window: distinct values of a label field are remembered for
// valueTTL of event time; a full set is swept at most every sweepEvery.
const (
	valueTTL   = int64(3600e9)
	sweepEvery = int64(60e9)
)

// fieldRef says where a label field's value comes from.
type fieldRef struct {
	kind int
	attr string // the attribute key, for fieldAttr
	name string // its label name
}

// encConfig is the encoder's share of Config; it does not change after New.
type encConfig struct {
	lineFormat string
	maxLine    int
	fields     []fieldRef // label fields, in Config order (bit i of entry.over)
	sourceKey  string     // key of the source when it is not a label
	levelKey   string
}

// labelField is a label field with its distinct values.
type labelField struct {
	fieldRef
	values        map[string]int64 // value → newest event time seen
	newest, swept int64
	overflow      *metrics.Counter
	distinct      atomic.Int64
}

type pair struct{ name, value string }

// resolver turns logs into stream label sets. Not safe for concurrent
// use: the sink holds its lock.
type resolver struct {
	ec         encConfig
	max        int // distinct values per field
	maxLen     int // label value length
	fields     []labelField
	static     []pair
	pairs      []pair
	kbuf, jbuf []byte
	overflowed uint64
	truncated  uint64
}

func newResolver(c *Config, d sink.Deps, name string) resolver {
	r := resolver{max: c.MaxLabelValues, maxLen: c.MaxLabelValueLength,
		ec: encConfig{lineFormat: c.LineFormat, maxLine: c.MaxLineSize, sourceKey: c.SourceLabel, levelKey: c.LevelLabel}}
	for _, f := range c.LabelFields {
		ref := fieldRef{kind: fieldAttr, attr: f, name: fieldLabel(c, f)}
		switch f {
		case "source":
			ref.kind = fieldSource
		case "level":
			ref.kind = fieldLevel
		}
		r.ec.fields = append(r.ec.fields, ref)
	}
	r.fields = make([]labelField, len(r.ec.fields))
	for i, ref := range r.ec.fields {
		f := &r.fields[i]
		f.fieldRef, f.values = ref, map[string]int64{}
		f.overflow = d.Metrics.Counter("les_sink_label_overflows_total", "sink", name, "label", ref.name)
		d.Metrics.Gauge("les_sink_label_values", func() float64 { return float64(f.distinct.Load()) }, "sink", name, "label", ref.name)
	}
	for k, v := range c.Labels {
		r.static = append(r.static, pair{k, v})
	}
	return r
}

func (f *labelField) value(l *model.Log) string {
	switch f.kind {
	case fieldSource:
		return l.Source
	case fieldLevel:
		return l.Level
	}
	v, _ := l.Attrs.Get(f.attr)
	return v
}

// admit reports whether v may be a label value: it is one of the field's
// values of the last hour of event time, or there is room for one more.
func (f *labelField) admit(v string, ts int64, max int) bool {
	f.newest = max64(f.newest, ts)
	if last, ok := f.values[v]; ok {
		if ts > last {
			f.values[v] = ts
		}
		return true
	}
	if len(f.values) >= max && f.newest-f.swept >= sweepEvery {
		f.swept = f.newest
		for k, t := range f.values {
			if t < f.newest-valueTTL {
				delete(f.values, k)
			}
		}
	}
	if len(f.values) >= max {
		return false
	}
	f.values[strings.Clone(v)] = ts
	f.distinct.Store(int64(len(f.values)))
	return true
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// streamInfo is one label set in both encodings. Immutable.
type streamInfo struct {
	id   uint64
	prom string // {a="b", c="d"}
	json string // {"a":"b","c":"d"}
}

// entry is one log of the batch being sent.
type entry struct {
	st   *streamInfo
	ts   int64
	log  int32  // index in Batch.Logs
	over uint16 // bit i: label field i overflowed
	size int32  // estimated encoded size
}

// resolve appends an entry per log of b to dst. The caller holds s.mu.
func (s *Sink) resolve(dst []entry, b *model.Batch) []entry {
	r := &s.res
	for i := range b.Logs {
		l := &b.Logs[i]
		r.pairs = append(r.pairs[:0], r.static...)
		var over uint16
		for fi := range r.fields {
			f := &r.fields[fi]
			v := f.value(l)
			if v == "" {
				continue
			}
			if len(v) > r.maxLen || !f.admit(v, l.Timestamp, r.max) {
				over |= 1 << fi
				v = OverflowValue
				r.overflowed++
				f.overflow.Inc()
			}
			r.pairs = append(r.pairs, pair{f.name, v})
		}
		if len(r.pairs) == 0 {
			r.pairs = append(r.pairs, pair{r.fields[0].name, "unknown"})
		}
		for a := 1; a < len(r.pairs); a++ {
			for c := a; c > 0 && r.pairs[c].name < r.pairs[c-1].name; c-- {
				r.pairs[c], r.pairs[c-1] = r.pairs[c-1], r.pairs[c]
			}
		}
		r.kbuf = appendPromLabels(r.kbuf[:0], r.pairs)
		st := s.streams[string(r.kbuf)]
		if st == nil {
			if len(s.streams) >= maxStreamCache {
				clear(s.streams)
			}
			s.nextID++
			r.jbuf = appendJSONLabels(r.jbuf[:0], r.pairs)
			st = &streamInfo{id: s.nextID, prom: string(r.kbuf), json: string(r.jbuf)}
			s.streams[st.prom] = st
		}
		if len(l.Message) > r.ec.maxLine {
			r.truncated++
		}
		size := min(len(l.Message), r.ec.maxLine) + len(l.RequestID) + len(l.Source) + len(l.Level) + 48
		for _, a := range l.Attrs {
			size += len(a.Key) + len(a.Value) + 8
		}
		dst = append(dst, entry{st: st, ts: l.Timestamp, log: int32(i), over: over, size: int32(size)})
	}
	return dst
}

// sortEntries orders entries by stream, then time, then batch order.
func sortEntries(es []entry) {
	slices.SortFunc(es, func(a, b entry) int {
		if a.st != b.st {
			return cmp.Compare(a.st.id, b.st.id)
		}
		if c := cmp.Compare(a.ts, b.ts); c != 0 {
			return c
		}
		return cmp.Compare(a.log, b.log)
	})
}

// cut returns the end of the request that starts at es[lo]: about max
// bytes, at least one entry.
func cut(es []entry, lo, max int) int {
	n := 0
	for i := lo; i < len(es); i++ {
		n += int(es[i].size)
		if i == lo || es[i].st != es[i-1].st {
			n += len(es[i].st.prom) + 16
		}
		if n > max && i > lo {
			return i
		}
	}
	return len(es)
}

// kv is a field carried in structured metadata or in the line.
type kv struct{ key, value string }

// encoder writes requests. Its buffers are reused; what it returns is
// valid until its next call. Not safe for concurrent use.
type encoder struct {
	c     *encConfig
	out   []byte
	sbuf  []byte
	ebuf  []byte
	line  []byte
	pbuf  []byte
	arena []byte
	kvs   []kv
}

// fields collects the fields of l that are not stream labels (or whose
// label overflowed) into e.kvs: source, level, request id, attributes.
func (e *encoder) fields(l *model.Log, over uint16) {
	e.kvs, e.arena = e.kvs[:0], e.arena[:0]
	isLabel := func(kind int, attr string) bool {
		for i, f := range e.c.fields {
			if f.kind == kind && (kind != fieldAttr || f.attr == attr) {
				return over&(1<<i) == 0
			}
		}
		return false
	}
	if l.Source != "" && !isLabel(fieldSource, "") {
		e.kvs = append(e.kvs, kv{e.c.sourceKey, l.Source})
	}
	if l.Level != "" && !isLabel(fieldLevel, "") {
		e.kvs = append(e.kvs, kv{e.c.levelKey, l.Level})
	}
	if l.RequestID != "" {
		e.kvs = append(e.kvs, kv{"request_id", l.RequestID})
	}
	for _, a := range l.Attrs {
		if a.Value == "" || isLabel(fieldAttr, a.Key) {
			continue
		}
		e.kvs = append(e.kvs, kv{e.attrKey(a.Key), a.Value})
	}
}

// attrKey returns key as a label name (structured metadata names are
// queried like labels), prefixed attr_ when it would collide with a key
// of the sink's own.
func (e *encoder) attrKey(key string) string {
	valid := validLabelName(key)
	if valid && key != "msg" && key != "request_id" && key != e.c.sourceKey && key != e.c.levelKey {
		return key
	}
	start := len(e.arena)
	if valid {
		e.arena = append(e.arena, "attr_"...)
		e.arena = append(e.arena, key...)
	} else {
		e.arena = appendLabelName(e.arena, key)
	}
	if len(e.arena) == start {
		return ""
	}
	return unsafe.String(&e.arena[start], len(e.arena)-start)
}

// message returns the message of l, cut to max_line_size at a rune
// boundary.
func (e *encoder) message(l *model.Log) []byte {
	m := l.Message
	if len(m) > e.c.maxLine {
		n := e.c.maxLine
		for n > 0 && !utf8.RuneStart(m[n]) {
			n--
		}
		m = m[:n]
	}
	return m
}

// composeLine sets e.line to the line of l (line_format logfmt or json)
// and clears e.kvs, which the line now holds.
func (e *encoder) composeLine(l *model.Log, msg []byte) {
	e.line = e.line[:0]
	switch e.c.lineFormat {
	case "logfmt":
		lv := -1 // the level goes first, as slog writes it
		for i, p := range e.kvs {
			if p.key == e.c.levelKey && p.value == l.Level {
				lv = i
				e.line = appendLogfmt(e.line, p.key, p.value)
				e.line = append(e.line, ' ')
				break
			}
		}
		e.line = appendLogfmt(e.line, "msg", unsafe.String(unsafe.SliceData(msg), len(msg)))
		for i, p := range e.kvs {
			if i != lv {
				e.line = append(e.line, ' ')
				e.line = appendLogfmt(e.line, p.key, p.value)
			}
		}
	case "json":
		e.line = append(e.line, `{"msg":`...)
		e.line = jsonl.AppendString(e.line, unsafe.String(unsafe.SliceData(msg), len(msg)))
		for _, p := range e.kvs {
			e.line = append(e.line, ',')
			e.line = jsonl.AppendString(e.line, p.key)
			e.line = append(e.line, ':')
			e.line = jsonl.AppendString(e.line, p.value)
		}
		e.line = append(e.line, '}')
	}
	e.kvs = e.kvs[:0]
}

// lineOf prepares the line and metadata of en: the line is returned, the
// metadata left in e.kvs.
func (e *encoder) lineOf(b *model.Batch, en entry) []byte {
	l := &b.Logs[en.log]
	e.fields(l, en.over)
	msg := e.message(l)
	if e.c.lineFormat == "message" {
		if utf8.Valid(msg) {
			return msg
		}
		e.line = appendValidUTF8(e.line[:0], unsafe.String(unsafe.SliceData(msg), len(msg)))
		return e.line
	}
	e.composeLine(l, msg)
	return e.line
}

// proto encodes ents (sorted, see sortEntries) as a PushRequest.
func (e *encoder) proto(b *model.Batch, ents []entry) []byte {
	e.out = e.out[:0]
	for i := 0; i < len(ents); {
		j := i + 1
		for j < len(ents) && ents[j].st == ents[i].st {
			j++
		}
		e.sbuf = appendString(e.sbuf[:0], tagLabels, ents[i].st.prom)
		for _, en := range ents[i:j] {
			e.ebuf = e.entryProto(e.ebuf[:0], b, en)
			e.sbuf = appendBytes(e.sbuf, tagEntries, e.ebuf)
		}
		e.out = appendBytes(e.out, tagStreams, e.sbuf)
		i = j
	}
	return e.out
}

func (e *encoder) entryProto(dst []byte, b *model.Batch, en entry) []byte {
	sec, nsec := en.ts/1e9, en.ts%1e9
	if nsec < 0 {
		sec, nsec = sec-1, nsec+1e9
	}
	var ts [24]byte
	t := ts[:0]
	if sec != 0 {
		t = appendVarint(append(t, tagSeconds), uint64(sec))
	}
	if nsec != 0 {
		t = appendVarint(append(t, tagNanos), uint64(nsec))
	}
	dst = appendBytes(dst, tagTimestamp, t)
	line := e.lineOf(b, en)
	dst = appendBytes(dst, tagLine, line)
	for _, p := range e.kvs {
		e.pbuf = appendString(e.pbuf[:0], tagPairName, p.key)
		e.pbuf = appendValidString(e.pbuf, tagPairValue, p.value)
		dst = appendBytes(dst, tagMetadata, e.pbuf)
	}
	return dst
}

// json encodes ents (sorted) as the JSON push body.
func (e *encoder) json(b *model.Batch, ents []entry) []byte {
	e.out = append(e.out[:0], `{"streams":[`...)
	for i := 0; i < len(ents); {
		if i > 0 {
			e.out = append(e.out, ',')
		}
		j := i + 1
		for j < len(ents) && ents[j].st == ents[i].st {
			j++
		}
		e.out = append(e.out, `{"stream":`...)
		e.out = append(e.out, ents[i].st.json...)
		e.out = append(e.out, `,"values":[`...)
		for k, en := range ents[i:j] {
			if k > 0 {
				e.out = append(e.out, ',')
			}
			e.out = append(e.out, `["`...)
			e.out = strconv.AppendInt(e.out, en.ts, 10)
			e.out = append(e.out, `",`...)
			line := e.lineOf(b, en)
			e.out = jsonl.AppendString(e.out, unsafe.String(unsafe.SliceData(line), len(line)))
			if len(e.kvs) > 0 {
				e.out = append(e.out, ",{"...)
				for m, p := range e.kvs {
					if m > 0 {
						e.out = append(e.out, ',')
					}
					e.out = jsonl.AppendString(e.out, p.key)
					e.out = append(e.out, ':')
					e.out = jsonl.AppendString(e.out, p.value)
				}
				e.out = append(e.out, '}')
			}
			e.out = append(e.out, ']')
		}
		e.out = append(e.out, "]}"...)
		i = j
	}
	return append(e.out, "]}"...)
}

// Protobuf helpers.

func appendVarint(dst []byte, v uint64) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

func appendBytes(dst []byte, tag byte, b []byte) []byte {
	return append(appendVarint(append(dst, tag), uint64(len(b))), b...)
}

func appendString(dst []byte, tag byte, s string) []byte {
	return append(appendVarint(append(dst, tag), uint64(len(s))), s...)
}

// appendValidString writes s with invalid UTF-8 replaced by U+FFFD.
func appendValidString(dst []byte, tag byte, s string) []byte {
	if utf8.ValidString(s) {
		return appendString(dst, tag, s)
	}
	return appendString(dst, tag, strings.ToValidUTF8(s, "\uFFFD"))
}

func appendValidUTF8(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, "\uFFFD"...)
		} else {
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return dst
}

// Labels.

// validLabelName reports whether s matches [a-zA-Z_][a-zA-Z0-9_]* and
// does not start with "__" (Loki's reserved prefix).
func validLabelName(s string) bool {
	if s == "" || strings.HasPrefix(s, "__") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// appendLabelName appends s as a label name: every other character (a
// rune, or a byte of invalid UTF-8) becomes '_', a leading digit gets a
// '_' in front, and leading underscores are cut to one.
func appendLabelName(dst []byte, s string) []byte {
	start := len(dst)
	if s != "" && s[0] >= '0' && s[0] <= '9' {
		dst = append(dst, '_')
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= '0' && c <= '9' {
				dst = append(dst, c)
			} else {
				dst = append(dst, '_')
			}
			i++
			continue
		}
		_, n := utf8.DecodeRuneInString(s[i:])
		dst = append(dst, '_')
		i += n
	}
	n := 0
	for start+n < len(dst) && dst[start+n] == '_' {
		n++
	}
	if n > 1 {
		dst = append(dst[:start+1], dst[start+n:]...)
	}
	return dst
}

// appendPromLabels writes pairs (sorted, names valid) in Prometheus label
// syntax, as Loki parses a StreamAdapter's labels: {a="x", b="y"}.
func appendPromLabels(dst []byte, pairs []pair) []byte {
	dst = append(dst, '{')
	for i, p := range pairs {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, p.name...)
		dst = append(dst, `="`...)
		for j := 0; j < len(p.value); {
			c := p.value[j]
			switch c {
			case '\\', '"':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, `\n`...)
			case '\r':
				dst = append(dst, `\r`...)
			case '\t':
				dst = append(dst, `\t`...)
			default:
				if c < utf8.RuneSelf {
					dst = append(dst, c)
					break
				}
				r, n := utf8.DecodeRuneInString(p.value[j:])
				if r == utf8.RuneError && n == 1 {
					dst = append(dst, "\uFFFD"...)
				} else {
					dst = append(dst, p.value[j:j+n]...)
				}
				j += n
				continue
			}
			j++
		}
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

func appendJSONLabels(dst []byte, pairs []pair) []byte {
	dst = append(dst, '{')
	for i, p := range pairs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonl.AppendString(dst, p.name)
		dst = append(dst, ':')
		dst = jsonl.AppendString(dst, p.value)
	}
	return append(dst, '}')
}

// appendLogfmt writes key=value; the value is quoted when it is empty or
// holds a space, '=', '"', a control character or invalid UTF-8.
func appendLogfmt(dst []byte, key, value string) []byte {
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c <= ' ' || c == '=' || c == '"' || c == 0x7f {
			c = '_'
		}
		dst = append(dst, c)
	}
	dst = append(dst, '=')
	quote := value == "" || !utf8.ValidString(value)
	for i := 0; i < len(value) && !quote; i++ {
		c := value[i]
		quote = c <= ' ' || c == '=' || c == '"' || c == 0x7f
	}
	if !quote {
		return append(dst, value...)
	}
	return jsonl.AppendString(dst, value) // JSON string escapes are logfmt's
}
