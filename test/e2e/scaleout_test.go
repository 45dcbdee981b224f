package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/les-streams/les/internal/stream/embedded"
	embedsrv "github.com/les-streams/les/internal/stream/embedded/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestScaleOutConsumers: les agent publishes to a stream with 4
// partitions; two les consume processes split them (--partitions 0-1 and
// 2-3), each with its own rollup and file sink. One is killed with
// SIGKILL in the middle of the load and restarted. Every series is rolled
// up by exactly one process, and the counts emitted by both together equal
// the samples acknowledged: nothing lost, nothing counted twice.
//
// It runs on three stream backends, each a server outside the les
// processes (so it outlives the kill):
//   - nats: an embedded nats-server in the test process; a sink with
//     partitions keeps one durable per partition, so each process' file
//     sink writes exactly the windows its own rollup closed.
//   - kafka: a kfake cluster in the test process (kafkaBackend). Sinks
//     share a consumer group: the group assigns the partitions of the
//     aggregate topic, --partitions applies to the rollup only, so a
//     series' windows may be written by the other process' file sink, and
//     after a rebalance a window a killed sink wrote but did not commit is
//     written again by the other one. Ownership is therefore checked on
//     the rollups' own state (/query), and the files are de-duplicated by
//     record id together.
//   - kinesis: kinesalite with a 2-shard stream carrying the 4 logical
//     partitions (kinesisBackend); sink cursors are positions files under
//     each process' data_dir.
func TestScaleOutConsumers(t *testing.T) {
	t.Run("nats", func(t *testing.T) {
		natsPort := freePort(t)
		st, err := embedsrv.Open(context.Background(), embedded.Config{Listen: fmt.Sprintf("127.0.0.1:%d", natsPort), Auth: "none"},
			t.TempDir(), 4, embedsrv.Deps{Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		scaleOut(t, scaleOutBackend{
			yaml:     fmt.Sprintf("stream: { kind: nats, partitions: 4, nats: { url: nats://127.0.0.1:%d } }\n", natsPort),
			diagnose: func() string { return consumerInfos(t, natsPort) },
		})
	})
	t.Run("kafka", func(t *testing.T) {
		b := kafkaBackend(t)
		scaleOut(t, scaleOutBackend{
			yaml: b.yaml, groupSinks: true,
			diagnose: func() string {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				b.diagnose(ctx, t, "archive")
				return ""
			},
		})
	})
	t.Run("kinesis", func(t *testing.T) {
		b := kinesisBackend(t)
		scaleOut(t, scaleOutBackend{yaml: b.yaml, positionsFiles: true})
	})
}

// scaleOutBackend is the stream TestScaleOutConsumers runs on.
type scaleOutBackend struct {
	yaml string // the stream: block of every process
	// groupSinks: sinks are assigned partitions by a consumer group, not
	// by --partitions (Kafka), so a file does not tell which rollup
	// closed a window.
	groupSinks bool
	// positionsFiles: sinks keep their cursors in
	// <data_dir>/consumers/<sink>.pos (Kinesis).
	positionsFiles bool
	// diagnose, when set, returns (or logs) what the stream knows of the
	// consumers, for a failing test.
	diagnose func() string
}

// scaleOut is TestScaleOutConsumers' body on backend b.
func scaleOut(t *testing.T, b scaleOutBackend) {
	began := time.Now()
	agentHTTP := freePort(t)
	StartLes(t, t.TempDir(), fmt.Sprintf(`data_dir: ./data
agent:
  listeners: [ { format: wavefront, transport: tcp, address: 127.0.0.1:%d } ]
  http: { listen: 127.0.0.1:%d }
  batch: { flush_interval: 50ms }
`, freePort(t), agentHTTP)+b.yaml, "agent")
	httpOf := map[string]int{}
	consumeYAML := func(name string) string {
		httpOf[name] = freePort(t)
		return fmt.Sprintf(`data_dir: ./data
log: { level: debug }
agent: { http: { listen: 127.0.0.1:%d } }
rollup: { grace: 5s, tick: 200ms }
sinks:
  - { name: archive, type: file, signals: [distributions], file: { path: ./out.ndjson } }
`, httpOf[name]) + b.yaml
	}
	dirs := map[string]string{"A": t.TempDir(), "B": t.TempDir()}
	a := StartLes(t, dirs["A"], consumeYAML("A"), "consume", "--partitions", "0-1")
	bp := StartLes(t, dirs["B"], consumeYAML("B"), "consume", "--partitions", "2-3")
	if !strings.Contains(a.Output(), "partitions: [0 1] of 4") {
		t.Fatalf("les consume does not report its partitions:\n%s", a.Output())
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
			bp.Kill() // a consumer crashes mid-load; its partitions wait for it
			bp.Start()
		}
	}

	// emitted reads both file sinks, de-duplicated by (record id, item)
	// across both: on Kafka a window written by a sink that was killed
	// before committing is written again by whichever sink the group gives
	// the partition to. fileOf is the file sink that wrote each source.
	type key struct {
		rec  string
		item int
	}
	emitted := func() (total float64, perSource map[string]float64, fileOf map[string]map[string]bool, dups int) {
		seen := map[key]bool{}
		perSource, fileOf = map[string]float64{}, map[string]map[string]bool{}
		for _, name := range []string{"A", "B"} {
			ds, n := fileSinkDists(t, filepath.Join(dirs[name], "out.ndjson"))
			dups += n
			for _, d := range ds {
				if d.Name != "scale.latency" {
					continue
				}
				if fileOf[d.Source] == nil {
					fileOf[d.Source] = map[string]bool{}
				}
				fileOf[d.Source][name] = true
				k := key{d.Record, d.Item}
				if seen[k] {
					dups++
					continue
				}
				seen[k] = true
				perSource[d.Source] += d.Count
				total += d.Count
			}
		}
		return total, perSource, fileOf, dups
	}
	diag := func() string {
		s := fmt.Sprintf("A:\n%s\n%s\nB:\n%s\n%s", lastLines(a.Output(), 30), selfMetrics(t, httpOf["A"]),
			lastLines(bp.Output(), 30), selfMetrics(t, httpOf["B"]))
		if b.diagnose != nil {
			s += b.diagnose()
		}
		return s
	}

	var (
		total     float64
		perSource map[string]float64
		fileOf    map[string]map[string]bool
		dups      int
	)
	giveUp := time.Now().Add(40 * time.Second)
	Eventually(t, "both consumers emit every acknowledged sample", func() bool {
		total, perSource, fileOf, dups = emitted()
		if total > float64(acked) {
			t.Fatalf("emitted %v, acknowledged %d (per source: %v)\n%s", total, acked, perSource, diag())
		}
		if time.Now().After(giveUp) {
			t.Fatalf("emitted %v of %d acknowledged samples (per source: %v)\n%s", total, acked, perSource, diag())
		}
		return total == float64(acked)
	})
	emittedAt := time.Since(began)
	// A window emitted twice would show up later: give the rollups
	// longer than their grace to emit anything more.
	settled := time.Now().Add(7 * time.Second)
	for time.Now().Before(settled) {
		if again, _, _, _ := emitted(); again != float64(acked) {
			t.Fatalf("emitted %v, acknowledged %d\n%s", again, acked, diag())
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Every series rolled up by exactly one process: the sources each
	// rollup holds closed windows of (its own state, /query) are disjoint
	// and cover every series.
	held := map[string]string{} // source → consumer whose rollup holds it
	perProc := map[string]int{}
	for _, name := range []string{"A", "B"} {
		for _, d := range rollupQuery(t, httpOf[name], "scale.latency") {
			if o, ok := held[d.Source]; ok && o != name {
				t.Fatalf("series %s rolled up by both consumers\n%s", d.Source, diag())
			}
			if _, ok := held[d.Source]; !ok {
				perProc[name]++
			}
			held[d.Source] = name
		}
	}
	if len(held) != series || perProc["A"] == 0 || perProc["B"] == 0 {
		t.Fatalf("rollups hold %d series (%v): want all %d split between both\n%s", len(held), perProc, series, diag())
	}
	if len(perSource) != series {
		t.Fatalf("the file sinks hold %d series, want %d", len(perSource), series)
	}
	// Where a process' sink reads only its own partitions, its file holds
	// exactly the series of its rollup.
	if b.positionsFiles {
		for name, dir := range dirs {
			if _, err := os.Stat(filepath.Join(dir, "data", "consumers", "archive.pos")); err != nil {
				t.Errorf("%s: the file sink keeps no positions file: %v", name, err)
			}
		}
	}
	crossWritten := 0
	for src, files := range fileOf {
		if len(files) != 1 || !files[held[src]] {
			if !b.groupSinks {
				t.Fatalf("series %s (rolled up by %s) is in the files of %v", src, held[src], files)
			}
			crossWritten++
		}
	}
	t.Logf("acknowledged %d samples of %d series; emitted %v (all after %v); %d series rolled up by A, %d by B; %d series written (partly) by the other process' sink; %d lines written again; %v in all",
		acked, series, total, emittedAt.Round(100*time.Millisecond), perProc["A"], perProc["B"], crossWritten, dups, time.Since(began).Round(100*time.Millisecond))
}

// rollupQuery returns the closed windows of name the rollup of the les
// whose HTTP port is port holds (GET /query?name=).
func rollupQuery(t *testing.T, port int, name string) []distLine {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/query?name=%s", port, name))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/query: %s: %s", resp.Status, body)
	}
	return parseDistLines(t, nonEmptyLines(string(body)))
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
