package server

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// checkListen fails at once, in one sentence naming the setting, when
// stream.embedded.listen cannot be bound (nats-server would only log it
// and never become ready). It binds and closes the address; port 0 or -1
// (any free port) is not checked.
func checkListen(listen string, port int) error {
	if port <= 0 {
		return nil
	}
	ln, err := net.Listen("tcp", listen)
	if err == nil {
		return ln.Close()
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("stream.embedded.listen %s is in use (by another les?)", listen)
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err // without the "listen tcp …:" prefix
	}
	return fmt.Errorf("stream.embedded.listen %s: %v", listen, err)
}
