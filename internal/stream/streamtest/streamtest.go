// Package streamtest is the conformance suite every stream backend passes
// against its real component (ADR 0004): ordered consumption per
// partition, filters by origin and signal, partition assignment, resuming
// from stored positions across a restart, durable cursors where declared,
// redelivery after a failed handler, ErrTooLarge, de-duplication where
// declared, and rewinding a cursor (ConsumeOptions.Rewind).
package streamtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// Opener opens the backend under test with 4 logical partitions. Calling
// it again with the same t must reopen the same durable state (to test
// restarts); each subtest gets its own t, so state is fresh per subtest.
type Opener func(t *testing.T) stream.Stream

// Partitions is the number of logical partitions an Opener must configure.
const Partitions = 4

// Run runs the conformance suite.
func Run(t *testing.T, open Opener) {
	t.Run("OrderPerPartition", func(t *testing.T) { testOrder(t, open) })
	t.Run("Filters", func(t *testing.T) { testFilters(t, open) })
	t.Run("PartitionAssignment", func(t *testing.T) { testAssignment(t, open) })
	t.Run("ResumeAfterPositions", func(t *testing.T) { testResumeAfter(t, open) })
	t.Run("DurableCursor", func(t *testing.T) { testDurable(t, open) })
	t.Run("Redeliver", func(t *testing.T) { testRedeliver(t, open) })
	t.Run("TooLarge", func(t *testing.T) { testTooLarge(t, open) })
	t.Run("Dedup", func(t *testing.T) { testDedup(t, open) })
	t.Run("StartAtTime", func(t *testing.T) { testStartTime(t, open) })
	t.Run("Rewind", func(t *testing.T) { testRewind(t, open) })
}

// Rec returns record i of a test sequence: partition i%Partitions,
// payload "payload-<i>".
func Rec(origin string, sig wire.Signal, i int) stream.Record {
	return stream.Record{Origin: origin, Signal: sig, Partition: i % Partitions,
		ID: fmt.Sprintf("id-%s-%d", origin, i), Data: fmt.Appendf(nil, "payload-%d", i)}
}

// ingestRecs is n metrics records of origin in, Rec(…, 0) … Rec(…, n-1).
func ingestRecs(n int) []stream.Record {
	recs := make([]stream.Record, 0, n)
	for i := range n {
		recs = append(recs, Rec(stream.OriginIngest, wire.SignalMetrics, i))
	}
	return recs
}

func publish(t *testing.T, s stream.Stream, recs ...stream.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Publish(ctx, recs...); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// Consume runs s.Consume with o until stop reports true for what was
// acknowledged so far (or 30s pass, which fails the test). It returns the
// acknowledged deliveries with their data copied.
func Consume(t *testing.T, s stream.Stream, o stream.ConsumeOptions, h stream.Handler, stop func([]stream.Delivery) bool) []stream.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if o.Batch == 0 {
		o.Batch = 7
	}
	if o.MaxWait == 0 {
		o.MaxWait = 50 * time.Millisecond
	}
	if o.AckWait == 0 {
		o.AckWait = 5 * time.Second
	}
	var mu sync.Mutex
	var got []stream.Delivery
	stopped := false
	done := make(chan error, 1)
	go func() {
		done <- s.Consume(ctx, o, func(ctx context.Context, ds []stream.Delivery) error {
			if h != nil {
				if err := h(ctx, ds); err != nil {
					return err
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if stopped {
				return errors.New("streamtest: stopped") // not acknowledged
			}
			for _, d := range ds {
				d.Data = append([]byte(nil), d.Data...)
				got = append(got, d)
			}
			if stop(got) {
				stopped = true
				cancel()
			}
			return nil
		})
	}()
	err := <-done
	mu.Lock()
	defer mu.Unlock()
	if err != nil && ctx.Err() == nil {
		t.Fatalf("consume: %v", err)
	}
	if !stopped {
		t.Fatalf("consume: timed out with %d deliveries", len(got))
	}
	return got
}

// AtLeast stops a consumer once n deliveries were acknowledged.
func AtLeast(n int) func([]stream.Delivery) bool {
	return func(ds []stream.Delivery) bool { return len(ds) >= n }
}

func payloadIndex(t *testing.T, d stream.Delivery) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(string(d.Data), "payload-%d", &i); err != nil {
		t.Fatalf("unexpected payload %q", d.Data)
	}
	return i
}

// checkOrder checks that every partition's deliveries come in publish
// order with increasing positions.
func checkOrder(t *testing.T, ds []stream.Delivery) {
	t.Helper()
	lastIdx := map[string]int{}
	lastPos := map[string]stream.Position{}
	for _, d := range ds {
		i := payloadIndex(t, d)
		if d.Pos == "" {
			t.Fatalf("delivery of payload-%d has no position", i)
		}
		if prev, ok := lastIdx[d.Partition]; ok {
			if i <= prev {
				t.Fatalf("partition %s: payload-%d after payload-%d", d.Partition, i, prev)
			}
			if stream.ComparePositions(d.Pos, lastPos[d.Partition]) <= 0 {
				t.Fatalf("partition %s: position %s after %s", d.Partition, d.Pos, lastPos[d.Partition])
			}
		}
		lastIdx[d.Partition], lastPos[d.Partition] = i, d.Pos
	}
}

func all(t *testing.T, s stream.Stream) stream.ConsumeOptions {
	return stream.ConsumeOptions{FromStart: true}
}

func testOrder(t *testing.T, open Opener) {
	s := open(t)
	defer s.Close()
	if got := s.Capabilities().Partitions; got != Partitions {
		t.Fatalf("Capabilities().Partitions = %d, want %d", got, Partitions)
	}
	recs := ingestRecs(40)
	publish(t, s, recs[:25]...)
	publish(t, s, recs[25:]...)
	got := Consume(t, s, all(t, s), nil, AtLeast(40))
	checkOrder(t, got)
	seen := map[int]bool{}
	for _, d := range got {
		if d.Origin != stream.OriginIngest || d.Signal != wire.SignalMetrics {
			t.Fatalf("delivery says origin %q signal %v", d.Origin, d.Signal)
		}
		seen[payloadIndex(t, d)] = true
	}
	if len(seen) != 40 {
		t.Fatalf("%d distinct records delivered, want 40", len(seen))
	}
}

func testFilters(t *testing.T, open Opener) {
	s := open(t)
	defer s.Close()
	var recs []stream.Record
	for i := range 12 {
		origin := []string{stream.OriginIngest, stream.OriginAgg, stream.OriginRollup}[i%3]
		sig := []wire.Signal{wire.SignalMetrics, wire.SignalLogs}[i%2]
		recs = append(recs, Rec(origin, sig, i))
	}
	publish(t, s, recs...)
	// i%3 == 1 (agg) and i%2 == 1 (logs): 1, 7.
	o := all(t, s)
	o.Origins, o.Signals = []string{stream.OriginAgg}, []wire.Signal{wire.SignalLogs}
	got := Consume(t, s, o, nil, AtLeast(2))
	for _, d := range got {
		if i := payloadIndex(t, d); i != 1 && i != 7 {
			t.Fatalf("filter agg/logs delivered payload-%d (origin %s, signal %v)", i, d.Origin, d.Signal)
		}
	}
	// Two origins, any signal: i%3 ∈ {0, 2}: 8 records.
	o.Origins, o.Signals = []string{stream.OriginIngest, stream.OriginRollup}, nil
	got = Consume(t, s, o, nil, AtLeast(8))
	for _, d := range got {
		if i := payloadIndex(t, d); i%3 == 1 {
			t.Fatalf("filter in+rollup delivered payload-%d", i)
		}
	}
}

func testAssignment(t *testing.T, open Opener) {
	s := open(t)
	defer s.Close()
	recs := ingestRecs(20)
	publish(t, s, recs...)
	// Two consumers splitting the partitions see every record once.
	seen := map[int]int{}
	for _, parts := range [][]int{{0, 2}, {1, 3}} {
		o := all(t, s)
		o.Partitions = parts
		got := Consume(t, s, o, nil, AtLeast(10))
		for _, d := range got {
			i := payloadIndex(t, d)
			if p := i % Partitions; p != parts[0] && p != parts[1] {
				t.Fatalf("consumer of partitions %v got payload-%d of partition %d", parts, i, p)
			}
			seen[i]++
		}
	}
	for i := range 20 {
		if seen[i] != 1 {
			t.Fatalf("payload-%d delivered %d times across the two consumers", i, seen[i])
		}
	}
}

func positionsOf(ds []stream.Delivery) map[string]stream.Position {
	m := map[string]stream.Position{}
	for _, d := range ds {
		if stream.ComparePositions(d.Pos, m[d.Partition]) > 0 {
			m[d.Partition] = d.Pos
		}
	}
	return m
}

func testResumeAfter(t *testing.T, open Opener) {
	s := open(t)
	recs := ingestRecs(24)
	publish(t, s, recs[:12]...)
	first := Consume(t, s, all(t, s), nil, AtLeast(12))
	after := positionsOf(first)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Restart: the positions still mean the same records.
	s = open(t)
	defer s.Close()
	publish(t, s, recs[12:]...)
	o := stream.ConsumeOptions{After: after}
	rest := Consume(t, s, o, nil, AtLeast(12))
	checkOrder(t, rest)
	for _, d := range rest {
		if i := payloadIndex(t, d); i < 12 {
			t.Fatalf("resuming after %v delivered payload-%d again", after, i)
		}
	}
	// An empty map starts every partition at the oldest record.
	again := Consume(t, s, stream.ConsumeOptions{After: map[string]stream.Position{}}, nil, AtLeast(24))
	if len(again) != 24 {
		t.Fatalf("After: {} delivered %d records, want all 24", len(again))
	}
}

func testDurable(t *testing.T, open Opener) {
	s := open(t)
	if !s.Capabilities().DurableCursors {
		s.Close()
		t.Skip("backend keeps no durable cursors (consumers checkpoint positions themselves)")
	}
	recs := ingestRecs(20)
	publish(t, s, recs...)
	o := stream.ConsumeOptions{Durable: "c1", Origins: []string{stream.OriginIngest}}
	first := Consume(t, s, o, nil, AtLeast(10))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t)
	defer s.Close()
	done := map[int]bool{}
	for _, d := range first {
		done[payloadIndex(t, d)] = true
	}
	rest := Consume(t, s, o, nil, func(ds []stream.Delivery) bool {
		n := len(done)
		for _, d := range ds {
			if !done[payloadIndex(t, d)] {
				n++
			}
		}
		return n >= 20
	})
	for _, d := range rest {
		if done[payloadIndex(t, d)] {
			t.Fatalf("durable cursor redelivered acknowledged payload-%d after a restart", payloadIndex(t, d))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lag, err := s.Lag(ctx, stream.LagQuery{Durable: "c1", Origins: o.Origins})
	if err != nil {
		t.Fatal(err)
	}
	if lag != 0 {
		t.Fatalf("lag %d after consuming everything", lag)
	}
}

func testRedeliver(t *testing.T, open Opener) {
	s := open(t)
	defer s.Close()
	publish(t, s, Rec(stream.OriginIngest, wire.SignalMetrics, 1))
	fail := 2
	calls := 0
	opts := []stream.ConsumeOptions{{FromStart: true}}
	if s.Capabilities().DurableCursors {
		opts = append(opts, stream.ConsumeOptions{Durable: "redeliver"})
	}
	for _, o := range opts {
		fail, calls = 2, 0
		got := Consume(t, s, o, func(ctx context.Context, ds []stream.Delivery) error {
			calls++
			if fail > 0 {
				fail--
				return errors.New("sink down")
			}
			return nil
		}, AtLeast(1))
		if calls != 3 || payloadIndex(t, got[0]) != 1 {
			t.Fatalf("durable %q: handler called %d times (want 3: two failures then success)", o.Durable, calls)
		}
		if n := got[0].NumDelivered; n != 0 && n != 3 {
			t.Fatalf("durable %q: NumDelivered = %d, want 3 (or 0: unknown)", o.Durable, n)
		}
	}
}

func testTooLarge(t *testing.T, open Opener) {
	s := open(t)
	defer s.Close()
	max := s.Capabilities().MaxRecordBytes
	if max <= 0 {
		t.Fatal("Capabilities().MaxRecordBytes must be known")
	}
	big := stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalLogs, ID: "big",
		Data: []byte(strings.Repeat("x", int(max)+1))}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.Publish(ctx, big)
	if !errors.Is(err, stream.ErrTooLarge) {
		t.Fatalf("publishing %d bytes (max %d): %v, want ErrTooLarge", len(big.Data), max, err)
	}
	// The stream still works.
	publish(t, s, Rec(stream.OriginIngest, wire.SignalLogs, 0))
	Consume(t, s, all(t, s), nil, AtLeast(1))
}

func testDedup(t *testing.T, open Opener) {
	s := open(t)
	defer s.Close()
	if s.Capabilities().DedupWindow == 0 {
		t.Skip("backend does not de-duplicate (consumers de-duplicate by record id)")
	}
	for range 3 {
		publish(t, s, Rec(stream.OriginIngest, wire.SignalMetrics, 1), Rec(stream.OriginIngest, wire.SignalMetrics, 2))
	}
	publish(t, s, Rec(stream.OriginIngest, wire.SignalMetrics, 3))
	got := Consume(t, s, all(t, s), nil, func(ds []stream.Delivery) bool {
		for _, d := range ds {
			if payloadIndex(t, d) == 3 {
				return true
			}
		}
		return false
	})
	if len(got) != 3 {
		t.Fatalf("re-published batch ids were not de-duplicated: %d deliveries, want 3", len(got))
	}
}

// testStartTime: a new durable (or a consumer at positions, for streams
// without durables) with Start.Time begins at the first record stored at
// or after that time.
func testStartTime(t *testing.T, open Opener) {
	s := open(t)
	defer s.Close()
	recs := ingestRecs(20)
	publish(t, s, recs[:10]...)
	before := Consume(t, s, stream.ConsumeOptions{FromStart: true}, nil, AtLeast(10))
	var last time.Time
	for _, d := range before {
		if d.Time.IsZero() {
			t.Fatalf("delivery of payload-%d has no stored time", payloadIndex(t, d))
		}
		if d.Time.After(last) {
			last = d.Time
		}
	}
	// Kafka and Kinesis keep milliseconds: start a millisecond after the
	// last record's, and publish the rest once the clock has passed it.
	start := last.Truncate(time.Millisecond).Add(time.Millisecond)
	time.Sleep(time.Until(start.Add(2 * time.Millisecond)))
	publish(t, s, recs[10:]...)
	o := stream.ConsumeOptions{Origins: []string{stream.OriginIngest}, Start: stream.StartAt{Time: start}}
	if s.Capabilities().DurableCursors {
		o.Durable = "start-time"
	} else {
		o.After = map[string]stream.Position{}
	}
	got := Consume(t, s, o, nil, AtLeast(10))
	for _, d := range got {
		if i := payloadIndex(t, d); i < 10 {
			t.Fatalf("payload-%d (stored at %v) delivered to a consumer starting at %v", i, d.Time, start)
		}
	}
}

// testRewind: after a consumer acknowledged every record, a rewind of one
// partition to a position it had passed delivers that partition's records
// from there again, in order, and none before it; for a durable the
// moved cursor is kept: a later consumer without Rewind gets only what
// is new. Both for a durable (where declared) and for a consumer at
// positions (After).
func testRewind(t *testing.T, open Opener) {
	s := open(t)
	defer s.Close()
	recs := ingestRecs(20)
	publish(t, s, recs...)
	variants := []stream.ConsumeOptions{{After: map[string]stream.Position{}}}
	if c := s.Capabilities(); c.DurableCursors {
		variants = append(variants, stream.ConsumeOptions{Durable: "rewind", Origins: []string{stream.OriginIngest}})
		if !c.GroupAssignment { // a durable with assigned partitions
			variants = append(variants, stream.ConsumeOptions{Durable: "rewind-parts", Origins: []string{stream.OriginIngest},
				Partitions: []int{0, 1, 2, 3}})
		}
	}
	for vi, v := range variants {
		first := Consume(t, s, v, nil, AtLeast(20))
		part := first[0].Partition
		var ofPart []stream.Delivery
		for _, d := range first {
			if d.Partition == part {
				ofPart = append(ofPart, d)
			}
		}
		if len(ofPart) < 3 {
			t.Fatalf("partition %s holds %d records, want at least 3", part, len(ofPart))
		}
		from := ofPart[1]
		var want []int
		for _, d := range ofPart[1:] {
			want = append(want, payloadIndex(t, d))
		}
		o := v
		if o.Durable == "" {
			o.After = positionsOf(first)
		}
		o.Rewind = map[string]stream.Position{part: from.Pos}
		got := Consume(t, s, o, nil, func(ds []stream.Delivery) bool {
			n := 0
			for _, d := range ds {
				if d.Partition == part {
					n++
				}
			}
			return n >= len(want)
		})
		checkOrder(t, got)
		var again []int
		for _, d := range got {
			if d.Partition == part {
				again = append(again, payloadIndex(t, d))
			}
		}
		if fmt.Sprint(again) != fmt.Sprint(want) {
			t.Fatalf("durable %q: rewinding partition %s to %s (payload-%d) delivered %v of it, want %v",
				v.Durable, part, from.Pos, want[0], again, want)
		}
		if v.Durable == "" {
			continue
		}
		// The rewound cursor moved on with the re-delivered records: a
		// new record is all that comes of this partition now.
		last := 100*Partitions*(vi+1) + payloadIndex(t, from)%Partitions // a new id per variant
		publish(t, s, Rec(stream.OriginIngest, wire.SignalMetrics, last))
		rest := Consume(t, s, v, nil, func(ds []stream.Delivery) bool {
			for _, d := range ds {
				if payloadIndex(t, d) == last {
					return true
				}
			}
			return false
		})
		for _, d := range rest {
			if i := payloadIndex(t, d); d.Partition == part && i != last {
				t.Fatalf("after the rewound records were acknowledged, partition %s delivered payload-%d again", part, i)
			}
		}
	}
}
