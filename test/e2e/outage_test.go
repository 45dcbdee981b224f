package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/kafka"
	"github.com/les-streams/les/internal/wire"
)

// TestAgentKafkaDownAtStart: les agent starts while its Kafka is not
// there yet, says so, spools what it cannot publish, and once the broker
// (franz-go's kfake, a real Kafka protocol server) comes up replays the
// spool: every line sent is on the stream, none twice.
func TestAgentKafkaDownAtStart(t *testing.T) {
	kport, wfPort, httpPort := freePort(t), freePort(t), freePort(t)
	p := StartLes(t, t.TempDir(), fmt.Sprintf(`data_dir: ./data
agent:
  listeners: [ { format: wavefront, transport: tcp, address: 127.0.0.1:%d } ]
  http: { listen: 127.0.0.1:%d }
  batch: { flush_interval: 50ms, publish_timeout: 1s }
  spool: { retry: 200ms }
stream: { kind: kafka, partitions: 4, kafka: { brokers: ["127.0.0.1:%d"] } }
`, wfPort, httpPort, kport), "agent")

	const lines = 500
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", wfPort))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := range lines {
		fmt.Fprintf(&b, "outage.metric %d source=fn-%d\n", i, i%7)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	c.Close()
	metric := func(name string) float64 {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort))
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, ln := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(ln, name+" "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		return 0
	}
	Eventually(t, "the agent spools while Kafka is down", func() bool { return metric("les_stream_spooled_records_total") > 0 })

	cl, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(kport))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	Eventually(t, "the spool is replayed once Kafka is up", func() bool { return metric("les_stream_spool_bytes") == 0 })

	st, err := kafka.Open(context.Background(), kafka.Config{Brokers: cl.ListenAddrs()}, 4, kafka.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var mu sync.Mutex
	values := map[float64]int{}
	ids := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var dec wire.Decoder
	var batch model.Batch
	_ = st.Consume(ctx, stream.ConsumeOptions{Origins: []string{stream.OriginIngest}, FromStart: true},
		func(_ context.Context, ds []stream.Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			for _, d := range ds {
				batch.Reset()
				h, err := dec.Decode(&batch, d.Data)
				if err != nil {
					t.Errorf("record at %s/%s: %v", d.Partition, d.Pos, err)
					continue
				}
				if ids[h.ID()] {
					continue // stored twice (Kafka does not de-duplicate); consumers skip by id
				}
				ids[h.ID()] = true
				for _, m := range batch.Metrics {
					if m.Name == "outage.metric" {
						values[m.Value]++
					}
				}
			}
			if len(values) == lines {
				cancel()
			}
			return nil
		})
	for i := range lines {
		if values[float64(i)] != 1 {
			t.Fatalf("line %d is on the stream %d times (%d distinct lines of %d)\n%s", i, values[float64(i)], len(values), lines, lastLines(p.Output(), 20))
		}
	}
	if !strings.Contains(p.Output(), "kafka") {
		t.Errorf("the agent's output does not mention the stream:\n%s", p.Output())
	}
	t.Logf("%d lines, %v records spooled and replayed", lines, metric("les_stream_spool_replayed_records_total"))
}
