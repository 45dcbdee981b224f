package kafka

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// handled is what the consumers of a group acknowledged.
type handled struct {
	mu     sync.Mutex
	by     map[int][]string // payload index → consumers that acknowledged it
	where  map[int]stream.Delivery
	change chan struct{} // closed and replaced on every acknowledgement
}

func newHandled() *handled {
	return &handled{by: map[int][]string{}, where: map[int]stream.Delivery{}, change: make(chan struct{})}
}

func (h *handled) handler(t *testing.T, name string) stream.Handler {
	return func(_ context.Context, ds []stream.Delivery) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, d := range ds {
			i := payloadIndex(t, d)
			h.by[i] = append(h.by[i], name)
			d.Data = nil
			h.where[i] = d
		}
		close(h.change)
		h.change = make(chan struct{})
		return nil
	}
}

// waitDistinct waits until n distinct payloads were acknowledged.
func (h *handled) waitDistinct(ctx context.Context, t *testing.T, n int) {
	t.Helper()
	for {
		h.mu.Lock()
		got, ch := len(h.by), h.change
		h.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("%d of %d records acknowledged", got, n)
		}
	}
}

// waitBalanced polls the group until it is stable with members members
// that each own partitions.
func waitBalanced(ctx context.Context, t *testing.T, adm *kadm.Client, group string, members int) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		gs, err := adm.DescribeGroups(ctx, group)
		if err == nil {
			g := gs[group]
			ok := g.State == "Stable" && len(g.Members) == members
			for _, m := range g.Members {
				ca, isConsumer := m.Assigned.AsConsumer()
				ok = ok && isConsumer && len(ca.Topics) > 0 && len(ca.Topics[0].Partitions) > 0
			}
			if ok {
				return
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("group %s never balanced over %d members: %v", group, members, err)
		}
	}
}

// TestConsumerGroup: two consumers of one durable split a 4-partition
// topic and handle each record once; when one stops, the other takes its
// partitions over and only records not committed come again.
func TestConsumerGroup(t *testing.T) {
	c := newCluster(t)
	s := open(t, c.ListenAddrs(), Deps{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)

	h := newHandled()
	o := stream.ConsumeOptions{Durable: "g", Origins: []string{stream.OriginIngest}, Signals: []wire.Signal{wire.SignalMetrics}, Batch: 16, MaxWait: 10 * time.Millisecond}
	run := func(ctx context.Context, name string) <-chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := s.Consume(ctx, o, h.handler(t, name)); err != nil {
				t.Errorf("consumer %s: %v", name, err)
			}
		}()
		return done
	}
	actx, stopA := context.WithCancel(ctx)
	defer stopA()
	bctx, stopB := context.WithCancel(ctx)
	defer stopB()
	aDone, bDone := run(actx, "a"), run(bctx, "b")
	defer func() { <-aDone; <-bDone }()
	waitBalanced(ctx, t, adm, "les.g", 2)

	if err := s.Publish(ctx, recs(0, 200)...); err != nil {
		t.Fatal(err)
	}
	h.waitDistinct(ctx, t, 200)
	h.mu.Lock()
	per := map[string]int{}
	for i := range 200 {
		if len(h.by[i]) != 1 {
			t.Fatalf("payload-%d handled by %v, want exactly one consumer", i, h.by[i])
		}
		per[h.by[i][0]]++
	}
	h.mu.Unlock()
	if per["a"] == 0 || per["b"] == 0 {
		t.Fatalf("work not shared: %v", per)
	}

	// Stop a; b takes over its partitions.
	stopA()
	<-aDone
	offs, err := adm.FetchOffsets(ctx, "les.g")
	if err != nil {
		t.Fatal(err)
	}
	committed := map[string]int64{} // "in.metrics/p" → next offset to read
	offs.Each(func(r kadm.OffsetResponse) {
		committed["in.metrics/"+strconv.Itoa(int(r.Partition))] = r.At
	})
	if err := s.Publish(ctx, recs(200, 400)...); err != nil {
		t.Fatal(err)
	}
	h.waitDistinct(ctx, t, 400)
	stopB()
	<-bDone

	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range 400 {
		if len(h.by[i]) == 0 {
			t.Fatalf("payload-%d lost", i)
		}
		if len(h.by[i]) > 1 {
			d := h.where[i]
			off, _ := strconv.ParseInt(string(d.Pos), 10, 64)
			if off < committed[d.Partition] {
				t.Fatalf("payload-%d (%s@%d) handled by %v although committed up to %d",
					i, d.Partition, off, h.by[i], committed[d.Partition])
			}
		}
	}
	if !strings.Contains(strings.Join(h.by[399], ","), "b") {
		t.Fatalf("payload-399 handled by %v", h.by[399])
	}
}

// TestRevokeWhileHeld: a member whose handler keeps failing holds a batch
// of all four partitions when a second member joins. The partitions it
// gives up are dropped from its held batch, so it neither handles nor
// commits them again; the new owner reads them from the last commit.
func TestRevokeWhileHeld(t *testing.T) {
	c := newCluster(t)
	s := open(t, c.ListenAddrs(), Deps{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	if err := s.Publish(ctx, recs(0, 40)...); err != nil {
		t.Fatal(err)
	}
	o := stream.ConsumeOptions{Durable: "r", Origins: []string{stream.OriginIngest}, Signals: []wire.Signal{wire.SignalMetrics}, Batch: 64, MaxWait: 50 * time.Millisecond}

	var (
		mu       sync.Mutex
		failA    = true
		balanced bool
		aCalled  = make(chan struct{}, 1)
		aAfter   []map[string]bool // partitions of each call of a after the group balanced
		aOK      = map[string]bool{}
		bParts   = map[string]bool{}
		acked    = map[int]bool{}
		change   = make(chan struct{}, 1)
	)
	parts := func(ds []stream.Delivery) map[string]bool {
		m := map[string]bool{}
		for _, d := range ds {
			m[d.Partition] = true
		}
		return m
	}
	ack := func(ds []stream.Delivery) {
		for _, d := range ds {
			acked[payloadIndex(t, d)] = true
		}
		select {
		case change <- struct{}{}:
		default:
		}
	}
	ha := func(_ context.Context, ds []stream.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		select {
		case aCalled <- struct{}{}:
		default:
		}
		if balanced {
			aAfter = append(aAfter, parts(ds))
		}
		if failA {
			return errors.New("sink down")
		}
		for p := range parts(ds) {
			aOK[p] = true
		}
		ack(ds)
		return nil
	}
	hb := func(_ context.Context, ds []stream.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		for p := range parts(ds) {
			bParts[p] = true
		}
		ack(ds)
		return nil
	}
	run := func(ctx context.Context, h stream.Handler) <-chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := s.Consume(ctx, o, h); err != nil {
				t.Errorf("consume: %v", err)
			}
		}()
		return done
	}
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	aDone := run(cctx, ha)
	defer func() { <-aDone }()
	select {
	case <-aCalled: // a holds a batch
	case <-ctx.Done():
		t.Fatal("a never called")
	}
	bDone := run(cctx, hb)
	defer func() { <-bDone }()
	waitBalanced(ctx, t, adm, "les.r", 2)
	mu.Lock()
	balanced = true
	mu.Unlock()
	// Wait for a call of a after the revocation, then let a succeed.
	for {
		mu.Lock()
		n := len(aAfter)
		if n > 0 {
			failA = false
		}
		mu.Unlock()
		if n > 0 {
			break
		}
		select {
		case <-aCalled:
		case <-ctx.Done():
			t.Fatal("a not called again")
		}
	}
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n == 40 {
			break
		}
		select {
		case <-change:
		case <-ctx.Done():
			t.Fatalf("%d of 40 acknowledged", n)
		}
	}
	stop()
	<-aDone
	<-bDone
	mu.Lock()
	defer mu.Unlock()
	if len(bParts) == 0 {
		t.Fatal("b got no partitions")
	}
	for _, ps := range aAfter {
		for p := range ps {
			if bParts[p] {
				t.Fatalf("a handled %s after it was revoked (b owns %v)", p, bParts)
			}
		}
	}
	for p := range aOK {
		if bParts[p] {
			t.Fatalf("a acknowledged %s, which b owns", p)
		}
	}
	lag, err := s.Lag(ctx, stream.LagQuery{Durable: "r", Origins: o.Origins, Signals: o.Signals})
	if err != nil || lag != 0 {
		t.Fatalf("lag %d, %v; want 0", lag, err)
	}
}
