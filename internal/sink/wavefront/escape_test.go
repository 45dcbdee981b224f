package wavefront

import (
	"testing"
	"time"

	"github.com/les-streams/les/internal/format/wavefront"
	"github.com/les-streams/les/internal/model"
)

// A string ending in a backslash turns its closing quote into an escaped
// quote on the wire (`"x\"`), so the next field is read as part of it and
// text in a later field becomes a field of its own: here a tag injects a
// source. Such items must be dropped and counted, never sent.
func TestTrailingBackslashCannotInject(t *testing.T) {
	s, err := New(Config{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixNano()
	b := &model.Batch{Metrics: []model.Metric{
		{Name: "m", Value: 1, Timestamp: now, Source: "good", Kind: model.Gauge,
			Tags: model.Tags{{Key: "a", Value: `x\`}, {Key: "b", Value: ` source=evil c=`}}},
		{Name: `m\`, Value: 1, Timestamp: now, Source: "good", Kind: model.Gauge,
			Tags: model.Tags{{Key: "b", Value: ` source=evil c=`}}},
	}}
	buf, n := s.encode(nil, b)
	var got model.Batch
	wavefront.NewDecoder(wavefront.Options{}).Decode(&got, buf, now)
	for _, m := range got.Metrics {
		if m.Source != "good" {
			t.Errorf("line %q decoded with source %q", buf, m.Source)
		}
	}
	if n != len(got.Metrics) {
		t.Errorf("sent %d lines, %d decode as metrics (%q)", n, len(got.Metrics), buf)
	}
	if s.counts.Invalid != 2 {
		t.Errorf("Invalid = %d, want 2", s.counts.Invalid)
	}
}
