package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// TestHTTPStreamForward: a les agent with stream.kind http forwards to a
// central les up (embedded stream, bearer token, 2 partitions; the agent
// has 4). With a wrong token nothing is lost: the agent spools, says why
// (naming the URL, never the token), and delivers once the token file is
// fixed. With the central killed, what the agent takes meanwhile is
// spooled and delivered after the restart. On the central stream every
// value sent is exactly once, with its kind and origin, each record keeps
// the agent's record id and lies on the central partition of its items,
// and the central holds as many records as the agent published.
func TestHTTPStreamForward(t *testing.T) {
	const token = "central-secret-4711"
	const badToken = "stale-token-0815"
	central := NewLes(t, "")
	httpLine := fmt.Sprintf("  http: { listen: 127.0.0.1:%d }\n", central.Ports["http"])
	if !strings.Contains(central.Config, httpLine) || !embeddedLine.MatchString(central.Config) {
		t.Fatalf("harness config changed:\n%s", central.Config)
	}
	central.Config = strings.Replace(central.Config, httpLine, fmt.Sprintf("  http: { listen: 127.0.0.1:%d, token: %s }\n", central.Ports["http"], token), 1)
	central.Config = embeddedLine.ReplaceAllLiteralString(central.Config,
		fmt.Sprintf("stream: { partitions: 2, embedded: { listen: 127.0.0.1:%d } }\n", central.Ports["nats"]))
	central.Start()

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(badToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wfPort, statsdPort, httpPort := freePort(t), freePort(t), freePort(t)
	centralURL := "http://" + central.Addr("http") + "/"
	agent := StartLes(t, dir, fmt.Sprintf(`data_dir: ./data
log: { level: debug }
agent:
  listeners:
    - { format: wavefront, transport: tcp, address: 127.0.0.1:%d }
    - { format: statsd, transport: udp, address: 127.0.0.1:%d }
  http: { listen: 127.0.0.1:%d }
  batch: { flush_interval: 50ms, publish_timeout: 2s }
  spool: { retry: 200ms }
stream:
  kind: http
  partitions: 4
  http: { url: %q, token_file: ./token }
`, wfPort, statsdPort, httpPort, centralURL), "agent")
	agent.Ports = map[string]int{"http": httpPort}

	sent := map[float64]string{} // wavefront value → phase
	sendWavefront := func(phase string, from int) {
		t.Helper()
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", wfPort))
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for i := from; i < from+40; i++ {
			fmt.Fprintf(&b, "fwd.wf %d source=fn-%d env=prod\n", i, i%10)
			sent[float64(i)] = phase
		}
		if _, err := c.Write([]byte(b.String())); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}

	// A wrong token: refused, spooled, said.
	sendWavefront("wrong token", 0)
	Eventually(t, "the central refuses the wrong token", func() bool {
		return central.Metric(`les_ingest_records_rejected_total{reason="unauthorized"}`) > 0
	})
	Eventually(t, "the agent spools what the central refused", func() bool {
		return agent.Metric("les_stream_spooled_records_total") > 0 && agent.Metric("les_stream_spool_bytes") > 0
	})
	want401 := "stream http: " + centralURL + "v1/records answered 401 Unauthorized: missing or wrong bearer token"
	Eventually(t, "the agent says why", func() bool { return strings.Contains(agent.Output(), want401) })
	if strings.Contains(agent.Output(), badToken) || strings.Contains(agent.Output(), token) {
		t.Fatalf("the agent's log shows a token:\n%s", lastLines(agent.Output(), 30))
	}
	// Fixing the token file delivers the spool without a restart.
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	Eventually(t, "the spool is delivered with the fixed token", func() bool { return agent.Metric("les_stream_spool_bytes") == 0 })

	// Healthy: Wavefront and StatsD.
	sendWavefront("healthy", 100)
	sendDatagrams(t, "udp", fmt.Sprintf("127.0.0.1:%d", statsdPort),
		"fwd.count:3|c|#env:prod\nfwd.count:4|c|#env:prod",
		"fwd.gauge:7.5|g|#env:prod",
		"fwd.timer:12|ms|#env:prod\nfwd.timer:30|ms|#env:prod")
	Eventually(t, "the agent published the healthy phase", func() bool {
		return agent.Metric("les_stream_published_items_total") >= 40+5 && agent.Metric("les_ingest_queued_batches") == 0
	})

	// The central crashes: the agent retries, then spools; after the
	// restart the spool is delivered.
	central.Kill()
	spooled := agent.Metric("les_stream_spooled_records_total")
	sendWavefront("central down", 200)
	Eventually(t, "the agent spools while the central is down", func() bool {
		return agent.Metric("les_stream_spooled_records_total") > spooled
	})
	central.Start()
	Eventually(t, "the spool is delivered after the central restarts", func() bool { return agent.Metric("les_stream_spool_bytes") == 0 })

	// What is on the central stream, once the agent has nothing left to
	// publish (records cut before the restart may still be in their
	// retry backoff when the spool is empty).
	var recs []streamRecord
	Eventually(t, "everything sent is on the central stream", func() bool {
		recs = nil
		for _, origin := range []string{stream.OriginIngest, stream.OriginAgg} {
			recs = append(recs, readStream(t, central, origin, wire.SignalMetrics)...)
		}
		items := 0
		for _, r := range recs {
			items += len(r.Batch.Metrics)
		}
		return items >= len(sent)+5 && agent.Metric("les_ingest_queued_batches") == 0
	})
	type point struct {
		origin string
		kind   model.Kind
		value  float64
	}
	wf := map[float64]int{}
	var statsd []point
	ids := map[string]int{}
	producers := map[string]bool{}
	var dec wire.Decoder
	for _, r := range recs {
		ids[r.ID]++
		producers[strings.SplitN(r.ID, "-", 2)[0]] = true
		var b model.Batch
		if _, err := dec.Decode(&b, r.Data); err != nil {
			t.Fatalf("record %s: %v", r.ID, err)
		}
		for i := range b.Metrics {
			m := &b.Metrics[i]
			if p := fmt.Sprint(wire.MetricPartition(m, 2)); p != r.Partition {
				t.Errorf("record %s: %s source %s on partition %s, belongs on %s of 2", r.ID, m.Name, m.Source, r.Partition, p)
			}
			switch m.Name {
			case "fwd.wf":
				if env, _ := m.Tags.Get("env"); r.Origin != stream.OriginIngest || m.Kind != model.Gauge || env != "prod" {
					t.Errorf("wavefront point %v: origin %s kind %v tags %v", m.Value, r.Origin, m.Kind, m.Tags)
				}
				wf[m.Value]++
			default:
				statsd = append(statsd, point{r.Origin, m.Kind, m.Value})
			}
		}
	}
	for v, phase := range sent {
		if wf[v] != 1 {
			t.Errorf("fwd.wf %v (sent %s) is on the central stream %d times", v, phase, wf[v])
		}
	}
	if len(wf) != len(sent) {
		t.Errorf("%d distinct fwd.wf values on the central stream, %d sent", len(wf), len(sent))
	}
	wantStatsd := map[point]int{
		{stream.OriginAgg, model.Counter, 3}: 1, {stream.OriginAgg, model.Counter, 4}: 1,
		{stream.OriginAgg, model.Gauge, 7.5}: 1, // StatsD gauges are rolled up (the last value per window)
		{stream.OriginAgg, model.Sample, 12}: 1, {stream.OriginAgg, model.Sample, 30}: 1,
	}
	gotStatsd := map[point]int{}
	for _, p := range statsd {
		gotStatsd[p]++
	}
	if fmt.Sprint(gotStatsd) != fmt.Sprint(wantStatsd) {
		t.Errorf("statsd points on the central stream %v, want %v", gotStatsd, wantStatsd)
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("record %s is on the central stream %d times", id, n)
		}
	}
	if len(producers) != 1 {
		t.Errorf("record ids of %d producers %v, want the agent's only (no record was split or re-encoded)", len(producers), producers)
	}
	published := agent.Metric("les_stream_published_records_total") + agent.Metric("les_stream_spool_replayed_records_total")
	if float64(len(recs)) != published {
		t.Errorf("%d records on the central stream, the agent published %v", len(recs), published)
	}
	t.Logf("%d records (%d points) on the central stream; the agent spooled %v, replayed %v",
		len(recs), len(wf)+len(statsd), agent.Metric("les_stream_spooled_records_total"), agent.Metric("les_stream_spool_replayed_records_total"))
	if t.Failed() {
		t.Logf("agent:\n%s\ncentral:\n%s", lastLines(agent.Output(), 60), lastLines(central.Output(), 60))
	}
	agent.Stop()
	central.Stop()
}

// TestHTTPStreamRefusedByConsumers: les up and les consume refuse
// stream.kind http with the file and line of the key.
func TestHTTPStreamRefusedByConsumers(t *testing.T) {
	l := NewLes(t, "")
	cfg := embeddedLine.ReplaceAllLiteralString(l.Config, "stream:\n  kind: http\n  http: { url: \"https://les.example.internal/\" }\n")
	if err := os.WriteFile(filepath.Join(l.Dir, "les.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"up", "consume"} {
		_, err := l.Run("", cmd, "--config", "les.yaml")
		if err == nil || !strings.Contains(err.Error(), "les.yaml:") || !strings.Contains(err.Error(), "stream.kind: kind http only forwards records to a central les") {
			t.Errorf("les %s with kind http: %v", cmd, err)
		}
	}
}
