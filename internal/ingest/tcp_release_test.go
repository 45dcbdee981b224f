package ingest

import (
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"

	"github.com/les-streams/les/internal/model"
)

// releasingDecoder counts Release calls (ingest.releaser) and says when
// it decoded.
type releasingDecoder struct {
	fakeDecoder
	decoded  chan<- struct{}
	released *atomic.Int32
}

func (d releasingDecoder) Decode(dst *model.Batch, payload []byte, now int64) {
	d.fakeDecoder.Decode(dst, payload, now)
	d.decoded <- struct{}{}
}

func (d releasingDecoder) Release() { d.released.Add(1) }

var _ releaser = releasingDecoder{}

// TestTCPReleasesDecoders: the decoder of each connection is released
// when the connection ends (its series cache gives its bytes back to the
// listener's budget), also when it ends with the shutdown.
func TestTCPReleasesDecoders(t *testing.T) {
	in, _ := tcpIntake(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var made, released atomic.Int32
	decoded := make(chan struct{}, 16)
	newDec := func() Decoder {
		made.Add(1)
		return releasingDecoder{decoded: decoded, released: &released}
	}
	tcp := NewTCP(ln, TCPConfig{}, in, newDec, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- tcp.Run(ctx) }()
	const conns = 3
	for i := range conns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("a line\n")); err != nil {
			t.Fatal(err)
		}
		if i < conns-1 {
			_ = c.Close() // ends before the shutdown
		} else {
			defer c.Close() // open at the shutdown
		}
	}
	for range conns { // every connection's line decoded, so every decoder made
		select {
		case <-decoded:
		case err := <-done:
			t.Fatalf("Run ended early: %v", err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if made.Load() != conns || released.Load() != conns {
		t.Fatalf("%d decoders made, %d released; want %d and %d", made.Load(), released.Load(), conns, conns)
	}
}
