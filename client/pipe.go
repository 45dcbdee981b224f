package client

import (
	"net"
	"sync"
	"sync/atomic"
)

// buffer is one datagram being filled or written.
type buffer struct {
	b     []byte // capacity: the pipe's max datagram; never grows
	lines int
	w     writer // per buffer, so two goroutines can write two buffers at once
}

// pipe is one UDP socket with a small ring of buffers: the current buffer
// (filled under mu) and free ones. A full buffer is taken out of the ring,
// written without holding mu, and put back; while every buffer is being
// written, lines are dropped (DroppedBusy) rather than waited for.
type pipe struct {
	conn *net.UDPConn
	max  int

	mu     sync.Mutex
	cur    *buffer   // nil while every buffer is being written
	free   []*buffer // capacity: the ring size; never grows
	closed bool
	// encoded counts the lines commit put in buffers; it is guarded by mu
	// (one atomic operation less per line than a counter of its own).
	// Lines = encoded + lines.
	encoded uint64

	// lines counts the lines refused or dropped before a buffer took them.
	lines, sentDatagrams, sentLines, sentBytes        atomic.Uint64
	droppedDatagrams, droppedLines, invalid, busy, tr atomic.Uint64
}

func newPipe(addr string, max, loopbackMax, nbuf int) (*pipe, error) {
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		return nil, err
	}
	if max <= 0 {
		max = RemoteDatagram
		if ra.IP.IsLoopback() {
			max = loopbackMax
		}
	}
	p := &pipe{conn: conn, max: max, free: make([]*buffer, 0, nbuf)}
	for range nbuf {
		b := &buffer{b: make([]byte, 0, max)}
		if err := b.w.init(conn, b); err != nil {
			conn.Close()
			return nil, err
		}
		p.free = append(p.free, b)
	}
	p.cur = p.pop()
	return p, nil
}

// pop takes a free buffer, or nil. mu must be held.
func (p *pipe) pop() *buffer {
	n := len(p.free)
	if n == 0 {
		return nil
	}
	b := p.free[n-1]
	p.free[n-1] = nil
	p.free = p.free[:n-1]
	return b
}

// reject counts a line refused before encoding.
func (p *pipe) reject() {
	p.lines.Add(1)
	p.invalid.Add(1)
	p.droppedLines.Add(1)
}

// begin returns, with p.mu held, the buffer to append an n-byte line
// (lines is how many lines it holds) to, and a full buffer the caller must
// pass to commit for writing. n must be at most p.max. When no buffer is
// free (or the pipe is closed) it returns nil without holding the lock and
// counts the lines as dropped.
func (p *pipe) begin(n, lines int) (cur, full *buffer) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.lines.Add(uint64(lines))
		p.droppedLines.Add(uint64(lines))
		return nil, nil
	}
	if p.cur != nil && len(p.cur.b)+n > p.max {
		full = p.cur
		p.cur = p.pop()
	}
	if p.cur == nil {
		p.mu.Unlock()
		p.lines.Add(uint64(lines))
		p.busy.Add(uint64(lines))
		p.droppedLines.Add(uint64(lines))
		if full != nil {
			p.send(full)
		}
		return nil, nil
	}
	return p.cur, full
}

// commit ends a begin that returned a buffer: it releases p.mu and writes
// full, if any.
func (p *pipe) commit(cur, full *buffer, lines int) {
	cur.lines += lines
	p.encoded += uint64(lines)
	p.mu.Unlock()
	if full != nil {
		p.send(full)
	}
}

// flush writes the current buffer if it holds anything.
func (p *pipe) flush() {
	p.mu.Lock()
	var full *buffer
	if !p.closed && p.cur != nil && len(p.cur.b) > 0 {
		full = p.cur
		p.cur = p.pop()
	}
	p.mu.Unlock()
	if full != nil {
		p.send(full)
	}
}

// send writes b as one datagram without waiting, counts the outcome and
// returns b to the ring.
func (p *pipe) send(b *buffer) {
	if err := b.w.write(); err != nil {
		p.droppedDatagrams.Add(1)
		p.droppedLines.Add(uint64(b.lines))
	} else {
		p.sentDatagrams.Add(1)
		p.sentLines.Add(uint64(b.lines))
		p.sentBytes.Add(uint64(len(b.b)))
	}
	b.b = b.b[:0]
	b.lines = 0
	p.mu.Lock()
	if p.cur == nil {
		p.cur = b
	} else {
		p.free = append(p.free, b)
	}
	p.mu.Unlock()
}

// close refuses further lines, writes the current buffer and closes the
// socket.
func (p *pipe) close() {
	p.mu.Lock()
	p.closed = true
	full := p.cur
	if full != nil && len(full.b) == 0 {
		full = nil
	} else {
		p.cur = nil
	}
	p.mu.Unlock()
	if full != nil {
		p.send(full)
	}
	_ = p.conn.Close()
}

// stats reads the counters; it takes mu for encoded, as briefly as an
// emitter does.
func (p *pipe) stats() SocketStats {
	p.mu.Lock()
	encoded := p.encoded
	p.mu.Unlock()
	return SocketStats{
		Lines:            encoded + p.lines.Load(),
		SentDatagrams:    p.sentDatagrams.Load(),
		SentLines:        p.sentLines.Load(),
		SentBytes:        p.sentBytes.Load(),
		DroppedDatagrams: p.droppedDatagrams.Load(),
		DroppedLines:     p.droppedLines.Load(),
		DroppedInvalid:   p.invalid.Load(),
		DroppedBusy:      p.busy.Load(),
		TruncatedLogs:    p.tr.Load(),
	}
}
