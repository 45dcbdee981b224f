package kinesis_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/google/go-cmp/cmp"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/kinesis"
	"github.com/les-streams/les/internal/stream/streamtest"
	"github.com/les-streams/les/internal/wire"
)

func openFake(t *testing.T, f *fakeAPI, reg *selfmetric.Registry) *kinesis.Stream {
	t.Helper()
	s, err := kinesis.Open(t.Context(), kinesis.Config{Stream: "fake", PollInterval: kinesis.MinPollInterval},
		streamtest.Partitions, kinesis.Deps{Metrics: reg, API: f})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func recs(n int) []stream.Record {
	var out []stream.Record
	for i := range n {
		out = append(out, streamtest.Rec(stream.OriginIngest, wire.SignalMetrics, i))
	}
	return out
}

func metricsText(reg *selfmetric.Registry) string {
	var b strings.Builder
	reg.WritePrometheus(&b)
	return b.String()
}

func wantMetrics(t *testing.T, reg *selfmetric.Registry, lines ...string) {
	t.Helper()
	got := metricsText(reg)
	for _, l := range lines {
		if !strings.Contains(got, l+"\n") {
			t.Errorf("metrics lack %q:\n%s", l, grep(got, "les_stream_"))
		}
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestPublishPartialFailure fails some entries of PutRecords answers: only
// those are sent again, nothing is stored twice, every partition key's
// records keep their order, and the retries and throttles are counted.
func TestPublishPartialFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(1)
		f.putFault = func(call, i int, e types.PutRecordsRequestEntry) string {
			switch {
			case call == 1 && (i == 1 || i == 2):
				return "ProvisionedThroughputExceededException"
			case call == 2 && i == 0:
				return "InternalFailure"
			}
			return ""
		}
		reg := selfmetric.New()
		s := openFake(t, f, reg)
		rs := recs(12) // 3 records per partition
		if err := s.Publish(t.Context(), rs...); err != nil {
			t.Fatal(err)
		}
		got := f.stored(0)
		if len(got) != len(rs) {
			t.Fatalf("stored %d records, want %d: %v", len(got), len(rs), got)
		}
		seen := map[string]bool{}
		last := map[string]int{}
		for _, kv := range got {
			key, data, _ := strings.Cut(kv, "=")
			if seen[data] {
				t.Fatalf("%s stored twice", data)
			}
			seen[data] = true
			var i int
			fmt.Sscanf(data, "payload-%d", &i)
			if want := kinesis.PartitionKey(stream.OriginIngest, wire.SignalMetrics, i%streamtest.Partitions); key != want {
				t.Errorf("%s has partition key %q, want %q", data, key, want)
			}
			if prev, ok := last[key]; ok && i < prev {
				t.Errorf("key %s: payload-%d stored after payload-%d", key, i, prev)
			}
			last[key] = i
		}
		// No call carries two records of one key; failed entries are sent
		// again first, nothing else is re-sent.
		var calls [][]string
		for _, c := range f.putCalls {
			var keys []string
			for _, e := range c {
				if slices.Contains(keys, *e.PartitionKey) {
					t.Errorf("a call carries two records of %s", *e.PartitionKey)
				}
				keys = append(keys, *e.PartitionKey)
			}
			var data []string
			for _, e := range c {
				data = append(data, string(e.Data))
			}
			calls = append(calls, data)
		}
		want := [][]string{
			{"payload-0", "payload-1", "payload-2", "payload-3"},
			{"payload-4", "payload-1", "payload-2", "payload-7"}, // 1, 2 throttled; 4 fails
			{"payload-4", "payload-5", "payload-6", "payload-11"},
			{"payload-8", "payload-9", "payload-10"},
		}
		if d := cmp.Diff(want, calls); d != "" {
			t.Errorf("PutRecords calls (-want +got):\n%s", d)
		}
		if ehk, want := aws.ToString(f.putCalls[0][2].ExplicitHashKey), "170141183460469231731687303715884105728"; ehk != want {
			t.Errorf("partition 2 of 4: ExplicitHashKey %s, want 2^127 = %s", ehk, want)
		}
		wantMetrics(t, reg,
			`les_stream_throttled_total{backend="kinesis"} 2`,
			`les_stream_publish_retries_total{backend="kinesis"} 3`)
	})
}

// TestPublishGivesUp checks that Publish returns ctx's error while
// entries keep failing, and at once for a missing stream.
func TestPublishGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(1)
		f.putFault = func(int, int, types.PutRecordsRequestEntry) string { return "ProvisionedThroughputExceededException" }
		s := openFake(t, f, nil)
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		err := s.Publish(ctx, recs(2)...)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "ProvisionedThroughputExceeded") {
			t.Fatalf("err = %v, want the deadline and the last entry error", err)
		}
	})
}

// TestExpiredIterator makes GetRecords answer ExpiredIteratorException
// once: the reader takes a new iterator after the last record it read and
// delivers everything once, in order.
func TestExpiredIterator(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(1)
		f.getFault = func(call int) error {
			if call == 3 {
				return &types.ExpiredIteratorException{Message: aws.String("expired")}
			}
			return nil
		}
		s := openFake(t, f, nil)
		if err := s.Publish(t.Context(), recs(10)...); err != nil {
			t.Fatal(err)
		}
		got := streamtest.Consume(t, s, stream.ConsumeOptions{FromStart: true}, nil, streamtest.AtLeast(10))
		checkOnceInOrder(t, got, 0, 10)
		// Two GetRecords calls of 3 records each before the expiry.
		if want := []string{"TRIM_HORIZON", "AFTER_SEQUENCE_NUMBER:" + string(got[5].Pos)}; !slices.Equal(f.iters, want) {
			t.Errorf("iterator requests %v, want %v", f.iters, want)
		}
	})
}

// TestTrimmedPosition resumes after a position retention removed: the
// reader starts at TRIM_HORIZON, logs and counts the gap.
func TestTrimmedPosition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(1)
		reg := selfmetric.New()
		s := openFake(t, f, reg)
		if err := s.Publish(t.Context(), recs(10)...); err != nil {
			t.Fatal(err)
		}
		first := f.shards[0].recs[1].SequenceNumber
		f.trim(0, 5)
		o := stream.ConsumeOptions{After: map[string]stream.Position{f.shards[0].id: stream.Position(*first)}}
		got := streamtest.Consume(t, s, o, nil, streamtest.AtLeast(5))
		checkOnceInOrder(t, got, 5, 10)
		wantMetrics(t, reg, `les_stream_position_gaps_total{backend="kinesis"} 1`)
		if want := []string{"AFTER_SEQUENCE_NUMBER:" + *first, "TRIM_HORIZON"}; !slices.Equal(f.iters, want) {
			t.Errorf("iterator requests %v, want %v", f.iters, want)
		}
	})
}

// TestThrottledReads backs off on throttled GetRecords and loses nothing.
func TestThrottledReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(2)
		f.getFault = func(call int) error {
			// Every other call of the first 16: throttling every other call
			// forever could starve one shard whose calls always land on the
			// even ones (the two readers wake at the same instants).
			if call <= 16 && call%2 == 0 {
				return &types.ProvisionedThroughputExceededException{Message: aws.String("slow down")}
			}
			return nil
		}
		reg := selfmetric.New()
		s := openFake(t, f, reg)
		if err := s.Publish(t.Context(), recs(20)...); err != nil {
			t.Fatal(err)
		}
		got := streamtest.Consume(t, s, stream.ConsumeOptions{FromStart: true}, nil, streamtest.AtLeast(20))
		checkOnceInOrder(t, got, 0, 20)
		if !strings.Contains(metricsText(reg), `les_stream_throttled_total{backend="kinesis"}`) {
			t.Error("throttled reads not counted")
		}
	})
}

// checkOnceInOrder checks that ds are payloads from..to-1, each once, in
// publish order per logical partition.
func checkOnceInOrder(t *testing.T, ds []stream.Delivery, from, to int) {
	t.Helper()
	seen := map[int]int{}
	last := map[int]int{}
	for _, d := range ds {
		var i int
		if _, err := fmt.Sscanf(string(d.Data), "payload-%d", &i); err != nil {
			t.Fatalf("unexpected payload %q", d.Data)
		}
		seen[i]++
		p := i % streamtest.Partitions
		if prev, ok := last[p]; ok && i < prev {
			t.Errorf("partition %d: payload-%d after payload-%d", p, i, prev)
		}
		last[p] = i
	}
	for i := from; i < to; i++ {
		if seen[i] != 1 {
			t.Errorf("payload-%d delivered %d times", i, seen[i])
		}
	}
	if len(seen) != to-from {
		t.Errorf("%d distinct payloads delivered, want %d", len(seen), to-from)
	}
}

func TestUnsupported(t *testing.T) {
	s := openFake(t, newFake(1), nil)
	err := s.Consume(t.Context(), stream.ConsumeOptions{Durable: "c1"}, nil)
	if err == nil || !strings.Contains(err.Error(), "no consumer cursors") {
		t.Errorf("Consume with Durable: %v, want an error saying Kinesis keeps no cursors", err)
	}
	if _, err := s.Lag(t.Context(), stream.LagQuery{}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Lag: %v, want ErrUnsupported", err)
	}
	if c := s.Capabilities(); c.Backend != "kinesis" || c.DurableCursors || c.DedupWindow != 0 || c.MaxRecordBytes <= 1<<20-64 || c.MaxRecordBytes >= 1<<20 {
		t.Errorf("Capabilities() = %+v", c)
	}
	s.Close()
	if err := s.Publish(t.Context(), recs(1)...); !errors.Is(err, stream.ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
}

func TestPartitionKey(t *testing.T) {
	for _, tt := range []struct {
		key    string
		origin string
		sig    wire.Signal
		p      int
		ok     bool
	}{
		{"in.metrics.3", "in", wire.SignalMetrics, 3, true},
		{"dlq.distributions.0", "dlq", wire.SignalDistributions, 0, true},
		{"rollup.spans.1023", "rollup", wire.SignalSpans, 1023, true},
		{"foo", "", 0, 0, false},
		{"pk-0", "", 0, 0, false},
		{"in.metrics", "", 0, 0, false},
		{"in.metrics.03", "", 0, 0, false},
		{"in.metrics.-1", "", 0, 0, false},
		{"out.metrics.1", "", 0, 0, false},
		{"in.traces.1", "", 0, 0, false},
		{"in.metrics.1.2", "", 0, 0, false},
	} {
		origin, sig, p, ok := kinesis.ParsePartitionKey(tt.key)
		if origin != tt.origin || sig != tt.sig || p != tt.p || ok != tt.ok {
			t.Errorf("ParsePartitionKey(%q) = %q, %v, %d, %v", tt.key, origin, sig, p, ok)
		}
		if ok && kinesis.PartitionKey(origin, sig, p) != tt.key {
			t.Errorf("PartitionKey does not round-trip %q", tt.key)
		}
	}
}
