package ingest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream/mem"
	"github.com/les-streams/les/internal/wire"
)

// pipeListener is an in-memory net.Listener of net.Pipe connections, so
// that the listener runs in a synctest bubble.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// Dial connects a client; it fails once the listener is closed.
func (l *pipeListener) Dial() (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		client.Close()
		server.Close()
		return nil, net.ErrClosed
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// countingDecoder is fakeDecoder counting the lines it decoded that do
// not start with 'x' (an attacker's).
type countingDecoder struct{ n *atomic.Int64 }

func (d countingDecoder) Decode(dst *model.Batch, payload []byte, now int64) {
	fakeDecoder{}.Decode(dst, payload, now)
	for _, l := range bytes.Split(bytes.TrimSuffix(payload, []byte("\n")), []byte("\n")) {
		if len(l) > 0 && l[0] != 'x' {
			d.n.Add(1)
		}
	}
}

// TestTCPDribblersDoNotDenyService runs the slowloris attack on a TCP line
// listener scaled down (max_connections 20, 25 attackers; in production
// 1,024 and 1,100) for a minute of fake time: every attacker sends one byte
// every 2 s and never a newline, and reconnects 1 s after it is closed.
// Meanwhile a valid client connects every second and sends two lines, and
// another keeps one connection and sends a line every 3 s. Every valid line
// must be delivered: dribbled lines time out (line_timeout) and at the
// limit an attacker's connection is evicted for a new one.
func TestTCPDribblersDoNotDenyService(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := mem.New(mem.NewStore(), mem.Config{Partitions: 1})
		defer st.Close()
		reg := selfmetric.New()
		log := slog.New(slog.DiscardHandler)
		b, err := NewBatcher(BatchConfig{FlushInterval: 100 * time.Millisecond, Compression: "none"}, st, reg, log)
		if err != nil {
			t.Fatal(err)
		}
		bctx, stopBatcher := context.WithCancel(context.Background())
		bdone := make(chan error, 1)
		go func() { bdone <- b.Run(bctx, 10*time.Second) }()

		var decoded atomic.Int64
		ln := newPipeListener()
		tcp := NewTCP(ln, TCPConfig{MaxConnections: 20, LineTimeout: 10 * time.Second}, NewIntake("wavefront", "tcp", b, reg),
			func() Decoder { return countingDecoder{&decoded} }, log)
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- tcp.Run(ctx) }()

		attackEnd := time.Now().Add(time.Minute)
		var wg sync.WaitGroup
		var attackConns atomic.Int64
		for range 25 {
			wg.Go(func() {
				for time.Now().Before(attackEnd) {
					c, err := ln.Dial()
					if err != nil {
						return
					}
					attackConns.Add(1)
					for time.Now().Before(attackEnd) {
						if _, err := c.Write([]byte("x")); err != nil {
							break // closed by les
						}
						time.Sleep(2 * time.Second)
					}
					c.Close()
					time.Sleep(time.Second)
				}
			})
		}
		time.Sleep(5 * time.Second) // the attackers hold every connection
		var sent, refused atomic.Int64
		wg.Go(func() { // one connection, a line every 3 s
			c, err := ln.Dial()
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			for time.Now().Before(attackEnd) {
				if _, err := c.Write([]byte("kept 1\n")); err != nil {
					t.Errorf("the active connection was closed: %v", err)
					return
				}
				sent.Add(1)
				time.Sleep(3 * time.Second)
			}
		})
		for time.Now().Before(attackEnd) { // a new connection every second
			c, err := ln.Dial()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(c, "a 1\nb 2\n"); err != nil {
				refused.Add(1)
			} else {
				sent.Add(2)
			}
			c.Close()
			time.Sleep(time.Second)
		}
		wg.Wait()
		synctest.Wait()
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		stopBatcher()
		if err := <-bdone; err != nil {
			t.Fatal(err)
		}
		items := 0
		for _, rec := range st.Store().Records() {
			var out model.Batch
			var dec wire.Decoder
			if _, err := dec.Decode(&out, rec.Data); err != nil {
				t.Fatal(err)
			}
			items += out.Len()
		}
		rejected := func(reason string) uint64 {
			return reg.Counter("les_ingest_rejected_total", "format", "wavefront", "reason", reason).Get()
		}
		t.Logf("attack: %d connections; valid: %d lines sent, %d decoded, %d on the stream, %d connections refused; "+
			"line_timeout %d, connection_evicted %d, too_many_connections %d",
			attackConns.Load(), sent.Load(), decoded.Load(), items, refused.Load(),
			rejected(ReasonLineTimeout), rejected(ReasonConnectionEvicted), rejected(ReasonTooManyConnections))
		if refused.Load() != 0 || decoded.Load() != sent.Load() || int64(items) < sent.Load() {
			t.Fatalf("valid traffic during the attack: %d lines sent, %d decoded, %d on the stream, %d connections refused",
				sent.Load(), decoded.Load(), items, refused.Load())
		}
		if rejected(ReasonConnectionEvicted) == 0 {
			t.Fatal("no connection was evicted")
		}
	})
}

// TestTCPEvictionPrefersUnfinished: at the limit, a connection that has
// sent lines and is merely idle is kept while one holding an unfinished
// line is evicted, and when every connection is fresh the new one is
// refused.
func TestTCPEvictionPrefersUnfinished(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := mem.New(mem.NewStore(), mem.Config{Partitions: 1})
		defer st.Close()
		reg := selfmetric.New()
		log := slog.New(slog.DiscardHandler)
		b, err := NewBatcher(BatchConfig{Compression: "none"}, st, reg, log)
		if err != nil {
			t.Fatal(err)
		}
		var decoded atomic.Int64
		ln := newPipeListener()
		tcp := NewTCP(ln, TCPConfig{MaxConnections: 2}, NewIntake("wavefront", "tcp", b, reg),
			func() Decoder { return countingDecoder{&decoded} }, log)
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- tcp.Run(ctx) }()
		bctx, stopBatcher := context.WithCancel(context.Background())
		bdone := make(chan error, 1)
		go func() { bdone <- b.Run(bctx, time.Second) }()

		idle, _ := ln.Dial()
		if _, err := io.WriteString(idle, "a 1\n"); err != nil {
			t.Fatal(err)
		}
		dribbler, _ := ln.Dial()
		if _, err := io.WriteString(dribbler, "unfinished"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		fresh, _ := ln.Dial() // both others are younger than EvictAfter: refused
		if _, err := fresh.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("new connection at the limit with no connection to evict: read %v, want EOF", err)
		}
		time.Sleep(2 * time.Second)
		next, _ := ln.Dial()
		synctest.Wait()
		if _, err := dribbler.Write([]byte("x")); err == nil {
			t.Fatal("the dribbling connection was not evicted")
		}
		if _, err := io.WriteString(idle, "b 2\n"); err != nil {
			t.Fatalf("the idle connection that sent lines was evicted: %v", err)
		}
		if _, err := io.WriteString(next, "c 3\n"); err != nil {
			t.Fatalf("the new connection: %v", err)
		}
		synctest.Wait()
		if decoded.Load() != 3 {
			t.Fatalf("%d lines decoded, want 3", decoded.Load())
		}
		for _, c := range []net.Conn{idle, dribbler, fresh, next} {
			c.Close()
		}
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		stopBatcher()
		<-bdone
	})
}

// TestTCPUnfinishedLineTimesOut: a connection that sends a byte every 2 s
// and never a newline is closed LineTimeout after its first byte, though
// it is never idle; its bytes are dropped and counted (line_timeout).
func TestTCPUnfinishedLineTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := mem.New(mem.NewStore(), mem.Config{Partitions: 1})
		defer st.Close()
		reg := selfmetric.New()
		log := slog.New(slog.DiscardHandler)
		b, err := NewBatcher(BatchConfig{Compression: "none"}, st, reg, log)
		if err != nil {
			t.Fatal(err)
		}
		var decoded atomic.Int64
		ln := newPipeListener()
		tcp := NewTCP(ln, TCPConfig{LineTimeout: 10 * time.Second}, NewIntake("wavefront", "tcp", b, reg),
			func() Decoder { return countingDecoder{&decoded} }, log)
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- tcp.Run(ctx) }()
		c, _ := ln.Dial()
		if _, err := io.WriteString(c, "a 1\n"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var closedAfter time.Duration
		for range 100 {
			if _, err := c.Write([]byte("y")); err != nil {
				closedAfter = time.Since(start)
				break
			}
			time.Sleep(2 * time.Second)
		}
		c.Close()
		if closedAfter == 0 || closedAfter > 12*time.Second {
			t.Errorf("dribbling connection closed after %v, want about the line timeout (10s)", closedAfter)
		}
		if got := reg.Counter("les_ingest_rejected_total", "format", "wavefront", "reason", ReasonLineTimeout).Get(); got != 1 {
			t.Errorf("line_timeout = %d, want 1", got)
		}
		if decoded.Load() != 1 {
			t.Errorf("%d lines decoded, want 1 (the dribbled bytes are dropped)", decoded.Load())
		}
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
