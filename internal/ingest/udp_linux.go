package ingest

import (
	"encoding/binary"
	"syscall"
	"unsafe"
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

// dropCount returns the cumulative drop count (SO_RXQ_OVFL) in the
// control messages oob, the last if there are several; ok is false if
// there is none. It reads the messages in place: once the socket has
// dropped, the kernel attaches the count to every datagram, and
// syscall.ParseSocketControlMessage allocated for each read.
func dropCount(oob []byte) (total uint32, ok bool) {
	hdr := syscall.CmsgLen(0) // the header, aligned: where the data starts
	for len(oob) >= hdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			break
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == soRxqOvfl && l-hdr >= 4 {
			total, ok = binary.NativeEndian.Uint32(oob[hdr:]), true
		}
		next := syscall.CmsgSpace(l - hdr)
		if next >= len(oob) {
			break
		}
		oob = oob[next:]
	}
	return total, ok
}
