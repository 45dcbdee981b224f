package ingest

import (
	"bytes"
	"net"
	"runtime"
	"testing"
)

// TestRecvBatch: the batch reader returns the datagrams queued, each with
// its length, and a datagram longer than the buffer with a length that
// says so (ReasonDatagramTooLarge); once warm it allocates nothing per
// read (x/net's ReadBatch made an address per datagram).
func TestRecvBatch(t *testing.T) {
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	client, err := net.DialUDP("udp", nil, uc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const size = 16
	rb, err := newRecvBatch(uc, 8, size, 64)
	if err != nil {
		t.Fatal(err)
	}
	sent := [][]byte{[]byte("a:1|c"), bytes.Repeat([]byte("x"), size), bytes.Repeat([]byte("y"), size+5)}
	for _, d := range sent {
		if _, err := client.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	var got [][]byte
	var lens []int
	for len(got) < len(sent) { // loopback queues each write before it returns
		n, err := rb.read()
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			data, l := rb.datagram(i)
			got, lens = append(got, bytes.Clone(data)), append(lens, l)
		}
	}
	if len(got) != len(sent) {
		t.Fatalf("read %d datagrams, sent %d", len(got), len(sent))
	}
	if !bytes.Equal(got[0], sent[0]) || lens[0] != len(sent[0]) {
		t.Errorf("datagram 0: %q (length %d), want %q", got[0], lens[0], sent[0])
	}
	if !bytes.Equal(got[1], sent[1]) || lens[1] != size {
		t.Errorf("datagram 1 (as long as the buffer): %q (length %d)", got[1], lens[1])
	}
	if lens[2] <= size {
		t.Errorf("datagram 2 (longer than the buffer): length %d, want more than %d", lens[2], size)
	}
	if runtime.GOOS != "linux" {
		return // the allocation-free reader is udpbatch_linux.go's
	}
	msg := []byte("b:2|c")
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := client.Write(msg); err != nil {
			t.Fatal(err)
		}
		if n, err := rb.read(); err != nil || n != 1 {
			t.Fatalf("read %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per write and read, want 0", allocs)
	}
}
