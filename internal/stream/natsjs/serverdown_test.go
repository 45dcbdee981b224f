package natsjs

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/les-streams/les/internal/stream"
)

// TestConsumeStopsWhenServerGone: an ordered (non-durable) consumer of an
// external server that went away still returns soon after its ctx is
// cancelled; nats.go's ordered consumer would otherwise retry recreating
// itself forever inside Fetch and les' shutdown would never finish.
func TestConsumeStopsWhenServerGone(t *testing.T) {
	srv, err := Open(context.Background(), Config{Listen: "127.0.0.1:-1"}, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := Open(context.Background(), Config{URL: srv.ClientURL()}, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- cl.Consume(ctx, stream.ConsumeOptions{Subjects: []string{"les.in.>"}, FromStart: true},
			func(context.Context, []stream.Delivery) error { return nil })
	}()
	time.Sleep(500 * time.Millisecond)
	srv.Close()
	time.Sleep(2 * time.Second) // the consumer is now trying to recreate itself
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Consume still running 20s after its ctx was cancelled")
	}
}
