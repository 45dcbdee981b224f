package ingest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
	ReasonDatagramTooLarge = "datagram_too_large"
	ReasonLineTooLong      = "line_too_long"
	ReasonBadGzip          = "bad_gzip"
	ReasonBodyTooLarge     = "body_too_large"
)

// UDPConfig configures a datagram listener.
type UDPConfig struct {
	Address     string
	Network     string // "udp" (default) or "unixgram"
	Readers     int    // goroutines reading the socket (default 2)
	MaxDatagram int    // larger datagrams are rejected (default 65536)
	ReadBuffer  int    // SO_RCVBUF bytes (default 16 MiB; the kernel may cap it)
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
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if cfg.Network == "udp" {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soRxqOvfl, 1)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := lc.ListenPacket(context.Background(), cfg.Network, cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("listen %s %s: %w", cfg.Network, cfg.Address, err)
	}
	type bufferSetter interface{ SetReadBuffer(int) error }
	if bs, ok := conn.(bufferSetter); ok {
		_ = bs.SetReadBuffer(cfg.ReadBuffer)
	}
	return &UDP{cfg: cfg, in: in, newDecoder: newDecoder, log: log, conn: conn,
		dropped: reg.Counter("les_ingest_udp_dropped_total", "format", in.Format, "address", cfg.Address)}, nil
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
	<-ctx.Done()
	_ = u.conn.Close()
	wg.Wait()
	return nil
}

func (u *UDP) read() {
	buf := make([]byte, u.cfg.MaxDatagram+1)
	oob := make([]byte, 128)
	dec := u.newDecoder()
	var batch model.Batch
	uc, _ := u.conn.(*net.UDPConn)
	uxc, _ := u.conn.(*net.UnixConn)
	for {
		var n, oobn int
		var err error
		switch {
		case uc != nil:
			n, oobn, _, _, err = uc.ReadMsgUDP(buf, oob)
		case uxc != nil:
			n, oobn, _, _, err = uxc.ReadMsgUnix(buf, oob)
		default:
			n, _, err = u.conn.ReadFrom(buf)
		}
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
			continue
		}
		batch.Reset()
		dec.Decode(&batch, buf[:n], time.Now().UnixNano())
		u.in.Deliver(&batch)
	}
}

func (u *UDP) countDrops(oob []byte) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, m := range msgs {
		if m.Header.Level != syscall.SOL_SOCKET || m.Header.Type != soRxqOvfl || len(m.Data) < 4 {
			continue
		}
		total := binary.NativeEndian.Uint32(m.Data)
		u.mu.Lock()
		if !u.haveDrops || total != u.lastDrops {
			if u.haveDrops && total > u.lastDrops {
				u.dropped.Add(int(total - u.lastDrops))
			} else if !u.haveDrops {
				u.dropped.Add(int(total))
			}
			u.lastDrops, u.haveDrops = total, true
		}
		u.mu.Unlock()
	}
}
