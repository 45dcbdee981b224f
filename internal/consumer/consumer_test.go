package consumer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/embedded"
	embedsrv "github.com/les-streams/les/internal/stream/embedded/server"
	"github.com/les-streams/les/internal/stream/mem"
	"github.com/les-streams/les/internal/wire"
)

var quiet = slog.New(slog.DiscardHandler)

func openStream(t *testing.T, dir string) *embedsrv.Stream {
	t.Helper()
	st, err := embedsrv.Open(context.Background(), embedded.Config{Listen: "127.0.0.1:-1"}, dir, 1, embedsrv.Deps{Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// publishMetrics publishes n records of per metrics each, value 1 each.
func publishMetrics(t *testing.T, st stream.Stream, first, n, per int) {
	t.Helper()
	publishParts(t, st, first, n, per, 1)
}

// publishParts publishes records first..first+n-1 (ids r<i>) of per
// samples each, value 1 each, record i on partition i%parts.
func publishParts(t *testing.T, st stream.Stream, first, n, per, parts int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		e := wire.NewEncoder(wire.SignalMetrics)
		for j := range per {
			e.AppendMetric(&model.Metric{Name: "m", Value: 1, Timestamp: int64(j), Kind: model.Sample})
		}
		data, err := e.Finish(nil, 7, uint64(i+1), wire.CompressionNone)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Publish(context.Background(), stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalMetrics,
			Partition: i % parts, ID: fmt.Sprint("r", i), Data: data}); err != nil {
			t.Fatal(err)
		}
	}
}

// countProc counts the samples it was given and, on Advance, emits one
// metric whose value is the count since the last emission.
type countProc struct{ pending, total float64 }

func (p *countProc) Add(b *model.Batch, now int64) {
	for _, m := range b.Metrics {
		p.pending += m.Value
	}
}

func (p *countProc) Advance(now int64, out *model.Batch) {
	if p.pending == 0 {
		return
	}
	out.Metrics = append(out.Metrics, model.Metric{Name: "count", Value: p.pending, Kind: model.Counter})
	p.total += p.pending
	p.pending = 0
}

func (p *countProc) MarshalState() ([]byte, error) {
	b := binary.LittleEndian.AppendUint64(nil, uint64(p.pending))
	return binary.LittleEndian.AppendUint64(b, uint64(p.total)), nil
}

func (p *countProc) UnmarshalState(b []byte) error {
	if len(b) != 16 {
		return errors.New("bad state")
	}
	p.pending = float64(binary.LittleEndian.Uint64(b))
	p.total = float64(binary.LittleEndian.Uint64(b[8:]))
	return nil
}

// flakyStream fails publishes of derived records while failing is set.
type flakyStream struct {
	stream.Stream
	failing atomic.Bool
}

func (f *flakyStream) Publish(ctx context.Context, recs ...stream.Record) error {
	if f.failing.Load() {
		return errors.New("injected publish failure")
	}
	return f.Stream.Publish(ctx, recs...)
}

// emittedTotal sums the values of rollup-origin records on the stream
// (the stream de-duplicates re-published ids).
func emittedTotal(t *testing.T, st stream.Stream, want float64) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var total float64
	var dec wire.Decoder
	_ = st.Consume(ctx, stream.ConsumeOptions{Origins: []string{stream.OriginRollup}, FromStart: true},
		func(ctx context.Context, ds []stream.Delivery) error {
			for _, d := range ds {
				var b model.Batch
				if _, err := dec.Decode(&b, d.Data); err != nil {
					t.Fatal(err)
				}
				for _, m := range b.Metrics {
					total += m.Value
				}
			}
			if total >= want {
				cancel()
			}
			return nil
		})
	return total
}

func runProc(t *testing.T, st stream.Stream, ckpt string, p Processor, until func() bool) {
	t.Helper()
	runProcWith(t, st, ckpt, p, until, false)
}

// runProcPublished is runProc that also waits for the outbox to be empty.
func runProcPublished(t *testing.T, st stream.Stream, ckpt string, p Processor, until func() bool) {
	t.Helper()
	runProcWith(t, st, ckpt, p, until, true)
}

func runProcWith(t *testing.T, st stream.Stream, ckpt string, p Processor, until func() bool, published bool) {
	t.Helper()
	r, err := NewProcRunner(ProcConfig{Name: "count", Origins: []string{stream.OriginIngest}, Origin: stream.OriginRollup,
		CheckpointPath: ckpt, Tick: 10 * time.Millisecond}, st, p, selfmetric.New(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ok bool
		// With published, also wait for what the processor emitted to be
		// published: a stop before that leaves it in the outbox.
		r.Locked(func() { ok = until() && (!published || len(r.ck.outbox) == 0) })
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("processor did not reach the expected state")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestProcRunnerExactThroughRestartsAndFailedPublishes: the processor's
// effects are emitted exactly once even when publishing its output fails
// and it is restarted from its checkpoint several times.
func TestProcRunnerExactThroughRestartsAndFailedPublishes(t *testing.T) {
	dir := t.TempDir()
	base := openStream(t, dir)
	defer base.Close()
	st := &flakyStream{Stream: base}
	ckpt := filepath.Join(dir, "count.ckpt")

	publishMetrics(t, base, 0, 20, 10) // 200 samples
	p1 := &countProc{}
	runProc(t, st, ckpt, p1, func() bool { return p1.total == 200 })

	// Emissions fail to publish: they stay in the checkpointed outbox.
	st.failing.Store(true)
	publishMetrics(t, base, 20, 10, 10) // 100 more
	p2 := &countProc{}
	runProc(t, st, ckpt, p2, func() bool { return p2.total == 300 })

	// A new runner re-publishes the outbox on start.
	st.failing.Store(false)
	publishMetrics(t, base, 30, 5, 10) // 50 more
	p3 := &countProc{}
	runProc(t, st, ckpt, p3, func() bool { return p3.total == 350 })

	// And one more restart with nothing new must not emit anything again.
	p4 := &countProc{}
	runProc(t, st, ckpt, p4, func() bool { return p4.total == 350 })

	if got := emittedTotal(t, base, 350); got != 350 {
		t.Fatalf("emitted %v in total, want exactly 350", got)
	}
}

func TestCheckpointRoundTripAndCorruption(t *testing.T) {
	c := checkpoint{positions: map[string]stream.Position{"0": "42", "shardId-000000000001": "49590338271490256608559692538361571095921575989136588898"},
		seen: map[string]int64{"a-1": 5}, producer: 0xfeed, emitSeq: 7, state: []byte("state"),
		outbox: []stream.Record{{Origin: stream.OriginRollup, Signal: wire.SignalMetrics, Partition: 3, ID: "x-1", Data: []byte{1, 2, 3}}}}
	b := c.marshal()
	got, err := unmarshalCheckpoint(b)
	if err != nil || got.positions["0"] != "42" || got.producer != 0xfeed || len(got.positions) != 2 || got.seen["a-1"] != 5 || got.outbox[0].Partition != 3 || got.emitSeq != 7 || string(got.state) != "state" || len(got.outbox) != 1 || got.outbox[0].ID != "x-1" {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for i := range b {
		bad := append([]byte(nil), b...)
		bad[i] ^= 0x40
		if _, err := unmarshalCheckpoint(bad); err == nil {
			t.Fatalf("flipped byte %d not detected", i)
		}
	}
	for n := range len(b) {
		if _, err := unmarshalCheckpoint(b[:n]); err == nil {
			t.Fatalf("truncation to %d not detected", n)
		}
	}
}

// recordingSink fails as scripted and records what it delivered.
type recordingSink struct {
	mu        sync.Mutex
	failures  int  // transient failures before success
	permanent bool // fail permanently for records containing "poison"
	got       []string
}

func (s *recordingSink) Send(ctx context.Context, b *model.Batch, m sink.Meta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range b.Metrics {
		if x.Name == "poison" && s.permanent {
			return sink.Permanent(errors.New("backend refuses poison"))
		}
	}
	if s.failures > 0 {
		s.failures--
		return errors.New("backend down")
	}
	for _, x := range b.Metrics {
		s.got = append(s.got, x.Name)
	}
	return nil
}

func (s *recordingSink) Close() error { return nil }

func TestSinkRunnerRetriesAndDeadLetters(t *testing.T) {
	st := openStream(t, t.TempDir())
	defer st.Close()
	for i, name := range []string{"a", "poison", "b"} {
		e := wire.NewEncoder(wire.SignalMetrics)
		e.AppendMetric(&model.Metric{Name: name, Value: 1})
		data, _ := e.Finish(nil, 1, uint64(i+1), wire.CompressionNone)
		if err := st.Publish(context.Background(), stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalMetrics, ID: name, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	sk := &recordingSink{failures: 2, permanent: true}
	reg := selfmetric.New()
	r, err := NewSinkRunner(SinkConfig{Name: "rec", Origins: []string{stream.OriginIngest},
		Retry: sink.RetryConfig{InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}}, st, sk, reg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		sk.mu.Lock()
		n := len(sk.got)
		sk.mu.Unlock()
		if n == 2 && reg.Counter("les_consumer_dead_lettered_total", "consumer", "rec").Get() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivered %v, dead-lettered %d", sk.got, reg.Counter("les_consumer_dead_lettered_total", "consumer", "rec").Get())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if sk.got[0] != "a" || sk.got[1] != "b" {
		t.Fatalf("delivered %v, want [a b] in order", sk.got)
	}
	if reg.Counter("les_sink_retries_total", "sink", "rec").Get() != 2 {
		t.Fatalf("retries %d, want 2", reg.Counter("les_sink_retries_total", "sink", "rec").Get())
	}
	// The poison record is on the dead-letter subject.
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	found := false
	_ = st.Consume(dctx, stream.ConsumeOptions{Origins: []string{stream.OriginDLQ}, FromStart: true},
		func(ctx context.Context, ds []stream.Delivery) error {
			found = true
			dcancel()
			return nil
		})
	if !found {
		t.Fatal("nothing on the dead-letter subject")
	}
}

// TestSinkRunnerDeadLettersAfterMaxAttempts: with retry.max_attempts set,
// a record the sink keeps refusing is dead-lettered and the rest flow on.
func TestSinkRunnerDeadLettersAfterMaxAttempts(t *testing.T) {
	st := openStream(t, t.TempDir())
	defer st.Close()
	for i, name := range []string{"a", "b"} {
		e := wire.NewEncoder(wire.SignalMetrics)
		e.AppendMetric(&model.Metric{Name: name, Value: 1})
		data, _ := e.Finish(nil, 1, uint64(i+1), wire.CompressionNone)
		if err := st.Publish(context.Background(), stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalMetrics, ID: name, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	sk := &recordingSink{failures: 3} // fails 3 times: the first record's 3 attempts
	reg := selfmetric.New()
	r, err := NewSinkRunner(SinkConfig{Name: "max", Origins: []string{stream.OriginIngest}, PerRecord: true,
		Retry: sink.RetryConfig{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}}, st, sk, reg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		sk.mu.Lock()
		got := append([]string(nil), sk.got...)
		sk.mu.Unlock()
		if len(got) == 1 && reg.Counter("les_consumer_dead_lettered_total", "consumer", "max").Get() == 1 {
			if got[0] != "b" {
				t.Fatalf("delivered %v, want [b]", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivered %v, dead-lettered %d", got, reg.Counter("les_consumer_dead_lettered_total", "consumer", "max").Get())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestProcRunnerDropsRepublishedRecords: on a stream that does not
// de-duplicate (Kafka, Kinesis: mem with DedupWindow 0), a record stored
// twice — a producer's retry or spool replay after the stream had in fact
// stored it — is folded in once, also across a restart.
func TestProcRunnerDropsRepublishedRecords(t *testing.T) {
	st := mem.New(mem.NewStore(), mem.Config{Partitions: 4})
	ckpt := filepath.Join(t.TempDir(), "count.ckpt")
	publishMetrics(t, st, 0, 8, 10) // 80 samples in records r0 … r7
	publishMetrics(t, st, 0, 8, 10) // the same records again
	p1 := &countProc{}
	runProcPublished(t, st, ckpt, p1, func() bool { return p1.total == 80 })
	// After a restart the ids are still known: a third copy is dropped and
	// new records are counted.
	publishMetrics(t, st, 0, 8, 10)
	publishMetrics(t, st, 8, 2, 10) // 20 new
	p2 := &countProc{}
	runProcPublished(t, st, ckpt, p2, func() bool { return p2.total == 100 })
	if got := emittedTotal(t, st, 100); got != 100 {
		t.Fatalf("emitted %v, want exactly 100 (each record folded in once)", got)
	}
}
