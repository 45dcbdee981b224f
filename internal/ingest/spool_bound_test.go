package ingest

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// TestSpoolBoundUnderConcurrentWrites: publishers spool concurrently; the
// spool still never holds more than max_bytes, and what does not fit is
// counted as dropped.
func TestSpoolBoundUnderConcurrentWrites(t *testing.T) {
	reg := selfmetric.New()
	rec := stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalLogs, ID: "id", Data: bytes.Repeat([]byte("x"), 1000)}
	per := int64(len(marshalSpooled(rec)))
	const fit, writers, each = 4, 8, 4
	sp, err := OpenSpool(SpoolConfig{Dir: t.TempDir(), MaxBytes: fit * per}, nil, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				_ = sp.Write(rec)
			}
		}()
	}
	wg.Wait()
	spooled := reg.Counter("les_stream_spooled_records_total").Get()
	dropped := reg.Counter("les_stream_dropped_records_total").Get()
	if spooled != fit || dropped != writers*each-fit || sp.size.Load() != fit*per {
		t.Fatalf("spooled %d, dropped %d, %d bytes; want %d, %d, %d", spooled, dropped, sp.size.Load(), fit, writers*each-fit, fit*per)
	}
}
