// Package streamtest is the conformance suite every stream backend passes.
package streamtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// Opener opens the backend under test. Calling it again with the same t
// must reopen the same durable state (to test restarts).
type Opener func(t *testing.T) stream.Stream

// Run runs the conformance suite.
func Run(t *testing.T, open Opener) {
	t.Run("PublishConsumeAck", func(t *testing.T) { testPublishConsume(t, open) })
	t.Run("Dedup", func(t *testing.T) { testDedup(t, open) })
	t.Run("Redeliver", func(t *testing.T) { testRedeliver(t, open) })
}

func rec(i int) stream.Record {
	return stream.Record{Subject: stream.Subject(stream.OriginIngest, wire.SignalMetrics, 0),
		ID: fmt.Sprintf("id-%d", i), Data: []byte(fmt.Sprintf("payload-%d", i))}
}

// consumeN consumes until n deliveries were acked (handler returned nil).
func consumeN(t *testing.T, s stream.Stream, durable string, n int, h stream.Handler) []stream.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []stream.Delivery
	done := make(chan error, 1)
	go func() {
		done <- s.Consume(ctx, stream.ConsumeOptions{Durable: durable,
			Subjects: stream.SubjectsFor([]string{stream.OriginIngest}, []wire.Signal{wire.SignalMetrics}),
			Batch:    7, MaxWait: 50 * time.Millisecond, AckWait: 5 * time.Second},
			func(ctx context.Context, ds []stream.Delivery) error {
				if h != nil {
					if err := h(ctx, ds); err != nil {
						return err
					}
				}
				mu.Lock()
				defer mu.Unlock()
				for _, d := range ds {
					d.Data = append([]byte(nil), d.Data...)
					got = append(got, d)
				}
				if len(got) >= n {
					cancel()
				}
				return nil
			})
	}()
	if err := <-done; err != nil {
		t.Fatalf("consume: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) < n {
		t.Fatalf("consumed %d records, want %d (timed out)", len(got), n)
	}
	return got
}

func testPublishConsume(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	var recs []stream.Record
	for i := range 20 {
		recs = append(recs, rec(i))
	}
	if err := s.Publish(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	got := consumeN(t, s, "c1", 10, nil)
	for i, d := range got[:10] {
		if string(d.Data) != fmt.Sprintf("payload-%d", i) {
			t.Fatalf("delivery %d: %q (out of order?)", i, d.Data)
		}
		if i > 0 && d.Seq <= got[i-1].Seq {
			t.Fatalf("sequence not increasing: %d after %d", d.Seq, got[i-1].Seq)
		}
	}
	// Restart: the durable cursor resumes after what was acknowledged.
	acked := len(got)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t)
	defer s.Close()
	rest := consumeN(t, s, "c1", 20-acked, nil)
	if string(rest[0].Data) != fmt.Sprintf("payload-%d", acked) {
		t.Fatalf("after restart got %q first, want payload-%d", rest[0].Data, acked)
	}
	lag, err := s.Lag(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if lag != 0 {
		t.Fatalf("lag %d after consuming everything", lag)
	}
}

func testDedup(t *testing.T, open Opener) {
	s := open(t)
	defer s.Close()
	ctx := context.Background()
	for range 3 {
		if err := s.Publish(ctx, rec(1), rec(2)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Publish(ctx, rec(3)); err != nil {
		t.Fatal(err)
	}
	got := consumeN(t, s, "dedup", 3, nil)
	if len(got) != 3 || string(got[2].Data) != "payload-3" {
		t.Fatalf("re-published batch ids were not de-duplicated: %d deliveries", len(got))
	}
}

func testRedeliver(t *testing.T, open Opener) {
	s := open(t)
	defer s.Close()
	if err := s.Publish(context.Background(), rec(1)); err != nil {
		t.Fatal(err)
	}
	fail := 2
	got := consumeN(t, s, "redeliver", 1, func(ctx context.Context, ds []stream.Delivery) error {
		if fail > 0 {
			fail--
			return errors.New("sink down")
		}
		return nil
	})
	if got[0].NumDelivered != 3 {
		t.Fatalf("delivered %d times, want 3 (2 failures then success)", got[0].NumDelivered)
	}
}
