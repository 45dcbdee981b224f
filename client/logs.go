package client

import (
	"strconv"
	"time"
)

// Log levels. les keeps the level as written; these are the upper-case
// levels its Lambda log parsing and filter patterns use.
const (
	LevelDebug = "DEBUG"
	LevelInfo  = "INFO"
	LevelWarn  = "WARN"
	LevelError = "ERROR"
)

// Log writes one log record as a JSON line to the agent's logs listener:
//
//	{"timestamp":<unix ns>,"level":"<level>","source":"<source>","message":"<msg>","<key>":"<value>",…}
//
// les reads timestamp, level, source and message as the record's fields
// and the rest as attributes: the per-call attrs first, then the constant
// tags. An attr "requestId" becomes the record's request id; an attr
// "source" replaces the client's source for this record. Strings are
// JSON-escaped, so any byte is safe (invalid UTF-8 becomes U+FFFD). When
// the record does not fit a datagram its message is cut (never inside an
// escape or a character) and the record gets the attribute truncated=true.
// Log does not block and does not allocate.
func (c *Client) Log(level, msg string, attrs ...Tag) {
	p := c.logs
	var tb [20]byte
	ts := strconv.AppendInt(tb[:0], time.Now().UnixNano(), 10)
	source := c.logSource
	for _, a := range attrs {
		if a.Key == "source" {
			source = a.Value
			break
		}
	}
	n := len(`{"timestamp":,"level":"","message":""}`) + 1 + len(ts) + jsonLen(level)
	if source != "" {
		n += len(`,"source":""`) + jsonLen(source)
	}
	for _, a := range attrs {
		if a.Key != "" && a.Key != "source" {
			n += len(`,"":""`) + jsonLen(a.Key) + jsonLen(a.Value)
		}
	}
	for _, ct := range c.consts {
		if ct.key != "source" && !hasKey(attrs, ct.key) {
			n += len(`,"":""`) + jsonLen(ct.key) + jsonLen(ct.value)
		}
	}
	ml := jsonLen(msg)
	budget := ml
	const truncated = `,"truncated":true`
	if n+ml > p.max {
		budget = p.max - n - len(truncated)
		if budget < 0 {
			p.reject()
			return
		}
		n += len(truncated)
	}
	cur, full := p.begin(n+budget, 1)
	if cur == nil {
		return
	}
	b := append(cur.b, `{"timestamp":`...)
	b = append(b, ts...)
	b = append(b, `,"level":`...)
	b = appendJSONString(b, level)
	if source != "" {
		b = append(b, `,"source":`...)
		b = appendJSONString(b, source)
	}
	b = append(b, `,"message":`...)
	cut := budget < ml
	if cut {
		b = append(b, '"')
		b, _ = appendJSON(b, msg, budget)
		b = append(b, '"')
	} else {
		b = appendJSONString(b, msg)
	}
	if cut {
		b = append(b, truncated...)
		p.tr.Add(1)
	}
	for _, a := range attrs {
		if a.Key != "" && a.Key != "source" {
			b = appendAttr(b, a.Key, a.Value)
		}
	}
	for _, ct := range c.consts {
		if ct.key != "source" && !hasKey(attrs, ct.key) {
			b = appendAttr(b, ct.key, ct.value)
		}
	}
	cur.b = append(b, '}', '\n')
	p.commit(cur, full, 1)
}

func appendAttr(b []byte, k, v string) []byte {
	b = append(b, ',')
	b = appendJSONString(b, k)
	b = append(b, ':')
	return appendJSONString(b, v)
}
