package discard

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/sink"
)

func TestCounts(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	b := &model.Batch{Metrics: make([]model.Metric, 3), Dists: make([]model.Distribution, 2),
		Logs: make([]model.Log, 1), Spans: make([]model.Span, 4)}
	for range 2 {
		if err := s.Send(context.Background(), b, sink.Meta{RecordID: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	want := Counts{Batches: 2, Metrics: 6, Distributions: 4, Logs: 2, Spans: 8}
	if d := cmp.Diff(want, s.Counts()); d != "" {
		t.Errorf("-want +got\n%s", d)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), b, sink.Meta{}); err == nil {
		t.Error("Send after Close succeeded")
	}
}

func BenchmarkSend(b *testing.B) {
	s, _ := New(Config{})
	batch := &model.Batch{Metrics: make([]model.Metric, 1000)}
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Send(context.Background(), batch, sink.Meta{})
	}
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "items/s")
}
