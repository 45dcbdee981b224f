package natsjs

import (
	"context"
	"fmt"
	"testing"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// TestLagAfterCountsOnlyItsSubjects: a processor's lag (positions, no
// durable) counts only the records on its origins, signals and
// partitions after its position in each partition — not the stream's
// last sequence minus its position, which counted every other subject
// (logs, other origins) as lag.
func TestLagAfterCountsOnlyItsSubjects(t *testing.T) {
	srv := startServer(t, t.TempDir(), -1)
	defer srv.Shutdown()
	ctx := context.Background()
	s, err := Open(ctx, Config{URL: srv.ClientURL()}, 2, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 0
	pub := func(origin string, sig wire.Signal, p, count int) {
		for range count {
			n++
			if err := s.Publish(ctx, stream.Record{Origin: origin, Signal: sig, Partition: p, ID: fmt.Sprint("r", n), Data: []byte("x")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// seq 1-3: agg metrics p0; 4-5: agg metrics p1; 6-15: logs p0;
	// 16-18: agg metrics p0; 19-20: in metrics p1; 21: agg metrics p1.
	pub(stream.OriginAgg, wire.SignalMetrics, 0, 3)
	pub(stream.OriginAgg, wire.SignalMetrics, 1, 2)
	pub(stream.OriginIngest, wire.SignalLogs, 0, 10)
	pub(stream.OriginAgg, wire.SignalMetrics, 0, 3)
	pub(stream.OriginIngest, wire.SignalMetrics, 1, 2)
	pub(stream.OriginAgg, wire.SignalMetrics, 1, 1)
	q := stream.LagQuery{Origins: []string{stream.OriginAgg}, Signals: []wire.Signal{wire.SignalMetrics}}
	cases := []struct {
		after map[string]stream.Position
		parts []int
		want  uint64
	}{
		{map[string]stream.Position{"0": "2", "1": "5"}, nil, 1 + 3 + 1}, // seq 3, 16-18 on p0; 21 on p1
		{map[string]stream.Position{"0": "18", "1": "21"}, nil, 0},       // caught up, though logs follow its p0 position
		{map[string]stream.Position{"0": "15"}, nil, 3 + 3},              // p1 has no position: all of its 3
		{map[string]stream.Position{"0": "2", "1": "5"}, []int{1}, 1},    // only partition 1
	}
	for i, c := range cases {
		q.After, q.Partitions = c.after, c.parts
		got, err := s.Lag(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("case %d: lag after %v = %d, want %d", i, c.after, got, c.want)
		}
	}
	// The counting consumers are gone.
	info, err := s.js.Stream(ctx, s.cfg.Name)
	if err != nil {
		t.Fatal(err)
	}
	si, err := info.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if si.State.Consumers != 0 {
		t.Errorf("%d consumers left on the stream", si.State.Consumers)
	}
}
