package ingest

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
)

// TestBatcherAddAfterDrain: an Add or Flush that comes after Run drained
// (a listener or handler the shutdown did not stop in time) must neither
// panic on the closed queue nor lose its items silently: they are counted
// as dropped.
func TestBatcherAddAfterDrain(t *testing.T) {
	st := openStream(t)
	reg := selfmetric.New()
	b, err := NewBatcher(BatchConfig{MaxBatchBytes: 1024}, st, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Run(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	var batch model.Batch
	for range 50 { // more than MaxBatchBytes: Add cuts a batch
		batch.Logs = append(batch.Logs, model.Log{Message: []byte(strings.Repeat("x", 100)), Source: "fn"})
	}
	b.Add(&batch)
	b.Flush(0)
	if got := reg.Counter("les_ingest_dropped_items_total").Get(); got != 50 {
		t.Fatalf("les_ingest_dropped_items_total = %d, want 50", got)
	}
}

// TestBatcherAddDuringDrain: Adds racing with the drain either get
// published or are counted as dropped; none panics and none is lost
// without a count.
func TestBatcherAddDuringDrain(t *testing.T) {
	st := openStream(t)
	reg := selfmetric.New()
	b, err := NewBatcher(BatchConfig{MaxBatchBytes: 1024, QueueBatches: 1}, st, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, 10*time.Second) }()
	var wg sync.WaitGroup
	const adders, adds, per = 4, 200, 5
	for range adders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var batch model.Batch
			for range adds {
				batch.Reset()
				for range per {
					batch.Logs = append(batch.Logs, model.Log{Message: []byte(strings.Repeat("y", 100)), Source: "fn"})
				}
				b.Add(&batch)
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	cancel()
	wg.Wait()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	published := reg.Counter("les_stream_published_items_total").Get()
	dropped := reg.Counter("les_ingest_dropped_items_total").Get()
	if published+dropped != adders*adds*per {
		t.Fatalf("published %d + dropped %d != added %d", published, dropped, adders*adds*per)
	}
}
