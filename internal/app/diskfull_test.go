package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/les-streams/les/internal/lesproc"

	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/mem"
	"github.com/les-streams/les/internal/wire"
)

// inSmallTmpfs runs the calling test again in a private mount namespace
// (unshare -m, as internal/stream/embedded/server TestSmallDisk does) and
// returns "" in the outer run; in the inner run it mounts a tmpfs of size
// there and returns its path. It needs root and unshare: without them the
// test is skipped, and under CI it fails.
func inSmallTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Getenv("LES_TEST_IN_NS") == "" {
		missing := t.Skip
		if os.Getenv("CI") != "" {
			missing = t.Fatal // CI runs as root with util-linux (scripts/test.sh)
		}
		if os.Getuid() != 0 {
			missing("needs root to mount a tmpfs in a private mount namespace")
		}
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			missing("unshare not found")
		}
		cmd := exec.Command(unshare, "-m", "--propagation", "private", os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "LES_TEST_IN_NS=1")
		out, err := cmd.CombinedOutput()
		t.Logf("in a private mount namespace:\n%s", out)
		if err != nil {
			t.Fatal(err)
		}
		return ""
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fillDisk writes a file at path until the file system is full, to the
// last byte.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	for n := len(buf) / 2; n > 0; n /= 2 {
		_, _ = f.Write(buf[:n])
	}
}

// TestIntakeRefusesOnFullDisk: les up on a 64 MiB tmpfs (the embedded
// stream and the spool on it). While the disk is full, HTTP intake answers
// 503 with the reason and Retry-After instead of 202, and TCP lines are
// dropped and counted with reason disk_full; once space is back, intake
// answers 202 again by itself, and every item answered 202 reaches the
// file sink.
func TestIntakeRefusesOnFullDisk(t *testing.T) {
	dir := inSmallTmpfs(t, "64m")
	if dir == "" {
		return
	}
	cfg, out := fileSinkApp(t) // the sink file not on the small disk
	cfg.DataDir = dir
	tcpAddr := freeAddr(t)
	cfg.Agent.Listeners = []ListenerConfig{{Format: "wavefront", Transport: "tcp", Address: tcpAddr}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	info, stop := runApp(t, cfg)
	base := "http://" + info.HTTP
	acked := map[int]bool{} // values of the items answered 202
	next := 0
	post := func() (int, string, http.Header) {
		var sb strings.Builder
		first := next
		for range 10 {
			fmt.Fprintf(&sb, "disk.test %d source=s\n", next)
			next++
		}
		resp, err := http.Post(base+"/report", "text/plain", strings.NewReader(sb.String()))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			for v := first; v < next; v++ {
				acked[v] = true
			}
		}
		return resp.StatusCode, string(b), resp.Header
	}
	for range 5 {
		if code, body, _ := post(); code != http.StatusAccepted {
			t.Fatalf("before the disk is full: %d %s", code, body)
		}
	}

	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler)
	refused := 0
	for range 5 {
		code, body, h := post()
		if code == http.StatusAccepted {
			continue
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "disk full") || h.Get("Retry-After") == "" {
			t.Errorf("on a full disk: %d %q Retry-After %q; want 503 naming the full disk, with Retry-After", code, body, h.Get("Retry-After"))
		}
		refused++
	}
	if refused != 5 {
		t.Errorf("on a full disk %d of 5 posts refused, want all (the stream cannot store them)", refused)
	}
	// TCP: the lines are read and dropped, counted with reason disk_full.
	c, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		fmt.Fprintf(c, "disk.tcp %d source=s\n", i)
	}
	c.Close()
	// Polled: the lines are read by les' TCP goroutine after the socket
	// write, with nothing to wait on but its counter.
	deadline := time.Now().Add(10 * time.Second)
	for selfCounter(t, base, `les_ingest_rejected_total{format="wavefront",reason="disk_full"}`) < 20 {
		if time.Now().After(deadline) {
			t.Error("the TCP lines read on a full disk were not counted as rejected with reason disk_full")
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// Polled: the free space is outside the process; intake looks at it
	// again on each request.
	deadline = time.Now().Add(10 * time.Second)
	for {
		code, body, _ := post()
		if code == http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after space came back: %d %s, want 202", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for range 5 {
		if code, body, _ := post(); code != http.StatusAccepted {
			t.Fatalf("after space came back: %d %s", code, body)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	stop() // the shutdown lets the sink catch up before Run returns
	items, _ := readNDJSON[struct {
		Name  string
		Value float64
	}](t, out)
	got := map[int]int{}
	for _, m := range items {
		if m.Name == "disk.test" {
			got[int(m.Value)]++
		}
	}
	lost := 0
	for v := range acked {
		if got[v] == 0 {
			lost++
		}
	}
	t.Logf("answered 202: %d items; delivered: %d distinct values; lost: %d", len(acked), len(got), lost)
	if lost > 0 || len(acked) < 110 {
		t.Fatalf("%d of %d items answered 202 were not delivered (want 0 lost, ≥110 answered)", lost, len(acked))
	}
}

// selfCounter reads one sample of les' /metrics (0 when absent).
func selfCounter(t *testing.T, base, series string) float64 {
	t.Helper()
	v, err := lesproc.Metric(base+"/metrics", series)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestCannotStoreStreamRefuses: with a stream that refuses publishes for
// lack of storage (as JetStream answers "insufficient resources"), intake
// is refused only while the spool cannot take a batch either, and opens
// again once a publish succeeds.
func TestCannotStoreStreamRefuses(t *testing.T) {
	store := mem.NewStore()
	st := urlStream{mem.New(store, mem.Config{Partitions: 1}), ""}
	var fault atomic.Value // error
	fault.Store(errors.New(""))
	store.SetPublishFault(func(context.Context, []stream.Record) error {
		if err := fault.Load().(error); err.Error() != "" {
			return err
		}
		return nil
	})
	pub := watchPublish(st)
	spool, err := ingest.OpenSpool(ingest.SpoolConfig{Dir: t.TempDir(), MaxBytes: 4096}, pub, selfmetric.New(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	rd := &readiness{pub: pub, spool: spool, spoolReserve: 1024, dataDir: t.TempDir(), minFree: 1}
	rec := stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalMetrics, ID: "r", Data: []byte(strings.Repeat("x", 3500))}
	fault.Store(errors.New("nats: no responders available for request"))
	_ = pub.Publish(context.Background(), rec)
	if why := rd.cannotStore(); why != "" {
		t.Fatalf("stream down (not out of storage): cannotStore %q, want \"\" (the spool takes it)", why)
	}
	fault.Store(errors.New("nats: API error: code=500 err_code=10023 description=insufficient resources"))
	_ = pub.Publish(context.Background(), rec)
	if why := rd.cannotStore(); why != "" {
		t.Fatalf("stream out of storage, spool empty: cannotStore %q, want \"\"", why)
	}
	if err := spool.Write(rec); err != nil {
		t.Fatal(err)
	}
	why := rd.cannotStore()
	if !strings.Contains(why, "insufficient resources") || !strings.Contains(why, "spool full") {
		t.Fatalf("stream out of storage, spool full: cannotStore %q", why)
	}
	fault.Store(errors.New(""))
	if err := spool.Replay(context.Background()); err != nil {
		t.Fatal(err)
	}
	if why := rd.cannotStore(); why != "" {
		t.Fatalf("after the spool was re-published: cannotStore %q", why)
	}
}
