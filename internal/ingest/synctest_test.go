package ingest

import (
	"context"
	"errors"
	"log/slog"
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

// TestOutageSpoolsAndReplays runs the batcher and the spool against
// the in-memory stream in a synctest bubble (fake time, no sleeps): while
// publishes fail, every closed batch is spooled after publish_timeout;
// when the stream is back the queue drains, the spool replays, and the
// stream ends up holding every item exactly once.
func TestOutageSpoolsAndReplays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := mem.NewStore()
		st := mem.New(store, mem.Config{Partitions: 2})
		var down atomic.Bool
		down.Store(true)
		store.SetPublishFault(func(ctx context.Context, _ []stream.Record) error {
			if !down.Load() {
				return nil
			}
			<-ctx.Done() // a stream that does not answer
			return errors.New("stream unavailable")
		})
		reg := selfmetric.New()
		log := slog.New(slog.DiscardHandler)
		sp, err := OpenSpool(SpoolConfig{Dir: t.TempDir(), Retry: time.Second}, st, reg, log)
		if err != nil {
			t.Fatal(err)
		}
		// Compression none: zstd keeps shared encoders whose channels must
		// not cross synctest bubbles (one per -count run).
		b, err := NewBatcher(BatchConfig{FlushInterval: 100 * time.Millisecond, PublishTimeout: 2 * time.Second, Compression: "none"}, st, reg, log)
		if err != nil {
			t.Fatal(err)
		}
		b.SetSpool(sp)
		ctx, cancel := context.WithCancel(context.Background())
		spoolCtx, stopSpool := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- b.Run(ctx, 10*time.Second) }()
		go sp.Run(spoolCtx)

		const n = 30
		for i := range n {
			var batch model.Batch
			batch.Metrics = append(batch.Metrics, model.Metric{Name: "m", Source: "fn", Value: float64(i)})
			b.Add(&batch)
			time.Sleep(150 * time.Millisecond) // fake time: one closed batch each
		}
		time.Sleep(5 * time.Second) // every publish has timed out
		synctest.Wait()
		spooled := reg.Counter("les_stream_spooled_records_total").Get()
		if spooled == 0 || store.Len() != 0 {
			t.Fatalf("during the outage: %d spooled, %d on the stream", spooled, store.Len())
		}
		down.Store(false)
		time.Sleep(30 * time.Second) // the queue drains; spool replay rounds
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		stopSpool()
		synctest.Wait()
		spooled = reg.Counter("les_stream_spooled_records_total").Get() // batches in flight when it came back, too
		if got := reg.Counter("les_stream_spool_replayed_records_total").Get(); got != spooled {
			t.Fatalf("replayed %d of %d spooled records", got, spooled)
		}
		// Every item once.
		seen := map[float64]bool{}
		items := 0
		for _, rec := range store.Records() {
			var batch model.Batch
			var dec wire.Decoder
			if _, err := dec.Decode(&batch, rec.Data); err != nil {
				t.Fatal(err)
			}
			for _, m := range batch.Metrics {
				if seen[m.Value] {
					t.Fatalf("item %v on the stream twice", m.Value)
				}
				seen[m.Value] = true
				items++
			}
		}
		if items != n {
			t.Fatalf("%d items on the stream, want %d", items, n)
		}
	})
}
