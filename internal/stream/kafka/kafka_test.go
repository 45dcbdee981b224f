package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/streamtest"
	"github.com/les-streams/les/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newCluster starts a one-broker kfake cluster closed when t ends.
func newCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// open opens a Stream of streamtest.Partitions partitions on addrs,
// closed when t ends (Close is idempotent).
func open(t testing.TB, addrs []string, deps Deps) *Stream {
	t.Helper()
	s, err := Open(context.Background(), Config{Brokers: addrs}, streamtest.Partitions, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	var mu sync.Mutex
	clusters := map[string]*kfake.Cluster{}
	t.Cleanup(func() {
		for _, c := range clusters {
			c.Close()
		}
	})
	streamtest.Run(t, func(t *testing.T) stream.Stream {
		mu.Lock()
		c, ok := clusters[t.Name()]
		if !ok {
			var err error
			if c, err = kfake.NewCluster(kfake.NumBrokers(1)); err != nil {
				mu.Unlock()
				t.Fatal(err)
			}
			clusters[t.Name()] = c
		}
		mu.Unlock()
		s, err := Open(context.Background(), Config{Brokers: c.ListenAddrs()}, streamtest.Partitions, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// kafkaCounter is the value of the backend's counter name{backend="kafka"}.
func kafkaCounter(reg *selfmetric.Registry, name string) float64 {
	return float64(reg.Counter(name, "backend", "kafka").Get())
}

// TestUnreachable: Open does not dial; Publish and Consume honour their
// ctx while no broker answers.
func TestUnreachable(t *testing.T) {
	reg := selfmetric.New()
	s := open(t, []string{"127.0.0.1:1"}, Deps{Metrics: reg})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := s.Publish(ctx, streamtest.Rec(stream.OriginIngest, wire.SignalMetrics, 1))
	if err == nil || errors.Is(err, stream.ErrTooLarge) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish to an unreachable broker: %v, want a deadline error", err)
	}
	if n := kafkaCounter(reg, "les_stream_publish_errors_total"); n != 1 {
		t.Fatalf("publish errors = %v, want 1", n)
	}
	for _, o := range []stream.ConsumeOptions{{FromStart: true}, {Durable: "d"}} {
		cctx, ccancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err := s.Consume(cctx, o, func(context.Context, []stream.Delivery) error { return nil })
		ccancel()
		if err != nil {
			t.Fatalf("consume %+v with brokers down: %v, want nil after cancel", o, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(context.Background()); !errors.Is(err, stream.ErrClosed) {
		t.Fatalf("publish after close: %v", err)
	}
}

// readAll consumes every record of origin in / signal metrics from the
// start until n distinct payloads arrived and returns how often each
// payload index was delivered.
func readAll(t *testing.T, s *Stream, n int) map[int]int {
	t.Helper()
	seen := map[int]int{}
	o := stream.ConsumeOptions{FromStart: true, Origins: []string{stream.OriginIngest}, Signals: []wire.Signal{wire.SignalMetrics}}
	streamtest.Consume(t, s, o, nil, func(ds []stream.Delivery) bool {
		clear(seen)
		for _, d := range ds {
			seen[payloadIndex(t, d)]++
		}
		return len(seen) >= n
	})
	return seen
}

func payloadIndex(t *testing.T, d stream.Delivery) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(string(d.Data), "payload-%d", &i); err != nil {
		t.Fatalf("unexpected payload %q", d.Data)
	}
	return i
}

func recs(from, to int) []stream.Record {
	var rs []stream.Record
	for i := from; i < to; i++ {
		rs = append(rs, streamtest.Rec(stream.OriginIngest, wire.SignalMetrics, i))
	}
	return rs
}

// TestBrokerOutage: produce requests fail for a while, with errors after
// which nothing was stored (NOT_ENOUGH_REPLICAS) and errors after which
// the write happened but the producer cannot know (REQUEST_TIMED_OUT);
// Publish gets everything stored exactly once.
func TestBrokerOutage(t *testing.T) {
	c := newCluster(t)
	reg := selfmetric.New()
	s := open(t, c.ListenAddrs(), Deps{Metrics: reg})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Publish(ctx, recs(0, 10)...); err != nil {
		t.Fatal(err)
	}
	down := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotEnoughReplicas, Count: 6})
	if err := s.Publish(ctx, recs(10, 30)...); err != nil {
		t.Fatalf("publish across an outage: %v", err)
	}
	if n := down.Hits(); n != 6 {
		t.Fatalf("fault hit %d times, want 6", n)
	}
	retries := kafkaCounter(reg, "les_stream_publish_retries_total")
	if retries < 6 {
		t.Fatalf("publish retries = %v, want at least one per refused request (6)", retries)
	}
	ambiguous := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.RequestTimedOut, Count: 3})
	if err := s.Publish(ctx, recs(30, 50)...); err != nil {
		t.Fatalf("publish across request timeouts: %v", err)
	}
	if n := ambiguous.Hits(); n != 3 {
		t.Fatalf("timeout fault hit %d times, want 3", n)
	}
	if n := kafkaCounter(reg, "les_stream_publish_errors_total"); n != 0 {
		t.Fatalf("publish errors = %v, want 0", n)
	}
	seen := readAll(t, s, 50)
	for i := range 50 {
		if seen[i] != 1 {
			t.Fatalf("payload-%d stored %d times, want once", i, seen[i])
		}
	}
}

// TestPublishAfterAbandoned: a Publish that ends on its ctx leaves its
// record in the shared producer client, and franz-go fails every record
// buffered for a partition once the first one's context is done: the
// next Publish's records of that partition with it, though its ctx is
// live. They were never written; Publish sends them again (counted as
// retries) and stores each once.
func TestPublishAfterAbandoned(t *testing.T) {
	c := newCluster(t)
	reg := selfmetric.New()
	s := open(t, c.ListenAddrs(), Deps{Metrics: reg})
	on := func(part, i int) stream.Record {
		r := streamtest.Rec(stream.OriginIngest, wire.SignalMetrics, i)
		r.Partition = part
		return r
	}
	last := on(0, 6)
	lastTaken := make(chan struct{})
	var once sync.Once
	hookProducer(t, s, func(r *kgo.Record) {
		for _, h := range r.Headers {
			if h.Key == headerID && string(h.Value) == last.ID {
				once.Do(func() { close(lastTaken) })
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	held, release := holdProduce(c)
	heldErr := make(chan error, 1)
	go func() { heldErr <- s.Publish(ctx, on(1, 2), on(1, 1)) }()
	<-held // and the topic's partitions known
	gone, stop := context.WithCancel(ctx)
	stop()
	if err := s.Publish(gone, on(0, 3)); !errors.Is(err, context.Canceled) {
		t.Fatalf("publish with a cancelled ctx: %v", err)
	}
	liveErr := make(chan error, 1)
	go func() { liveErr <- s.Publish(ctx, on(0, 4), on(0, 5), last) }()
	<-lastTaken // 4 and 5 are buffered behind 3
	release()
	if err := <-liveErr; err != nil {
		t.Fatalf("a publish whose ctx is live, after one abandoned: %v", err)
	}
	if err := <-heldErr; err != nil {
		t.Fatal(err)
	}
	if n := kafkaCounter(reg, "les_stream_publish_retries_total"); n < 2 {
		t.Fatalf("publish retries = %v, want the records failed with the abandoned one (at least 2)", n)
	}
	if err := s.Publish(ctx, on(0, 0)); err != nil {
		t.Fatal(err)
	}
	seen := readAll(t, s, 6) // 3 was never written
	for _, i := range []int{0, 1, 2, 4, 5, 6} {
		if seen[i] != 1 {
			t.Fatalf("payload-%d stored %d times, want once (stored: %v)", i, seen[i], seen)
		}
	}
}

// hookProducer replaces s's producer client by one that calls buffered
// for each record as the client takes it (before it is buffered).
func hookProducer(t *testing.T, s *Stream, buffered func(*kgo.Record)) {
	t.Helper()
	s.cl.Close()
	cl, err := kgo.NewClient(s.clientOpts(append(s.producerOpts(), kgo.WithHooks(bufferedHook(buffered)))...)...)
	if err != nil {
		t.Fatal(err)
	}
	s.cl = cl
}

type bufferedHook func(*kgo.Record)

func (h bufferedHook) OnProduceRecordBuffered(r *kgo.Record) { h(r) }

// holdProduce holds the next produce request c receives until release
// is called; held is closed when it arrives. Until a client has its
// first produce response, it sends one produce request at a time (later
// up to 5 to a broker): if that is the held one, what it is given
// meanwhile stays buffered.
func holdProduce(c *kfake.Cluster) (held <-chan struct{}, release func()) {
	h, r := make(chan struct{}), make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.DropControl()
		close(h)
		c.SleepControl(func() { <-r })
		return nil, nil, false
	})
	return h, sync.OnceFunc(func() { close(r) })
}

// TestForeignRecord: a record not written by les (no les-id header, any
// key, empty value) is delivered like any other; the consumer runner
// dead-letters what it cannot decode.
func TestForeignRecord(t *testing.T) {
	c := newCluster(t)
	s := open(t, c.ListenAddrs(), Deps{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Publish(ctx, streamtest.Rec(stream.OriginIngest, wire.SignalLogs, 0)); err != nil {
		t.Fatal(err)
	}
	raw, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.ProduceSync(ctx,
		&kgo.Record{Topic: "les.in.logs", Key: []byte("not a partition"), Value: []byte("\x00garbage")},
		&kgo.Record{Topic: "les.in.logs", Value: nil},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	o := stream.ConsumeOptions{FromStart: true, Origins: []string{stream.OriginIngest}, Signals: []wire.Signal{wire.SignalLogs}}
	got := streamtest.Consume(t, s, o, nil, streamtest.AtLeast(3))
	var foreign int
	for _, d := range got {
		if d.Origin != stream.OriginIngest || d.Signal != wire.SignalLogs || d.Pos == "" || !strings.HasPrefix(d.Partition, "in.logs/") {
			t.Fatalf("delivery %+v", d)
		}
		if !strings.HasPrefix(string(d.Data), "payload-") {
			foreign++
		}
	}
	if foreign != 2 {
		t.Fatalf("%d foreign records delivered, want 2", foreign)
	}
}

// TestFewerKafkaPartitions: a topic created with 2 partitions takes the
// records of 4 logical partitions modulo 2 and says so once.
func TestFewerKafkaPartitions(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(2, "les.in.metrics"))
	var logs lockedBuffer
	s := open(t, c.ListenAddrs(), Deps{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 2 {
		if err := s.Publish(ctx, recs(0, 8)...); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "fewer partitions"); n != 1 {
		t.Fatalf("warned %d times, want once:\n%s", n, logs.String())
	}
	got := readAll(t, s, 8)
	if len(got) != 8 {
		t.Fatalf("got %v", got)
	}
	// Logical partitions 1 and 3 live in Kafka partition 1.
	o := stream.ConsumeOptions{FromStart: true, Partitions: []int{3}, Origins: []string{stream.OriginIngest}, Signals: []wire.Signal{wire.SignalMetrics}}
	for _, d := range streamtest.Consume(t, s, o, nil, streamtest.AtLeast(8)) {
		if d.Partition != "in.metrics/1" || payloadIndex(t, d)%2 != 1 {
			t.Fatalf("consumer of logical partition 3 got %s payload %q", d.Partition, d.Data)
		}
	}
}

// TestLagAfter counts records after positions and from the log start.
func TestLagAfter(t *testing.T) {
	c := newCluster(t)
	s := open(t, c.ListenAddrs(), Deps{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Publish(ctx, recs(0, 12)...); err != nil { // 3 per partition, offsets 0..2
		t.Fatal(err)
	}
	q := stream.LagQuery{Origins: []string{stream.OriginIngest}, After: map[string]stream.Position{
		"in.metrics/0": "0", "in.metrics/1": "2", // 2 + 0 left; partitions 2 and 3: 3 each
	}}
	lag, err := s.Lag(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if lag != 8 {
		t.Fatalf("lag %d, want 8", lag)
	}
	if _, err := s.Lag(ctx, stream.LagQuery{}); err == nil {
		t.Fatal("lag without durable or positions succeeded")
	}
}

func TestDurableWithPartitions(t *testing.T) {
	s := open(t, []string{"127.0.0.1:1"}, Deps{})
	err := s.Consume(context.Background(), stream.ConsumeOptions{Durable: "x", Partitions: []int{1}}, nil)
	if err == nil || !strings.Contains(err.Error(), "Durable") {
		t.Fatalf("durable with partitions: %v", err)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
