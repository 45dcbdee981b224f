package wavefront

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/les-streams/les/internal/model"
)

// Events and span logs are log records in les, as the Wavefront proxy
// forwards them beside the points: an event (an "@Event" line, or the JSON
// body of POST /api/v2/event) is one model.Log; a span-logs line (a JSON
// object, as the Wavefront SDKs send with a span tagged _spanLogs=true) is
// one model.Log per entry of its "logs", carrying the span's trace and span
// ids. Strings of these logs are copies (they come through encoding/json or
// are rare enough to copy), so they never alias the payload.

// Attribute keys of the logs made from events and span logs. The ids use
// the keys OTLP log records have in les (otlp.AttrTraceID, AttrSpanID), so
// one query finds a trace's logs whichever SDK sent them.
const (
	AttrTitle           = "title"
	AttrEndMillis       = "end_ms"
	AttrTraceID         = "trace_id"
	AttrSpanID          = "span_id"
	AttrSpanSecondaryID = "span_secondary_id"
	AttrTag             = "tag"
	AttrHost            = "host"
)

// LevelInfo is the level of an event without a severity.
const LevelInfo = "INFO"

// More reject reasons (see the package comment).
const (
	ReasonInvalidEvent    = "invalid_event"
	ReasonInvalidSpanLogs = "invalid_span_logs"
)

// ErrInvalidEvent is returned by DecodeEventJSON for a body that is not an
// event.
var ErrInvalidEvent = errors.New("wavefront: invalid event")

// level upper-cases a severity or log level (les logs use one casing: the
// Lambda runtime's and logline's upper case).
func level(s string) string { return strings.ToUpper(strings.TrimSpace(s)) }

// eventTag adds one event tag: the SDKs write map tags as "k: v", which
// becomes attribute k=v; any other tag becomes tag=<value>.
func eventTag(dst *model.Batch, t string) {
	if k, v, ok := strings.Cut(t, ": "); ok && k != "" {
		dst.AddTag(k, v)
		return
	}
	dst.AddTag(AttrTag, t)
}

// event decodes the tokens of an "@Event" line:
//
//	@Event <startTs> [<endTs>] <name> [k=v ...]
//
// Timestamps are unit-inferred like metric timestamps; an end not after the
// start is start+1ms (the proxy's rule). host= (repeatable) gives the Source
// (the first; later ones become host attributes), severity= the Level (upper
// case, default INFO), details= the Message (default: the name), tag= and
// eventTag= tags; other keys are attributes.
func (d *Decoder) event(dst *model.Batch, now int64) string {
	toks := d.toks[1:]
	if len(toks) < 2 || toks[0].kind != tWord || !isNumber(toks[0].s) {
		return ReasonInvalidEvent
	}
	start, r := parseTimestamp(toks[0].s)
	if r != "" {
		return r
	}
	toks = toks[1:]
	end := int64(0)
	if toks[0].kind == tWord && isNumber(toks[0].s) && len(toks) > 1 {
		if end, r = parseTimestamp(toks[0].s); r != "" {
			return r
		}
		toks = toks[1:]
	}
	name := toks[0]
	if name.kind != tWord && name.kind != tQuoted || name.s == "" {
		return ReasonInvalidEvent
	}
	toks = toks[1:]
	if !d.inRange(start, now) {
		return ReasonTimestampOutOfRange
	}
	l := model.Log{Timestamp: start, Source: d.o.DefaultSource, Level: LevelInfo, Message: []byte(name.s)}
	mark := dst.TagMark()
	dst.AddTag(AttrTitle, strings.Clone(name.s))
	hasHost := false
	for len(toks) > 0 {
		if len(toks) < 3 || toks[1].kind != tEq || toks[0].kind == tEq || toks[2].kind == tEq {
			return ReasonInvalidTag
		}
		k, v := toks[0].s, strings.Clone(toks[2].s)
		toks = toks[3:]
		switch k {
		case "host":
			if !hasHost {
				l.Source, hasHost = v, true
				continue
			}
			dst.AddTag(AttrHost, v)
		case "severity":
			l.Level = level(v)
		case "details":
			l.Message = []byte(v)
		case "tag", "eventTag":
			eventTag(dst, v)
		default:
			dst.AddTag(strings.Clone(k), v)
		}
	}
	if hasHost {
		if r := checkSource(l.Source); r != "" {
			return r
		}
	}
	if end <= start {
		end = start + 1e6
	}
	dst.AddTag(AttrEndMillis, strconv.FormatInt(end/1e6, 10))
	l.Attrs = dst.TagsSince(mark)
	slices.SortStableFunc(l.Attrs, cmpTagKey)
	dst.Logs = append(dst.Logs, l)
	return ""
}

// apiEvent is the body of POST /api/v2/event (wavefront-sdk-go LineJSON,
// the Wavefront REST API's Event).
type apiEvent struct {
	Name        string            `json:"name"`
	StartTime   *int64            `json:"startTime"`
	EndTime     int64             `json:"endTime"`
	Annotations map[string]string `json:"annotations"`
	Tags        []string          `json:"tags"`
	Hosts       []string          `json:"hosts"`
}

// DecodeEvent appends what a client posts to /api/v2/event: the JSON
// event of a REST API client (DecodeEventJSON; its error, wrapping
// ErrInvalidEvent, is for a body unusable as a whole), or Wavefront lines,
// which wavefront-sdk-go in proxy mode posts there ("@Event" lines, as the
// proxy's port takes lines on any path), decoded as d decodes lines (with
// ModeMetrics, the zero Mode, for events) with their rejects in dst.
func (d *Decoder) DecodeEvent(dst *model.Batch, body []byte, now int64) error {
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && t[0] == '@' {
		d.Decode(dst, body, now)
		return nil
	}
	return d.DecodeEventJSON(dst, body, now)
}

// DecodeEventJSON appends the event of body, the JSON a Wavefront REST API
// client (wavefront-sdk-go's direct sender) posts to /api/v2/event:
// {"name","startTime","endTime","annotations":{"severity","type","details"},
// "tags":[...],"hosts":[...]}, times in ms (or s, unit-inferred). It maps
// like an @Event line; startTime defaults to now. The error wraps
// ErrInvalidEvent; nothing is appended then.
func (d *Decoder) DecodeEventJSON(dst *model.Batch, body []byte, now int64) error {
	var e apiEvent
	if err := json.Unmarshal(body, &e); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidEvent, err)
	}
	if strings.TrimSpace(e.Name) == "" {
		return fmt.Errorf("%w: name is required", ErrInvalidEvent)
	}
	start := now
	if e.StartTime != nil {
		if *e.StartTime < 0 {
			return fmt.Errorf("%w: negative startTime", ErrInvalidEvent)
		}
		var r string
		if start, r = parseTimestamp(strconv.FormatInt(*e.StartTime, 10)); r != "" {
			return fmt.Errorf("%w: startTime: %s", ErrInvalidEvent, r)
		}
	}
	end := int64(0)
	if e.EndTime > 0 {
		var r string
		if end, r = parseTimestamp(strconv.FormatInt(e.EndTime, 10)); r != "" {
			return fmt.Errorf("%w: endTime: %s", ErrInvalidEvent, r)
		}
	}
	l := model.Log{Timestamp: start, Source: d.o.DefaultSource, Level: LevelInfo, Message: []byte(e.Name)}
	mark := dst.TagMark()
	dst.AddTag(AttrTitle, e.Name)
	for i, h := range e.Hosts {
		if i == 0 && checkSource(h) == "" {
			l.Source = h
			continue
		}
		dst.AddTag(AttrHost, h)
	}
	keys := make([]string, 0, len(e.Annotations))
	for k := range e.Annotations {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := e.Annotations[k]
		switch k {
		case "severity":
			l.Level = level(v)
		case "details":
			l.Message = []byte(v)
		default:
			dst.AddTag(k, v)
		}
	}
	for _, t := range e.Tags {
		eventTag(dst, t)
	}
	if end <= start {
		end = start + 1e6
	}
	dst.AddTag(AttrEndMillis, strconv.FormatInt(end/1e6, 10))
	l.Attrs = dst.TagsSince(mark)
	slices.SortStableFunc(l.Attrs, cmpTagKey)
	dst.Logs = append(dst.Logs, l)
	return nil
}

// spanLogsLine is one span-logs line (wavefront-sdk-go SpanLogJSON, the
// proxy's SpanLogsDecoder).
type spanLogsLine struct {
	TraceID          string `json:"traceId"`
	SpanID           string `json:"spanId"`
	SpanSecondaryID  string `json:"spanSecondaryId"`
	SpanSecondaryID2 string `json:"_spanSecondaryId"`
	Logs             []struct {
		Timestamp int64             `json:"timestamp"`
		Fields    map[string]string `json:"fields"`
	} `json:"logs"`
	Span string `json:"span"`
}

// spanLogs decodes one span-logs line
//
//	{"traceId":"…","spanId":"…","logs":[{"timestamp":<µs>,"fields":{…}}],"span":"<span line>"}
//
// into one model.Log per entry: Timestamp from the entry (µs as the SDKs
// send; the unit is inferred by magnitude like span times), Source from the
// source=/host= of the embedded span line (else the default source), Level
// from a "level"/"log_level" field in upper case (ERROR for OpenTracing's
// event=error), Message the "message" field (else "event", else the fields
// as JSON), Attrs trace_id, span_id and the other fields.
func (d *Decoder) spanLogs(dst *model.Batch, line string, now int64) string {
	var sl spanLogsLine
	dec := json.NewDecoder(strings.NewReader(line))
	if err := dec.Decode(&sl); err != nil || dec.More() {
		return ReasonInvalidSpanLogs
	}
	if sl.SpanID == "" {
		return ReasonMissingSpanID
	}
	if sl.TraceID == "" {
		return ReasonMissingTraceID
	}
	if len(sl.Logs) == 0 {
		return ReasonInvalidSpanLogs
	}
	source := d.o.DefaultSource
	if sl.Span != "" && d.tokenize(sl.Span) {
		var src, host string
		for i := 1; i+2 < len(d.toks); i++ {
			if d.toks[i+1].kind != tEq {
				continue
			}
			switch d.toks[i].s {
			case "source":
				src = d.toks[i+2].s
			case "host":
				host = d.toks[i+2].s
			}
		}
		if src = cmp.Or(src, host); src != "" && checkSource(src) == "" {
			source = strings.Clone(src)
		}
	}
	secondary := cmp.Or(sl.SpanSecondaryID, sl.SpanSecondaryID2)
	start := len(dst.Logs)
	for _, e := range sl.Logs {
		ts := now
		if e.Timestamp > 0 {
			ns, ok := num{whole: uint64(e.Timestamp)}.nanos(spanUnit(uint64(e.Timestamp)))
			if !ok {
				dst.Logs = dst.Logs[:start]
				return ReasonTimestampOutOfRange
			}
			ts = ns
		}
		l := model.Log{Timestamp: ts, Source: source}
		mark := dst.TagMark()
		dst.AddTag(AttrTraceID, sl.TraceID)
		dst.AddTag(AttrSpanID, sl.SpanID)
		if secondary != "" {
			dst.AddTag(AttrSpanSecondaryID, secondary)
		}
		msgKey := ""
		switch {
		case e.Fields["message"] != "":
			msgKey = "message"
		case e.Fields["event"] != "":
			msgKey = "event"
		}
		for k, v := range e.Fields {
			switch k {
			case "level", "log_level":
				l.Level = level(v)
				continue
			case msgKey:
				l.Message = []byte(v)
				if k == "message" {
					continue
				}
			}
			dst.AddTag(k, v)
		}
		if l.Level == "" && e.Fields["event"] == "error" {
			l.Level = "ERROR"
		}
		if msgKey == "" && len(e.Fields) > 0 {
			l.Message, _ = json.Marshal(e.Fields)
		}
		l.Attrs = dst.TagsSince(mark)
		slices.SortStableFunc(l.Attrs, cmpTagKey)
		dst.Logs = append(dst.Logs, l)
	}
	return ""
}

// isJSONObject reports whether a trimmed line is a span-logs candidate.
func isJSONObject(line string) bool {
	return len(line) >= 2 && line[0] == '{' && line[len(line)-1] == '}'
}
