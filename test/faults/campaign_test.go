package faults

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/les-streams/les/internal/stream/embedded"
	embedsrv "github.com/les-streams/les/internal/stream/embedded/server"
	"github.com/les-streams/les/internal/wire"
)

// size is the campaign's scale: CI (default) or full (LES_FAULTS=full).
type size struct {
	full     bool
	kills    int // kill -9 rounds
	batch    int // items per HTTP post
	posts    int // posts per phase
	dribble  int // slowloris clients (HTTP) / connections (TCP)
	hold     time.Duration
	series   int // cardinality flood: new series sent
	maxSer   int // rollup.max_series_per_window
	garbageN int // garbage payloads per port
}

func campaignSize() size {
	if os.Getenv("LES_FAULTS") == "full" {
		return size{full: true, kills: 20, batch: 100, posts: 100, dribble: 1100, hold: 60 * time.Second,
			series: 1_000_000, maxSer: 10_000, garbageN: 2000}
	}
	return size{kills: 3, batch: 50, posts: 20, dribble: 120, hold: 8 * time.Second,
		series: 50_000, maxSer: 1000, garbageN: 100}
}

// TestFaultCampaign runs every scenario against the real binary and prints
// the table (docs/reliability.md "Fault campaign"). A scenario fails when
// something acknowledged is lost or les crashed.
//
//	go test -count=1 -run TestFaultCampaign -v ./test/faults/                 # CI size
//	LES_FAULTS=full go test -count=1 -timeout 60m -run TestFaultCampaign -v ./test/faults/
func TestFaultCampaign(t *testing.T) {
	sz := campaignSize()
	lesBinary(t)
	scenarios := []struct {
		name string
		run  func(t *testing.T, sz size) result
	}{
		{"kill -9 under mixed load", scenarioKill9},
		{"stream outage", scenarioStreamOutage},
		{"cluster node loss", scenarioClusterNodeLoss},
		{"sink outage", scenarioSinkOutage},
		{"disk full", scenarioDiskFull},
		{"damaged JetStream block", scenarioDamagedBlock},
		{"damaged spool file", scenarioDamagedSpool},
		{"damaged file sink", scenarioDamagedFileSink},
		{"damaged rollup checkpoint", scenarioDamagedCheckpoint},
		{"slowloris HTTP", scenarioSlowHTTP},
		{"slowloris TCP", scenarioSlowTCP},
		{"cardinality flood", scenarioCardinality},
		{"garbage on every port", scenarioGarbage},
	}
	var results []result
	for _, sc := range scenarios {
		t.Run(strings.ReplaceAll(sc.name, " ", "_"), func(t *testing.T) {
			start := time.Now()
			r := sc.run(t, sz)
			r.scenario = sc.name
			r.note = strings.TrimSpace(r.note + fmt.Sprintf(" (%.0fs)", time.Since(start).Seconds()))
			results = append(results, r)
			if r.lost > 0 && !r.deliveredOnly {
				t.Errorf("%s: %d of %d acknowledged items lost", sc.name, r.lost, r.accepted)
			}
			if r.crashes > 0 {
				t.Errorf("%s: les crashed %d times", sc.name, r.crashes)
			}
		})
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n| scenario | accepted | delivered | lost | duplicated | crashes | peak RSS | notes |\n|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range results {
		fmt.Fprintf(&sb, "| %s | %d | %d | %d | %d | %d | %.0f MiB | %s |\n", r.scenario, r.accepted, r.delivered, r.lost,
			r.duplicated, r.crashes, float64(r.peakKB)/1024, r.note)
	}
	t.Log(sb.String())
	fmt.Print(sb.String())
}

// load keeps HTTP posts, TCP and UDP lines flowing until stop is closed:
// HTTP items count as accepted when answered 2xx; TCP and UDP lines are
// load (no acknowledgement) under names k.tcp and k.udp.
func load(l *les, g *ledger, sz size, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				l.post(g, "k.http", sz.batch)
				if w == 0 {
					_ = l.sendTCP(g, "k.tcp", 20)
					_ = l.sendUDP(g, "k.udp", 20)
				}
			}
		}()
	}
	return &wg
}

func scenarioKill9(t *testing.T, sz size) result {
	l := newLes(t, "", "")
	g := newLedger()
	for range sz.kills {
		l.start()
		stop := make(chan struct{})
		wg := load(l, g, sz, stop)
		time.Sleep(time.Duration(300+mrand.IntN(700)) * time.Millisecond) // a random moment under load
		l.kill()
		close(stop)
		wg.Wait()
	}
	l.start()
	l.waitDelivered(g, 60*time.Second, "k.http")
	r := l.stopAndTally(g, "k.http")
	tcp, udp, _ := l.unackedDelivered()
	r.note = fmt.Sprintf("%d kills at 0.3–1 s under load; accepted = HTTP 2xx; TCP/UDP lines (no acknowledgement, the crash window) reaching the sink: TCP %d of %d written to a connection, UDP %d of %d sent (some while les was down)",
		sz.kills, tcp, g.sentOf("k.tcp"), udp, g.sentOf("k.udp"))
	return r
}

// natsOn runs a JetStream server in the test process on port, with its
// store under dir (restarting it on the same dir and port is the outage's
// end).
func natsOn(t *testing.T, dir string, port int) *embedsrv.Stream {
	s, err := embedsrv.Open(context.Background(), embedded.Config{Listen: fmt.Sprintf("127.0.0.1:%d", port), Auth: "none"}, dir, 1, embedsrv.Deps{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func externalStream(l *les, port int) {
	l.config = strings.Replace(l.config, "stream: { embedded:", fmt.Sprintf("stream: { kind: nats, nats: { url: \"nats://127.0.0.1:%d\" }, embedded:", port), 1)
	l.config = strings.Replace(l.config, "batch: { flush_interval: 50ms }", "batch: { flush_interval: 50ms, publish_timeout: 1s }", 1)
}

// outage runs les on an external JetStream, takes it away while HTTP and
// TCP traffic goes on, and optionally damages the oldest spool file while
// les is stopped.
func outage(t *testing.T, sz size, damageSpool bool) result {
	natsDir, port := t.TempDir(), freePort(t)
	ns := natsOn(t, natsDir, port)
	l := newLes(t, "", "")
	externalStream(l, port)
	l.start()
	g := newLedger()
	for range sz.posts / 2 {
		l.post(g, "o.http", sz.batch)
		_ = l.sendTCP(g, "o.tcp", sz.batch)
	}
	if !sz.full {
		// Records delivered to the sink but not yet acknowledged when the
		// stream goes away come again only after the durable's AckWait
		// (2 min); the CI size lets the sink catch up first, the full size
		// takes the stream away under load and waits.
		l.settled(`les_ingest_received_total{format="wavefront",transport="tcp"}`)
		l.waitDelivered(g, 30*time.Second, "o.http")
		deadline := time.Now().Add(30 * time.Second)
		for n, _ := deliveredCount(l.delivered(), "o.tcp"); n < g.sentOf("o.tcp") && time.Now().Before(deadline); n, _ = deliveredCount(l.delivered(), "o.tcp") {
			time.Sleep(100 * time.Millisecond) // polled: another process writes the sink
		}
	}
	ns.Close()
	refused := 0
	for range sz.posts / 4 { // each waits publish_timeout (1 s), then 503
		if code, _ := l.post(g, "o.http", sz.batch); code/100 != 2 {
			refused++
		}
		for range 4 {
			_ = l.sendTCP(g, "o.tcp", sz.batch)
		}
	}
	var damaged string
	inDamaged, tcpBefore := 0, 0
	if damageSpool {
		// TCP lines this les counted as accepted (nothing else of the
		// format is rejected here).
		tcpBefore = int(l.settled(`les_ingest_received_total{format="wavefront",transport="tcp"}`))
		l.stop() // the drain spools what is queued
		files, _ := filepath.Glob(filepath.Join(l.dir, "data", "spool", "*.rec"))
		sort.Strings(files)
		if len(files) == 0 {
			t.Fatal("nothing spooled during the outage")
		}
		b, _ := os.ReadFile(files[0])
		inDamaged = spooledItems(t, b)
		copy(b[5:], "garbled!")
		_ = os.WriteFile(files[0], b, 0o640)
		damaged = fmt.Sprintf("oldest of %d spool files (%d TCP lines) garbled; ", len(files), inDamaged)
		ns = natsOn(t, natsDir, port)
		l.start()
	} else {
		time.Sleep(3 * time.Second) // the outage lasts
		ns = natsOn(t, natsDir, port)
	}
	defer ns.Close()
	back := time.Now()
	for range sz.posts / 2 {
		l.post(g, "o.http", sz.batch)
		_ = l.sendTCP(g, "o.tcp", sz.batch)
	}
	// TCP lines les counted as accepted (this process; nothing else of
	// the format is rejected here).
	accepted := int(l.settled(`les_ingest_received_total{format="wavefront",transport="tcp"}`) - l.metricSum("les_ingest_rejected_total", `format="wavefront"`))
	// Wait until the sink has what les acknowledged (HTTP) and counted
	// (TCP); up to AckWait (2 min) and some (polled: another process
	// writes the file).
	want := accepted + tcpBefore - inDamaged
	l.waitDelivered(g, 150*time.Second, "o.http")
	deadline := time.Now().Add(150 * time.Second)
	for time.Now().Before(deadline) {
		got := l.delivered()
		if n, _ := deliveredCount(got, "o.tcp"); n >= want {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	caughtUp := time.Since(back)
	badFiles := l.metric("les_stream_spool_damaged_files_total")
	r := l.stopAndTally(g, "o.http")
	got := l.delivered()
	tcp, tcpDups := deliveredCount(got, "o.tcp")
	r.duplicated += tcpDups
	if !damageSpool {
		r.accepted += accepted
		r.delivered += tcp
		r.lost = max(r.accepted-r.delivered, 0)
		r.note = fmt.Sprintf("3 s outage of the external JetStream%s; %d posts answered 503 (not accepted); accepted = HTTP 2xx + TCP lines les counted; sink caught up %v after the stream came back", map[bool]string{true: " under load", false: " (sink caught up before)"}[sz.full], refused, caughtUp.Round(100*time.Millisecond))
	} else {
		r.deliveredOnly = true
		tcpAccepted := tcpBefore + accepted
		r.note = fmt.Sprintf("%saccepted = HTTP 2xx; TCP lines (spooled; no acknowledgement): les counted %d, %d delivered, %d missing = those in the garbled file, which was moved aside (les_stream_spool_damaged_files_total %.0f) and replay went on; caught up %v after the restart", damaged, tcpAccepted, tcp, tcpAccepted-tcp, badFiles, caughtUp.Round(100*time.Millisecond))
		if tcpAccepted-tcp != inDamaged {
			t.Errorf("%d TCP lines les accepted are missing, the garbled spool file held %d", tcpAccepted-tcp, inDamaged)
		}
	}
	return r
}

func scenarioStreamOutage(t *testing.T, sz size) result { return outage(t, sz, false) }
func scenarioDamagedSpool(t *testing.T, sz size) result { return outage(t, sz, true) }

// scenarioSinkOutage: a Wavefront sink to a TCP server of the test that
// goes away for 3 s; the oracle is what that server read.
func scenarioSinkOutage(t *testing.T, sz size) result {
	port := freePort(t)
	var mu sync.Mutex
	seen := map[int]int{}
	var conns sync.WaitGroup
	serve := func() net.Listener {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				conns.Add(1)
				go func() {
					defer conns.Done()
					defer c.Close()
					sc := bufio.NewScanner(c)
					for sc.Scan() {
						if f := strings.Fields(sc.Text()); len(f) >= 2 && strings.Trim(f[0], `"`) == "s.http" {
							if v, err := strconv.ParseFloat(f[1], 64); err == nil {
								mu.Lock()
								seen[int(v)]++
								mu.Unlock()
							}
						}
					}
				}()
			}
		}()
		return ln
	}
	ln := serve()
	l := newLes(t, fmt.Sprintf("sinks:\n  - { name: wf, type: wavefront, wavefront: { address: \"127.0.0.1:%d\" } }\n", port), "")
	l.start()
	g := newLedger()
	for range sz.posts / 2 {
		l.post(g, "s.http", sz.batch)
	}
	ln.Close()
	conns.Wait() // les' open connection is closed too: the sink is down
	for range sz.posts {
		l.post(g, "s.http", sz.batch)
	}
	time.Sleep(3 * time.Second) // the outage lasts
	ln = serve()
	for range sz.posts / 2 {
		l.post(g, "s.http", sz.batch)
	}
	want := g.count("s.http")
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= want {
			break
		}
		time.Sleep(100 * time.Millisecond) // polled: the sink is another process
	}
	retries := l.metricSum("les_sink_retries_total")
	l.stop()
	ln.Close()
	conns.Wait()
	var r result
	mu.Lock()
	g.mu.Lock()
	for v := range g.acked["s.http"] {
		r.accepted++
		if c := seen[v]; c > 0 {
			r.delivered++
			r.duplicated += c - 1
		} else {
			r.lost++
		}
	}
	g.mu.Unlock()
	mu.Unlock()
	r.crashes, r.peakKB = l.crashes, l.peakKB
	r.note = fmt.Sprintf("Wavefront sink's server away 3 s; oracle = what it read; %.0f retries", retries)
	return r
}

// scenarioDiskFull: les on a 64 MiB tmpfs; the disk is filled to the last
// byte by another file while les runs, then freed.
func scenarioDiskFull(t *testing.T, sz size) result {
	if os.Getuid() != 0 {
		missing(t, "disk full needs root (a tmpfs in a private mount namespace)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		missing(t, "unshare not found")
	}
	l := newLes(t, "", "")
	l.tmpfs = "64m"
	l.start()
	g := newLedger()
	for range sz.posts {
		l.post(g, "d.http", sz.batch)
	}
	filler := fmt.Sprintf("/proc/%d/root%s", l.cmd.Process.Pid, filepath.Join(l.dir, "data", "filler"))
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	for n := len(buf) / 2; n > 0; n /= 2 {
		_, _ = f.Write(buf[:n])
	}
	f.Close()
	refused, other := 0, 0
	for range sz.posts {
		code, body := l.post(g, "d.http", sz.batch)
		switch {
		case code == http.StatusServiceUnavailable && strings.Contains(body, "disk full"):
			refused++
		case code/100 != 2:
			other++
		}
	}
	_ = l.sendTCP(g, "d.tcp", sz.batch)
	deadline := time.Now().Add(10 * time.Second)
	for l.metric(`les_ingest_rejected_total{format="wavefront",reason="disk_full"}`) < float64(sz.batch) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polled: les reads the socket
	}
	tcpDropped := l.metric(`les_ingest_rejected_total{format="wavefront",reason="disk_full"}`)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	recovered := time.Now()
	for {
		if code, _ := l.post(g, "d.http", sz.batch); code/100 == 2 || time.Since(recovered) > 10*time.Second {
			break
		}
		time.Sleep(50 * time.Millisecond) // polled: until les sees the space again
	}
	took := time.Since(recovered)
	for range sz.posts {
		l.post(g, "d.http", sz.batch)
	}
	l.waitDelivered(g, 60*time.Second, "d.http")
	r := l.stopAndTally(g, "d.http")
	r.note = fmt.Sprintf("64 MiB tmpfs filled to the last byte: %d of %d posts 503 \"disk full\" (%d other non-2xx), %.0f TCP lines dropped as disk_full; 2xx again %v after space came back",
		refused, sz.posts, other, tcpDropped, took.Round(10*time.Millisecond))
	return r
}

func missing(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(why) // CI runs as root with util-linux
	}
	t.Skip(why)
}

// damaged runs les, sends items and waits for them at the sink, stops it,
// lets damage touch its files, starts it again and sends more.
func damaged(t *testing.T, sz size, extra string, damage func(l *les) string, after ...func(l *les) string) result {
	l := newLes(t, extra, "")
	l.start()
	g := newLedger()
	rollup := strings.Contains(extra, "rollup:")
	for range sz.posts {
		l.post(g, "x.http", sz.batch)
		if rollup { // input for the rollup, so that it checkpoints
			if c, err := net.Dial("udp", l.addr("statsd")); err == nil {
				_, _ = c.Write([]byte("r.count:1|c\nr.timer:5|ms\n"))
				c.Close()
			}
		}
	}
	l.waitDelivered(g, 60*time.Second, "x.http")
	time.Sleep(1500 * time.Millisecond) // let checkpoints and positions be written (their tick is 1 s)
	l.stop()
	what := damage(l)
	l.start()
	for range sz.posts {
		l.post(g, "x.http", sz.batch)
	}
	l.waitDelivered(g, 60*time.Second, "x.http")
	for _, f := range after {
		what += "; " + f(l)
	}
	lostRecs := l.metricSum("les_stream_lost_records_total")
	repairs := l.metricSum("les_sink_file_repairs_total")
	r := l.stopAndTally(g, "x.http")
	r.note = fmt.Sprintf("%s; les_stream_lost_records_total %.0f, les_sink_file_repairs_total %.0f", what, lostRecs, repairs)
	return r
}

func overwriteMiddle(path string, n int) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	junk := make([]byte, min(int64(n), fi.Size()/2))
	_, _ = rand.Read(junk)
	_, err = f.WriteAt(junk, fi.Size()/2-int64(len(junk))/2)
	return err
}

func scenarioDamagedBlock(t *testing.T, sz size) result {
	return damaged(t, sz, "", func(l *les) string {
		var blks []string
		_ = filepath.Walk(filepath.Join(l.dir, "data"), func(p string, fi os.FileInfo, err error) error {
			if err == nil && strings.HasSuffix(p, ".blk") && strings.Contains(p, "/msgs/") {
				blks = append(blks, p)
			}
			return nil
		})
		sort.Strings(blks)
		if len(blks) == 0 {
			t.Fatal("no JetStream block file")
		}
		if err := overwriteMiddle(blks[0], 4096); err != nil {
			t.Fatal(err)
		}
		return "4 KiB of random bytes in the middle of the oldest .blk (after its items were delivered)"
	})
}

func scenarioDamagedFileSink(t *testing.T, sz size) result {
	return damaged(t, sz, "", func(l *les) string {
		p := filepath.Join(l.dir, "out.ndjson")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		// Cut one line and a half off the end (a torn write).
		end := len(b) - 1
		for range 2 {
			end = strings.LastIndexByte(string(b[:end]), '\n')
		}
		cut := end + 1 + (len(b)-end)/4
		if err := os.Truncate(p, int64(cut)); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("file sink cut by %d bytes (one line and a part)", len(b)-cut)
	})
}

func scenarioDamagedCheckpoint(t *testing.T, sz size) result {
	return damaged(t, sz, "rollup: { tick: 200ms, grace: 200ms }\n", func(l *les) string {
		p := filepath.Join(l.dir, "data", "consumers", "rollup.ckpt")
		if err := overwriteMiddle(p, 64); err != nil {
			t.Fatalf("rollup checkpoint: %v", err)
		}
		return "64 bytes garbled in the middle of the rollup checkpoint"
	}, func(l *les) string {
		if strings.Contains(l.out.String(), "starting from the previous one") {
			return "les logged it started from rollup.ckpt.1"
		}
		t.Errorf("no WARN about starting from the previous checkpoint:\n%s", l.out.String())
		return "no WARN about the damaged checkpoint"
	})
}

// scenarioSlowHTTP: clients dribbling one body byte per second hold
// connections while valid clients post.
func scenarioSlowHTTP(t *testing.T, sz size) result {
	l := newLes(t, "", "")
	l.config = strings.Replace(l.config, "http: { listen:", "http: { max_concurrent: 4, listen:", 1)
	l.start()
	g := newLedger()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	clients := min(sz.dribble/50, 20) + 20 // more than max_concurrent (4) slots
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := net.Dial("tcp", l.addr("http"))
				if err != nil {
					return
				}
				fmt.Fprintf(c, "POST /report HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
				for {
					select {
					case <-stop:
						c.Close()
						return
					case <-time.After(time.Second):
					}
					if _, err := c.Write([]byte("x")); err != nil {
						break
					}
				}
				c.Close()
			}
		}()
	}
	posted, ok := 0, 0
	end := time.Now().Add(sz.hold)
	for time.Now().Before(end) {
		posted++
		if code, _ := l.post(g, "h.http", sz.batch); code/100 == 2 {
			ok++
		}
		time.Sleep(50 * time.Millisecond) // a client's pace
	}
	close(stop)
	wg.Wait()
	l.waitDelivered(g, 60*time.Second, "h.http")
	slow := l.metric(`les_ingest_http_refused_total{reason="slow_body"}`)
	r := l.stopAndTally(g, "h.http")
	r.note = fmt.Sprintf("%d clients dribbling 1 byte/s for %v against max_concurrent 4: %d of %d valid posts 2xx; %.0f slow bodies refused (408)", clients, sz.hold, ok, posted, slow)
	return r
}

// scenarioSlowTCP: more connections than max_connections send a byte now
// and then and never a newline; valid clients keep connecting.
func scenarioSlowTCP(t *testing.T, sz size) result {
	maxConn := 1024
	if !sz.full {
		maxConn = 100
	}
	l := newLes(t, "", fmt.Sprintf(", max_connections: %d", maxConn))
	l.start()
	g := newLedger()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range sz.dribble {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := net.Dial("tcp", l.addr("tcp"))
				if err != nil {
					select {
					case <-stop:
						return
					case <-time.After(time.Second):
						continue
					}
				}
				for {
					if _, err := c.Write([]byte("x")); err != nil {
						break
					}
					select {
					case <-stop:
						c.Close()
						return
					case <-time.After(2 * time.Second):
					}
				}
				c.Close()
			}
		}()
	}
	time.Sleep(2 * time.Second) // the dribblers connect
	sent, failed := 0, 0
	end := time.Now().Add(sz.hold)
	for time.Now().Before(end) {
		sent++
		if l.sendTCP(g, "t.tcp", 20) != nil {
			failed++
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	l.settled(`les_ingest_received_total{format="wavefront",transport="tcp"}`)
	accepted := l.acceptedLines("wavefront")
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if n, _ := deliveredCount(l.delivered(), "t.tcp"); n >= accepted {
			break
		}
		time.Sleep(100 * time.Millisecond) // polled: the sink is another process
	}
	evicted := l.metric(`les_ingest_rejected_total{format="wavefront",reason="connection_evicted"}`)
	refusedConns := l.metric(`les_ingest_rejected_total{format="wavefront",reason="too_many_connections"}`)
	l.sampleRSS()
	l.stop()
	var r result
	n, dups := deliveredCount(l.delivered(), "t.tcp")
	r.accepted, r.delivered, r.duplicated = accepted, n, dups
	r.lost = max(accepted-n, 0)
	r.crashes, r.peakKB = l.crashes, l.peakKB
	r.note = fmt.Sprintf("%d dribbling connections against max_connections %d for %v: %d of %d valid connections' lines sent (%d of %d lines accepted by les); %.0f dribblers evicted, %.0f connections refused; accepted = les' count",
		sz.dribble, maxConn, sz.hold, sent-failed, sent, accepted, sent*20, evicted, refusedConns)
	return r
}

// scenarioCardinality: far more new series than rollup.max_series_per_window
// over StatsD, while valid items go on over HTTP.
func scenarioCardinality(t *testing.T, sz size) result {
	l := newLes(t, fmt.Sprintf("rollup: { tick: 200ms, max_series_per_window: %d }\n", sz.maxSer), "")
	l.start()
	g := newLedger()
	c, err := net.Dial("udp", l.addr("statsd"))
	if err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	for i := range sz.series {
		fmt.Fprintf(&buf, "flood.s%d:1|c\n", i)
		if buf.Len() > 1200 {
			_, _ = c.Write([]byte(buf.String()))
			buf.Reset()
		}
		if i%(sz.series/sz.posts) == 0 {
			l.post(g, "c.http", sz.batch)
		}
	}
	c.Close()
	statsdAccepted := l.acceptedLines("statsd")
	deadline := time.Now().Add(30 * time.Second)
	for l.metric("les_rollup_series_rejected_total") == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond) // polled: the rollup runs in les
	}
	l.waitDelivered(g, 60*time.Second, "c.http")
	rejected := l.metric("les_rollup_series_rejected_total")
	l.sampleRSS()
	r := l.stopAndTally(g, "c.http")
	r.note = fmt.Sprintf("%d new StatsD series (%d accepted by les) against max_series_per_window %d: %.0f series rejected and counted; accepted = HTTP 2xx items sent meanwhile",
		sz.series, statsdAccepted, sz.maxSer, rejected)
	return r
}

// scenarioGarbage: random bytes, invalid UTF-8 and oversized lines and
// bodies to every listener (and the stream port), then valid traffic.
func scenarioGarbage(t *testing.T, sz size) result {
	l := newLes(t, "", ", max_line: 4096")
	l.config = strings.Replace(l.config, "http: { listen:", "http: { max_body: 1048576, listen:", 1)
	l.start()
	g := newLedger()
	statuses := map[int]int{}
	junk := func(n int) []byte {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		return b
	}
	payloads := func(i int) []byte {
		switch i % 4 {
		case 0:
			return junk(1 + i%3000)
		case 1:
			return []byte("bad\xff\xfe.utf8 1 source=\xc3\x28\n\xed\xa0\x80 2\n")
		case 2:
			return append([]byte(strings.Repeat("long.line", 1000)), " 1 source=s\n"...)
		default:
			return []byte("no.value source=s\n 1 2 3\n=1\n")
		}
	}
	for i := range sz.garbageN {
		p := payloads(i)
		for _, a := range []string{l.addr("tcp"), l.addr("nats")} {
			if c, err := net.DialTimeout("tcp", a, 2*time.Second); err == nil {
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				_, _ = c.Write(p)
				c.Close()
			}
		}
		for _, a := range []string{l.addr("udp"), l.addr("statsd")} {
			if c, err := net.Dial("udp", a); err == nil {
				_, _ = c.Write(p[:min(len(p), 60000)])
				c.Close()
			}
		}
		for _, path := range []string{"/report", "/logs", "/cwlogs", "/telemetry", "/v1/records", "/api/v2/event"} {
			if resp, err := httpClient.Post(l.base()+path, "text/plain", strings.NewReader(string(p))); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses[resp.StatusCode/100]++
			}
		}
		if i%10 == 0 {
			l.post(g, "g.http", sz.batch)
		}
	}
	// An oversized body and a raw HTTP request line of junk.
	if resp, err := httpClient.Post(l.base()+"/report", "text/plain", strings.NewReader(strings.Repeat("a 1\n", 600_000))); err == nil {
		resp.Body.Close()
	}
	if c, err := net.Dial("tcp", l.addr("http")); err == nil {
		_, _ = c.Write(junk(8192))
		c.Close()
	}
	for range sz.posts {
		l.post(g, "g.http", sz.batch)
	}
	l.waitDelivered(g, 60*time.Second, "g.http")
	rejected := l.metricSum("les_ingest_rejected_total")
	refused := l.metricSum("les_ingest_http_refused_total")
	alive := l.alive()
	r := l.stopAndTally(g, "g.http")
	r.note = fmt.Sprintf("%d garbage payloads to each of TCP, 2 UDP, the stream port and 6 HTTP intake paths (random bytes, invalid UTF-8, 9 KB lines over max_line 4096, a body over max_body): %.0f items rejected and counted in les_ingest_rejected_total, HTTP answers 2xx/4xx/5xx %d/%d/%d (%.0f refusals counted), les alive: %v; accepted = valid HTTP 2xx items sent in between",
		sz.garbageN, rejected, statuses[2], statuses[4], statuses[5], refused, alive)
	return r
}

// spooledItems reads the item count of a spool file's record (format in
// internal/ingest/spool.go: "LESS\x02", origin, signal, partition, id,
// data) from its wire header.
func spooledItems(t *testing.T, b []byte) int {
	p := b[5:]
	p = p[1+int(p[0]):] // origin
	p = p[5:]           // signal, partition
	p = p[1+int(p[0]):] // id
	n := binary.LittleEndian.Uint32(p)
	h, err := wire.ParseHeader(p[4 : 4+n])
	if err != nil {
		t.Fatalf("spool file: %v", err)
	}
	return int(h.Count)
}

// scenarioClusterNodeLoss: les on a 3-node JetStream cluster (in this
// process, stream replicas 3); the node leading the stream is shut down
// under HTTP and TCP load (a compact internal/stream/natsjs
// TestClusterNodeLoss, through the binary).
func scenarioClusterNodeLoss(t *testing.T, sz size) result {
	ports := []int{freePort(t), freePort(t), freePort(t)}
	clients := []int{freePort(t), freePort(t), freePort(t)}
	var srvs []*server.Server
	for i := range ports {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		srv, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: clients[i],
			JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "les", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
			NoLog:   true, NoSigs: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		srvs = append(srvs, srv)
		t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	}
	for _, srv := range srvs {
		if !srv.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats-server did not start")
		}
	}
	l := newLes(t, "", "")
	l.config = strings.Replace(l.config, "stream: { embedded:", fmt.Sprintf(
		"stream: { kind: nats, nats: { servers: [\"nats://127.0.0.1:%d\", \"nats://127.0.0.1:%d\", \"nats://127.0.0.1:%d\"], replicas: 3 }, embedded:",
		clients[0], clients[1], clients[2]), 1)
	l.start()
	g := newLedger()
	leader := func() int {
		for i, srv := range srvs {
			if srv.Running() && srv.JetStreamIsStreamLeader(srv.GlobalAccount().Name, "LES") {
				return i
			}
		}
		return -1
	}
	stop := make(chan struct{})
	wg := load(l, g, sz, stop)
	deadline := time.Now().Add(30 * time.Second)
	for leader() < 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // polled: the cluster elects
	}
	time.Sleep(time.Second) // load before the loss
	lead := leader()
	if lead < 0 {
		t.Fatal("no stream leader")
	}
	srvs[lead].Shutdown()
	srvs[lead].WaitForShutdown()
	time.Sleep(3 * time.Second) // load after the loss
	close(stop)
	wg.Wait()
	accepted := int(l.settled(`les_ingest_received_total{format="wavefront",transport="tcp"}`, `les_ingest_received_total{format="wavefront",transport="udp"}`))
	l.waitDelivered(g, 60*time.Second, "k.http")
	r := l.stopAndTally(g, "k.http")
	tcp, udp, dups := l.unackedDelivered()
	r.duplicated += dups
	r.note = fmt.Sprintf("stream leader n%d shut down after 1 s of load, 3 s more on two nodes; accepted = HTTP 2xx; TCP/UDP lines read by les %d, delivered %d", lead, accepted, tcp+udp)
	return r
}
