package logline

import (
	"strconv"
	"time"

	"github.com/les-streams/les/internal/format/jsonscan"
)

// Text is the result of ParseText. RequestID, Level and Message alias the
// parsed line.
type Text struct {
	Time      int64 // Unix ns, 0 if the prefix had no timestamp
	RequestID string
	Level     string
	Message   []byte
}

// ParseText recognises Lambda's text-format prefixes:
//
//	2024-01-01T00:00:00.000Z\t<requestId>\tINFO\t<message>    (Node.js, .NET)
//	2024-01-01T00:00:00.000Z\t<requestId>\t<message>          (older Node.js)
//	[INFO]\t2024-01-01T00:00:00.000Z\t<requestId>\t<message>  (Python)
//
// It reports false (and a zero Text) for any other line.
func ParseText(line []byte) (Text, bool) {
	var t Text
	rest := line
	if len(rest) > 2 && rest[0] == '[' {
		f, r, ok := cutTab(rest)
		if !ok || len(f) < 3 || f[len(f)-1] != ']' || !isLevel(f[1:len(f)-1]) {
			return Text{}, false
		}
		t.Level = jsonscan.Alias(f[1 : len(f)-1])
		rest = r
	}
	f, r, ok := cutTab(rest)
	if !ok {
		return Text{}, false
	}
	ts, ok := ParseTime(f)
	if !ok {
		return Text{}, false
	}
	t.Time = ts
	id, r2, ok := cutTab(r)
	if !ok {
		// "<ts>\t<id>" with nothing after it.
		if !IsRequestID(r) {
			return Text{}, false
		}
		t.RequestID = jsonscan.Alias(r)
		return t, true
	}
	if !IsRequestID(id) && !(len(id) == 0 || string(id) == "undefined") {
		return Text{}, false
	}
	t.RequestID = jsonscan.Alias(id)
	t.Message = r2
	if t.Level == "" {
		if lv, msg, ok := cutTab(r2); ok && isLevel(lv) {
			t.Level, t.Message = jsonscan.Alias(lv), msg
		}
	}
	return t, true
}

func cutTab(b []byte) (before, after []byte, ok bool) {
	for i, c := range b {
		if c == '\t' {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

func isLevel(b []byte) bool {
	switch string(b) {
	case "TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL":
		return true
	}
	return false
}

// IsRequestID reports whether b looks like a Lambda request id: 36 bytes of
// letters and digits with dashes at 8, 13, 18 and 23 (the AWS docs use ids
// such as 8f507cfc-xmpl-4697-b07a-ac58fc914c95, so letters beyond hex are
// allowed).
func IsRequestID(b []byte) bool {
	if len(b) != 36 {
		return false
	}
	for i, c := range b {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				return false
			}
		}
	}
	return true
}

// ParseTime parses an RFC 3339 timestamp (fractional seconds optional) and
// returns Unix nanoseconds.
func ParseTime(b []byte) (int64, bool) {
	// Cheap shape check first: "dddd-dd-ddT" so that text lines are
	// rejected without calling time.Parse.
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != 't' && b[10] != ' ') {
		return 0, false
	}
	s := jsonscan.Alias(b)
	if b[10] == ' ' {
		s = string(b[:10]) + "T" + string(b[11:])
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, false
	}
	return t.UnixNano(), true
}

// Epoch parses a decimal epoch timestamp and picks its unit by magnitude:
// below 1e11 seconds (fraction allowed), below 1e14 milliseconds, below 1e17
// microseconds, otherwise nanoseconds. It returns Unix nanoseconds.
func Epoch(b []byte) (int64, bool) {
	if n, err := strconv.ParseInt(jsonscan.Alias(b), 10, 64); err == nil {
		switch {
		case n < 0:
			return 0, false
		case n < 1e11:
			return n * 1e9, true
		case n < 1e14:
			return n * 1e6, true
		case n < 1e17:
			return n * 1e3, true
		}
		return n, true
	}
	f, err := strconv.ParseFloat(jsonscan.Alias(b), 64)
	if err != nil || f < 0 || f != f {
		return 0, false
	}
	switch {
	case f < 1e11:
		return int64(f * 1e9), true
	case f < 1e14:
		return int64(f * 1e6), true
	case f < 1e17:
		return int64(f * 1e3), true
	case f < 9.2e18:
		return int64(f), true
	}
	return 0, false
}
