package ingest

import (
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// recvBatch receives up to len(bufs) datagrams per recvmmsg(2) call into
// buffers it owns, with each datagram's control messages (the socket's
// drop count, SO_RXQ_OVFL). It asks for no source addresses: x/net's
// ReadBatch made a net.UDPAddr for every datagram, the largest
// allocation of a loaded les (34 of 120 MB in 15 s at 1.7 M lines/s).
// Not safe for concurrent use.
type recvBatch struct {
	rc   syscall.RawConn
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	bufs [][]byte
	oobs [][]byte
	// recv is the call RawConn.Read makes, built once (a closure made
	// per read escapes: two allocations a read); got and errno are its
	// results.
	recv  func(fd uintptr) bool
	got   int
	errno syscall.Errno
}

// newRecvBatch returns a reader of uc for up to n datagrams of up to size
// bytes each (a longer one is cut to size: its length says so, as with
// x/net's ReadBatch) and oob bytes of control messages.
func newRecvBatch(uc *net.UDPConn, n, size, oob int) (*recvBatch, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &recvBatch{rc: rc, hdrs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, n),
		bufs: make([][]byte, n), oobs: make([][]byte, n)}
	b.recv = b.recvmmsg
	for i := range n {
		// Buffers are touched only as far as datagrams fill them, so idle
		// readers stay small.
		b.bufs[i] = make([]byte, size)
		b.oobs[i] = make([]byte, oob)
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(size)
		h := &b.hdrs[i].Hdr
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
		if oob > 0 {
			h.Control = &b.oobs[i][0]
		}
	}
	return b, nil
}

// read waits for datagrams and receives as many as are queued, up to the
// batch; it returns how many. An error is the socket's (net.ErrClosed
// once it is closed).
func (b *recvBatch) read() (int, error) {
	for i := range b.hdrs {
		h := &b.hdrs[i].Hdr
		h.SetControllen(len(b.oobs[i])) // the kernel writes back what it used
		h.Flags = 0
		b.hdrs[i].Len = 0
	}
	b.got = 0
	if err := b.rc.Read(b.recv); err != nil {
		return 0, err
	}
	if b.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", b.errno)
	}
	return b.got, nil
}

// recvmmsg is one recvmmsg(2) on the non-blocking socket; it reports
// false (wait until readable) when nothing is queued.
func (b *recvBatch) recvmmsg(fd uintptr) bool {
	r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(b.hdrs)), 0, 0, 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	b.got, b.errno = int(r), e
	return true
}

// datagram returns datagram i of the last read and its length, which is
// more than len(data) when the datagram was longer than the buffer.
func (b *recvBatch) datagram(i int) (data []byte, n int) {
	n = int(b.hdrs[i].Len)
	if b.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0 {
		return b.bufs[i], len(b.bufs[i]) + 1
	}
	return b.bufs[i][:n], n
}

// oob returns the control messages of datagram i of the last read.
func (b *recvBatch) oob(i int) []byte { return b.oobs[i][:b.hdrs[i].Hdr.Controllen] }
