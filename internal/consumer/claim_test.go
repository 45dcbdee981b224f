package consumer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/mem"
	"github.com/les-streams/les/internal/wire"
)

const claimParts = 4

// emittedByID sums the values of the rollup-origin records in store,
// counting each record id once, and returns the sum and how many records
// repeated an id.
func emittedByID(t *testing.T, store *mem.Store) (total float64, dups int) {
	t.Helper()
	seen := map[string]bool{}
	var dec wire.Decoder
	for _, r := range store.Records() {
		if r.Origin != stream.OriginRollup {
			continue
		}
		if seen[r.ID] {
			dups++
			continue
		}
		seen[r.ID] = true
		var b model.Batch
		if _, err := dec.Decode(&b, r.Data); err != nil {
			t.Fatal(err)
		}
		for _, m := range b.Metrics {
			total += m.Value
		}
	}
	return total, dups
}

// claimMember is one process running a ClaimRunner over its own mem
// Stream of a shared Store.
type claimMember struct {
	st     *mem.Stream
	r      *ClaimRunner
	cancel context.CancelFunc
	done   chan error
	exited chan struct{}
}

func startMember(t *testing.T, store *mem.Store) *claimMember {
	t.Helper()
	st := mem.New(store, mem.Config{Partitions: claimParts})
	r, err := NewClaimRunner(ProcConfig{Name: "count", Origins: []string{stream.OriginIngest}, Origin: stream.OriginRollup,
		Tick: time.Second}, st, func(int) Processor { return &countProc{} }, selfmetric.New(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &claimMember{st: st, r: r, cancel: cancel, done: make(chan error, 1), exited: make(chan struct{})}
	go func() {
		defer close(m.exited)
		m.done <- r.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-m.exited }) // a failed test leaves no goroutine behind
	return m
}

func (m *claimMember) stop(t *testing.T) {
	t.Helper()
	m.cancel()
	if err := <-m.done; err != nil {
		t.Fatal(err)
	}
}

// TestClaimRunnerHandoffAndCrash: two processes share four partitions
// through a mem Claimer. A second member joining takes two partitions
// over from the first, which writes final checkpoints: nothing is
// emitted twice, not even under the same id. Then the second member
// crashes between checkpoints (no final checkpoint, its saves refused from
// then on): the first takes its partitions back from their last
// checkpoints, folds the records after them in again and re-publishes
// their outboxes. Counted by record id, the output equals the input.
func TestClaimRunnerHandoffAndCrash(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := mem.NewStore()
		pub := mem.New(store, mem.Config{Partitions: claimParts})
		a := startMember(t, store)
		synctest.Wait()
		if got := a.r.Owned(); len(got) != claimParts {
			t.Fatalf("a alone owns %v, want all %d partitions", got, claimParts)
		}
		publishParts(t, pub, 0, 40, 5, claimParts) // 200
		time.Sleep(2500 * time.Millisecond)

		b := startMember(t, store)
		synctest.Wait()
		if ga, gb := a.r.Owned(), b.r.Owned(); fmt.Sprint(ga, gb) != "[0 2] [1 3]" {
			t.Fatalf("after b joined: a owns %v, b owns %v; want [0 2] and [1 3]", ga, gb)
		}
		publishParts(t, pub, 40, 40, 5, claimParts) // 400
		time.Sleep(5 * time.Second)
		total, dups := emittedByID(t, store)
		if total != 400 || dups != 0 {
			t.Fatalf("after a clean handoff: emitted %v with %d repeated ids, want 400 and none", total, dups)
		}

		// b folds records in and emits (its outbox is published one tick
		// after it is in two checkpoints), then crashes mid-tick.
		publishParts(t, pub, 80, 40, 5, claimParts) // 600
		time.Sleep(1500 * time.Millisecond)
		publishParts(t, pub, 120, 20, 5, claimParts) // 700
		time.Sleep(300 * time.Millisecond)
		before := store.Checkpoints("count", 1)
		b.st.Crash()
		if err := <-b.done; err != nil {
			t.Fatalf("crashed member: %v", err)
		}
		synctest.Wait()
		if got := a.r.Owned(); len(got) != claimParts {
			t.Fatalf("after b crashed a owns %v, want all", got)
		}
		publishParts(t, pub, 140, 20, 5, claimParts) // 800
		time.Sleep(5 * time.Second)
		a.stop(t)

		total, dups = emittedByID(t, store)
		t.Logf("emitted %v; %d records re-published under an id already on the stream; partition 1: %d checkpoints before the crash, %d after",
			total, dups, before, store.Checkpoints("count", 1))
		if total != 800 {
			t.Fatalf("emitted %v by record id, want 800", total)
		}
		// The crash cost b's progress since its last checkpoint: a read
		// those records again.
		if folded := recordsFolded(t, a.r.reg) + recordsFolded(t, b.r.reg); folded <= 160 {
			t.Fatalf("%v records folded in by both members, want more than the 160 published (a replay after the crash)", folded)
		}
		if o := store.Owners("count"); len(o) != 0 {
			t.Fatalf("partitions still running after both members stopped: %v", maps.Collect(maps.All(o)))
		}
	})
}

// TestClaimRunnerFinalCheckpointRefused: a released partition whose
// final checkpoint fails says so at WARN (the Claimer drops a released
// run's error; the next owner replays from the checkpoint before), and
// Run still returns nil.
func TestClaimRunnerFinalCheckpointRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := mem.NewStore()
		pub := mem.New(store, mem.Config{Partitions: claimParts})
		logs := &warnings{}
		r, err := NewClaimRunner(ProcConfig{Name: "count", Origins: []string{stream.OriginIngest}, Origin: stream.OriginRollup,
			Tick: time.Second}, refusingFinal{mem.New(store, mem.Config{Partitions: claimParts})},
			func(int) Processor { return &countProc{} }, selfmetric.New(), slog.New(logs))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		synctest.Wait()
		publishParts(t, pub, 0, claimParts, 5, claimParts)
		synctest.Wait() // folded in; the next checkpoint is a tick away
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("run: %v", err)
		}
		logs.mu.Lock()
		defer logs.mu.Unlock()
		if len(logs.released) != claimParts {
			t.Fatalf("WARN for released partitions %v (all warnings: %q), want each of the %d", logs.released, logs.msgs, claimParts)
		}
	})
}

// refusingFinal is a mem Stream whose claimed partitions' saves fail once
// their run's ctx is done: every final checkpoint is refused.
type refusingFinal struct{ *mem.Stream }

func (s refusingFinal) Claim(ctx context.Context, group string, run func(context.Context, int, stream.StateStore) error) error {
	return s.Stream.Claim(ctx, group, func(ctx context.Context, part int, st stream.StateStore) error {
		return run(ctx, part, refusingStore{st, ctx})
	})
}

type refusingStore struct {
	stream.StateStore
	run context.Context
}

func (s refusingStore) Save(ctx context.Context, b []byte) error {
	if s.run.Err() != nil {
		return errors.New("refused")
	}
	return s.StateStore.Save(ctx, b)
}

// warnings is a slog.Handler keeping the messages at WARN and above, and
// the partitions of "partition released" ones.
type warnings struct {
	mu       sync.Mutex
	msgs     []string
	released []int64
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler           { return w }
func (w *warnings) WithGroup(string) slog.Handler                { return w }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, r.Message)
	if strings.HasPrefix(r.Message, "partition released") {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "partition" {
				w.released = append(w.released, a.Value.Int64())
			}
			return true
		})
	}
	return nil
}

// recordsFolded reads les_consumer_records_total{consumer="count"}.
func recordsFolded(t *testing.T, reg *selfmetric.Registry) float64 {
	t.Helper()
	var b bytes.Buffer
	reg.WritePrometheus(&b)
	m := regexp.MustCompile(`(?m)^les_consumer_records_total\{consumer="count"\} (\S+)$`).FindSubmatch(b.Bytes())
	if m == nil {
		t.Fatal("no les_consumer_records_total")
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
