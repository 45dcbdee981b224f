//go:build linux

package lambda_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

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
	want, has := invokeN(t, e, 20)
	got := readKafka(t, addr, "rie", 2, has)
	if !has(got) {
		t.Fatalf("kafka holds %v, want %v\n%s", got, want, e.out.String())
	}
	if out := e.out.String(); strings.Contains(out, "level=ERROR") {
		t.Errorf("the extension logged errors:\n%s", out)
	}
}

// TestEmulatorFreezeThawKafka is TestEmulatorFreezeThaw (the same
// cycles: freezeThaw) with LES_STREAM=kafka://BROKER/rie: the extension's
// kafkalite producer against kfake, the proxy in front of kfake dropping
// its listener and every connection while the sandbox is frozen (kfake
// keeps what it stored, as a restarted broker keeps its log). Then every
// value emitted must be on the topics, read back by the full Kafka
// backend: 0 lost, duplicates reported.
//
// Unlike the Kinesis run, every cycle whose invocation had the endpoint
// up waits before the freeze for the produce request that carries the
// invocation's items (the extension publishes in the background: the
// classic emulator has no Telemetry API), so that each freeze meets the
// producer mid-publish: in odd cycles kfake holds that request until the
// sandbox is frozen and the proxy down, then stores it, so its answer is
// lost and the extension re-sends it after the thaw (kafkalite's
// idempotent retry: kfake drops the copy); in even cycles the request
// goes through and the freeze kills an idle pooled connection. 20 cycles
// by default; LES_LAMBDA_FREEZE_CYCLES=100 for the figure in
// docs/performance.md.
func TestEmulatorFreezeThawKafka(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs last, after the RIE is gone
	cycles := freezeCycles(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g := newProduceGate(c)
	defer g.releaseAll()
	addr := c.ListenAddrs()[0]
	e := startEmulator(t, true, map[string]string{"LES_STREAM": "kafka://" + addr + "/rie?partitions=2", "LES_LOG_LEVEL": "info"}, addr)
	var release chan struct{} // the held request of this cycle
	held, passed := 0, 0
	out := freezeThaw(t, e, e.fwds[0], cycles, freezeHooks{
		invoked: func(n int, up bool) {
			if !up {
				// Freeze only once the extension has spooled what it could
				// not publish: it is published from the spool later.
				if !e.spooled(10 * time.Second) {
					t.Fatalf("cycle %d: nothing spooled in 10 s with the endpoint down\n%s", n, lines(e.out.String(), "level="))
				}
				return
			}
			r, ok := g.await(n, n%2 == 1, 10*time.Second)
			switch {
			case !ok:
				t.Fatalf("cycle %d: no produce request with the invocation's items in 10 s\n%s", n, lines(e.out.String(), "level="))
			case r != nil:
				release = r
				held++
			default:
				passed++
			}
		},
		frozen: func(int) {
			if release != nil {
				close(release)
				release = nil
			}
		},
	})
	t.Logf("freezes with a produce request held until the endpoint was down: %d; right after one went through: %d; produce requests: %d", held, passed, g.requests())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := kafka.Open(ctx, kafka.Config{Brokers: []string{addr}, TopicPrefix: "rie"}, 2, kafka.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	checkFreezeThaw(t, readValues(t, st, stream.ConsumeOptions{FromStart: true, MaxWait: 50 * time.Millisecond}, cycles), cycles, out)
}

// spooled waits up to timeout until the extension's spool (/tmp/les/spool
// in the sandbox) holds a record. It polls: the files are another
// process's, and the spool has no other sign of a write.
func (e *emulator) spooled(timeout time.Duration) bool {
	dir := filepath.Join(e.tmp, "les", "spool")
	tick := time.NewTicker(5 * time.Millisecond) // pacing the poll, not timing
	defer tick.Stop()
	deadline := time.After(timeout)
	for {
		if m, _ := filepath.Glob(filepath.Join(dir, "*.rec")); len(m) > 0 {
			return true
		}
		select {
		case <-tick.C:
		case <-deadline:
			return false
		}
	}
}

// produceGate watches kfake's produce requests (cycleGate); a held
// request waits in kfake until the channel await hands back is closed.
type produceGate struct {
	*cycleGate[chan struct{}]
	pending chan struct{} // the release of a held request, for releaseAll; g.mu
}

func newProduceGate(c *kfake.Cluster) *produceGate {
	g := &produceGate{cycleGate: newCycleGate[chan struct{}]()}
	// Runs on kfake's request loop; returning false lets kfake handle the
	// request as usual.
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		var release chan struct{}
		g.saw(produceCycles(req.(*kmsg.ProduceRequest)), func() chan struct{} {
			release = make(chan struct{})
			g.pending = release
			return release
		})
		if release != nil {
			<-release
		}
		return nil, nil, false
	})
	return g
}

// releaseAll releases a request still held (a failed test), so that
// kfake can close.
func (g *produceGate) releaseAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.want = 0
	if g.pending != nil {
		select {
		case <-g.pending:
		default:
			close(g.pending)
		}
	}
}

// produceCycles are the values of rie.latency (the cycle numbers) in the
// les records of a produce request.
func produceCycles(req *kmsg.ProduceRequest) []int {
	var out []int
	var dec wire.Decoder
	for _, tp := range req.Topics {
		for _, p := range tp.Partitions {
			var rb kmsg.RecordBatch
			if err := rb.ReadFrom(p.Records); err != nil {
				continue
			}
			recs, err := kfake.BatchRecords(rb)
			if err != nil {
				continue
			}
			for _, r := range recs {
				var b model.Batch
				if _, err := dec.Decode(&b, r.Value); err != nil {
					continue
				}
				for _, m := range b.Metrics {
					if m.Name == "rie.latency" {
						out = append(out, int(m.Value))
					}
				}
			}
		}
	}
	return out
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
