package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/les-streams/les/internal/model"
)

// Reasons for TCP connections and lines closed by the listener.
const (
	// ReasonConnectionEvicted counts connections closed to make room at
	// max_connections (see TCPConfig.MaxConnections).
	ReasonConnectionEvicted = "connection_evicted"
	// ReasonLineTimeout counts unfinished lines dropped after
	// TCPConfig.LineTimeout.
	ReasonLineTimeout = "line_timeout"
)

// TCPConfig configures a line listener.
type TCPConfig struct {
	Address string
	MaxLine int // longer lines are rejected (default 32768)
	// IdleTimeout closes connections silent for this long (default 5m).
	IdleTimeout time.Duration
	// LineTimeout closes a connection whose unfinished line (bytes after
	// the last newline) has not ended within this long of its first byte
	// (default 30s): a client dribbling bytes without ever ending a line
	// does not keep its connection. The unfinished line is dropped and
	// counted (reason line_timeout).
	LineTimeout time.Duration
	// MaxConnections bounds open connections (default 1024). When a new
	// connection arrives at the limit, the connection that has gone
	// longest without completing a line is closed to make room (reason
	// connection_evicted) — those with an unfinished line or none yet
	// first — provided it has been so for at least EvictAfter; otherwise
	// the new connection is closed at once (reason too_many_connections).
	MaxConnections int
	// EvictAfter is how long a connection must have gone without a
	// complete line before it may be evicted (default 1s).
	EvictAfter time.Duration
	// HTTP, when set, makes the port unified (unify.go): a connection
	// whose first line is an HTTP/1.x request line is served by this
	// server (its Handler, timeouts and limits), every other connection
	// stays a raw line stream. The listener owns the server: it sets
	// ConnState (calling one already set), serves it in Run and shuts it
	// down when Run's ctx ends. HTTP connections count towards
	// MaxConnections.
	HTTP *http.Server
}

// TCP accepts connections carrying newline-delimited lines.
type TCP struct {
	cfg        TCPConfig
	in         *Intake
	newDecoder func() Decoder
	log        *slog.Logger
	ln         net.Listener
	wg         sync.WaitGroup
	mu         sync.Mutex
	conns      map[*tcpConn]struct{}
	hl         *connListener // the HTTP side, when cfg.HTTP is set
}

// ListenTCP binds the listener.
func ListenTCP(cfg TCPConfig, in *Intake, newDecoder func() Decoder, log *slog.Logger) (*TCP, error) {
	ln, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("listen tcp %s: %w", cfg.Address, err)
	}
	return NewTCP(ln, cfg, in, newDecoder, log), nil
}

// NewTCP serves connections accepted from ln (cfg.Address is not used);
// Run closes ln.
func NewTCP(ln net.Listener, cfg TCPConfig, in *Intake, newDecoder func() Decoder, log *slog.Logger) *TCP {
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = 32768
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = 1024
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.LineTimeout <= 0 {
		cfg.LineTimeout = 30 * time.Second
	}
	if cfg.EvictAfter <= 0 {
		cfg.EvictAfter = time.Second
	}
	t := &TCP{cfg: cfg, in: in, newDecoder: newDecoder, log: log, ln: ln, conns: map[*tcpConn]struct{}{}}
	if cfg.HTTP != nil {
		t.startHTTP()
	}
	return t
}

// Addr is the bound address.
func (t *TCP) Addr() net.Addr { return t.ln.Addr() }

// Run accepts connections until ctx is cancelled, then closes them after
// decoding what they already sent.
func (t *TCP) Run(ctx context.Context) error {
	if t.hl != nil {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.serveHTTPServer()
		}()
	}
	go func() {
		<-ctx.Done()
		if t.hl != nil {
			// Added while serveHTTPServer still counts, so before Wait.
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				t.shutdownHTTP() // ends the HTTP connections
			}()
		}
		t.stopAccepting()
		t.mu.Lock()
		for c := range t.conns {
			if c.http.Load() {
				continue
			}
			// Wake blocked reads; the handler reads what is buffered,
			// decodes it and exits.
			_ = c.SetReadDeadline(time.Now().Add(shutdownDrain))
		}
		t.mu.Unlock()
	}()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil && isTimeout(err) {
				break
			}
			t.log.Debug("tcp accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		tc := newTCPConn(c)
		t.mu.Lock()
		if len(t.conns) >= t.cfg.MaxConnections {
			victim := t.victim(time.Now())
			if victim == nil {
				t.mu.Unlock()
				t.in.Reject(ReasonTooManyConnections) // counted before the client sees the close
				_ = c.Close()
				continue
			}
			delete(t.conns, victim)
			victim.evicted.Store(true)
			t.in.Reject(ReasonConnectionEvicted)
			_ = victim.Close() // wakes its Read
		}
		t.conns[tc] = struct{}{}
		t.mu.Unlock()
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.serve(ctx, tc)
			t.mu.Lock()
			delete(t.conns, tc)
			t.mu.Unlock()
			_ = tc.Close()
		}()
	}
	_ = t.ln.Close()
	t.wg.Wait()
	return nil
}

// stopAccepting ends Run's accept loop on shutdown. A client whose
// connection the kernel completed but Run had not accepted yet (it waits
// in the listen backlog) may already have written its lines, and its
// writes succeeded; closing the listener would reset the connection and
// lose them. So the loop goes on accepting for shutdownDrain and those
// connections are read like any other on shutdown. A listener without
// deadlines is closed at once.
func (t *TCP) stopAccepting() {
	if d, ok := t.ln.(interface{ SetDeadline(time.Time) error }); ok && d.SetDeadline(time.Now().Add(shutdownDrain)) == nil {
		return
	}
	_ = t.ln.Close()
}

// serve reads lines from c until it ends. c is a *tcpConn when Run
// accepted it.
func (t *TCP) serve(ctx context.Context, c net.Conn) {
	tc, ok := c.(*tcpConn)
	if !ok {
		tc = newTCPConn(c)
	}
	var pre []byte
	var first time.Time
	if t.hl != nil {
		var kind sniff
		var err error
		pre, first, kind, err = t.sniffConn(ctx, c)
		if kind == sniffHTTP {
			t.serveHTTP(tc, pre)
			return
		}
		if len(pre) == 0 && err != nil {
			return // nothing sent
		}
		// A read error that ended sniffing comes back from the next
		// Read; the loop below handles it as ever.
	}
	lr := LineReader{MaxLine: t.cfg.MaxLine}
	dec := t.newDecoder()
	if r, ok := dec.(releaser); ok {
		defer r.Release()
	}
	var batch model.Batch
	lines := false
	emit := func(b []byte) {
		lines = true
		batch.Reset()
		dec.Decode(&batch, b, time.Now().UnixNano())
		t.in.Deliver(&batch)
	}
	var partialSince time.Time // when the unfinished line began
	if len(pre) > 0 {
		// The sniffed bytes start the line stream: one Fill takes them
		// all (they are at most maxRequestLine, the buffer is larger).
		_ = lr.Fill(bytes.NewReader(pre), emit, func() { t.in.Reject(ReasonLineTooLong) })
		if lines {
			tc.lastLine.Store(time.Now().UnixNano())
			tc.sentLine.Store(true)
		} else if lr.Partial() {
			partialSince = first
		}
		tc.partial.Store(lr.Partial())
	}
	draining := false
	for {
		now := time.Now()
		deadline := now.Add(t.cfg.IdleTimeout)
		if !partialSince.IsZero() {
			if d := partialSince.Add(t.cfg.LineTimeout); d.Before(deadline) {
				deadline = d
			}
		}
		draining = readDeadline(ctx, c, deadline, draining)
		lines = false
		err := lr.Fill(c, emit, func() { t.in.Reject(ReasonLineTooLong) })
		now = time.Now()
		if lines {
			tc.lastLine.Store(now.UnixNano())
			tc.sentLine.Store(true)
			partialSince = time.Time{}
		}
		switch {
		case !lr.Partial():
			partialSince = time.Time{}
		case partialSince.IsZero():
			partialSince = now
		}
		tc.partial.Store(lr.Partial())
		if err != nil {
			switch {
			case tc.evicted.Load():
				return // counted by Run; the unfinished line is dropped
			case ctx.Err() == nil && isTimeout(err) && !partialSince.IsZero() && !now.Before(partialSince.Add(t.cfg.LineTimeout)):
				t.in.Reject(ReasonLineTimeout)
				return
			case !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isTimeout(err):
				t.log.Debug("tcp read", "remote", c.RemoteAddr(), "err", err)
			}
			lr.Finish(emit)
			return
		}
	}
}

// readDeadline sets c's read deadline for the next read: deadline, or,
// once ctx is done, shutdownDrain from now, set once (draining reports
// that it was). ctx is checked after the reset: a shutdown that set its
// wake-up deadline just before it would otherwise be overridden, and the
// read would wait for the idle timeout. On shutdown a connection still
// reads what its client already sent (it is in the socket's buffer: its
// writes succeeded) for up to shutdownDrain, then is handled as at EOF.
func readDeadline(ctx context.Context, c net.Conn, deadline time.Time, draining bool) bool {
	if draining {
		return true
	}
	_ = c.SetReadDeadline(deadline)
	if ctx.Err() != nil {
		_ = c.SetReadDeadline(time.Now().Add(shutdownDrain))
		return true
	}
	return false
}

// shutdownDrain is how long a connection is still read on shutdown: what
// its client wrote before it (buffered in the socket) is decoded and
// published by the drain, not dropped.
const shutdownDrain = 100 * time.Millisecond

// tcpConn is an accepted connection and what eviction looks at.
type tcpConn struct {
	net.Conn
	// lastLine is when the connection last completed a line (UnixNano),
	// or when it was accepted.
	lastLine atomic.Int64
	// partial is set while an unfinished line is buffered.
	partial atomic.Bool
	// sentLine is set once the connection completed a line.
	sentLine atomic.Bool
	evicted  atomic.Bool
	// http is set once the connection is handed to the HTTP server.
	http atomic.Bool
}

func newTCPConn(c net.Conn) *tcpConn {
	tc := &tcpConn{Conn: c}
	tc.lastLine.Store(time.Now().UnixNano())
	return tc
}

// victim picks the connection to close for a new one at the limit: of
// those that completed no line for at least EvictAfter, one holding an
// unfinished line (or none received yet) before one that is merely idle,
// and the longest without a line first. nil means every connection is
// active: the new one is refused. t.mu is held.
func (t *TCP) victim(now time.Time) *tcpConn {
	limit := now.Add(-t.cfg.EvictAfter).UnixNano()
	var best *tcpConn
	var bestPartial bool
	var bestAt int64
	for c := range t.conns {
		at := c.lastLine.Load()
		if at > limit {
			continue
		}
		p := c.partial.Load() || !c.sentLine.Load()
		if best == nil || (p && !bestPartial) || (p == bestPartial && at < bestAt) {
			best, bestPartial, bestAt = c, p, at
		}
	}
	return best
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// LineReader cuts a byte stream into blocks of complete lines without
// copying more than the unfinished tail. Lines longer than MaxLine are
// skipped up to their newline and reported through tooLong.
type LineReader struct {
	MaxLine  int
	buf      []byte
	start    int
	end      int
	skipping bool
}

// Fill reads once from r and calls emit with every complete line in
// the buffer (emit must not keep the slice). It returns r's error.
func (lr *LineReader) Fill(r io.Reader, emit func([]byte), tooLong func()) error {
	if lr.buf == nil {
		lr.buf = make([]byte, max(64<<10, 2*lr.MaxLine))
	}
	if lr.end == len(lr.buf) {
		if lr.start > 0 {
			lr.end = copy(lr.buf, lr.buf[lr.start:lr.end])
			lr.start = 0
		}
	}
	n, err := r.Read(lr.buf[lr.end:])
	lr.end += n
	for {
		chunk := lr.buf[lr.start:lr.end]
		if lr.skipping {
			i := bytes.IndexByte(chunk, '\n')
			if i < 0 {
				lr.start, lr.end = 0, 0
				break
			}
			lr.start += i + 1
			lr.skipping = false
			continue
		}
		i := bytes.LastIndexByte(chunk, '\n')
		if i >= 0 {
			emit(chunk[:i+1])
			lr.start += i + 1
		}
		// What remains is one unfinished line.
		if lr.end-lr.start > lr.MaxLine {
			tooLong()
			lr.skipping = true
			lr.start, lr.end = 0, 0
		}
		break
	}
	if lr.start == lr.end {
		lr.start, lr.end = 0, 0
	}
	return err
}

// Partial reports whether an unfinished line is buffered (or being
// skipped as too long).
func (lr *LineReader) Partial() bool { return lr.skipping || lr.end > lr.start }

// Finish emits a last line that had no newline (the peer closed cleanly).
func (lr *LineReader) Finish(emit func([]byte)) {
	if !lr.skipping && lr.end > lr.start {
		emit(lr.buf[lr.start:lr.end])
	}
	lr.start, lr.end, lr.skipping = 0, 0, false
}
