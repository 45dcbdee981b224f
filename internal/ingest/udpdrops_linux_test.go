package ingest

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
)

// blockingDecoder blocks its first Decode until release is closed and
// counts every datagram it is given (one Decode call per datagram).
type blockingDecoder struct {
	started  chan struct{} // closed when the first Decode begins
	release  chan struct{}
	n        *atomic.Int64
	progress chan struct{}
}

func (d blockingDecoder) Decode(dst *model.Batch, payload []byte, now int64) {
	if d.n.Add(1) == 1 {
		close(d.started)
		<-d.release
	}
	select {
	case d.progress <- struct{}{}:
	default:
	}
}

// procUDPDrops returns the kernel's drop count for the UDP socket with
// inode ino from /proc/net/udp (the last column), independently of how les
// reads it.
func procUDPDrops(t *testing.T, ino uint64) uint64 {
	t.Helper()
	f, err := os.Open("/proc/net/udp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 13 || fs[9] != strconv.FormatUint(ino, 10) {
			continue
		}
		n, err := strconv.ParseUint(fs[12], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	t.Fatalf("socket inode %d not in /proc/net/udp", ino)
	return 0
}

func socketInode(t *testing.T, conn net.PacketConn) uint64 {
	t.Helper()
	rc, err := conn.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.Fstat(int(fd), &st) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return st.Ino
}

// TestUDPDropCountMatchesKernel overloads a real loopback socket with a
// small receive buffer while its only reader is blocked, then lets it
// drain: les' drop counter must equal the kernel's count for the socket in
// /proc/net/udp. The drops all happen after the last datagram the kernel
// queued, so no received datagram carries them (SO_RXQ_OVFL alone counted
// 0 here).
func TestUDPDropCountMatchesKernel(t *testing.T) {
	dec := blockingDecoder{started: make(chan struct{}), release: make(chan struct{}), n: new(atomic.Int64), progress: make(chan struct{}, 1)}
	p := startUDPPath(t, UDPConfig{Address: "127.0.0.1:0", Readers: 1, ReadBuffer: 4096}, func() Decoder { return dec }, nil)
	u, reg := p.u, p.reg
	ino := socketInode(t, u.conn)

	c, err := net.Dial("udp", u.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := []byte(strings.Repeat("x", 1000))
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	<-dec.started // the reader now holds the first datagram and is blocked
	const flood = 500
	for range flood {
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
	}
	close(dec.release)
	// Wait until every datagram sent is either decoded or dropped by the
	// kernel. The kernel's count lives outside this process, so it is
	// polled, bounded by a deadline; between polls the test waits for the
	// reader's progress.
	deadline := time.After(20 * time.Second)
	var kernel uint64
	for {
		kernel = procUDPDrops(t, ino)
		if uint64(dec.n.Load())+kernel == flood+1 {
			break
		}
		select {
		case <-dec.progress:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("decoded %d + kernel drops %d, want %d", dec.n.Load(), kernel, flood+1)
		}
	}
	if kernel == 0 {
		t.Fatal("the kernel dropped nothing: the test did not overload the socket")
	}
	p.stop(t)
	got := u.dropped.Get()
	if got != kernel {
		t.Fatalf("les_ingest_udp_dropped_total = %d, kernel (/proc/net/udp) = %d", got, kernel)
	}
	var sb strings.Builder
	reg.WritePrometheus(&sb)
	want := fmt.Sprintf(`les_ingest_udp_dropped_total{format="statsd",address="127.0.0.1:0",reason="kernel"} %d`, kernel)
	if !strings.Contains(sb.String(), want) {
		t.Errorf("exposition lacks %q", want)
	}
}

// TestSyncDropsNoAllocs: reading the socket's drop count (once per read
// that empties the queue) allocates nothing.
func TestSyncDropsNoAllocs(t *testing.T) {
	reg := selfmetric.New()
	u, err := ListenUDP(UDPConfig{Address: "127.0.0.1:0"}, NewIntake("statsd", "udp", nil, reg),
		func() Decoder { return nil }, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer u.conn.Close()
	if a := testing.AllocsPerRun(100, u.syncDrops); a != 0 {
		t.Fatalf("syncDrops allocates %.1f times, want 0", a)
	}
	if !u.haveDrops {
		t.Fatal("the kernel reported no drop count (SO_MEMINFO)")
	}
}

// BenchmarkSyncDrops is the cost of one SO_MEMINFO read.
func BenchmarkSyncDrops(b *testing.B) {
	reg := selfmetric.New()
	u, err := ListenUDP(UDPConfig{Address: "127.0.0.1:0"}, NewIntake("statsd", "udp", nil, reg),
		func() Decoder { return nil }, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer u.conn.Close()
	b.ReportAllocs()
	for b.Loop() {
		u.syncDrops()
	}
}
