// Package logline decodes log lines into model.Log records: newline-delimited
// JSON objects (NDJSON, including Lambda's JSON log format) and plain text
// lines, recognising Lambda's text prefixes
// ("<RFC3339>\t<requestId>\t<LEVEL>\t<message>" from Node and
// "[LEVEL]\t<RFC3339>\t<requestId>\t<message>" from Python).
//
// The decoder is pure: no goroutines, logging or package state. Strings and
// byte slices in the produced Logs alias the payload (see Decoder.Decode).
package logline

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"github.com/les-streams/les/internal/format/jsonscan"
	"github.com/les-streams/les/internal/model"
)

// Reasons recorded with dst.Reject.
const (
	ReasonInvalidUTF8 = "invalid_utf8"
	ReasonLineTooLong = "line_too_long"
)

// DefaultMaxLineLen is the line length limit used when Options.MaxLineLen is 0.
const DefaultMaxLineLen = 256 << 10

// MaxAttrs bounds the number of attributes taken from one JSON line; further
// fields are dropped.
const MaxAttrs = 100

// maxNest bounds how deep nested objects are flattened into dotted keys;
// deeper values are kept as raw JSON text.
const maxNest = 8

// Options configure a Decoder.
type Options struct {
	// DefaultSource is the Source of logs that do not name one.
	DefaultSource string
	// MaxLineLen is the longest accepted line in bytes (default 256 KiB).
	MaxLineLen int
}

// Decoder decodes log lines. The zero value is ready to use with default
// options. A Decoder is not safe for concurrent use.
type Decoder struct {
	opts Options
	key  []byte // scratch for dotted keys
}

// NewDecoder returns a Decoder with opts.
func NewDecoder(opts Options) *Decoder { return &Decoder{opts: opts} }

func (d *Decoder) maxLen() int {
	if d.opts.MaxLineLen > 0 {
		return d.opts.MaxLineLen
	}
	return DefaultMaxLineLen
}

// Decode appends one model.Log per non-blank line of payload ("\n" or
// "\r\n" separated). now (Unix ns) is the timestamp of lines that carry
// none. Lines longer than MaxLineLen are rejected with ReasonLineTooLong and
// lines that are not UTF-8 with ReasonInvalidUTF8; the rest still decode.
//
// Ownership: Message, RequestID, Level, Source and attribute strings alias
// payload (values with JSON escapes and nested attribute keys are copies).
// The caller must not modify payload while the produced items are in use;
// Rejects' Line also aliases payload.
func (d *Decoder) Decode(dst *model.Batch, payload []byte, now int64) {
	for len(payload) > 0 {
		var line []byte
		if i := bytes.IndexByte(payload, '\n'); i >= 0 {
			line, payload = payload[:i], payload[i+1:]
		} else {
			line, payload = payload, nil
		}
		if isBlank(line) {
			continue
		}
		d.DecodeRecord(dst, line, now, dst.TagMark())
	}
}

func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

// DecodeRecord appends one model.Log for rec, a single record that may
// contain embedded newlines (one trailing "\n" or "\r\n" is dropped). mark
// is a dst.TagMark() taken by the caller before it added its own attributes
// with dst.AddTag: the Log's Attrs are all tags since mark, so the caller's
// tags come first. On rejection the tags since mark are removed. It returns
// whether a Log was appended. Ownership is as for Decode.
func (d *Decoder) DecodeRecord(dst *model.Batch, rec []byte, now int64, mark int) bool {
	rec = trimEOL(rec)
	if len(rec) > d.maxLen() {
		dst.TruncateTags(mark)
		dst.Reject(ReasonLineTooLong, rec)
		return false
	}
	if !utf8.Valid(rec) {
		dst.TruncateTags(mark)
		dst.Reject(ReasonInvalidUTF8, rec)
		return false
	}
	lg := model.Log{Timestamp: now, Source: d.opts.DefaultSource}
	if t := jsonscan.SkipSpace(rec, 0); t < len(rec) && rec[t] == '{' {
		own := dst.TagMark()
		if d.decodeJSON(dst, &lg, rec[t:]) {
			lg.Attrs = dst.TagsSince(mark)
			dst.Logs = append(dst.Logs, lg)
			return true
		}
		dst.TruncateTags(own) // not JSON after all: a text line
		lg = model.Log{Timestamp: now, Source: d.opts.DefaultSource}
	}
	lg.Message = rec
	if t, ok := ParseText(rec); ok {
		if t.Time != 0 {
			lg.Timestamp = t.Time
		}
		lg.RequestID, lg.Level, lg.Message = t.RequestID, t.Level, t.Message
	}
	lg.Attrs = dst.TagsSince(mark)
	dst.Logs = append(dst.Logs, lg)
	return true
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// jsonState tracks which well-known fields were already taken.
type jsonState struct {
	hasTime, hasLevel, hasMsg, hasSource, hasReq bool
	attrs                                        int
}

// decodeJSON fills lg from the JSON object obj (which may have trailing
// space). It returns false if obj is not a well-formed object.
func (d *Decoder) decodeJSON(dst *model.Batch, lg *model.Log, obj []byte) bool {
	v, next, ok := jsonscan.Value(obj, 0)
	if !ok || jsonscan.SkipSpace(obj, next) != len(obj) {
		return false
	}
	var st jsonState
	if !d.members(dst, lg, &st, v, true) {
		return false
	}
	if !st.hasMsg {
		lg.Message = v
	}
	return true
}

// members maps the members of object v; top reports whether v is the root
// (or Lambda's "record" object), whose well-known keys are recognised.
func (d *Decoder) members(dst *model.Batch, lg *model.Log, st *jsonState, v []byte, top bool) bool {
	it := jsonscan.Members(v)
	for it.Next() {
		key := it.KeyString()
		val := it.Val
		if top && d.wellKnown(lg, st, key, val) {
			continue
		}
		if top && key == "record" {
			switch jsonscan.KindOf(val) {
			case jsonscan.Object:
				if !d.members(dst, lg, st, val, true) {
					return false
				}
				continue
			case jsonscan.String:
				if !st.hasMsg {
					if b, ok := jsonscan.Bytes(val); ok {
						lg.Message, st.hasMsg = b, true
						continue
					}
				}
			}
		}
		if jsonscan.KindOf(val) == jsonscan.Object {
			d.key = append(d.key[:0], key...)
			d.flatten(dst, st, val, 1)
		} else {
			scalarAttr(dst, st, key, val)
		}
	}
	return !it.Err()
}

// wellKnown maps a recognised key; it reports whether key was consumed.
func (d *Decoder) wellKnown(lg *model.Log, st *jsonState, key string, val []byte) bool {
	switch key {
	case "timestamp", "time", "ts", "@timestamp":
		if st.hasTime {
			return false
		}
		if t, ok := jsonTime(val); ok {
			lg.Timestamp, st.hasTime = t, true
			return true
		}
	case "level", "severity", "log_level":
		if st.hasLevel {
			return false
		}
		if s, ok := scalar(val); ok {
			lg.Level, st.hasLevel = CanonicalLevel(s), true
			return true
		}
	case "message", "msg":
		if st.hasMsg {
			return false
		}
		if jsonscan.KindOf(val) == jsonscan.String {
			b, _ := jsonscan.Bytes(val)
			lg.Message = b
		} else {
			lg.Message = val
		}
		st.hasMsg = true
		return true
	case "source", "function", "service":
		if st.hasSource {
			return false
		}
		if s, ok := jsonscan.Str(val); ok && s != "" {
			lg.Source, st.hasSource = s, true
			return true
		}
	case "requestId", "request_id", "AWSRequestId", "AwsRequestId", "aws_request_id":
		if st.hasReq {
			return false
		}
		if s, ok := jsonscan.Str(val); ok {
			lg.RequestID, st.hasReq = s, true
			return true
		}
	}
	return false
}

// flatten adds the members of obj under the dotted prefix in d.key. Keys
// are copies (they are built in scratch space).
func (d *Decoder) flatten(dst *model.Batch, st *jsonState, obj []byte, depth int) {
	it := jsonscan.Members(obj)
	base := len(d.key)
	for it.Next() && st.attrs < MaxAttrs {
		d.key = append(d.key[:base], '.')
		if it.KeyEscaped {
			d.key = jsonscan.Unescape(d.key, it.Key)
		} else {
			d.key = append(d.key, it.Key...)
		}
		if jsonscan.KindOf(it.Val) == jsonscan.Object && depth < maxNest {
			d.flatten(dst, st, it.Val, depth+1)
			continue
		}
		scalarAttr(dst, st, string(d.key), it.Val)
	}
	d.key = d.key[:base]
}

// scalarAttr adds key=val; strings are unquoted, null is skipped, and other
// values (numbers, booleans, arrays, too-deep objects) keep their JSON text.
func scalarAttr(dst *model.Batch, st *jsonState, key string, val []byte) {
	if st.attrs >= MaxAttrs {
		return
	}
	switch jsonscan.KindOf(val) {
	case jsonscan.Null:
		return
	case jsonscan.String:
		s, _ := jsonscan.Str(val)
		dst.AddTag(key, s)
	default:
		dst.AddTag(key, jsonscan.Alias(val))
	}
	st.attrs++
}

// scalar returns a string or the raw text of a number/bool.
func scalar(v []byte) (string, bool) {
	switch jsonscan.KindOf(v) {
	case jsonscan.String:
		return jsonscan.Str(v)
	case jsonscan.Number, jsonscan.Bool:
		return jsonscan.Alias(v), true
	}
	return "", false
}

// jsonTime parses a JSON timestamp: an RFC3339 string, or an epoch number
// (or numeric string) in s, ms, µs or ns chosen by magnitude.
func jsonTime(v []byte) (int64, bool) {
	switch jsonscan.KindOf(v) {
	case jsonscan.String:
		raw, esc, ok := jsonscan.StringRaw(v)
		if !ok || esc {
			return 0, false
		}
		if t, ok := ParseTime(raw); ok {
			return t, true
		}
		return Epoch(raw)
	case jsonscan.Number:
		return Epoch(v)
	}
	return 0, false
}

// Canonical levels: every les log record spells its level in upper case,
// as the Lambda runtime's text lines and the statsd events and service
// checks do, so one filter pattern matches them all.
var levels = [...]string{"TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL", "NOTICE", "ALERT", "EMERGENCY", "SUCCESS", "OK", "UNKNOWN"}

// pinoLevels are the numeric levels of pino and bunyan (Node loggers).
var pinoLevels = map[string]string{"10": "TRACE", "20": "DEBUG", "30": "INFO", "40": "WARN", "50": "ERROR", "60": "FATAL"}

// CanonicalLevel returns s in upper case when it is a known level name in
// any casing ("info", "Warn" → "INFO", "WARN") or a pino/bunyan number
// ("30" → "INFO"); other values are returned unchanged. It does not
// allocate: the result is a constant or s itself.
func CanonicalLevel(s string) string {
	if len(s) == 2 && s[0] >= '1' && s[0] <= '6' && s[1] == '0' {
		if l, ok := pinoLevels[s]; ok {
			return l
		}
	}
	for _, l := range levels {
		if len(l) == len(s) && strings.EqualFold(l, s) {
			return l
		}
	}
	return s
}
