package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/mem"
	"github.com/les-streams/les/internal/wire"
)

// slowSink takes a second of (fake) time per Send, records what it got
// and how many Sends overlapped, refuses batches holding a "poison" item
// for good, and drops items named "drop" (counted in drops).
type slowSink struct {
	mu          sync.Mutex
	inflight    int
	maxInflight int
	sends       int
	merged      int // Sends that held more than one record's items
	got         map[string][]int64
	drops       *selfmetric.ReasonCounters
}

func (s *slowSink) Send(ctx context.Context, b *model.Batch, m sink.Meta) error {
	s.mu.Lock()
	s.inflight++
	s.maxInflight = max(s.maxInflight, s.inflight)
	s.sends++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inflight--
		s.mu.Unlock()
	}()
	time.Sleep(time.Second) // the backend's answer time, in the bubble's fake clock
	names := map[string]bool{}
	for _, x := range b.Metrics {
		if x.Name == "poison" {
			return sink.Permanent(errors.New("backend refuses poison"))
		}
		names[strings.SplitN(x.Name, ".", 2)[0]] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(names) > 1 {
		s.merged++
	}
	for _, x := range b.Metrics {
		if x.Name == "drop" {
			s.drops.Inc("refused_name")
			continue
		}
		s.got[x.Name] = append(s.got[x.Name], x.Timestamp)
	}
	return nil
}

func (s *slowSink) Close() error { return nil }

// TestSinkRunnerMergesInParallelInOrder: records read together are merged
// into Sends bounded by max_items, several Sends are in flight, the points
// of a series (one partition) still arrive in order, a poison record in a
// merged Send is found and dead-lettered alone, and items the sink drops
// are not counted as delivered.
func TestSinkRunnerMergesInParallelInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const parts, perPart, perRec = 4, 6, 5
		st := mem.New(mem.NewStore(), mem.Config{Partitions: parts})
		seq := uint64(0)
		publish := func(p int, names ...string) {
			e := wire.NewEncoder(wire.SignalMetrics)
			for i, n := range names {
				e.AppendMetric(&model.Metric{Name: n, Value: 1, Timestamp: int64(seq*100 + uint64(i)), Kind: model.Gauge})
			}
			seq++
			data, err := e.Finish(nil, 9, seq, wire.CompressionNone)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Publish(context.Background(), stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalMetrics,
				Partition: p, ID: fmt.Sprint("r", seq), Data: data}); err != nil {
				t.Fatal(err)
			}
		}
		want := 0
		for r := range perPart {
			for p := range parts {
				var names []string
				for i := range perRec {
					names = append(names, fmt.Sprintf("p%d.s%d", p, i))
				}
				switch {
				case p == 2 && r == 3:
					names = append(names, "poison")
				case p == 1 && r == 0:
					names = append(names, "drop")
					want += perRec
				default:
					want += perRec
				}
				publish(p, names...)
			}
		}
		reg := selfmetric.New()
		drops := reg.NewReasonCounters("les_sink_dropped_items_total", "sink", "slow")
		sk := &slowSink{got: map[string][]int64{}, drops: drops}
		r, err := NewSinkRunner(SinkConfig{Name: "slow", Origins: []string{stream.OriginIngest}, Batch: parts * perPart,
			MaxItems: 2 * perRec, Concurrency: 3, Ordered: true, Dropped: drops,
			Retry: sink.RetryConfig{InitialBackoff: time.Millisecond}}, st, sk, reg, quiet)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		for range 200 { // each round: every goroutine blocked, then a second passes
			synctest.Wait()
			if reg.Counter("les_consumer_records_total", "consumer", "slow").Get() == parts*perPart {
				break
			}
			time.Sleep(time.Second)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		sk.mu.Lock()
		defer sk.mu.Unlock()
		total := 0
		for name, ts := range sk.got {
			total += len(ts)
			n := perPart
			if strings.HasPrefix(name, "p2.") {
				n-- // the poison record's points are dead-lettered with it
			}
			if len(ts) != n {
				t.Errorf("%s: %d points, want %d (each exactly once)", name, len(ts), n)
			}
			if !slices.IsSorted(ts) {
				t.Errorf("%s: points out of order: %v", name, ts)
			}
		}
		if total != want {
			t.Errorf("delivered %d items, want %d", total, want)
		}
		if got := reg.Counter("les_sink_delivered_items_total", "sink", "slow").Get(); got != uint64(want) {
			t.Errorf("les_sink_delivered_items_total = %d, want %d (dropped items left out)", got, want)
		}
		if got := reg.Counter("les_consumer_dead_lettered_total", "consumer", "slow").Get(); got != 1 {
			t.Errorf("dead-lettered %d records, want 1 (the poison one alone)", got)
		}
		if sk.maxInflight < 2 || sk.maxInflight > 3 {
			t.Errorf("at most %d Sends in flight, want 2…3 (concurrency 3)", sk.maxInflight)
		}
		if sk.merged == 0 {
			t.Error("no Send held more than one record: records were not merged")
		}
	})
}

// noCursors is a mem stream that keeps no durable cursors, as Kinesis.
type noCursors struct{ *mem.Stream }

func (s noCursors) Capabilities() stream.Capabilities {
	c := s.Stream.Capabilities()
	c.DurableCursors = false
	return c
}

// TestSinkRunnerStartAt: a new sink with start_at newest skips what the
// stream holds, on streams with durable cursors and on those where the
// sink keeps its positions (the start is fixed in the positions file, so
// a restart before any record does not skip what arrived meanwhile); a
// start time begins there.
func TestSinkRunnerStartAt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cursors bool
		start   func(t0 time.Time) stream.StartAt
	}{
		{"newest/durable", true, func(time.Time) stream.StartAt { return stream.StartAt{Newest: true} }},
		{"newest/positions", false, func(time.Time) stream.StartAt { return stream.StartAt{Newest: true} }},
		{"time/durable", true, func(t0 time.Time) stream.StartAt { return stream.StartAt{Time: t0} }},
		{"time/positions", false, func(t0 time.Time) stream.StartAt { return stream.StartAt{Time: t0} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := mem.NewStore()
				var st stream.Stream = mem.New(store, mem.Config{Partitions: 2})
				if !tc.cursors {
					st = noCursors{st.(*mem.Stream)}
				}
				seq := uint64(0)
				publish := func(name string) {
					seq++
					e := wire.NewEncoder(wire.SignalMetrics)
					e.AppendMetric(&model.Metric{Name: name, Value: 1, Kind: model.Gauge})
					data, _ := e.Finish(nil, 3, seq, wire.CompressionNone)
					if err := st.Publish(context.Background(), stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalMetrics,
						Partition: int(seq % 2), ID: fmt.Sprint("s", seq), Data: data}); err != nil {
						t.Fatal(err)
					}
				}
				publish("old-1")
				publish("old-2")
				time.Sleep(time.Minute)
				t0 := time.Now()
				cfg := SinkConfig{Name: "late", Origins: []string{stream.OriginIngest}, Start: tc.start(t0),
					PositionsPath: t.TempDir() + "/late.pos"}
				sk := &recordingSink{}
				run := func(during func()) {
					r, err := NewSinkRunner(cfg, st, sk, selfmetric.New(), quiet)
					if err != nil {
						t.Fatal(err)
					}
					ctx, cancel := context.WithCancel(context.Background())
					done := make(chan error, 1)
					go func() { done <- r.Run(ctx) }()
					synctest.Wait() // consuming: the durable exists, the start is fixed
					during()
					time.Sleep(time.Second) // past the stream's batch wait
					synctest.Wait()
					cancel()
					if err := <-done; err != nil {
						t.Fatal(err)
					}
				}
				run(func() {})
				publish("new-1") // between two runs, before the sink read anything
				run(func() { publish("new-2"); publish("new-3") })
				sk.mu.Lock()
				defer sk.mu.Unlock()
				slices.Sort(sk.got)
				if want := []string{"new-1", "new-2", "new-3"}; !slices.Equal(sk.got, want) {
					t.Fatalf("delivered %v, want %v", sk.got, want)
				}
			})
		})
	}
}
