package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/les-streams/les/internal/stream/embedded"
	embedsrv "github.com/les-streams/les/internal/stream/embedded/server"
)

// TestShutdownWithStreamDown: with an external stream gone and intake
// blocked on the full publish queue, a shutdown still ends in bounded time
// (the drain spools what the stream does not take) rather than waiting
// publish_timeout for every queued batch while listeners hold the drain
// back, and nothing is lost without a count.
func TestShutdownWithStreamDown(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 30s")
	}
	ext, err := embedsrv.Open(context.Background(), embedded.Config{Listen: "127.0.0.1:-1", Auth: "none"}, t.TempDir(), 1, embedsrv.Deps{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{DataDir: t.TempDir()}
	cfg.Stream.Kind = "nats"
	cfg.Stream.NATS.URL = ext.ClientURL()
	cfg.Agent.HTTP.Listen = "127.0.0.1:0"
	cfg.Agent.Batch.MaxBatchBytes = 1024
	cfg.Agent.Batch.QueueBatches = 1
	cfg.Agent.Batch.Publishers = 1
	cfg.Agent.Batch.PublishTimeout = 5 * time.Second
	cfg.Agent.Listeners = []ListenerConfig{{Format: "wavefront", Transport: "tcp", Address: "127.0.0.1:0"}}
	cfg.Rollup.Disabled = true
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := New(cfg, slog.New(slog.DiscardHandler), testOptions())
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Info, 1)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, func(i Info) { ready <- i }) }()
	var info Info
	select {
	case info = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	ext.Close() // the stream goes away

	addr := strings.Fields(info.Listeners[0])[2]
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var sb strings.Builder
	for i := range 400 { // about 40 batches
		fmt.Fprintf(&sb, "some.metric.name.with.length %d source=host-%d tag=value\n", i, i)
	}
	go c.Write([]byte(sb.String()))
	time.Sleep(time.Second)
	cancel()
	start := time.Now()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		t.Fatal("shutdown still running after 90s")
	}
	// Intake waits at most 10s, the drain 10s, consumers a few seconds.
	if d := time.Since(start); d > 45*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	reg := a.Registry()
	received := reg.Counter("les_ingest_received_total", "format", "wavefront", "transport", "tcp").Get()
	published := reg.Counter("les_stream_published_items_total").Get()
	dropped := reg.Counter("les_ingest_dropped_items_total").Get()
	spooled := reg.Counter("les_stream_spooled_records_total").Get()
	t.Logf("received %d, published %d, dropped %d, spooled records %d", received, published, dropped, spooled)
	if spooled == 0 {
		t.Error("nothing spooled")
	}
}
