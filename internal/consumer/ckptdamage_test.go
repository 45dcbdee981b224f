package consumer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/les-streams/les/internal/stream"
)

// crashAfterOutput is a stream that, right after the first publish of the
// processor's output succeeds, copies the checkpoint files as they are
// (what a kill -9 at that moment leaves on disk) and then refuses every
// publish, so nothing the runner does later reaches the stream.
type crashAfterOutput struct {
	stream.Stream
	ckpt, snap string
	once       sync.Once
	crashed    chan struct{}
}

var errCrashed = errors.New("crashed")

func (c *crashAfterOutput) Publish(ctx context.Context, recs ...stream.Record) error {
	select {
	case <-c.crashed:
		return errCrashed
	default:
	}
	if err := c.Stream.Publish(ctx, recs...); err != nil {
		return err
	}
	if len(recs) > 0 && recs[0].Origin == stream.OriginRollup {
		c.once.Do(func() {
			for _, suffix := range []string{"", previousSuffix} {
				if b, err := os.ReadFile(c.ckpt + suffix); err == nil {
					_ = os.WriteFile(c.snap+suffix, b, 0o600)
				}
			}
			close(c.crashed)
		})
	}
	return nil
}

// TestProcRunnerDamagedCheckpointAfterEmitting: les is killed right after
// the processor published windows; then its newest checkpoint is damaged.
// It starts from the previous checkpoint, folds the records after it in
// again with more, and the emitted totals (de-duplicated by record id, as the
// stream does) still equal the samples exactly: no double count, no loss.
// Before the fix les refused to start ("corrupt checkpoint"); with a
// fallback alone, output published after the older checkpoint was
// emitted again under reused ids with other content.
func TestProcRunnerDamagedCheckpointAfterEmitting(t *testing.T) {
	dir := t.TempDir()
	base := openStream(t, dir)
	defer base.Close()
	ckpt := filepath.Join(dir, "count.ckpt")

	publishMetrics(t, base, 0, 15, 10) // 150 samples, emitted and published
	p0 := &countProc{}
	runProcPublished(t, base, ckpt, p0, func() bool { return p0.total == 150 })

	publishMetrics(t, base, 15, 15, 10) // 150 more
	snap := filepath.Join(t.TempDir(), "count.ckpt")
	crash := &crashAfterOutput{Stream: base, ckpt: ckpt, snap: snap, crashed: make(chan struct{})}
	p1 := &countProc{}
	runProc(t, crash, ckpt, p1, func() bool {
		select {
		case <-crash.crashed:
			return true
		default:
			return false
		}
	})
	// The disk as the kill left it, then the newest checkpoint damaged.
	for _, suffix := range []string{"", previousSuffix, ".bad"} {
		_ = os.Remove(ckpt + suffix)
		if b, err := os.ReadFile(snap + suffix); err == nil {
			if err := os.WriteFile(ckpt+suffix, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	b, err := os.ReadFile(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(ckpt, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ckpt + previousSuffix); err != nil {
		t.Fatalf("no previous checkpoint kept: %v", err)
	}

	// More records: folded in together with those replayed after the
	// older checkpoint, so that re-emitted windows would differ from the
	// ones published before the kill.
	publishMetrics(t, base, 30, 5, 10)
	p2 := &countProc{}
	runProcPublished(t, base, ckpt, p2, func() bool { return p2.total == 350 })
	if got := emittedTotal(t, base, 350); got != 350 {
		t.Fatalf("emitted %v in total, want exactly 350", got)
	}
	if _, err := os.Stat(ckpt + ".bad"); err != nil {
		t.Errorf("the damaged checkpoint was not kept aside: %v", err)
	}
}

// TestProcRunnerNoGoodCheckpoint: both checkpoints damaged: the runner
// starts (instead of exiting), rebuilds from the oldest record and says
// so at ERROR.
func TestProcRunnerNoGoodCheckpoint(t *testing.T) {
	dir := t.TempDir()
	base := openStream(t, dir)
	defer base.Close()
	ckpt := filepath.Join(dir, "count.ckpt")
	publishMetrics(t, base, 0, 5, 10)
	p0 := &countProc{}
	runProcPublished(t, base, ckpt, p0, func() bool { return p0.total == 50 })
	for _, p := range []string{ckpt, ckpt + previousSuffix} {
		if err := os.WriteFile(p, []byte("LESC\x02garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, from, problems, err := loadRotated(ckpt)
	if err != nil || from != loadedNone || len(problems) != 2 || len(c.positions) != 0 || c.positions == nil {
		t.Fatalf("loadRotated = %v, %v, %v, %v; want an empty checkpoint, loadedNone, two problems", c.positions, from, problems, err)
	}
	for _, p := range []string{ckpt, ckpt + previousSuffix} {
		if err := os.WriteFile(p, []byte("LESC\x02garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p1 := &countProc{}
	runProc(t, base, ckpt, p1, func() bool { return p1.total == 50 }) // rebuilt from the oldest
}
