//go:build !linux

package ingest

import (
	"net"

	"golang.org/x/net/ipv4"
)

// recvBatch receives up to len(msgs) datagrams per call through x/net's
// ReadBatch (recvmmsg where the system has it); udpbatch_linux.go calls
// recvmmsg itself. Not safe for concurrent use.
type recvBatch struct {
	pc   *ipv4.PacketConn
	msgs []ipv4.Message
}

func newRecvBatch(uc *net.UDPConn, n, size, oob int) (*recvBatch, error) {
	b := &recvBatch{pc: ipv4.NewPacketConn(uc), msgs: make([]ipv4.Message, n)}
	for i := range b.msgs {
		b.msgs[i].Buffers = [][]byte{make([]byte, size)}
		b.msgs[i].OOB = make([]byte, oob)
	}
	return b, nil
}

func (b *recvBatch) read() (int, error) { return b.pc.ReadBatch(b.msgs, 0) }

func (b *recvBatch) datagram(i int) (data []byte, n int) {
	m := &b.msgs[i]
	return m.Buffers[0][:min(m.N, len(m.Buffers[0]))], m.N
}

func (b *recvBatch) oob(i int) []byte { return b.msgs[i].OOB[:b.msgs[i].NN] }
