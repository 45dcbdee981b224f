package ingest

import (
	"context"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/wire"
)

// TestBatcherReusesEncoders: a published batch's encoder is kept for the
// next batch of its signal, across garbage collections (a sync.Pool lost
// it at every one, and with it the series encoder's strings and series
// from earlier records, ADR 0016), and the free list stays bounded.
func TestBatcherReusesEncoders(t *testing.T) {
	st := openStream(t)
	b, err := NewBatcher(BatchConfig{}, st, selfmetric.New(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, 5*time.Second) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	publish := func() *wire.Encoder {
		t.Helper()
		var batch model.Batch
		batch.Metrics = append(batch.Metrics, model.Metric{Name: "m", Value: 1, Timestamp: 1, Kind: model.Gauge})
		b.Add(&batch)
		b.mu.Lock()
		var enc *wire.Encoder
		for _, ob := range b.open {
			enc = ob.enc
		}
		b.mu.Unlock()
		b.Flush(0)
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		if err := b.Settle(sctx); err != nil {
			t.Fatal(err)
		}
		return enc
	}
	first := publish()
	for range 2 {
		runtime.GC() // a sync.Pool is emptied by two
	}
	if second := publish(); second != first {
		t.Fatal("the second batch did not reuse the first one's encoder after a collection")
	}
	b.mu.Lock()
	for range 3 * b.maxFree() {
		b.putFree(wire.NewEncoding(wire.SignalLogs, wire.EncodingLES))
	}
	n, max := len(b.free), b.maxFree()
	b.mu.Unlock()
	if n != max {
		t.Fatalf("%d free encoders, bound %d", n, max)
	}
}
