package extension

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/mem"
)

// TestListenersHeap: the default listeners (on free ports here) hold at
// most 8 MB of heap once running. les up's UDP readers (2 per socket, 32
// buffers of 64 KiB each) made the extension's 9 UDP sockets hold 42 MB,
// which the GC also took as its base: RSS climbed to 60 MB after 1,000
// invocations (docs/performance.md).
func TestListenersHeap(t *testing.T) {
	ls := DefaultListeners()
	for i := range ls {
		ls[i].Address = "127.0.0.1:0"
	}
	cfg := &Config{Stream: StreamConfig{Kind: "kinesis", Partitions: 1}, Listeners: ls,
		Batch: ingest.BatchConfig{Compression: "none"}, Spool: ingest.SpoolConfig{Dir: filepath.Join(t.TempDir(), "spool"), Retry: time.Hour},
		Flush: FlushConfig{Timeout: 10 * time.Millisecond, SpoolTimeout: 100 * time.Millisecond}}
	if err := cfg.Batch.Validate(); err != nil {
		t.Fatal(err)
	}
	store := mem.NewStore()
	x := &ext{cfg: cfg, log: slog.New(slog.DiscardHandler), reg: selfmetric.New(), tracker: newTracker()}
	x.openStream = func(context.Context) (stream.Stream, error) { return mem.New(store, mem.Config{Partitions: 1}), nil }
	before := heapInUse()
	if err := x.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer x.stopAll()
	// The readers allocate their buffers when they start: one datagram
	// to each UDP socket, counted as received, shows its reader runs.
	udp := 0
	for i, l := range x.info.Listeners {
		f := strings.Fields(l) // format transport address
		if f[1] != "udp" {
			continue
		}
		udp++
		c, err := net.Dial("udp", f[2])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("mem.test 1 source=s\n")); err != nil {
			t.Fatal(err)
		}
		c.Close()
		got := x.reg.Counter("les_ingest_received_total", "format", cfg.Listeners[i].Format, "transport", "udp")
		deadline := time.Now().Add(10 * time.Second)
		for got.Get() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: datagram not received", l)
			}
			runtime.Gosched()
		}
	}
	runtime.GC()
	grown := heapInUse() - before
	t.Logf("%d listeners (%d udp): heap +%.1f MB", len(x.info.Listeners), udp, float64(grown)/1e6)
	if grown > 8<<20 {
		t.Errorf("listeners hold %.1f MB of heap, want ≤ 8 MB", float64(grown)/1e6)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}
