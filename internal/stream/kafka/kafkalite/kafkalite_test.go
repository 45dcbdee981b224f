package kafkalite_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/kafka"
	"github.com/les-streams/les/internal/stream/kafka/kafkalite"
	"github.com/les-streams/les/internal/stream/streamtest"
	"github.com/les-streams/les/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const parts = streamtest.Partitions // logical partitions

func newCluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func openLite(t *testing.T, cfg kafkalite.Config, deps kafkalite.Deps) *kafkalite.Stream {
	t.Helper()
	s, err := kafkalite.Open(context.Background(), cfg, parts, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openFull opens the full franz-go backend, the reader in these tests.
func openFull(t *testing.T, cfg kafka.Config) *kafka.Stream {
	t.Helper()
	s, err := kafka.Open(context.Background(), cfg, parts, kafka.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func publish(t *testing.T, s stream.Stream, recs ...stream.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Publish(ctx, recs...); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func recs(origin string, sig wire.Signal, from, to int) []stream.Record {
	var rs []stream.Record
	for i := from; i < to; i++ {
		rs = append(rs, streamtest.Rec(origin, sig, i))
	}
	return rs
}

// readBack reads origins × signals with the full backend until want
// distinct payloads per (origin, signal) arrived, checks that every
// record is in Kafka partition = logical partition (i % parts) and in
// publish order there, and returns how often each "<origin>.<signal>/i"
// was delivered.
func readBack(t *testing.T, full *kafka.Stream, origins []string, sigs []wire.Signal, want int) map[string]int {
	t.Helper()
	o := stream.ConsumeOptions{FromStart: true, Origins: origins, Signals: sigs}
	var seen map[string]int
	got := streamtest.Consume(t, full, o, nil, func(ds []stream.Delivery) bool {
		seen = map[string]int{}
		for _, d := range ds {
			seen[fmt.Sprintf("%s.%s/%s", d.Origin, d.Signal, d.Data)]++
		}
		return len(seen) >= want*len(origins)*len(sigs)
	})
	last := map[string]int{}
	for _, d := range got {
		var i int
		if _, err := fmt.Sscanf(string(d.Data), "payload-%d", &i); err != nil {
			t.Fatalf("unexpected payload %q", d.Data)
		}
		if wantP := fmt.Sprintf("%s.%s/%d", d.Origin, d.Signal, i%parts); d.Partition != wantP {
			t.Fatalf("payload-%d of %s.%s read from %s, want %s", i, d.Origin, d.Signal, d.Partition, wantP)
		}
		if prev, ok := last[d.Partition]; ok && i <= prev {
			t.Fatalf("%s: payload-%d after payload-%d", d.Partition, i, prev)
		}
		last[d.Partition] = i
	}
	return seen
}

func exactlyOnce(t *testing.T, seen map[string]int, origins []string, sigs []wire.Signal, from, to int) {
	t.Helper()
	for _, o := range origins {
		for _, sig := range sigs {
			for i := from; i < to; i++ {
				k := fmt.Sprintf("%s.%s/payload-%d", o, sig, i)
				if seen[k] != 1 {
					t.Fatalf("%s stored %d times, want once", k, seen[k])
				}
			}
		}
	}
}

// kafkaCounter is the value of the backend's counter name{backend="kafka"}.
func kafkaCounter(reg *selfmetric.Registry, name string) float64 {
	return float64(reg.Counter(name, "backend", "kafka").Get())
}

// TestPublishReadBack: records of two origins and two signals published
// by kafkalite, concurrently and in batches, to a three-broker cluster
// (leaders spread over the brokers) that has no topics yet, are read back
// by the full backend: each once, in the partition the full backend
// would have used, in order per partition.
func TestPublishReadBack(t *testing.T) {
	c := newCluster(t, kfake.NumBrokers(3))
	reg := selfmetric.New()
	s := openLite(t, kafkalite.Config{Brokers: c.ListenAddrs()}, kafkalite.Deps{Metrics: reg})
	origins := []string{stream.OriginIngest, stream.OriginAgg}
	sigs := []wire.Signal{wire.SignalMetrics, wire.SignalLogs}
	var wg sync.WaitGroup
	for _, o := range origins {
		wg.Go(func() {
			for from := 0; from < 60; from += 20 {
				var batch []stream.Record
				for _, sig := range sigs {
					batch = append(batch, recs(o, sig, from, from+20)...)
				}
				publish(t, s, batch...)
			}
		})
	}
	wg.Wait()
	full := openFull(t, kafka.Config{Brokers: c.ListenAddrs()})
	seen := readBack(t, full, origins, sigs, 60)
	exactlyOnce(t, seen, origins, sigs, 0, 60)
	if n := kafkaCounter(reg, "les_stream_publish_errors_total"); n != 0 {
		t.Fatalf("publish errors = %v", n)
	}
}

// TestRetries: produce requests refused with NOT_ENOUGH_REPLICAS (nothing
// stored) and answered REQUEST_TIMED_OUT after the write happened are
// retried with the same producer id and sequence numbers: everything is
// stored exactly once, and the retries are counted.
func TestRetries(t *testing.T) {
	c := newCluster(t)
	reg := selfmetric.New()
	s := openLite(t, kafkalite.Config{Brokers: c.ListenAddrs()}, kafkalite.Deps{Metrics: reg})
	in := []string{stream.OriginIngest}
	m := []wire.Signal{wire.SignalMetrics}
	publish(t, s, recs(stream.OriginIngest, wire.SignalMetrics, 0, 10)...)
	down := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotEnoughReplicas, Count: 4})
	publish(t, s, recs(stream.OriginIngest, wire.SignalMetrics, 10, 30)...)
	if n := down.Hits(); n != 4 {
		t.Fatalf("fault hit %d times, want 4", n)
	}
	ambiguous := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.RequestTimedOut, Count: 3})
	publish(t, s, recs(stream.OriginIngest, wire.SignalMetrics, 30, 50)...)
	if n := ambiguous.Hits(); n != 3 {
		t.Fatalf("timeout fault hit %d times, want 3", n)
	}
	if n := kafkaCounter(reg, "les_stream_publish_retries_total"); n < 7 {
		t.Fatalf("publish retries = %v, want at least 7", n)
	}
	full := openFull(t, kafka.Config{Brokers: c.ListenAddrs()})
	exactlyOnce(t, readBack(t, full, in, m, 50), in, m, 0, 50)
}

// TestBrokerRestart: the broker stops between two publishes and comes back
// on the same address with its data: a publish while it is down fails
// within its deadline, the next one after the restart reconnects (and
// starts over with a new producer id if the broker forgot the old one);
// every record published successfully is read back once.
func TestBrokerRestart(t *testing.T) {
	dir := t.TempDir()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	addr := c.ListenAddrs()[0]
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	s := openLite(t, kafkalite.Config{Brokers: []string{addr}}, kafkalite.Deps{})
	publish(t, s, recs(stream.OriginIngest, wire.SignalMetrics, 0, 40)...)
	c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	start := time.Now()
	err = s.Publish(ctx, recs(stream.OriginIngest, wire.SignalMetrics, 1000, 1004)...)
	cancel()
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish with the broker down: %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("publish with the broker down took %v, want about its 300ms deadline", d)
	}

	c2, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir), kfake.Ports(p))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c2.Close)
	publish(t, s, recs(stream.OriginIngest, wire.SignalMetrics, 40, 80)...)
	in, m := []string{stream.OriginIngest}, []wire.Signal{wire.SignalMetrics}
	full := openFull(t, kafka.Config{Brokers: c2.ListenAddrs()})
	seen := readBack(t, full, in, m, 80)
	exactlyOnce(t, seen, in, m, 0, 80)
}

// TestTooLarge: a record over max_record_bytes fails with ErrTooLarge
// before any I/O, and so does one the broker refuses as
// MESSAGE_TOO_LARGE; the stream keeps working after both.
func TestTooLarge(t *testing.T) {
	c := newCluster(t)
	s := openLite(t, kafkalite.Config{Brokers: c.ListenAddrs(), MaxRecordBytes: 1000}, kafkalite.Deps{})
	big := streamtest.Rec(stream.OriginIngest, wire.SignalMetrics, 0)
	big.Data = bytes.Repeat([]byte("x"), 1001)
	if err := s.Publish(context.Background(), big); !errors.Is(err, stream.ErrTooLarge) {
		t.Fatalf("publish of 1001 bytes with max_record_bytes 1000: %v, want ErrTooLarge", err)
	}
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.MessageTooLarge})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Publish(ctx, recs(stream.OriginIngest, wire.SignalMetrics, 0, 2)...); !errors.Is(err, stream.ErrTooLarge) {
		t.Fatalf("publish refused as MESSAGE_TOO_LARGE: %v, want ErrTooLarge", err)
	}
	publish(t, s, recs(stream.OriginIngest, wire.SignalMetrics, 2, 10)...)
	in, m := []string{stream.OriginIngest}, []wire.Signal{wire.SignalMetrics}
	full := openFull(t, kafka.Config{Brokers: c.ListenAddrs()})
	seen := readBack(t, full, in, m, 8)
	exactlyOnce(t, seen, in, m, 2, 10)
}

// silentBroker listens, accepts and never answers; each accepted
// connection is sent on the channel.
func silentBroker(t *testing.T) (string, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 16)
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	})
	return ln.Addr().String(), accepted
}

// TestDeadBroker: a broker that accepts connections and never answers
// holds a publish only until its deadline; an unreachable one likewise;
// Close fails a publish waiting for a silent broker with ErrClosed.
func TestDeadBroker(t *testing.T) {
	silent, _ := silentBroker(t)
	for _, addr := range []string{silent, "127.0.0.1:1"} {
		s := openLite(t, kafkalite.Config{Brokers: []string{addr}}, kafkalite.Deps{})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		err := s.Publish(ctx, recs(stream.OriginIngest, wire.SignalMetrics, 0, 1)...)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: publish: %v, want a deadline error", addr, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("%s: publish took %v past its 200ms deadline", addr, d)
		}
	}
	addr, accepted := silentBroker(t)
	s := openLite(t, kafkalite.Config{Brokers: []string{addr}}, kafkalite.Deps{})
	done := make(chan error, 1)
	go func() {
		done <- s.Publish(context.Background(), recs(stream.OriginIngest, wire.SignalMetrics, 0, 1)...)
	}()
	<-accepted // the publish has connected and waits for an answer
	s.Close()
	if err := <-done; !errors.Is(err, stream.ErrClosed) {
		t.Fatalf("publish during close: %v, want ErrClosed", err)
	}
	if err := s.Publish(context.Background(), recs(stream.OriginIngest, wire.SignalMetrics, 0, 1)...); !errors.Is(err, stream.ErrClosed) {
		t.Fatalf("publish after close: %v, want ErrClosed", err)
	}
}

// TestSASL: SCRAM-SHA-512 and PLAIN authenticate; a wrong password fails
// the publish at once, not at the deadline (kfake closes the connection
// where Kafka answers SASL_AUTHENTICATION_FAILED first).
func TestSASL(t *testing.T) {
	c := newCluster(t, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "scram", "s3cret"), kfake.Superuser("PLAIN", "plain", "pw"))
	in, m := []string{stream.OriginIngest}, []wire.Signal{wire.SignalMetrics}
	lite := func(mech, user, pw string) *kafkalite.Stream {
		return openLite(t, kafkalite.Config{Brokers: c.ListenAddrs(),
			SASL: kafkalite.SASLConfig{Mechanism: mech, Username: user, Password: pw}}, kafkalite.Deps{})
	}
	publish(t, lite("scram-sha-512", "scram", "s3cret"), recs(stream.OriginIngest, wire.SignalMetrics, 0, 5)...)
	publish(t, lite("plain", "plain", "pw"), recs(stream.OriginIngest, wire.SignalMetrics, 5, 10)...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err := lite("scram-sha-512", "scram", "wrong").Publish(ctx, recs(stream.OriginIngest, wire.SignalMetrics, 10, 11)...)
	if err == nil || !strings.Contains(err.Error(), "sasl") || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish with a wrong password: %v, want a sasl error before the deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a wrong password took %v to fail", d)
	}
	full := openFull(t, kafka.Config{Brokers: c.ListenAddrs(), SASL: kafka.SASLConfig{Mechanism: "plain", Username: "plain", Password: "pw"}})
	exactlyOnce(t, readBack(t, full, in, m, 10), in, m, 0, 10)
}

// TestNoCreate: with create_topics false a missing topic fails the
// publish, naming it.
func TestNoCreate(t *testing.T) {
	c := newCluster(t)
	no := false
	s := openLite(t, kafkalite.Config{Brokers: c.ListenAddrs(), CreateTopics: &no}, kafkalite.Deps{})
	err := s.Publish(context.Background(), recs(stream.OriginIngest, wire.SignalMetrics, 0, 1)...)
	if err == nil || !strings.Contains(err.Error(), "les.in.metrics") {
		t.Fatalf("publish to a missing topic without create_topics: %v", err)
	}
}

// TestTLS: a TLS listener with a certificate from ca_file; the publish
// fails at once without the CA (verification) and succeeds with it.
func TestTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kfake"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	noCA := openLite(t, kafkalite.Config{Brokers: c.ListenAddrs(), TLS: kafkalite.TLSConfig{Enabled: true}}, kafkalite.Deps{})
	if err := noCA.Publish(ctx, recs(stream.OriginIngest, wire.SignalMetrics, 0, 1)...); err == nil || !strings.Contains(err.Error(), "certificate") || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish to a broker whose certificate is not trusted: %v, want a certificate error before the deadline", err)
	}
	s := openLite(t, kafkalite.Config{Brokers: c.ListenAddrs(), TLS: kafkalite.TLSConfig{Enabled: true, CAFile: ca}}, kafkalite.Deps{})
	publish(t, s, recs(stream.OriginIngest, wire.SignalMetrics, 0, 4)...)
}
