//go:build linux || darwin || freebsd || netbsd || openbsd

package wavefront

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// peerGone reports whether the peer has closed c (or sent something, which
// a Wavefront proxy never does, e.g. a TLS close_notify), by peeking
// without blocking. It returns false when it cannot tell.
func peerGone(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case n > 0:
			gone = true // unexpected data: treat the connection as finished
		case rerr == nil:
			gone = true // EOF
		case errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK) || errors.Is(rerr, syscall.EINTR):
		default:
			gone = true // ECONNRESET and friends
		}
		return true // never wait
	})
	return gone || err != nil
}
