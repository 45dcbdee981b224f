package ingest

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/les-streams/les/internal/selfmetric"
)

// racingConn plays TCP.Run's shutdown at the worst moment: on the
// handler's first SetReadDeadline it cancels ctx and wakes the read (as
// Run does on shutdown) just before the handler's own idle deadline is
// applied.
type racingConn struct {
	net.Conn
	once   sync.Once
	cancel context.CancelFunc
}

func (c *racingConn) SetReadDeadline(t time.Time) error {
	c.once.Do(func() {
		c.cancel()
		_ = c.Conn.SetReadDeadline(time.Now())
	})
	return c.Conn.SetReadDeadline(t)
}

// TestTCPShutdownDuringDeadlineReset: a shutdown that lands between the
// handler's ctx check and its idle-deadline reset does not leave the
// handler blocked in Read for the whole idle timeout (which would hold the
// shutdown of les for up to 5 minutes).
func TestTCPShutdownDuringDeadlineReset(t *testing.T) {
	st := openStream(t)
	reg := selfmetric.New()
	b, err := NewBatcher(BatchConfig{}, st, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	tcp := &TCP{cfg: TCPConfig{MaxLine: 1024, IdleTimeout: 5 * time.Second}, in: NewIntake("x", "tcp", b, reg),
		newDecoder: func() Decoder { return fakeDecoder{} }, log: slog.New(slog.DiscardHandler)}
	client, server := net.Pipe()
	defer client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		tcp.serve(ctx, &racingConn{Conn: server, cancel: cancel})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("handler still reading 2s after shutdown (waits for the 5s idle timeout)")
	}
}
