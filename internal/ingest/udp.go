package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
)

// soRxqOvfl is Linux's SO_RXQ_OVFL: the kernel attaches the socket's
// cumulative drop count to every received datagram.
const soRxqOvfl = 0x28

// Reasons for rejections made by transports rather than decoders.
const (
	ReasonDatagramTooLarge   = "datagram_too_large"
	ReasonLineTooLong        = "line_too_long"
	ReasonBadGzip            = "bad_gzip"
	ReasonBodyTooLarge       = "body_too_large"
	ReasonTooManyConnections = "too_many_connections"
)

// UDPConfig configures a datagram listener.
type UDPConfig struct {
	Address     string
	Network     string // "udp" (default) or "unixgram"
	Readers     int    // goroutines reading the socket (default 2)
	MaxDatagram int    // larger datagrams are rejected (default 65536)
	ReadBuffer  int    // SO_RCVBUF bytes (default 16 MiB; the kernel may cap it)
	// ReadBatch is how many datagrams one recvmmsg call may return
	// (default 32). Each reader holds ReadBatch buffers of MaxDatagram
	// bytes: 2 MiB at the defaults.
	ReadBatch int
}

// UDP reads datagrams and decodes them.
type UDP struct {
	cfg        UDPConfig
	in         *Intake
	newDecoder func() Decoder
	log        *slog.Logger
	conn       net.PacketConn
	dropped    *metrics.Counter
	mu         sync.Mutex
	lastDrops  uint32
	haveDrops  bool
	kdrops     kernelDrops // the socket's own drop count (udpdrops.go)

	// recvMu makes receiving and stamping one step, so stamps follow the
	// socket's queue order across readers (see stamp).
	recvMu    sync.Mutex
	lastStamp int64
	turns     turnstile    // readers deliver in receive order (udpturn.go)
	clock     func() int64 // Unix ns; nil is time.Now (tests inject one)
}

// ListenUDP binds the socket (so a port conflict is reported at start-up).
func ListenUDP(cfg UDPConfig, in *Intake, newDecoder func() Decoder, reg *selfmetric.Registry, log *slog.Logger) (*UDP, error) {
	if cfg.Network == "" {
		cfg.Network = "udp"
	}
	if cfg.Readers <= 0 {
		cfg.Readers = 2
	}
	if cfg.MaxDatagram <= 0 {
		cfg.MaxDatagram = 65536
	}
	if cfg.ReadBuffer <= 0 {
		cfg.ReadBuffer = 16 << 20
	}
	if cfg.ReadBatch <= 0 {
		cfg.ReadBatch = readBatch
	}
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = setSocketOptions(fd, cfg.Network, cfg.ReadBuffer) // udp_linux.go, udp_other.go
		})
		if err != nil {
			return err
		}
		return serr
	}}
	if cfg.Network == "unixgram" {
		if err := removeStaleSocket(cfg.Address); err != nil {
			return nil, fmt.Errorf("listen unixgram %s: %w", cfg.Address, err)
		}
	}
	conn, err := lc.ListenPacket(context.Background(), cfg.Network, cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("listen %s %s: %w", cfg.Network, cfg.Address, err)
	}
	type bufferSetter interface{ SetReadBuffer(int) error }
	if bs, ok := conn.(bufferSetter); ok && readBuffer(conn) < cfg.ReadBuffer {
		_ = bs.SetReadBuffer(cfg.ReadBuffer)
	}
	if got := readBuffer(conn); got > 0 && got < cfg.ReadBuffer {
		log.Info("udp receive buffer is smaller than asked; raise net.core.rmem_max to lose less under bursts",
			"address", cfg.Address, "bytes", got, "asked", cfg.ReadBuffer)
	}
	u := &UDP{cfg: cfg, in: in, newDecoder: newDecoder, log: log, conn: conn,
		dropped: reg.Counter("les_ingest_udp_dropped_total", "format", in.Format, "address", cfg.Address, "reason", ReasonKernel)}
	u.initKernelDrops()
	return u, nil
}

// removeStaleSocket removes a unix socket file left by a process that is
// gone (a crash leaves it behind and binding would fail). A socket someone
// still reads, or a file that is not a socket, is left alone.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	c, err := net.Dial("unixgram", path)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s is in use by another process", path)
	}
	return os.Remove(path)
}

// readBuffer returns the socket's SO_RCVBUF as the kernel reports it (twice
// what was set, for its bookkeeping), halved; 0 if unknown.
func readBuffer(conn net.PacketConn) int {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	var n int
	_ = rc.Control(func(fd uintptr) {
		n = socketReadBuffer(fd)
	})
	return n / 2
}

// Addr is the bound address.
func (u *UDP) Addr() net.Addr { return u.conn.LocalAddr() }

// Run reads until ctx is cancelled.
func (u *UDP) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range u.cfg.Readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u.read()
		}()
	}
	tick := time.NewTicker(dropSyncInterval)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			u.syncDrops()
		}
	}
	tick.Stop()
	u.syncDrops() // the drops since the last read, before the count goes with the socket
	_ = u.conn.Close()
	wg.Wait()
	if u.cfg.Network == "unixgram" {
		_ = os.Remove(u.cfg.Address)
	}
	return nil
}

// readBatch is how many datagrams one recvmmsg call may return by default
// (UDPConfig.ReadBatch); they are decoded into one model.Batch and handed
// to the batcher together.
const readBatch = 32

// stamp returns the receive time of the first of n datagrams just read;
// datagram i of them is stamped base+i. Called with recvMu held, so the
// readers of one socket take datagrams and stamps in the same order: stamps
// strictly increase in the order the kernel queued the datagrams, even when
// the wall clock steps back or a reader is descheduled between its read and
// its clock reading. The rollup keeps the gauge with the newest stamp, so
// the last value a client wrote to the socket wins (issue 11, item 3).
func (u *UDP) stamp(n int) int64 {
	var now int64
	if u.clock != nil {
		now = u.clock()
	} else {
		now = time.Now().UnixNano()
	}
	if now <= u.lastStamp {
		now = u.lastStamp + 1
	}
	u.lastStamp = now + int64(n) - 1
	return now
}

func (u *UDP) read() {
	dec := u.newDecoder()
	var batch model.Batch
	if uc, ok := u.conn.(*net.UDPConn); ok {
		u.readUDP(uc, dec, &batch)
		return
	}
	buf := make([]byte, u.cfg.MaxDatagram+1)
	oob := make([]byte, 128)
	uxc, _ := u.conn.(*net.UnixConn)
	for {
		var n, oobn int
		var err error
		u.recvMu.Lock()
		if uxc != nil {
			n, oobn, _, _, err = uxc.ReadMsgUnix(buf, oob)
		} else {
			n, _, err = u.conn.ReadFrom(buf)
		}
		var now int64
		var turn uint64
		if err == nil {
			now = u.stamp(1)
			turn = u.turns.take()
		}
		u.recvMu.Unlock()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			u.log.Debug("udp read", "err", err)
			continue
		}
		if oobn > 0 {
			u.countDrops(oob[:oobn])
		}
		if n > u.cfg.MaxDatagram {
			u.in.Reject(ReasonDatagramTooLarge)
			u.turns.pass(turn)
			continue
		}
		batch.Reset()
		dec.Decode(&batch, buf[:n], now)
		u.turns.wait(turn)
		u.in.Deliver(&batch)
		u.turns.done()
	}
}

// readUDP reads up to readBatch datagrams per system call (recvmmsg on
// Linux), decodes them all into batch and delivers them with one call, so
// the batcher's lock is taken once per read rather than once per datagram.
// Readers take turns to receive (recvMu), decode in parallel, and deliver
// in the order they received (turns).
func (u *UDP) readUDP(uc *net.UDPConn, dec Decoder, batch *model.Batch) {
	rb, err := newRecvBatch(uc, u.cfg.ReadBatch, u.cfg.MaxDatagram+1, 64) // udpbatch_linux.go
	if err != nil {
		u.log.Warn("udp read", "err", err)
		return
	}
	for {
		u.recvMu.Lock()
		n, err := rb.read()
		var base int64
		var turn uint64
		if err == nil && n > 0 {
			base = u.stamp(n)
			turn = u.turns.take()
		}
		u.recvMu.Unlock()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			u.log.Debug("udp read", "err", err)
			continue
		}
		if n == 0 {
			continue
		}
		// The drop count is cumulative: the newest datagram's is enough.
		if oob := rb.oob(n - 1); len(oob) > 0 {
			u.countDrops(oob)
		}
		if n < u.cfg.ReadBatch {
			u.syncDropsAt(base) // the queue was read empty: drops after its newest datagram
		}
		batch.Reset()
		for i := range n {
			data, size := rb.datagram(i)
			if size > u.cfg.MaxDatagram {
				u.in.Reject(ReasonDatagramTooLarge)
				continue
			}
			dec.Decode(batch, data, base+int64(i))
		}
		u.turns.wait(turn) // add in receive order, after decoding in parallel
		u.in.Deliver(batch)
		u.turns.done()
	}
}

func (u *UDP) countDrops(oob []byte) {
	if total, ok := dropCount(oob); ok {
		u.mu.Lock()
		u.noteDropsLocked(total)
		u.mu.Unlock()
	}
}
