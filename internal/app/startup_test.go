package app

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"
)

// TestRunReleasesSocketsOnStartupError: when a later socket cannot be
// bound, Run returns the error and closes the sockets it had already
// bound, so a retry (or the next test) can bind them again.
func TestRunReleasesSocketsOnStartupError(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free := freeAddr(t)
	cfg := &Config{DataDir: t.TempDir()}
	cfg.Stream.Embedded.Listen = "127.0.0.1:-1"
	cfg.Agent.HTTP.Listen = "127.0.0.1:0"
	cfg.Agent.Listeners = []ListenerConfig{
		{Format: "wavefront", Transport: "tcp", Address: free},
		{Format: "wavefront", Transport: "udp", Address: free},
		{Format: "wavefront", Transport: "tcp", Address: busy.Addr().String()},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := New(cfg, slog.New(slog.DiscardHandler), testOptions()).Run(ctx, nil); err == nil {
		t.Fatal("Run bound a busy address")
	}
	ln, err := net.Listen("tcp", free)
	if err != nil {
		t.Fatalf("tcp %s still bound after Run failed: %v", free, err)
	}
	ln.Close()
	pc, err := net.ListenPacket("udp", free)
	if err != nil {
		t.Fatalf("udp %s still bound after Run failed: %v", free, err)
	}
	pc.Close()
}

// TestRunReleasesSocketsWhenHTTPBusy: the same when the HTTP address is
// the one in use.
func TestRunReleasesSocketsWhenHTTPBusy(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free := freeAddr(t)
	cfg := &Config{DataDir: t.TempDir()}
	cfg.Stream.Embedded.Listen = "127.0.0.1:-1"
	cfg.Agent.HTTP.Listen = busy.Addr().String()
	cfg.Agent.Listeners = []ListenerConfig{{Format: "wavefront", Transport: "tcp", Address: free}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := New(cfg, slog.New(slog.DiscardHandler), testOptions()).Run(context.Background(), nil); err == nil {
		t.Fatal("Run bound a busy HTTP address")
	}
	ln, err := net.Listen("tcp", free)
	if err != nil {
		t.Fatalf("tcp %s still bound after Run failed: %v", free, err)
	}
	ln.Close()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
