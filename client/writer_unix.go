//go:build unix

package client

import (
	"net"
	"syscall"
)

// writer writes a buffer with one write(2) on the connected socket and
// never waits for the socket to become writable: EAGAIN (a full socket
// buffer), ENOBUFS and ECONNREFUSED come back as errors. The callback is
// made once, so a write does not allocate.
type writer struct {
	raw syscall.RawConn
	fn  func(fd uintptr) bool
	err error
}

func (w *writer) init(conn *net.UDPConn, b *buffer) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	w.raw = raw
	w.fn = func(fd uintptr) bool {
		_, w.err = syscall.Write(int(fd), b.b)
		return true // done: never wait for writability
	}
	return nil
}

func (w *writer) write() error {
	if err := w.raw.Write(w.fn); err != nil {
		return err
	}
	return w.err
}
