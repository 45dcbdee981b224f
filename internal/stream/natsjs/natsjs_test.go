package natsjs

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/streamtest"
	"github.com/les-streams/les/internal/wire"
)

var quiet = Deps{Log: slog.New(slog.DiscardHandler)}

// startServer runs a real nats-server with JetStream, as an external
// server les connects to over TCP.
func startServer(t *testing.T, dir string, port int) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true,
		StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	// Stopped before the test's TempDir (created before the call, so
	// cleaned up after this) is removed: a server still writing consumer
	// state made RemoveAll fail ("directory not empty").
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	return srv
}

func TestConformance(t *testing.T) {
	servers := map[string]*server.Server{}
	defer func() {
		for _, srv := range servers {
			srv.Shutdown()
		}
	}()
	streamtest.Run(t, func(t *testing.T) stream.Stream {
		// One server per subtest; reopening reconnects to it.
		srv := servers[t.Name()]
		if srv == nil {
			srv = startServer(t, t.TempDir(), -1)
			servers[t.Name()] = srv
		}
		s, err := Open(context.Background(), Config{URL: srv.ClientURL()}, streamtest.Partitions, quiet)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestMustExistErrorHidesPassword: the error of opening a missing stream
// with a URL that carries a password (les tail prints it) does not show
// the password.
func TestMustExistErrorHidesPassword(t *testing.T) {
	srv := startServer(t, t.TempDir(), -1)
	defer srv.Shutdown()
	url := strings.Replace(srv.ClientURL(), "nats://", "nats://les:s3cret@", 1)
	_, err := Open(context.Background(), Config{URL: url}, 1, Deps{MustExist: true})
	if err == nil {
		t.Fatal("found stream LES on a server without it")
	}
	if strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("error shows the password or no address: %v", err)
	}
}

// TestOpenUnreachable: with no server up, Open returns (an agent starts
// and spools), Publish fails within its deadline, and once the server
// comes up the same Stream works.
func TestOpenUnreachable(t *testing.T) {
	port := freePort(t)
	s, err := Open(context.Background(), Config{URL: fmt.Sprintf("nats://127.0.0.1:%d", port)}, 1, quiet)
	if err != nil {
		t.Fatalf("Open with no server: %v", err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err = s.Publish(ctx, streamtest.Rec(stream.OriginIngest, wire.SignalMetrics, 0))
	cancel()
	if err == nil {
		t.Fatal("publish succeeded with no server")
	}
	srv := startServer(t, t.TempDir(), port)
	defer srv.Shutdown()
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Publish(ctx, streamtest.Rec(stream.OriginIngest, wire.SignalMetrics, 0)); err != nil {
		t.Fatalf("publish after the server came up: %v", err)
	}
}

// TestConsumeStopsWhenServerGone: an ordered consumer of a server that
// went away still returns soon after its ctx is cancelled; nats.go's
// ordered consumer would otherwise retry recreating itself forever inside
// Fetch and les' shutdown would never finish.
func TestConsumeStopsWhenServerGone(t *testing.T) {
	srv := startServer(t, t.TempDir(), -1)
	cl, err := Open(context.Background(), Config{URL: srv.ClientURL()}, 1, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		close(started)
		done <- cl.Consume(ctx, stream.ConsumeOptions{FromStart: true},
			func(context.Context, []stream.Delivery) error { return nil })
	}()
	<-started
	srv.Shutdown()
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Consume still running 20s after its ctx was cancelled")
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestDurablePerPartition: durables with partitions keep one cursor per
// partition, so two processes splitting the partitions each see only
// theirs, and a partition handed to another process keeps its cursor.
func TestDurablePerPartition(t *testing.T) {
	srv := startServer(t, t.TempDir(), -1)
	defer srv.Shutdown()
	s, err := Open(context.Background(), Config{URL: srv.ClientURL()}, 4, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var recs []stream.Record
	for i := range 40 {
		recs = append(recs, streamtest.Rec(stream.OriginIngest, wire.SignalMetrics, i))
	}
	if err := s.Publish(context.Background(), recs[:20]...); err != nil {
		t.Fatal(err)
	}
	a := streamtest.Consume(t, s, stream.ConsumeOptions{Durable: "sink", Partitions: []int{0, 1}}, nil, streamtest.AtLeast(10))
	b := streamtest.Consume(t, s, stream.ConsumeOptions{Durable: "sink", Partitions: []int{2, 3}}, nil, streamtest.AtLeast(10))
	for _, d := range append(a, b...) {
		var i int
		fmt.Sscanf(string(d.Data), "payload-%d", &i)
		if (d.Partition == "0" || d.Partition == "1") != (i%4 < 2) {
			t.Fatalf("payload-%d delivered from partition %s", i, d.Partition)
		}
	}
	// Reassign: one process takes all four; it resumes every cursor.
	if err := s.Publish(context.Background(), recs[20:]...); err != nil {
		t.Fatal(err)
	}
	all := streamtest.Consume(t, s, stream.ConsumeOptions{Durable: "sink", Partitions: []int{0, 1, 2, 3}}, nil, streamtest.AtLeast(20))
	for _, d := range all {
		var i int
		fmt.Sscanf(string(d.Data), "payload-%d", &i)
		if i < 20 {
			t.Fatalf("payload-%d redelivered after reassignment", i)
		}
	}
	lag, err := s.Lag(context.Background(), stream.LagQuery{Durable: "sink", Partitions: []int{0, 1, 2, 3}})
	if err != nil || lag != 0 {
		t.Fatalf("lag %d, %v", lag, err)
	}
}

// TestResumeAfterTrimmedPosition: a consumer resuming after a position the
// stream trimmed by retention starts at the oldest record and counts the
// gap.
func TestResumeAfterTrimmedPosition(t *testing.T) {
	srv := startServer(t, t.TempDir(), -1)
	defer srv.Shutdown()
	reg := selfmetric.New()
	s, err := Open(context.Background(), Config{URL: srv.ClientURL(), MaxMsgs: 5}, 1, Deps{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 20 {
		rec := streamtest.Rec(stream.OriginIngest, wire.SignalMetrics, i)
		rec.Partition = 0
		if err := s.Publish(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
	got := streamtest.Consume(t, s, stream.ConsumeOptions{After: map[string]stream.Position{"0": "3"}}, nil, streamtest.AtLeast(5))
	if string(got[0].Data) != "payload-15" {
		t.Fatalf("first delivery %q, want payload-15 (the oldest retained)", got[0].Data)
	}
	if n := reg.Counter("les_stream_position_gaps_total", "backend", "nats").Get(); n != 1 {
		t.Fatalf("gaps counted %d, want 1", n)
	}
}
