package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

type downStream struct {
	stream.Stream
	down atomic.Bool
}

func (d *downStream) Publish(ctx context.Context, recs ...stream.Record) error {
	if d.down.Load() {
		<-ctx.Done()
		return errors.New("stream unavailable")
	}
	return d.Stream.Publish(ctx, recs...)
}

// TestSpoolKeepsWhatTheStreamRefused: while the stream is down, closed
// batches go to the spool; once it is back, Replay publishes them all.
func TestSpoolKeepsWhatTheStreamRefused(t *testing.T) {
	real := openStream(t)
	st := &downStream{Stream: real}
	st.down.Store(true)
	reg := selfmetric.New()
	dir := t.TempDir()
	sp, err := OpenSpool(SpoolConfig{Dir: dir}, st, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBatcher(BatchConfig{FlushInterval: 10 * time.Millisecond, PublishTimeout: 50 * time.Millisecond}, st, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	b.SetSpool(sp)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, time.Second) }()
	for i := range 3 {
		var batch model.Batch
		batch.Metrics = append(batch.Metrics, model.Metric{Name: "spooled", Value: float64(i)})
		b.Add(&batch)
		time.Sleep(30 * time.Millisecond) // separate batches
	}
	cancel()
	<-done
	ents, _ := os.ReadDir(dir)
	if len(ents) == 0 || reg.Counter("les_stream_spooled_records_total").Get() == 0 {
		t.Fatalf("nothing spooled while the stream was down (%d files)", len(ents))
	}
	st.down.Store(false)
	if err := sp.Replay(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("%d files left in the spool after replay", len(ents))
	}
	if real.Store().Len() == 0 {
		t.Fatal("nothing reached the stream")
	}
	if got, want := reg.Counter("les_stream_spool_replayed_records_total").Get(), reg.Counter("les_stream_spooled_records_total").Get(); got != want {
		t.Fatalf("replayed %d of %d spooled records", got, want)
	}
}

// tooLargeStream refuses records over a size, as a server's max_payload does.
type tooLargeStream struct {
	stream.Stream
	max int
}

func (s *tooLargeStream) Publish(ctx context.Context, recs ...stream.Record) error {
	for _, r := range recs {
		if len(r.Data) > s.max {
			return stream.ErrTooLarge
		}
		if len(r.Data) == 13 {
			return fmt.Errorf("central les answered 400: %w", stream.ErrRejected)
		}
	}
	return s.Stream.Publish(ctx, recs...)
}

// TestSpoolSkipsRecordsThatNeverFit: a spooled record the stream can never
// take (too large, or refused for good) is moved aside and counted; the
// records behind it are replayed.
func TestSpoolSkipsRecordsThatNeverFit(t *testing.T) {
	real := openStream(t)
	reg := selfmetric.New()
	dir := t.TempDir()
	sp, err := OpenSpool(SpoolConfig{Dir: dir}, &tooLargeStream{Stream: real, max: 100}, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range []int{10, 500, 13, 20} {
		if err := sp.Write(stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalMetrics, ID: fmt.Sprint("r", i), Data: make([]byte, n)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Replay(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := reg.Counter("les_stream_spool_replayed_records_total").Get(); got != 2 {
		t.Fatalf("replayed %d records, want 2 (the small ones)", got)
	}
	if got := reg.Counter("les_stream_dropped_records_total").Get(); got != 2 {
		t.Fatalf("dropped %d, want 2", got)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, filepath.Ext(e.Name()))
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{".rejected", ".toolarge"}) {
		t.Fatalf("spool dir holds %v, want only the two moved-aside records", ents)
	}
}

func TestSpoolRemovesTornTempFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/00000000000000000001.rec.tmp", []byte("torn"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSpool(SpoolConfig{Dir: dir}, openStream(t), selfmetric.New(), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("torn temp file left: %v", ents)
	}
}
