package extension_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/les-streams/les/internal/lambda/extension"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/kafka"
	"github.com/les-streams/les/internal/stream/streamtest"
	"github.com/les-streams/les/internal/wire"
)

// TestKafkaStream: with LES_STREAM=kafka://BROKER/PREFIX the extension
// publishes what the function emitted to Kafka (through kafkalite in the
// default build, franz-go with les_kafka); the full backend reads it back
// from the topics and partitions it would have used itself.
func TestKafkaStream(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := newHarness(t, map[string]string{"LES_STREAM": "kafka://" + c.ListenAddrs()[0] + "/lestest?partitions=2"})
	ready := make(chan extension.Info, 1)
	go func() {
		h.done <- extension.Run(context.Background(), extension.Options{
			Getenv: func(k string) string { return h.env[k] }, Stderr: h.log, Registry: h.reg,
			Ready: func(i extension.Info) { ready <- i },
		})
	}()
	select {
	case h.info = <-ready:
	case err := <-h.done:
		t.Fatalf("extension ended before it was ready: %v\n%s", err, h.log.String())
	case <-time.After(10 * time.Second): // a failure bound, not a wait
		t.Fatalf("extension not ready after 10s (kafka:// refused?):\n%s", h.log.String())
	}
	h.api.waitNext()
	h.api.send(invokeEvent("8f507cfc-a8a6-4697-b07a-ac58fc914c95", time.Now().Add(time.Minute)))
	h.statsd("orders:3|c|#shop:x")
	h.statsd("orders:4|c|#shop:y")
	h.api.waitNext()
	h.api.send(shutdownEvent("spindown", time.Now().Add(2*time.Second)))
	if err := h.wait(); err != nil {
		t.Fatalf("%v\n%s", err, h.log.String())
	}

	full, err := kafka.Open(context.Background(), kafka.Config{Brokers: c.ListenAddrs(), TopicPrefix: "lestest"}, 2, kafka.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	var got map[string]float64
	streamtest.Consume(t, full, stream.ConsumeOptions{FromStart: true}, nil, func(ds []stream.Delivery) bool {
		got = map[string]float64{}
		var dec wire.Decoder
		for _, d := range ds {
			var b model.Batch
			if _, err := dec.Decode(&b, d.Data); err != nil {
				t.Errorf("record at %s/%s: %v", d.Partition, d.Pos, err)
				return true
			}
			if !slices.Contains([]string{d.Origin + "." + d.Signal.String() + "/0", d.Origin + "." + d.Signal.String() + "/1"}, d.Partition) {
				t.Errorf("record in %s", d.Partition)
			}
			for _, m := range b.Metrics {
				shop, _ := m.Tags.Get("shop")
				got[m.Name+"@"+m.Source+"/"+shop] += m.Value
			}
		}
		return got["orders@fn/x"] == 3 && got["orders@fn/y"] == 4
	})
	if n := h.metric(`les_stream_publish_errors_total{backend="kafka"}`); n != 0 {
		t.Errorf("publish errors: %v\n%s", n, h.log.String())
	}
}
