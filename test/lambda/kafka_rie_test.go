//go:build linux

package lambda_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/kafka"
	"github.com/les-streams/les/internal/wire"
)

// TestEmulatorKafka: the layer's extension (kafkalite, the default
// build) under the classic emulator with LES_STREAM=kafka://BROKER/PREFIX,
// the broker a kfake listener on the host's 127.0.0.1 forwarded into the
// sandbox's network namespace at the same address (which is also the
// address kfake advertises in its metadata). 20 invocations emit over
// StatsD, Wavefront and EMF; the full Kafka backend reads back exactly
// what they emitted.
func TestEmulatorKafka(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := c.ListenAddrs()[0]
	e := startEmulator(t, true, map[string]string{"LES_STREAM": "kafka://" + addr + "/rie?partitions=2", "LES_LOG_LEVEL": "info"}, addr)
	const n = 20
	sum := 0
	for i := 1; i <= n; i++ {
		if ans, _ := e.call(fmt.Sprintf(`{"n":%d}`, i)); ans != `"ok"` {
			t.Fatalf("invocation %d answered %s", i, ans)
		}
		sum += i
	}
	want := map[string]float64{
		"rie.count@fn": n, "#rie.latency@fn": n, "rie.latency@fn": float64(sum),
		"rie.wf@rie-fn": float64(sum), "RieEmf@fn": float64(2 * sum),
	}
	has := func(got map[string]float64) bool {
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
		return true
	}
	got := readKafka(t, addr, "rie", 2, has)
	if !has(got) {
		t.Fatalf("kafka holds %v, want %v\n%s", got, want, e.out.String())
	}
	if out := e.out.String(); strings.Contains(out, "level=ERROR") {
		t.Errorf("the extension logged errors:\n%s", out)
	}
}

// readKafka reads every topic of prefix with the full backend until
// until says it has what it needs (or 30s pass), decoding each record.
func readKafka(t *testing.T, broker, prefix string, partitions int, until func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := kafka.Open(ctx, kafka.Config{Brokers: []string{broker}, TopicPrefix: prefix}, partitions, kafka.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got := map[string]float64{}
	var dec wire.Decoder
	err = st.Consume(ctx, stream.ConsumeOptions{FromStart: true, MaxWait: 50 * time.Millisecond}, func(_ context.Context, ds []stream.Delivery) error {
		for _, d := range ds {
			var b model.Batch
			if _, err := dec.Decode(&b, d.Data); err != nil {
				return fmt.Errorf("decode: %w", err)
			}
			for _, m := range b.Metrics {
				got[m.Name+"@"+m.Source] += m.Value
				got["#"+m.Name+"@"+m.Source]++
			}
		}
		if until(got) {
			cancel()
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	return got
}
