package kafka

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// plug is a dialer whose connections can all be cut at once, after which
// it refuses to dial: to the brokers, a client behind it is a killed
// process (no LeaveGroup, no heartbeats; its session times out).
type plug struct {
	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func (p *plug) dial(ctx context.Context, network, host string) (net.Conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return nil, errors.New("plug pulled")
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, host)
	if err == nil {
		p.conns = append(p.conns, c)
	}
	return c, err
}

func (p *plug) pull() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for _, c := range p.conns {
		c.Close()
	}
}

func (p *plug) pulled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// testLogger shows franz-go's group decisions in a failing test's log
// (with -v).
type testLogger struct {
	t    testing.TB
	name string
}

func (l testLogger) Level() kgo.LogLevel { return kgo.LogLevelInfo }
func (l testLogger) Log(_ kgo.LogLevel, msg string, kv ...any) {
	l.t.Logf("%s %s: %s %v", time.Now().Format("15:04:05.000"), l.name, msg, kv)
}

// groupCluster is a kfake cluster for rebalance tests: sessions may be
// short. Its members' rebalance timeout (1s) is well below their session
// timeout (3s), as Kafka requires: kfake expires a member's session while
// it waits in JoinGroup, which Kafka does not.
type groupCluster struct {
	t   *testing.T
	c   *kfake.Cluster
	adm *kadm.Client
	// rebalance is the members' rebalance timeout (default 1s): how long
	// the group waits for a member to rejoin — its revocation included —
	// before it drops it.
	rebalance time.Duration
}

func newGroupCluster(t *testing.T) *groupCluster {
	c := newCluster(t, kfake.GroupMinSessionTimeout(100*time.Millisecond))
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &groupCluster{t: t, c: c, adm: kadm.NewClient(cl)}
}

// open opens a Stream of parts partitions whose Consume clients use
// extra options.
func (g *groupCluster) open(name string, parts int, extra ...kgo.Opt) *Stream {
	return g.openStatic(name, "", parts, extra...)
}

// openStatic is open for a static member with instance id instance.
func (g *groupCluster) openStatic(name, instance string, parts int, extra ...kgo.Opt) *Stream {
	t := g.t
	s, err := Open(context.Background(), Config{Brokers: g.c.ListenAddrs(), SessionTimeout: 3 * time.Second, RebalanceTimeout: cmp.Or(g.rebalance, time.Second), InstanceID: instance}, parts, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	s.base = append(s.base, kgo.HeartbeatInterval(200*time.Millisecond))
	if testing.Verbose() {
		s.base = append(s.base, kgo.WithLogger(testLogger{t, name}))
	}
	s.base = append(s.base, extra...)
	t.Cleanup(func() { s.Close() })
	return s
}

// members returns the sorted member ids of group, space-separated.
func (g *groupCluster) members(ctx context.Context, group string) string {
	gs, err := g.adm.DescribeGroups(ctx, group)
	if err != nil {
		return ""
	}
	var ids []string
	for _, m := range gs[group].Members {
		ids = append(ids, m.MemberID)
	}
	sort.Strings(ids)
	return strings.Join(ids, " ")
}

// ownsAll reports whether group is stable with one member that owns all
// parts partitions of its topic.
func (g *groupCluster) ownsAll(ctx context.Context, group string, parts int) bool {
	gs, err := g.adm.DescribeGroups(ctx, group)
	if err != nil {
		return false
	}
	d := gs[group]
	if d.State != "Stable" || len(d.Members) != 1 {
		return false
	}
	ca, ok := d.Members[0].Assigned.AsConsumer()
	return ok && len(ca.Topics) == 1 && len(ca.Topics[0].Partitions) == parts
}

// waitAll waits up to d for payloads 0..n-1 to be acknowledged and
// otherwise fails, naming the partitions (of parts) that missed some.
func (h *handled) waitAll(ctx context.Context, t *testing.T, n, parts int, d time.Duration, diag func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		h.mu.Lock()
		got, ch := 0, h.change
		for i := range n {
			if len(h.by[i]) > 0 {
				got++
			}
		}
		h.mu.Unlock()
		if got == n {
			return
		}
		select {
		case <-ch:
			continue
		case <-ctx.Done():
		}
		h.mu.Lock()
		missing := map[int]int{}
		for i := range n {
			if len(h.by[i]) == 0 {
				missing[i%parts]++
			}
		}
		h.mu.Unlock()
		t.Fatalf("%d of %d records acknowledged within %v; records missing per partition: %v\n%s", got, n, d, missing, diag())
	}
}

// lagReport describes the group's commits, ends and owners.
func (g *groupCluster) lagReport(group string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lags, err := g.adm.Lag(ctx, group)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, l := range lags {
		fmt.Fprintf(&b, "group %s: state %s, %d members\n", l.Group, l.State, len(l.Members))
		for _, p := range l.Lag.Sorted() {
			owner := "-"
			if p.Member != nil {
				owner = p.Member.MemberID
			}
			fmt.Fprintf(&b, "  %s/%d: committed %d, end %d, lag %d, owner %s\n", p.Topic, p.Partition, p.Commit.At, p.End.Offset, p.Lag, owner)
		}
	}
	return b.String()
}

// records returns payloads from..from+n-1, payload i in partition
// i%parts.
func records(from, n, parts int) []stream.Record {
	rs := make([]stream.Record, 0, n)
	for i := from; i < from+n; i++ {
		rs = append(rs, stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalMetrics, Partition: i % parts,
			ID: fmt.Sprintf("id-%d", i), Data: fmt.Appendf(nil, "payload-%d", i)})
	}
	return rs
}

// TestGroupPartitionHandedBack: a member that owns every partition waits
// in one poll (nothing is published) while a second member joins. The
// cooperative rebalance revokes half of the partitions from the first
// member, and the second dies before the follow-up rebalance, so they are
// handed back to the first one a generation later — all while its poll
// waits. The records published to them afterwards must be delivered. This
// is the stall of the scale-out test: sinks' topics are quiet, so a
// member spends a whole rebalance in one poll. Before the fix, the
// revocation was remembered until that poll returned, and the records it
// returned for the partitions handed back were dropped (never handled, never
// committed, and not fetched again).
func TestGroupPartitionHandedBack(t *testing.T) {
	const parts = 12
	g := newGroupCluster(t)
	pub := g.open("pub", parts)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	h := newHandled()
	o := stream.ConsumeOptions{Durable: "h", Origins: []string{stream.OriginIngest}, Signals: []wire.Signal{wire.SignalMetrics}, Batch: 16, MaxWait: 10 * time.Millisecond}
	var wg sync.WaitGroup
	defer wg.Wait()
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	run := func(s *Stream, name string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Consume(cctx, o, h.handler(t, name)); err != nil {
				t.Errorf("consumer %s: %v", name, err)
			}
		}()
	}
	run(g.open("a", parts), "a")
	for !g.ownsAll(ctx, "les.h", parts) {
		if !wait(ctx, 20*time.Millisecond) {
			t.Fatal("a never owned the partitions")
		}
	}
	aID := g.members(ctx, "les.h")

	// b dies at its first SyncGroup: a has just been told to give up half
	// of its partitions (the first phase of the cooperative rebalance),
	// and b never joins the second phase.
	b := &plug{}
	var once sync.Once
	g.c.ControlKey(int16(kmsg.SyncGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if r, ok := req.(*kmsg.SyncGroupRequest); ok && r.MemberID != aID {
			g.c.DropControl()
			once.Do(func() { go b.pull() })
		}
		return nil, nil, false
	})
	run(g.open("b", parts, kgo.Dialer(b.dial)), "b")
	for !b.pulled() || !g.ownsAll(ctx, "les.h", parts) { // b is gone and a owns them all again
		if !wait(ctx, 20*time.Millisecond) {
			t.Fatalf("b never left the group\n%s", g.lagReport("les.h"))
		}
	}
	if err := pub.Publish(ctx, records(0, parts, parts)...); err != nil {
		t.Fatal(err)
	}
	h.waitAll(ctx, t, parts, parts, 15*time.Second, func() string { return g.lagReport("les.h") })
}

// TestGroupMemberKilled: two members of one group share a topic while
// records are published without pause; one is killed (its connections
// cut, no LeaveGroup) and a new member joins, as a restarted process
// does — at once, or after the survivor took every partition over. Every
// record is acknowledged by some member within a bound, including those
// published after the group settled.
func TestGroupMemberKilled(t *testing.T) {
	t.Run("restart", func(t *testing.T) { testGroupMemberKilled(t, false) })
	t.Run("restart-after-takeover", func(t *testing.T) { testGroupMemberKilled(t, true) })
}

func testGroupMemberKilled(t *testing.T, takeover bool) {
	const parts = 4
	g := newGroupCluster(t)
	pub := g.open("pub", parts)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	h := newHandled()
	o := stream.ConsumeOptions{Durable: "k", Origins: []string{stream.OriginIngest}, Signals: []wire.Signal{wire.SignalMetrics}, Batch: 16, MaxWait: 10 * time.Millisecond}
	var (
		wg      sync.WaitGroup
		deadMu  sync.Mutex
		b1Dead  bool
		pmu     sync.Mutex
		sent    int // payloads 0..sent-1 are published
		pubStop = make(chan struct{})
		pubDone = make(chan struct{})
	)
	defer wg.Wait()
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	run := func(s *Stream, name string) {
		ack := h.handler(t, name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Consume(cctx, o, func(ctx context.Context, ds []stream.Delivery) error {
				deadMu.Lock()
				dead := name == "b1" && b1Dead
				deadMu.Unlock()
				if dead {
					return errors.New("killed") // a dead process acknowledges nothing
				}
				return ack(ctx, ds)
			})
			if err != nil {
				t.Errorf("consumer %s: %v", name, err)
			}
		}()
	}
	go func() {
		defer close(pubDone)
		for i := 0; ; i += parts {
			select {
			case <-pubStop:
				return
			default:
			}
			if err := pub.Publish(ctx, records(i, parts, parts)...); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			pmu.Lock()
			sent = i + parts
			pmu.Unlock()
		}
	}()
	stopPublishing := sync.OnceFunc(func() { close(pubStop); <-pubDone })
	defer stopPublishing()
	published := func() int { pmu.Lock(); defer pmu.Unlock(); return sent }

	b1 := &plug{}
	sA, sB1, sB2 := g.open("a", parts), g.open("b1", parts, kgo.Dialer(b1.dial)), g.open("b2", parts)
	run(sA, "a")
	run(sB1, "b1")
	waitBalanced(ctx, t, g.adm, "les.k", 2)
	h.waitDistinct(ctx, t, 200)
	before := g.members(ctx, "les.k")

	deadMu.Lock()
	b1Dead = true
	deadMu.Unlock()
	b1.pull()
	if takeover {
		for !g.ownsAll(ctx, "les.k", parts) {
			if !wait(ctx, 20*time.Millisecond) {
				t.Fatal("a never took b1's partitions over")
			}
		}
	}
	run(sB2, "b2")
	// The group is stable over a and b2 (b1 is out), then records flow
	// a while longer.
	for {
		waitBalanced(ctx, t, g.adm, "les.k", 2)
		if m := g.members(ctx, "les.k"); m != "" && m != before {
			break
		}
		if !wait(ctx, 20*time.Millisecond) {
			t.Fatal("the killed member never left the group")
		}
	}
	h.waitDistinct(ctx, t, published()+400)
	stopPublishing()
	h.waitAll(ctx, t, published(), parts, 20*time.Second, func() string { return g.lagReport("les.k") })
}

// TestGroupStaticMember: with instance_id, a member killed and restarted
// under the same id takes its own partitions back at once: the group
// replaces the dead member by the new one instead of waiting for the dead
// one's session to expire, the other member keeps its partitions, and
// every record is delivered.
//
// On Kafka the restart does not even rebalance. kfake does rebalance once
// (the other member rejoins, keeping its partitions) because it compares
// the members' protocol metadata byte for byte, and a restarted
// cooperative member no longer claims the partitions it owned.
func TestGroupStaticMember(t *testing.T) {
	const parts = 4
	g := newGroupCluster(t)
	pub := g.open("pub", parts)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	h := newHandled()
	o := stream.ConsumeOptions{Durable: "s", Origins: []string{stream.OriginIngest}, Signals: []wire.Signal{wire.SignalMetrics}, Batch: 16, MaxWait: 10 * time.Millisecond}
	var wg sync.WaitGroup
	defer wg.Wait()
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	run := func(ctx context.Context, s *Stream, name string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Consume(ctx, o, h.handler(t, name)); err != nil {
				t.Errorf("consumer %s: %v", name, err)
			}
		}()
	}
	// assigned maps each member's instance id to its partitions, and
	// reports whether the group is stable with exactly those two.
	assigned := func() (map[string]string, bool) {
		gs, err := g.adm.DescribeGroups(ctx, "les.s")
		if err != nil {
			return nil, false
		}
		d := gs["les.s"]
		m := map[string]string{}
		for _, mb := range d.Members {
			ca, _ := mb.Assigned.AsConsumer()
			if mb.InstanceID != nil {
				m[*mb.InstanceID] = fmt.Sprint(ca.Topics)
			}
		}
		return m, d.State == "Stable" && len(d.Members) == 2 && len(m) == 2
	}
	run(cctx, g.openStatic("a", "host-a", parts), "a")
	b1 := &plug{}
	b1ctx, stopB1 := context.WithCancel(cctx)
	defer stopB1()
	run(b1ctx, g.openStatic("b1", "host-b", parts, kgo.Dialer(b1.dial)), "b1")
	waitBalanced(ctx, t, g.adm, "les.s", 2)
	if err := pub.Publish(ctx, records(0, 2*parts, parts)...); err != nil {
		t.Fatal(err)
	}
	h.waitAll(ctx, t, 2*parts, parts, 15*time.Second, func() string { return g.lagReport("les.s") })
	before, ok := assigned()
	if !ok {
		t.Fatalf("group not stable over host-a and host-b: %v", before)
	}
	bID := g.members(ctx, "les.s")

	// Kill b1 and restart b under its id; count a's rejoins meanwhile.
	b1.pull()
	stopB1()
	var joinsMu sync.Mutex
	aJoins := 0
	g.c.ControlKey(int16(kmsg.JoinGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		g.c.KeepControl()
		if r, ok := req.(*kmsg.JoinGroupRequest); ok && r.InstanceID != nil && *r.InstanceID == "host-a" {
			joinsMu.Lock()
			aJoins++
			joinsMu.Unlock()
		}
		return nil, nil, false
	})
	run(cctx, g.openStatic("b2", "host-b", parts), "b2")
	for {
		// Never three members: b2 replaces b1, which is not waited for.
		gs, err := g.adm.DescribeGroups(ctx, "les.s")
		if err == nil && len(gs["les.s"].Members) > 2 {
			t.Fatalf("the group holds %d members: the dead one was not replaced", len(gs["les.s"].Members))
		}
		if now, ok := assigned(); ok && g.members(ctx, "les.s") != bID {
			if fmt.Sprint(now) != fmt.Sprint(before) {
				t.Fatalf("assignment changed from %v to %v", before, now)
			}
			break
		}
		if !wait(ctx, 20*time.Millisecond) {
			t.Fatal("b2 never joined")
		}
	}
	if err := pub.Publish(ctx, records(2*parts, 2*parts, parts)...); err != nil {
		t.Fatal(err)
	}
	h.waitAll(ctx, t, 4*parts, parts, 15*time.Second, func() string { return g.lagReport("les.s") })
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := 2 * parts; i < 4*parts; i++ {
		if who := h.by[i]; len(who) != 1 || who[0] == "b1" {
			t.Errorf("payload-%d handled by %v, want a or b2 once", i, who)
		}
	}
	joinsMu.Lock()
	defer joinsMu.Unlock()
	t.Logf("a rejoined %d times while b restarted (kfake rebalances here; see the comment)", aJoins)
}
