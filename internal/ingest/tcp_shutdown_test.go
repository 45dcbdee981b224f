package ingest

import (
	"context"
	"fmt"
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
	in, _ := tcpIntake(t)
	tcp := &TCP{cfg: TCPConfig{MaxLine: 1024, IdleTimeout: 5 * time.Second}, in: in,
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

// TestTCPShutdownReadsWhatWasSent: lines a client wrote before les shut
// down (in the socket's buffer, the client's writes succeeded) are
// decoded and published, not dropped because the handler saw the
// shutdown before its first read; also on a port that takes HTTP too,
// where the first read sniffs the protocol.
func TestTCPShutdownReadsWhatWasSent(t *testing.T) {
	for _, sniffing := range []bool{false, true} {
		t.Run(fmt.Sprintf("sniffing=%v", sniffing), func(t *testing.T) {
			in, reg := tcpIntake(t)
			tcp := &TCP{cfg: TCPConfig{MaxLine: 1024, IdleTimeout: 5 * time.Second, LineTimeout: 5 * time.Second}, in: in,
				newDecoder: func() Decoder { return fakeDecoder{} }, log: slog.New(slog.DiscardHandler)}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if sniffing { // as startHTTP sets it up; raw lines never reach it
				tcp.hl = &connListener{addr: ln.Addr(), ch: make(chan net.Conn), closed: make(chan struct{})}
			}
			client, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			server, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer server.Close()
			const lines = 500
			var buf []byte
			for i := range lines {
				buf = fmt.Appendf(buf, "line %d\n", i)
			}
			if _, err := client.Write(buf); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // shut down before the handler read anything
			tcp.serve(ctx, newTCPConn(server))
			if got := reg.Counter("les_ingest_received_total", "format", "x", "transport", "tcp").Get(); got != lines {
				t.Fatalf("%d of %d lines the client sent before the shutdown were taken", got, lines)
			}
		})
	}
}

// gatedListener holds Accept until shutdown has begun (Close or
// SetDeadline called): a connection the client opened and wrote to sits
// in the kernel's listen backlog when les shuts down.
type gatedListener struct {
	*net.TCPListener
	once sync.Once
	gate chan struct{}
}

func (l *gatedListener) open() { l.once.Do(func() { close(l.gate) }) }

func (l *gatedListener) Accept() (net.Conn, error) {
	<-l.gate
	return l.TCPListener.Accept()
}

func (l *gatedListener) Close() error {
	l.open()
	return l.TCPListener.Close()
}

func (l *gatedListener) SetDeadline(t time.Time) error {
	l.open()
	return l.TCPListener.SetDeadline(t)
}

// TestTCPShutdownAcceptsBacklog: lines from a connection the kernel
// completed but Run had not accepted when les shut down (its client's
// writes succeeded) are taken, not reset with the listener (CI saw
// TestRestartResumes lose 50 of 50 lines this way).
func TestTCPShutdownAcceptsBacklog(t *testing.T) {
	in, reg := tcpIntake(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := &gatedListener{TCPListener: ln.(*net.TCPListener), gate: make(chan struct{})}
	tcp := NewTCP(gl, TCPConfig{}, in, func() Decoder { return fakeDecoder{} }, slog.New(slog.DiscardHandler))
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	const lines = 50
	var buf []byte
	for i := range lines {
		buf = fmt.Appendf(buf, "line %d\n", i)
	}
	if _, err := client.Write(buf); err != nil {
		t.Fatal(err)
	}
	_ = client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // shut down before Run accepted the connection
	if err := tcp.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if got := reg.Counter("les_ingest_received_total", "format", "x", "transport", "tcp").Get(); got != lines {
		t.Fatalf("%d of %d lines from a connection in the listen backlog were taken", got, lines)
	}
}

// tcpIntake is the intake of a TCP listener under test ("x" over tcp),
// publishing to an in-memory stream, and its registry.
func tcpIntake(t *testing.T) (*Intake, *selfmetric.Registry) {
	t.Helper()
	reg := selfmetric.New()
	b, err := NewBatcher(BatchConfig{}, openStream(t), reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return NewIntake("x", "tcp", b, reg), reg
}
