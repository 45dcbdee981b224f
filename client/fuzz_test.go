package client_test

import (
	"testing"
	"unicode/utf8"

	"github.com/les-streams/les/client"
	"github.com/les-streams/les/internal/model"
)

// validUTF8 is s with every byte of invalid UTF-8 replaced by U+FFFD, the
// documented rule for log messages and event text.
func validUTF8(s string) string {
	var out []rune
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		out = append(out, r) // RuneError for an invalid byte
		i += size
	}
	return string(out)
}

// FuzzLines: whatever strings a user passes, every call yields exactly
// the items it should in les' decoders and les rejects nothing.
//
//	go test -run '^$' -fuzz FuzzLines -fuzztime 30s ./client
func FuzzLines(f *testing.F) {
	f.Add("name", "key", "value", "member", "title", "text", "message")
	f.Add("a:b|c,d\n", "k:|,\n", "v:|,\n", "m:|\n", "t|\n", "x|\n\r", "m\"\\\n\x00\xff")
	f.Add("_e{1,1}:a|b", "#", "@0.5", "_sc|x|0", "_e{", "}", "{\"a\":1}")
	f.Add("\xff\xfe", "\x80", "\xc3", "é", "\r", "\n", "\t")
	a := newAgent(f)
	c := a.client(f)
	f.Fuzz(func(t *testing.T, name, key, value, member, title, text, msg string) {
		if len(name)+len(key)+len(value)+len(member)+len(title)+len(text)+len(msg) > 2000 {
			return
		}
		before := c.Stats()
		c.Count(name, 1, client.T(key, value))
		c.Set(name, member, client.T(key, value))
		c.Event(client.Event{Title: title, Text: text, AggregationKey: value, Tags: []client.Tag{client.T(key, value)}})
		c.Log(client.LevelInfo, msg, client.T("k", value))
		mb, lb, _ := a.received(t, c)
		after := c.Stats()

		wantMetrics := 0
		if name != "" {
			wantMetrics++
			if member != "" {
				wantMetrics++
			}
		}
		if len(mb.Metrics) != wantMetrics {
			t.Errorf("%d metrics, want %d: %+v", len(mb.Metrics), wantMetrics, mb.Metrics)
		}
		for _, m := range mb.Metrics {
			if key != "" && len(m.Tags)+boolInt(m.Source != "") != 1 {
				t.Errorf("metric %+v: want the one tag", m)
			}
		}
		wantEvents := 0
		if title != "" {
			wantEvents = 1
		}
		if len(mb.Logs) != wantEvents {
			t.Fatalf("%d events, want %d", len(mb.Logs), wantEvents)
		}
		if wantEvents == 1 {
			// newlines travel escaped as `\n` in DogStatsD; les may unescape them
			if got := attr(mb.Logs[0].Attrs, "title"); got != validUTF8(title) && got != escapeNL(validUTF8(title)) {
				t.Errorf("event title %q, want %q", got, validUTF8(title))
			}
		}
		if len(lb.Logs) != 1 {
			t.Fatalf("%d log records, want 1", len(lb.Logs))
		}
		if got := string(lb.Logs[0].Message); got != validUTF8(msg) {
			t.Errorf("log message %q, want %q", got, validUTF8(msg))
		}
		if got := attr(lb.Logs[0].Attrs, "k"); got != validUTF8(value) {
			t.Errorf("log attr %q, want %q", got, validUTF8(value))
		}
		d := after.Total().DroppedLines - before.Total().DroppedLines
		if d != uint64(3-wantMetrics-wantEvents) {
			t.Errorf("%d lines dropped, want %d", d, 3-wantMetrics-wantEvents)
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func escapeNL(s string) string {
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, '\\', 'n')
		} else {
			out = append(out, s[i])
		}
	}
	return string(out)
}

func attr(tags model.Tags, key string) string {
	for _, t := range tags {
		if t.Key == key {
			return t.Value
		}
	}
	return "\x00missing"
}
