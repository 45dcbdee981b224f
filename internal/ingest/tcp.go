package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/les-streams/les/internal/model"
)

// TCPConfig configures a line listener.
type TCPConfig struct {
	Address string
	MaxLine int // longer lines are rejected (default 32768)
	// IdleTimeout closes connections silent for this long (default 5m).
	IdleTimeout time.Duration
	// MaxConnections bounds open connections (default 1024); more are
	// closed at once and counted as rejected (reason too_many_connections).
	MaxConnections int
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
	conns      map[net.Conn]struct{}
}

// ListenTCP binds the listener.
func ListenTCP(cfg TCPConfig, in *Intake, newDecoder func() Decoder, log *slog.Logger) (*TCP, error) {
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = 32768
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = 1024
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	ln, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("listen tcp %s: %w", cfg.Address, err)
	}
	return &TCP{cfg: cfg, in: in, newDecoder: newDecoder, log: log, ln: ln, conns: map[net.Conn]struct{}{}}, nil
}

// Addr is the bound address.
func (t *TCP) Addr() net.Addr { return t.ln.Addr() }

// Run accepts connections until ctx is cancelled, then closes them after
// decoding what they already sent.
func (t *TCP) Run(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		_ = t.ln.Close()
		t.mu.Lock()
		for c := range t.conns {
			// Wake blocked reads; the handler decodes what it has and exits.
			_ = c.SetReadDeadline(time.Now())
		}
		t.mu.Unlock()
	}()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			t.log.Debug("tcp accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		t.mu.Lock()
		if len(t.conns) >= t.cfg.MaxConnections {
			t.mu.Unlock()
			_ = c.Close()
			t.in.Reject(ReasonTooManyConnections)
			continue
		}
		t.conns[c] = struct{}{}
		t.mu.Unlock()
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.serve(ctx, c)
			t.mu.Lock()
			delete(t.conns, c)
			t.mu.Unlock()
			_ = c.Close()
		}()
	}
	t.wg.Wait()
	return nil
}

func (t *TCP) serve(ctx context.Context, c net.Conn) {
	lr := LineReader{MaxLine: t.cfg.MaxLine}
	dec := t.newDecoder()
	var batch model.Batch
	emit := func(lines []byte) {
		batch.Reset()
		dec.Decode(&batch, lines, time.Now().UnixNano())
		t.in.Deliver(&batch)
	}
	for {
		_ = c.SetReadDeadline(time.Now().Add(t.cfg.IdleTimeout))
		// Checked after the reset: a shutdown that set its wake-up
		// deadline just before it would otherwise be overridden, and
		// this Read would wait for the idle timeout.
		if ctx.Err() != nil {
			break
		}
		err := lr.Fill(c, emit, func() { t.in.Reject(ReasonLineTooLong) })
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isTimeout(err) {
				t.log.Debug("tcp read", "remote", c.RemoteAddr(), "err", err)
			}
			lr.Finish(emit)
			return
		}
	}
	lr.Finish(emit)
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

// Finish emits a last line that had no newline (the peer closed cleanly).
func (lr *LineReader) Finish(emit func([]byte)) {
	if !lr.skipping && lr.end > lr.start {
		emit(lr.buf[lr.start:lr.end])
	}
	lr.start, lr.end, lr.skipping = 0, 0, false
}
