package natsjs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// TestEndMovesBackWhileRunning: the NATS server restarts with its block
// file damaged while les stays connected; the stream's end moves back below
// a durable's cursor and records published after the restart reuse those
// sequences. The watcher finds it, moves the durable back to where the new
// records begin — even those published before it looked — and counts what
// was lost. Before the fix none of the new records was delivered.
func TestEndMovesBackWhileRunning(t *testing.T) {
	dir, port := t.TempDir(), freePort(t)
	srv := startServer(t, dir, port)
	reg := selfmetric.New()
	deps := quiet
	// The test calls the watcher's steps itself (CheckCursors, look).
	deps.Metrics, deps.WatchInterval = reg, -1
	s, err := Open(context.Background(), Config{URL: srv.ClientURL()}, 1, deps)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	publish := func(prefix string, n int) {
		for i := range n {
			id := fmt.Sprintf("%s%d", prefix, i)
			data := make([]byte, 1000)
			copy(data, id+"\n")
			if err := s.Publish(ctx, stream.Record{Origin: "in", Signal: wire.SignalMetrics, ID: id, Data: data}); err != nil {
				t.Fatal(err)
			}
		}
	}
	consume := func(done func(map[string]bool) bool) map[string]bool {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		got := map[string]bool{}
		_ = s.Consume(cctx, stream.ConsumeOptions{Durable: "sink", Batch: 10, MaxWait: 50 * time.Millisecond},
			func(_ context.Context, ds []stream.Delivery) error {
				for _, d := range ds {
					id, _, _ := strings.Cut(string(d.Data), "\n")
					got[id] = true
				}
				if done(got) {
					cancel()
				}
				return nil
			})
		return got
	}
	if err := s.CheckCursors(ctx); err != nil {
		t.Fatal(err)
	}
	publish("a", 300)
	if err := s.look(ctx); err != nil {
		t.Fatal(err)
	}
	consume(func(got map[string]bool) bool { return len(got) >= 200 })

	srv.Shutdown()
	srv.WaitForShutdown()
	blk := filepath.Join(dir, "jetstream", "$G", "streams", "LES", "msgs", "1.blk")
	f, err := os.OpenFile(blk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	if _, err := f.WriteAt(make([]byte, 4096), st.Size()/2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	srv = startServer(t, dir, port)
	defer srv.Shutdown()

	publish("b", 50)
	if err := s.look(ctx); err != nil { // the watcher's next look
		t.Fatal(err)
	}
	got := consume(func(got map[string]bool) bool {
		for i := range 50 {
			if !got[fmt.Sprintf("b%d", i)] {
				return false
			}
		}
		return true
	})
	for i := range 50 {
		if !got[fmt.Sprintf("b%d", i)] {
			t.Fatalf("b%d, published after the server came back damaged, was never delivered (got %d records)", i, len(got))
		}
	}
	if n := reg.Counter("les_stream_lost_records_total", "backend", "nats").Get(); n == 0 {
		t.Error("les_stream_lost_records_total is 0")
	}
}
