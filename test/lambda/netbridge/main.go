//go:build linux

// Command netbridge runs the Runtime Interface Emulator of the
// test/lambda tests inside its own network namespace (unshare -n), so
// that the extension's fixed loopback ports (2878, 8125, 40000…) never
// collide with another test or process on the machine, as in Lambda,
// where every sandbox has its own loopback.
//
//	netbridge [-fwd tcp:ADDR=unix:PATH]... [-fwd unix:PATH=tcp:ADDR]... -- COMMAND ARGS...
//
// It brings the namespace's loopback up, serves each forward (listen on
// the left, dial the right for each connection; a unix listener is opened
// only once its TCP target accepts, so its existence means ready), runs
// COMMAND, passes SIGINT and SIGTERM on to it and exits with its status.
// Unix sockets are files, reachable from both namespaces: the test
// listens on one for each host service (kinesalite) and dials the
// emulator's invoke socket.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

type fwds []string

func (f *fwds) String() string     { return strings.Join(*f, ",") }
func (f *fwds) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	var fw fwds
	flag.Var(&fw, "fwd", "tcp:ADDR=unix:PATH or unix:PATH=tcp:ADDR (repeatable)")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "netbridge: no command")
		os.Exit(2)
	}
	if err := loopbackUp(); err != nil {
		fmt.Fprintln(os.Stderr, "netbridge: loopback:", err)
		os.Exit(1)
	}
	type fwd struct{ lnet, laddr, dnet, daddr string }
	var later []fwd
	for _, f := range fw {
		l, d, ok := strings.Cut(f, "=")
		ln, la, ok1 := strings.Cut(l, ":")
		dn, da, ok2 := strings.Cut(d, ":")
		if !ok || !ok1 || !ok2 {
			fmt.Fprintln(os.Stderr, "netbridge: bad -fwd", f)
			os.Exit(2)
		}
		if ln == "unix" {
			later = append(later, fwd{ln, la, dn, da})
			continue
		}
		l2, err := net.Listen(ln, la)
		if err != nil {
			fmt.Fprintln(os.Stderr, "netbridge:", err)
			os.Exit(1)
		}
		go serve(l2, dn, da)
	}
	cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "netbridge:", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for s := range sig {
			_ = cmd.Process.Signal(s)
		}
	}()
	for _, f := range later {
		go func() {
			// Ready when the target accepts (the emulator is up).
			for {
				c, err := net.Dial(f.dnet, f.daddr)
				if err == nil {
					c.Close()
					break
				}
				time.Sleep(5 * time.Millisecond) // polling a process that gives no other sign
			}
			_ = os.Remove(f.laddr)
			l, err := net.Listen(f.lnet, f.laddr)
			if err != nil {
				fmt.Fprintln(os.Stderr, "netbridge:", err)
				return
			}
			fmt.Println("netbridge: ready", f.laddr)
			serve(l, f.dnet, f.daddr)
		}()
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		os.Exit(max(ee.ExitCode(), 1))
	}
}

// serve forwards every connection l accepts to a new connection to
// network/addr; when either side ends, both are closed.
func serve(l net.Listener, network, addr string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			d, err := net.Dial(network, addr)
			if err != nil {
				c.Close()
				return
			}
			var once sync.Once
			closeBoth := func() { once.Do(func() { c.Close(); d.Close() }) }
			go func() { _, _ = io.Copy(d, c); closeBoth() }()
			_, _ = io.Copy(c, d)
			closeBoth()
		}()
	}
}

// loopbackUp sets IFF_UP on lo (a new network namespace has it down).
func loopbackUp() error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	var ifr struct {
		name  [syscall.IFNAMSIZ]byte
		flags uint16
		_     [24]byte
	}
	copy(ifr.name[:], "lo")
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCGIFFLAGS, uintptr(unsafe.Pointer(&ifr))); e != 0 {
		return e
	}
	ifr.flags |= syscall.IFF_UP
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCSIFFLAGS, uintptr(unsafe.Pointer(&ifr))); e != 0 {
		return e
	}
	return nil
}
