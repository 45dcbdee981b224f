package ingest

import (
	"encoding/binary"
	"syscall"
)

// setSocketOptions asks Linux for the socket's drop count on every
// datagram (SO_RXQ_OVFL, udp only) and for a receive buffer of readBuffer
// bytes. SO_RCVBUFFORCE goes past net.core.rmem_max when les may
// (CAP_NET_ADMIN); otherwise SetReadBuffer in ListenUDP asks for what the
// kernel allows. A deep buffer absorbs the moments when readers are not
// scheduled.
func setSocketOptions(fd uintptr, network string, readBuffer int) error {
	var err error
	if network == "udp" {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soRxqOvfl, 1)
	}
	_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, readBuffer)
	return err
}

// socketReadBuffer returns SO_RCVBUF as the kernel reports it (twice what
// was set, for its bookkeeping); 0 if unknown.
func socketReadBuffer(fd uintptr) int {
	n, _ := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
	return n
}

// dropCounts returns the cumulative drop counts (SO_RXQ_OVFL) in the
// control messages oob.
func dropCounts(oob []byte) []uint32 {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var out []uint32
	for _, m := range msgs {
		if m.Header.Level != syscall.SOL_SOCKET || m.Header.Type != soRxqOvfl || len(m.Data) < 4 {
			continue
		}
		out = append(out, binary.NativeEndian.Uint32(m.Data))
	}
	return out
}
