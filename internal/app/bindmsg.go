package app

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// bindError is the one sentence for a socket les could not bind: the
// setting that names it, the address, and why, e.g.
// "agent.listeners[3] 127.0.0.1:8125/udp is in use (by another les?)".
func bindError(setting, addr string, err error) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("%s %s is in use (by another les?)", setting, addr)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("%s %s: permission denied (ports below 1024 need privileges)", setting, addr)
	}
	// The innermost cause, without the "listen tcp …:" prefixes each
	// layer adds.
	var se *os.SyscallError
	if errors.As(err, &se) {
		return fmt.Errorf("%s %s: %v", setting, addr, se.Err)
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return fmt.Errorf("%s %s: %v", setting, addr, oe.Err)
	}
	return fmt.Errorf("%s %s: %w", setting, addr, err)
}
