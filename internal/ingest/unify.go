package ingest

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// Port unification: like the Wavefront proxy's push and trace ports, a TCP
// line listener with TCPConfig.HTTP set also serves HTTP/1.x on the same
// port. The first bytes of each connection decide, once: a request line
// ("POST /report?f=wavefront HTTP/1.1") hands the connection to the HTTP
// server; anything else is a raw line stream, and the bytes read to decide
// are the start of its first line.

// maxRequestLine bounds how much of a first line that starts like an HTTP
// method is read before deciding; a longer one is a raw line.
const maxRequestLine = 8 << 10

var httpMethods = [...]string{"GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "OPTIONS ", "PATCH "}

// sniff is what the first bytes of a connection say.
type sniff int

const (
	sniffMore sniff = iota // undecided: read more
	sniffRaw
	sniffHTTP
)

// classify decides from b, the first bytes of a connection, whether they
// start an HTTP/1.x request: a known method, a target without spaces and
// "HTTP/1.0" or "HTTP/1.1", ending in a newline. A Wavefront line cannot
// look like that (its value would be "HTTP/1.1").
func classify(b []byte) sniff {
	var method string
	more := false
	for _, m := range httpMethods {
		if len(b) < len(m) {
			more = more || string(b) == m[:len(b)]
		} else if string(b[:len(m)]) == m {
			method = m
			break
		}
	}
	if method == "" {
		if more {
			return sniffMore
		}
		return sniffRaw
	}
	// Only the first maxRequestLine bytes count, so a decision never
	// changes as more bytes arrive.
	i := bytes.IndexByte(b[:min(len(b), maxRequestLine)], '\n')
	if i < 0 {
		if len(b) >= maxRequestLine {
			return sniffRaw
		}
		return sniffMore
	}
	line := bytes.TrimSuffix(b[len(method):i], []byte{'\r'})
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return sniffRaw
	}
	if proto := line[sp+1:]; string(proto) != "HTTP/1.1" && string(proto) != "HTTP/1.0" {
		return sniffRaw
	}
	return sniffHTTP
}

// sniffConn reads the first bytes of c until classify decides, with the
// listener's deadlines: IdleTimeout for the first byte, LineTimeout from it.
// It returns the bytes read (the caller replays them) and when the first
// of them arrived. err is the read error that ended sniffing early; the
// caller treats what was read as raw lines.
func (t *TCP) sniffConn(ctx context.Context, c net.Conn) (pre []byte, first time.Time, s sniff, err error) {
	pre = make([]byte, 0, 512)
	draining := false
	for {
		deadline := time.Now().Add(t.cfg.IdleTimeout)
		if !first.IsZero() {
			deadline = first.Add(t.cfg.LineTimeout)
		}
		draining = readDeadline(ctx, c, deadline, draining) // as serve
		if len(pre) == cap(pre) {
			pre = append(pre, make([]byte, len(pre))...)[:len(pre)]
		}
		n, rerr := c.Read(pre[len(pre):cap(pre)])
		if n > 0 && first.IsZero() {
			first = time.Now()
		}
		pre = pre[:len(pre)+n]
		if s = classify(pre); s != sniffMore {
			return pre, first, s, nil
		}
		if rerr != nil {
			return pre, first, sniffRaw, rerr
		}
	}
}

// httpConn is a connection handed to the HTTP server: it replays the
// sniffed bytes and tells serve when the server closed it.
type httpConn struct {
	*tcpConn
	pre  []byte
	once sync.Once
	done chan struct{}
}

func (h *httpConn) Read(b []byte) (int, error) {
	if len(h.pre) > 0 {
		n := copy(b, h.pre)
		h.pre = h.pre[n:]
		return n, nil
	}
	return h.tcpConn.Read(b)
}

func (h *httpConn) Close() error {
	err := h.tcpConn.Close()
	h.once.Do(func() { close(h.done) })
	return err
}

// connListener is the net.Listener the HTTP server accepts handed-over
// connections from.
type connListener struct {
	addr   net.Addr
	ch     chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// startHTTP prepares the HTTP side of a unified listener; Run serves it.
func (t *TCP) startHTTP() {
	t.hl = &connListener{addr: t.ln.Addr(), ch: make(chan net.Conn), closed: make(chan struct{})}
	prev := t.cfg.HTTP.ConnState
	// Eviction at max_connections sees an HTTP connection as a line
	// connection: a request in flight is an unfinished line, a completed
	// request a completed line.
	t.cfg.HTTP.ConnState = func(c net.Conn, s http.ConnState) {
		if hc, ok := c.(*httpConn); ok {
			switch s {
			case http.StateActive:
				hc.partial.Store(true)
			case http.StateIdle:
				hc.lastLine.Store(time.Now().UnixNano())
				hc.sentLine.Store(true)
				hc.partial.Store(false)
			}
		}
		if prev != nil {
			prev(c, s)
		}
	}
}

// shutdownHTTP lets requests in flight finish (up to 5s), then closes
// every HTTP connection.
func (t *TCP) shutdownHTTP() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.cfg.HTTP.Shutdown(ctx); err != nil {
		_ = t.cfg.HTTP.Close()
	}
}

// serveHTTP hands tc to the HTTP server and waits until the server closed
// it.
func (t *TCP) serveHTTP(tc *tcpConn, pre []byte) {
	tc.http.Store(true)
	_ = tc.SetReadDeadline(time.Time{}) // the server sets its own
	hc := &httpConn{tcpConn: tc, pre: pre, done: make(chan struct{})}
	select {
	case t.hl.ch <- hc:
		<-hc.done
	case <-t.hl.closed:
	}
}

// serveHTTPServer runs the HTTP server of a unified listener until
// shutdownHTTP.
func (t *TCP) serveHTTPServer() {
	if err := t.cfg.HTTP.Serve(t.hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
		t.log.Debug("tcp http", "err", err)
	}
}
