package extension

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/mem"
)

// TestEndFlushBound: with a stream that hangs, the end-of-invocation
// flush takes exactly Flush.Timeout (fake time), spools the batch and
// shuts the gate; the next one (the stream now known to be failing)
// spools without waiting at all; once the stream answers again the spool
// is re-published and nothing is lost.
func TestEndFlushBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := mem.NewStore()
		hang := true
		store.SetPublishFault(func(ctx context.Context, _ []stream.Record) error {
			if hang {
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		})
		x, stop := flushFixture(t, store)
		defer stop()

		add := func(name string) {
			var b model.Batch
			b.Metrics = append(b.Metrics, model.Metric{Name: name, Value: 1, Timestamp: time.Now().UnixNano(), Source: "fn", Kind: model.Counter})
			x.batcher.Add(&b)
		}
		add("a")
		start := time.Now()
		x.endFlush()
		if d := time.Since(start); d != x.cfg.Flush.Timeout {
			t.Errorf("first end flush took %v, want %v", d, x.cfg.Flush.Timeout)
		}
		if n := spooled(t, x.cfg.Spool.Dir); n != 1 {
			t.Fatalf("%d spooled, want 1", n)
		}
		x.pub.Open()
		add("b")
		start = time.Now()
		x.endFlush() // the last publish failed: spool at once
		if d := time.Since(start); d != 0 {
			t.Errorf("second end flush took %v, want 0", d)
		}
		if n := spooled(t, x.cfg.Spool.Dir); n != 2 {
			t.Fatalf("%d spooled, want 2", n)
		}
		x.pub.Open()
		hang = false
		if err := x.spool.Replay(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := spooled(t, x.cfg.Spool.Dir); n != 0 || len(store.Records()) != 2 {
			t.Fatalf("after replay: %d spooled, %d stored", n, len(store.Records()))
		}
	})
}

// TestEndFlushHealthy: a stream that answers publishes within the bound;
// nothing is spooled.
func TestEndFlushHealthy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := mem.NewStore()
		x, stop := flushFixture(t, store)
		defer stop()
		var b model.Batch
		b.Logs = append(b.Logs, model.Log{Timestamp: time.Now().UnixNano(), Source: "fn", Message: []byte("m")})
		x.batcher.Add(&b)
		x.endFlush()
		if len(store.Records()) != 1 || spooled(t, x.cfg.Spool.Dir) != 0 {
			t.Fatalf("stored %d, spooled %d", len(store.Records()), spooled(t, x.cfg.Spool.Dir))
		}
	})
}

func flushFixture(t *testing.T, store *mem.Store) (*ext, func()) {
	t.Helper()
	// zstd keeps encoders in a process-wide pool, which a synctest bubble
	// must not share: these records are not compressed.
	cfg := &Config{Stream: StreamConfig{Kind: "kinesis", Partitions: 1},
		Batch: ingest.BatchConfig{FlushInterval: time.Hour, Compression: "none"}, Spool: ingest.SpoolConfig{Dir: filepath.Join(t.TempDir(), "spool"), Retry: time.Hour},
		Flush: FlushConfig{Timeout: 10 * time.Millisecond, SpoolTimeout: 100 * time.Millisecond}}
	if err := cfg.Batch.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := selfmetric.New()
	log := slog.New(slog.DiscardHandler)
	x := &ext{cfg: cfg, log: log, reg: reg, tracker: newTracker()}
	x.openStream = func(context.Context) (stream.Stream, error) { return mem.New(store, mem.Config{Partitions: 1}), nil }
	if err := x.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return x, x.stopAll
}

func spooled(t *testing.T, dir string) int {
	fs, err := filepath.Glob(filepath.Join(dir, "*.rec"))
	if err != nil {
		t.Fatal(err)
	}
	return len(fs)
}

// TestPolicy: the first invocations end with a flush; frequent ones flush
// in the background, with an end flush at least every Interval; sparse
// ones end with a flush again. end and periodic modes are fixed.
func TestPolicy(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	p := policy{cfg: FlushConfig{Mode: "adaptive", Interval: 10 * time.Second}}
	var got []bool
	at := t0
	for range 25 { // one per second
		got = append(got, p.atInvoke(at))
		at = at.Add(time.Second)
	}
	for i, end := range got {
		// The first policyWindow end with a flush (the last at t0+9s), then
		// only the backup flush 10s later (i=19).
		want := i < policyWindow || i == 19
		if end != want {
			t.Errorf("invocation %d: end flush %v, want %v", i, end, want)
		}
	}
	// Sparse again: a minute apart.
	for range policyWindow {
		at = at.Add(time.Minute)
		if !p.atInvoke(at) {
			t.Errorf("sparse invocation at %v flushed in the background", at.Sub(t0))
		}
	}
	e := policy{cfg: FlushConfig{Mode: "end", Interval: 10 * time.Second}}
	pe := policy{cfg: FlushConfig{Mode: "periodic", Interval: 10 * time.Second}}
	at = t0
	ends := 0
	for range 30 {
		if !e.atInvoke(at) {
			t.Error("mode end: background flush")
		}
		if pe.atInvoke(at) {
			ends++
		}
		at = at.Add(time.Second)
	}
	if ends != 3 {
		t.Errorf("mode periodic: %d end flushes in 30s, want 3", ends)
	}
}
