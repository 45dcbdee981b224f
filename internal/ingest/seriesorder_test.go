package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/mem"
	"github.com/les-streams/les/internal/wire"
)

// seriesOrder walks recs (each partition's records in stream order, as
// mem.Store.Records returns them) and returns one message per point of a
// series that is older than the series' point before it on the stream,
// and how many points it saw. A series is identified by its name here
// (the tests give every series its own name).
func seriesOrder(t *testing.T, recs []stream.Record) (bad []string, points int) {
	t.Helper()
	last := map[string]int64{}
	var dec wire.Decoder
	var batch model.Batch
	for ri, rec := range recs {
		batch.Reset()
		if _, err := dec.Decode(&batch, rec.Data); err != nil {
			t.Fatalf("record %d: %v", ri, err)
		}
		for _, m := range batch.Metrics {
			points++
			if prev, ok := last[m.Name]; ok && m.Timestamp < prev {
				bad = append(bad, fmt.Sprintf("%s: record %d (partition %d) has t=%d after t=%d", m.Name, ri, rec.Partition, m.Timestamp, prev))
			}
			last[m.Name] = max(last[m.Name], m.Timestamp)
		}
	}
	return bad, points
}

// TestBatcherSeriesOrder (issue 9): the points of one series reach the
// stream in the order they were added, with many concurrent Adds, several
// publishers and publishes that finish out of turn (the in-memory stream
// takes 3, 1, 2 ms of fake time in turn, so a later publish can overtake
// an earlier one). Before per-lane publishing, Adds queued their cut
// batches after releasing the batcher's lock (two Adds could swap them)
// and publishers took batches of one partition concurrently; Prometheus
// then refused ~1 % of samples as out_of_order.
func TestBatcherSeriesOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := mem.NewStore()
		st := mem.New(store, mem.Config{Partitions: 2})
		var calls atomic.Int64
		store.SetPublishFault(func(ctx context.Context, _ []stream.Record) error {
			select {
			case <-time.After(time.Duration(3-calls.Add(1)%3) * time.Millisecond):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		reg := selfmetric.New()
		// Compression none: zstd keeps shared encoders whose channels must
		// not cross synctest bubbles.
		b, err := NewBatcher(BatchConfig{FlushInterval: 2 * time.Millisecond, MaxBatchBytes: 1024, Publishers: 4,
			QueueBatches: 4, Compression: "none"}, st, reg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- b.Run(ctx, 10*time.Second) }()

		// Each adder owns its series and adds their points in time order;
		// adders share the encoders (and so the records) of a partition.
		const adders, perAdder, points = 8, 4, 150
		var wg sync.WaitGroup
		for g := range adders {
			wg.Go(func() {
				var batch model.Batch
				for i := range points {
					batch.Reset()
					for k := range perAdder {
						batch.Metrics = append(batch.Metrics, model.Metric{Name: "s." + strconv.Itoa(g) + "." + strconv.Itoa(k),
							Source: "fn", Value: float64(i), Timestamp: int64(i+1) * 1e6})
					}
					b.Add(&batch)
					if i%16 == g%16 {
						time.Sleep(time.Millisecond) // fake time: let age flushes in
					}
				}
			})
		}
		wg.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		bad, n := seriesOrder(t, store.Records())
		if n != adders*perAdder*points {
			t.Fatalf("%d points on the stream, want %d", n, adders*perAdder*points)
		}
		for i, msg := range bad {
			if i == 5 {
				break
			}
			t.Error(msg)
		}
		if len(bad) > 0 {
			t.Fatalf("%d of %d points reached the stream after a newer point of their series", len(bad), n)
		}
	})
}
