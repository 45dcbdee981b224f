package sinktest

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FromNDJSON reads items in the NDJSON form `les tail` prints
// (internal/format/jsonl), one object per line, with encoding/json: for
// sinks that deliver that form (file, http, exec). A line that is not such
// an object fails t.
func FromNDJSON(t testing.TB, data []byte) []Item {
	t.Helper()
	var out []Item
	for i, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			if len(data) == 0 {
				break
			}
			t.Fatalf("line %d is empty", i+1)
		}
		var o struct {
			Type        string             `json:"type"`
			Name        string             `json:"name"`
			Value       float64            `json:"value"`
			Kind        string             `json:"kind"`
			Timestamp   string             `json:"timestamp"`
			Start       string             `json:"start"`
			Source      string             `json:"source"`
			Tags        map[string]string  `json:"tags"`
			Attrs       map[string]string  `json:"attrs"`
			Count       float64            `json:"count"`
			Sum         float64            `json:"sum"`
			Min         float64            `json:"min"`
			Max         float64            `json:"max"`
			Percentiles map[string]float64 `json:"percentiles"`
			RequestID   string             `json:"request_id"`
			Level       string             `json:"level"`
			Message     string             `json:"message"`
			TraceID     string             `json:"trace_id"`
			SpanID      string             `json:"span_id"`
			ParentID    string             `json:"parent_id"`
			DurationMS  float64            `json:"duration_ms"`
		}
		if err := json.Unmarshal(line, &o); err != nil {
			t.Fatalf("line %d is not a JSON object: %v: %s", i+1, err, line)
		}
		ts := o.Timestamp
		if o.Type == "span" {
			ts = o.Start
		}
		tm, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			t.Fatalf("line %d: time %q: %v", i+1, ts, err)
		}
		it := Item{Name: o.Name, Source: o.Source, Tags: o.Tags, Time: tm}
		switch o.Type {
		case "metric":
			it.Signal, it.Kind, it.Value = "metrics", o.Kind, o.Value
		case "distribution":
			it.Signal, it.Count, it.Sum, it.Min, it.Max = "distributions", o.Count, o.Sum, o.Min, o.Max
			it.Quantiles = map[float64]float64{}
			for k, v := range o.Percentiles {
				p, err := strconv.ParseFloat(strings.TrimPrefix(k, "p"), 64)
				if err != nil {
					t.Fatalf("line %d: percentile %q", i+1, k)
				}
				it.Quantiles[p/100] = v
			}
		case "log":
			it.Signal, it.Tags, it.Level, it.RequestID, it.Message = "logs", o.Attrs, o.Level, o.RequestID, o.Message
		case "span":
			it.Signal, it.TraceID, it.SpanID, it.ParentID = "spans", o.TraceID, o.SpanID, o.ParentID
			it.Duration = time.Duration(o.DurationMS * float64(time.Millisecond))
		default:
			t.Fatalf("line %d: unknown type %q", i+1, o.Type)
		}
		out = append(out, it)
	}
	return out
}
