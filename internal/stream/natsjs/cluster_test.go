package natsjs

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/streamtest"
	"github.com/les-streams/les/internal/wire"
)

// Load of TestClusterNodeLoss: at least clusterRecords records in batches
// of clusterBatch from clusterPublishers concurrent publishers; one node is
// shut down once clusterKillAt records were accepted.
const (
	clusterRecords    = 2000
	clusterBatch      = 10
	clusterPublishers = 4
	clusterKillAt     = 500
)

// TestClusterNodeLoss proves issue 7 item 7: with stream.nats servers
// listing all three nodes of a JetStream cluster and replicas 3, shutting
// down one node while records are being published loses no record whose
// Publish returned nil and stores none twice. The node shut down is the
// stream's leader, once as the server the client is connected to (client
// failover and leader election at once) and once as another node (the
// connection survives; acks in flight to the old leader may never come).
func TestClusterNodeLoss(t *testing.T) {
	for _, tc := range []struct {
		name string
		// connectToLeader makes the publishing client connect to the
		// stream leader, the node that is shut down.
		connectToLeader bool
	}{
		{"ConnectedLeader", true},
		{"RemoteLeader", false},
	} {
		t.Run(tc.name, func(t *testing.T) { testClusterNodeLoss(t, tc.connectToLeader) })
	}
}

func testClusterNodeLoss(t *testing.T, connectToLeader bool) {
	// Registered first, so it runs after every other cleanup (servers
	// shut down, streams closed).
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })

	c := startCluster(t)
	c.waitForMetaLeader(t)

	// Create the R3 stream; Open tries once for 5s and Publish would try
	// again, but a failure here should say so.
	setup := c.open(t, c.urls(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := setup.ensure(ctx); err != nil {
		t.Fatalf("creating the R3 stream: %v", err)
	}
	setup.Close()
	leader := c.waitForStreamLeader(t, nil)

	// The publishing client lists every node; which one it connects to
	// is the first of its list (no randomizing).
	target := leader
	if !connectToLeader {
		target = (leader + 1) % len(c.srvs)
	}
	urls := []string{c.srvs[target].ClientURL()}
	for i, srv := range c.srvs {
		if i != target {
			urls = append(urls, srv.ClientURL())
		}
	}
	s := c.open(t, urls, []nats.Option{nats.DontRandomize()})
	if got, want := s.nc.ConnectedServerName(), c.srvs[target].Name(); got != want {
		t.Fatalf("client connected to %s, want %s", got, want)
	}

	var (
		next     atomic.Int64 // next batch number
		accepted atomic.Int64 // records whose Publish returned nil
		killed   atomic.Bool
		killNow  = make(chan struct{})
		killOnce sync.Once
		wg       sync.WaitGroup
	)
	type result struct {
		accepted []int
		failed   []error
		longest  time.Duration
	}
	results := make([]result, clusterPublishers)
	for w := range clusterPublishers {
		wg.Go(func() {
			r := &results[w]
			for {
				b := int(next.Add(1) - 1)
				// Publishers never stop before the node is down, so the
				// shutdown happens under load.
				if b*clusterBatch >= clusterRecords && killed.Load() {
					return
				}
				recs := make([]stream.Record, clusterBatch)
				for j := range recs {
					recs[j] = streamtest.Rec(stream.OriginIngest, wire.SignalMetrics, b*clusterBatch+j)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				start := time.Now()
				err := s.Publish(ctx, recs...)
				r.longest = max(r.longest, time.Since(start))
				cancel()
				if err != nil {
					r.failed = append(r.failed, fmt.Errorf("batch %d: %w", b, err))
					continue
				}
				for j := range recs {
					r.accepted = append(r.accepted, b*clusterBatch+j)
				}
				if accepted.Add(clusterBatch) >= clusterKillAt {
					killOnce.Do(func() { close(killNow) })
				}
			}
		})
	}

	<-killNow
	victim := c.waitForStreamLeader(t, nil)
	if connectToLeader != (victim == target) {
		t.Fatalf("stream leader moved to %s before the shutdown", c.srvs[victim].Name())
	}
	meta := c.srvs[victim].JetStreamIsLeader()
	atKill := accepted.Load()
	c.kill(victim)
	killed.Store(true)
	wg.Wait()
	newLeader := c.waitForStreamLeader(t, []int{victim})

	var ok []int
	var failed []error
	var longest time.Duration
	for _, r := range results {
		ok = append(ok, r.accepted...)
		failed = append(failed, r.failed...)
		longest = max(longest, r.longest)
	}
	published := int(next.Load()-int64(clusterPublishers)) * clusterBatch
	for _, err := range failed[:min(len(failed), 5)] {
		t.Logf("publish failed: %v", err)
	}

	// Read everything the stream holds, through the surviving nodes.
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := s.js.Stream(ctx, s.cfg.Name)
	if err != nil {
		t.Fatal(err)
	}
	si, err := info.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored := int(si.State.Msgs)
	got := streamtest.Consume(t, s, stream.ConsumeOptions{FromStart: true, Batch: 256},
		nil, streamtest.AtLeast(stored))

	times := map[int]int{}
	for _, d := range got {
		var i int
		if _, err := fmt.Sscanf(string(d.Data), "payload-%d", &i); err != nil || i < 0 || i >= published {
			t.Fatalf("delivery %s/%s holds %q, not a record of this test", d.Partition, d.Pos, d.Data)
		}
		times[i]++
	}
	var lost, dups []int
	for _, i := range ok {
		if times[i] == 0 {
			lost = append(lost, i)
		}
	}
	for i, n := range times {
		if n > 1 {
			dups = append(dups, i)
		}
	}
	slices.Sort(lost)
	slices.Sort(dups)

	t.Logf("shut down %s (stream leader, meta leader %v, client connected %v) after %d accepted; new stream leader %s",
		c.srvs[victim].Name(), meta, victim == target, atKill, c.srvs[newLeader].Name())
	t.Logf("published %d, accepted %d, failed %d (in %d Publish calls), stored %d, delivered %d, distinct %d, lost %d, duplicates %d; longest Publish %v, client now on %s, publish retries %d",
		published, len(ok), len(failed)*clusterBatch, len(failed), stored, len(got), len(times), len(lost), len(dups),
		longest.Round(time.Millisecond), s.nc.ConnectedServerName(), s.retries.Get())
	if len(lost) > 0 {
		t.Errorf("%d accepted records were not delivered, first %v", len(lost), lost[:min(len(lost), 10)])
	}
	if len(dups) > 0 {
		t.Errorf("%d records delivered more than once, first %v", len(dups), dups[:min(len(dups), 10)])
	}
	// Publish retries until its ctx ends, and 30s outlast any leader
	// election: a failed Publish is a backend that gave up (or waited for
	// an ack that never comes), not bad luck.
	if len(failed) > 0 {
		t.Errorf("%d Publish calls with a 30s deadline failed across the node loss, first: %v", len(failed), failed[0])
	}
	if len(ok) < clusterRecords-clusterKillAt {
		t.Errorf("only %d records accepted", len(ok))
	}
}

// cluster is three nats-server nodes with JetStream, routed to each other
// on loopback.
type cluster struct {
	srvs []*server.Server
	down []bool
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	ports := []int{freePort(t), freePort(t), freePort(t)}
	c := &cluster{down: make([]bool, len(ports))}
	for i := range ports {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		srv, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "les", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(fmt.Sprintf("%s,%s", routes[0], routes[1])),
			NoLog:   true, NoSigs: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		c.srvs = append(c.srvs, srv)
		srv.Start()
	}
	t.Cleanup(func() {
		for i := range c.srvs {
			c.kill(i)
		}
	})
	for _, srv := range c.srvs {
		if !srv.ReadyForConnections(10 * time.Second) {
			t.Fatalf("nats-server %s did not start", srv.Name())
		}
	}
	return c
}

func (c *cluster) urls() []string {
	var u []string
	for _, srv := range c.srvs {
		u = append(u, srv.ClientURL())
	}
	return u
}

// kill shuts node i down and waits until it is.
func (c *cluster) kill(i int) {
	if c.down[i] {
		return
	}
	c.down[i] = true
	c.srvs[i].Shutdown()
	c.srvs[i].WaitForShutdown()
}

// open opens a Stream with replicas 3 on servers; t.Cleanup closes it.
func (c *cluster) open(t *testing.T, servers []string, opts []nats.Option) *Stream {
	t.Helper()
	deps := quiet
	deps.ConnOptions = opts
	s, err := Open(context.Background(), Config{Servers: servers, Replicas: 3}, streamtest.Partitions, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitForMetaLeader waits until the JetStream meta group has a leader
// that knows all three peers and every node is current with it.
func (c *cluster) waitForMetaLeader(t *testing.T) {
	t.Helper()
	waitFor(t, 30*time.Second, "a JetStream meta leader with 3 peers", func() bool {
		leaders := 0
		for _, srv := range c.srvs {
			if !srv.JetStreamIsClustered() || !srv.JetStreamIsCurrent() {
				return false
			}
			if srv.JetStreamIsLeader() {
				leaders++
				if len(srv.JetStreamClusterPeers()) != len(c.srvs) {
					return false
				}
			}
		}
		return leaders == 1
	})
}

// waitForStreamLeader returns the node leading the les stream, waiting
// until one of the nodes not in except leads it.
func (c *cluster) waitForStreamLeader(t *testing.T, except []int) int {
	t.Helper()
	leader := -1
	waitFor(t, 30*time.Second, "a leader of stream LES", func() bool {
		for i, srv := range c.srvs {
			if !c.down[i] && !slices.Contains(except, i) &&
				srv.JetStreamIsStreamLeader(srv.GlobalAccount().Name, "LES") {
				leader = i
				return true
			}
		}
		return false
	})
	return leader
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
