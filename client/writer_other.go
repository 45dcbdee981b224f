//go:build !unix

package client

import "net"

// writer writes a buffer with the connection's Write. On non-Unix systems
// a UDP write does not wait for buffer space in practice.
type writer struct {
	conn *net.UDPConn
	b    *buffer
}

func (w *writer) init(conn *net.UDPConn, b *buffer) error {
	w.conn, w.b = conn, b
	return nil
}

func (w *writer) write() error {
	_, err := w.conn.Write(w.b.b)
	return err
}
