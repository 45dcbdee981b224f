package ingest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/les-streams/les/internal/selfmetric"
)

// TestTCPMaxConnections: connections beyond the limit are closed at once
// and counted; the ones within it keep working.
func TestTCPMaxConnections(t *testing.T) {
	reg := selfmetric.New()
	b, err := NewBatcher(BatchConfig{}, openStream(t), reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	in := NewIntake("wavefront", "tcp", b, reg)
	// EvictAfter 1h: no connection is old enough to be evicted (slowclient_test.go
	// covers eviction), so the third is refused.
	ln, err := ListenTCP(TCPConfig{Address: "127.0.0.1:0", MaxConnections: 2, EvictAfter: time.Hour}, in, func() Decoder { return fakeDecoder{} }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ln.Run(ctx) }()
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// Wait until both are registered, then a third is refused.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln.mu.Lock()
		n := len(ln.conns)
		ln.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections registered", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	extra, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("third connection: read %v, want EOF (closed by les)", err)
	}
	if got := reg.Counter("les_ingest_rejected_total", "format", "wavefront", "reason", ReasonTooManyConnections).Get(); got != 1 {
		t.Fatalf("too_many_connections = %d, want 1", got)
	}
	if _, err := conns[0].Write([]byte("a 1\n")); err != nil {
		t.Fatalf("an accepted connection stopped working: %v", err)
	}
	for _, c := range conns {
		c.Close()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
