package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/les-streams/les/internal/stream/embedded"
	embedsrv "github.com/les-streams/les/internal/stream/embedded/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// proc is one les process of a split deployment (les agent, les consume).
type proc struct {
	t    *testing.T
	dir  string
	args []string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func startProc(t *testing.T, dir, config string, args ...string) *proc {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "les.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, dir: dir, args: append(args, "--config", "les.yaml")}
	p.start()
	t.Cleanup(p.kill)
	return p
}

func (p *proc) start() {
	p.t.Helper()
	p.out = &syncBuffer{}
	p.cmd = exec.Command(lesBinary(p.t), p.args...)
	p.cmd.Dir, p.cmd.Stdout, p.cmd.Stderr = p.dir, p.out, p.out
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.out.String(), "Press Ctrl-C to stop.") {
		select {
		case <-p.done:
			p.t.Fatalf("les %v exited during start:\n%s", p.args, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("les %v did not start:\n%s", p.args, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}

// TestScaleOutConsumers: les agent publishes to a stream with 4
// partitions; two les consume processes split them (--partitions 0-1 and
// 2-3), each with its own rollup and file sink. One is killed with
// SIGKILL in the middle of the load and restarted. Every series is rolled
// up by exactly one process, and the counts emitted by both together equal
// the samples acknowledged: nothing lost, nothing counted twice.
func TestScaleOutConsumers(t *testing.T) {
	natsPort := freePort(t)
	st, err := embedsrv.Open(context.Background(), embedded.Config{Listen: fmt.Sprintf("127.0.0.1:%d", natsPort)},
		t.TempDir(), 4, embedsrv.Deps{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	streamYAML := fmt.Sprintf("stream: { kind: nats, partitions: 4, nats: { url: nats://127.0.0.1:%d } }\n", natsPort)
	agentHTTP := freePort(t)
	startProc(t, t.TempDir(), fmt.Sprintf(`data_dir: ./data
agent:
  listeners: [ { format: wavefront, transport: tcp, address: 127.0.0.1:%d } ]
  http: { listen: 127.0.0.1:%d }
  batch: { flush_interval: 50ms }
`, freePort(t), agentHTTP)+streamYAML, "agent")
	httpOf := map[string]int{}
	consumeYAML := func(name string) string {
		httpOf[name] = freePort(t)
		return fmt.Sprintf(`data_dir: ./data
log: { level: debug }
agent: { http: { listen: 127.0.0.1:%d } }
rollup: { grace: 5s, tick: 200ms }
sinks:
  - { name: archive, type: file, signals: [distributions], file: { path: ./out.ndjson } }
`, httpOf[name]) + streamYAML
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	a := startProc(t, dirA, consumeYAML("A"), "consume", "--partitions", "0-1")
	b := startProc(t, dirB, consumeYAML("B"), "consume", "--partitions", "2-3")
	if !strings.Contains(a.out.String(), "partitions: [0 1] of 4") {
		t.Fatalf("les consume does not report its partitions:\n%s", a.out.String())
	}

	// 40 series, weights acknowledged with 2xx by the agent's HTTP intake.
	const series = 40
	var acked int64
	post := func(round int) {
		var body bytes.Buffer
		ts := time.Now().Unix() - 45
		for s := range series {
			fmt.Fprintf(&body, "!M %d #%d %d.5 scale.latency source=fn-%02d\n", ts, 1+(round+s)%3, s, s)
		}
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/report?f=histogram", agentHTTP), "text/plain", &body)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("agent answered %d", resp.StatusCode)
		}
		for s := range series {
			acked += int64(1 + (round+s)%3)
		}
	}
	for round := range 60 {
		post(round)
		if round == 30 {
			b.kill() // a consumer crashes mid-load; its partitions wait for it
			b.start()
		}
		time.Sleep(10 * time.Millisecond)
	}

	owner := map[string]string{} // source → process that emitted it
	var total float64
	giveUp := time.Now().Add(50 * time.Second)
	Eventually(t, "both consumers emit every acknowledged sample", func() bool {
		total = 0
		clear(owner)
		for name, dir := range map[string]string{"A": dirA, "B": dirB} {
			ds, _ := fileSinkDists(t, filepath.Join(dir, "out.ndjson"))
			for _, d := range ds {
				if d.Name != "scale.latency" {
					continue
				}
				if o, ok := owner[d.Source]; ok && o != name {
					t.Fatalf("series %s rolled up by both consumers", d.Source)
				}
				owner[d.Source] = name
				total += d.Count
			}
		}
		if time.Now().After(giveUp) {
			t.Fatalf("emitted %v of %d acknowledged samples (series: %v)\nA:\n%s\n%s\nB:\n%s\n%s", total, acked, owner,
				lastLines(a.out.String(), 30), selfMetrics(t, httpOf["A"]), lastLines(b.out.String(), 30), selfMetrics(t, httpOf["B"])+consumerInfos(t, natsPort))
		}
		return total >= float64(acked)
	})
	// A window emitted twice would show up later: give the rollups
	// longer than their grace to emit anything more.
	settled := time.Now().Add(7 * time.Second)
	for time.Now().Before(settled) {
		var again float64
		for _, dir := range []string{dirA, dirB} {
			ds, _ := fileSinkDists(t, filepath.Join(dir, "out.ndjson"))
			for _, d := range ds {
				if d.Name == "scale.latency" {
					again += d.Count
				}
			}
		}
		if again != float64(acked) {
			t.Fatalf("emitted %v, acknowledged %d", again, acked)
		}
		time.Sleep(500 * time.Millisecond)
	}
	var inA int
	for _, o := range owner {
		if o == "A" {
			inA++
		}
	}
	if len(owner) != series || inA == 0 || inA == series {
		t.Fatalf("%d series emitted, %d by A: want all %d split between both", len(owner), inA, series)
	}
	t.Logf("acknowledged %d samples of %d series; emitted %v, %d series by A and %d by B", acked, series, total, inA, series-inA)
}

// selfMetrics returns the consumer and sink lines of a les' /metrics.
func selfMetrics(t *testing.T, port int) string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var b strings.Builder
	body, _ := io.ReadAll(resp.Body)
	for _, ln := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(ln, "les_consumer") || strings.HasPrefix(ln, "les_sink") || strings.HasPrefix(ln, "les_processor") || strings.HasPrefix(ln, "les_rollup") {
			b.WriteString(ln + "\n")
		}
	}
	return b.String()
}

func consumerInfos(t *testing.T, port int) string {
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port))
	if err != nil {
		return err.Error()
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(context.Background(), "LES")
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	l := st.ListConsumers(context.Background())
	for ci := range l.Info() {
		fmt.Fprintf(&b, "%s filter=%v pending=%d ackpending=%d delivered=%d ackfloor=%d\n", ci.Name, ci.Config.FilterSubjects, ci.NumPending, ci.NumAckPending, ci.Delivered.Stream, ci.AckFloor.Stream)
	}
	return b.String()
}
