package statsd

import (
	"bytes"

	"github.com/les-streams/les/internal/model"
)

// decodeEvent decodes a DogStatsD event
//
//	_e{<title_len>,<text_len>}:<title>|<text>|d:<ts>|h:<host>|p:<prio>|t:<alert_type>|k:<agg_key>|s:<source_type>|#<tags>
//
// into a model.Log: Message is the text, Level the alert type in upper case
// (INFO by default, ERROR, WARNING, SUCCESS; an unknown type is INFO, as the
// Datadog agent keeps it), Attrs hold "title", "priority", "aggregation_key",
// "source_type_name" (when present) and the tags; h: (or a source tag) is the
// Source. As in the Datadog agent, the two characters `\n` in title and text
// stand for a newline (clients escape newlines so the event fits one line,
// and the lengths count the escaped form); only such a title or text is
// copied, everything else aliases line.
func (d *Decoder) decodeEvent(dst *model.Batch, line []byte, now int64) {
	rest := line[3:]
	comma := bytes.IndexByte(rest, ',')
	brace := bytes.IndexByte(rest, '}')
	if comma < 0 || brace < comma || brace+1 >= len(rest) || rest[brace+1] != ':' {
		dst.Reject(ReasonInvalidEvent, line)
		return
	}
	tl, ok1 := parseLen(rest[:comma])
	xl, ok2 := parseLen(rest[comma+1 : brace])
	rest = rest[brace+2:]
	if !ok1 || !ok2 || tl == 0 || tl+1+xl > len(rest) || rest[tl] != '|' {
		dst.Reject(ReasonInvalidEvent, line)
		return
	}
	title := unescapeNewlines(rest[:tl])
	text := unescapeNewlines(rest[tl+1 : tl+1+xl])
	rest = rest[tl+1+xl:]
	if len(rest) > 0 {
		if rest[0] != '|' {
			dst.Reject(ReasonInvalidEvent, line)
			return
		}
		rest = rest[1:]
	}
	l := model.Log{Timestamp: now, Source: d.defaultSource, Level: LevelInfo, Message: text}
	mark := dst.TagMark()
	dst.AddTag("title", str(title))
	ntags, prio := 0, len(d.sourceTags)
	for len(rest) > 0 {
		var sec []byte
		sec, rest = nextField(rest)
		if len(sec) == 0 {
			continue
		}
		if sec[0] == '#' {
			var reason string
			ntags, l.Source, prio, reason = d.parseTags(dst, sec[1:], ntags, l.Source, prio)
			if reason != "" {
				d.reject(dst, reason, line, mark)
				return
			}
			continue
		}
		if len(sec) < 2 || sec[1] != ':' {
			continue // unknown field: ignored
		}
		v := sec[2:]
		switch sec[0] {
		case 'd':
			t, ok := parseSeconds(v)
			if !ok {
				d.reject(dst, ReasonInvalidEvent, line, mark)
				return
			}
			l.Timestamp = t
		case 'h':
			if len(v) > 0 {
				l.Source, prio = str(v), -1 // h: wins over source tags
			}
		case 'p':
			dst.AddTag("priority", str(v))
		case 't':
			l.Level = alertLevel(v)
		case 'k':
			dst.AddTag("aggregation_key", str(v))
		case 's':
			dst.AddTag("source_type_name", str(v))
		}
	}
	l.Attrs = finishTags(dst, mark, nil)
	dst.Logs = append(dst.Logs, l)
}

// Levels of the logs made from events and service checks: upper case, like
// the Lambda runtime's log levels and the logline decoder's, so one filter
// pattern (e.g. [level=ERROR, ...] or { $.level = "ERROR" }) matches all.
const (
	LevelInfo     = "INFO"
	LevelError    = "ERROR"
	LevelWarning  = "WARNING"
	LevelSuccess  = "SUCCESS"
	LevelOK       = "OK"
	LevelCritical = "CRITICAL"
	LevelUnknown  = "UNKNOWN"
)

// alertLevel maps a DogStatsD alert type to its upper-case level; unknown
// types are INFO (the agent ignores an invalid t: and keeps its default).
func alertLevel(t []byte) string {
	switch string(t) {
	case "error", "ERROR", "Error":
		return LevelError
	case "warning", "WARNING", "Warning":
		return LevelWarning
	case "success", "SUCCESS", "Success":
		return LevelSuccess
	}
	return LevelInfo
}

// unescapeNewlines turns each `\n` of b into a newline, as the Datadog
// agent's cleanEventText does. b is returned as is (no copy) when it has
// none.
func unescapeNewlines(b []byte) []byte {
	if bytes.Index(b, []byte(`\n`)) < 0 {
		return b
	}
	return bytes.ReplaceAll(b, []byte(`\n`), []byte("\n"))
}

var checkLevels = [...]string{LevelOK, LevelWarning, LevelCritical, LevelUnknown}

// decodeServiceCheck decodes a DogStatsD service check
//
//	_sc|<name>|<status>|d:<ts>|h:<host>|#<tags>|m:<message>
//
// into a model.Log: Message is m: (which runs to the end of the line), Level
// is OK, WARNING, CRITICAL or UNKNOWN for status 0..3, Attrs hold "check"
// (the name) and the tags.
func (d *Decoder) decodeServiceCheck(dst *model.Batch, line []byte, now int64) {
	rest := line[4:]
	i := bytes.IndexByte(rest, '|')
	if i <= 0 {
		dst.Reject(ReasonInvalidEvent, line)
		return
	}
	name := rest[:i]
	rest = rest[i+1:]
	var status []byte
	if j := bytes.IndexByte(rest, '|'); j >= 0 {
		status, rest = rest[:j], rest[j+1:]
	} else {
		status, rest = rest, nil
	}
	if len(status) != 1 || status[0] < '0' || status[0] > '3' {
		dst.Reject(ReasonInvalidEvent, line)
		return
	}
	l := model.Log{Timestamp: now, Source: d.defaultSource, Level: checkLevels[status[0]-'0']}
	mark := dst.TagMark()
	dst.AddTag("check", str(name))
	ntags, prio := 0, len(d.sourceTags)
	for len(rest) > 0 {
		if bytes.HasPrefix(rest, []byte("m:")) {
			l.Message = rest[2:]
			break
		}
		var sec []byte
		sec, rest = nextField(rest)
		if len(sec) == 0 {
			continue
		}
		if sec[0] == '#' {
			var reason string
			ntags, l.Source, prio, reason = d.parseTags(dst, sec[1:], ntags, l.Source, prio)
			if reason != "" {
				d.reject(dst, reason, line, mark)
				return
			}
			continue
		}
		if len(sec) < 2 || sec[1] != ':' {
			continue
		}
		switch sec[0] {
		case 'd':
			t, ok := parseSeconds(sec[2:])
			if !ok {
				d.reject(dst, ReasonInvalidEvent, line, mark)
				return
			}
			l.Timestamp = t
		case 'h':
			if len(sec) > 2 {
				l.Source, prio = str(sec[2:]), -1
			}
		}
	}
	l.Attrs = finishTags(dst, mark, nil)
	dst.Logs = append(dst.Logs, l)
}

func parseLen(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 6 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
