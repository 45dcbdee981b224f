package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

func cmdSend(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("les send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:2878", "address of a les (or Wavefront proxy) line listener")
	udp := fs.Bool("udp", false, "send datagrams instead of a TCP stream")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: les send [flags] [LINE ...]   (no LINE: read lines from stdin)")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	var lines []string
	if fs.NArg() > 0 {
		for _, a := range fs.Args() {
			lines = append(lines, strings.Split(strings.TrimRight(a, "\n"), "\n")...)
		}
	}
	network := "tcp"
	if *udp {
		network = "udp"
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, network, *addr)
	if err != nil {
		fmt.Fprintf(stderr, "les send: %v\n", err)
		return 1
	}
	defer conn.Close()
	n := 0
	var dgram bytes.Buffer
	send := func(line string) error {
		if strings.TrimSpace(line) == "" {
			return nil
		}
		n++
		if !*udp {
			_, err := io.WriteString(conn, line+"\n")
			return err
		}
		// Pack lines into datagrams of at most 8 KiB.
		if dgram.Len() > 0 && dgram.Len()+len(line)+1 > 8192 {
			if _, err := conn.Write(dgram.Bytes()); err != nil {
				return err
			}
			dgram.Reset()
		}
		dgram.WriteString(line)
		dgram.WriteByte('\n')
		return nil
	}
	if lines != nil {
		for _, l := range lines {
			if err := send(l); err != nil {
				fmt.Fprintf(stderr, "les send: %v\n", err)
				return 1
			}
		}
	} else {
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if err := send(sc.Text()); err != nil {
				fmt.Fprintf(stderr, "les send: %v\n", err)
				return 1
			}
		}
		if err := sc.Err(); err != nil {
			fmt.Fprintf(stderr, "les send: reading stdin: %v\n", err)
			return 1
		}
	}
	if *udp && dgram.Len() > 0 {
		if _, err := conn.Write(dgram.Bytes()); err != nil {
			fmt.Fprintf(stderr, "les send: %v\n", err)
			return 1
		}
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		// Half-close and wait for les to close, so every line was read.
		_ = tc.CloseWrite()
		_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.Copy(io.Discard, tc)
	}
	fmt.Fprintf(stderr, "sent %d lines to %s %s\n", n, network, *addr)
	return 0
}
