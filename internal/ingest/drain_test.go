package ingest

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
)

// TestDrainTimeoutCoversQueuedBatches: with the stream unavailable and the
// queue full, the drain gives up on the stream drainTimeout after it began
// and spools everything, instead of waiting publish_timeout for every
// queued batch first (minutes with a full queue, after which a supervisor
// kills les and the batches in memory are lost).
func TestDrainTimeoutCoversQueuedBatches(t *testing.T) {
	reg := selfmetric.New()
	b, err := NewBatcher(BatchConfig{MaxBatchBytes: 1024, QueueBatches: 4, Publishers: 1, PublishTimeout: 5 * time.Second},
		stuckStream{}, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := OpenSpool(SpoolConfig{Dir: t.TempDir()}, nil, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	b.SetSpool(sp)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, 200*time.Millisecond) }()
	const batches = 6 // one publishing, four queued, one waiting to be queued
	added := make(chan struct{})
	go func() {
		defer close(added)
		for range batches {
			var batch model.Batch
			for range 12 {
				batch.Logs = append(batch.Logs, model.Log{Message: []byte(strings.Repeat("z", 100)), Source: "fn"})
			}
			b.Add(&batch)
		}
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	start := time.Now()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
	<-added
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("drain took %v with a 200ms drain timeout", d)
	}
	spooled := reg.Counter("les_stream_spooled_records_total").Get()
	if spooled < batches {
		t.Errorf("spooled %d records, want at least %d", spooled, batches)
	}
}
