package wavefront

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/les-streams/les/internal/format/wavefront"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/sink/sinktest"
)

// server is a stand-in proxy: it accepts connections and collects the lines
// each one sends until EOF.
type server struct {
	ln net.Listener

	mu       sync.Mutex
	conns    [][]string // per accepted connection, in accept order
	finished int        // connections that reached EOF
	changed  chan struct{}
	// closeAfter, if > 0, makes the server close each connection after
	// reading that many lines.
	closeAfter int
}

func newServer(t *testing.T, ln net.Listener) *server {
	t.Helper()
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	s := &server{ln: ln, changed: make(chan struct{}, 1)}
	t.Cleanup(func() { ln.Close() })
	go s.serve()
	return s
}

func (s *server) addr() string { return s.ln.Addr().String() }

func (s *server) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		i := len(s.conns)
		s.conns = append(s.conns, nil)
		s.mu.Unlock()
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					break
				}
				s.mu.Lock()
				s.conns[i] = append(s.conns[i], strings.TrimSuffix(line, "\n"))
				n := len(s.conns[i])
				s.mu.Unlock()
				s.notify()
				if s.closeAfter > 0 && n >= s.closeAfter {
					break
				}
			}
			s.mu.Lock()
			s.finished++
			s.mu.Unlock()
			s.notify()
		}()
	}
}

func (s *server) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until cond (called with s.mu held) holds.
func (s *server) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		ok := cond()
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-s.changed:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (s *server) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []string
	for _, c := range s.conns {
		all = append(all, c...)
	}
	return all
}

func TestConformance(t *testing.T) {
	var (
		srv *server
		snk *Sink
	)
	sinktest.Run(t, func(t *testing.T) sink.Sink {
		srv = newServer(t, nil)
		var err error
		if snk, err = New(Config{Address: srv.addr()}); err != nil {
			t.Fatal(err)
		}
		return snk
	}, func(t *testing.T) []sinktest.Item {
		dials := int(snk.Counts().Dials)
		srv.waitFor(t, "connections to end", func() bool { return srv.finished == dials && len(srv.conns) == dials })
		return readBack(t, srv.lines())
	}, sinktest.Options{Skips: []string{"logs"}, Ignore: []string{"Kind", "Quantiles"}})
}

func TestLines(t *testing.T) {
	srv := newServer(t, nil)
	s, err := New(Config{Address: srv.addr()})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := sinktest.Batch()
	var want []string
	for i := range b.Metrics {
		want = append(want, strings.TrimSuffix(string(wavefront.AppendMetric(nil, &b.Metrics[i])), "\n"))
	}
	for i := range b.Dists {
		want = append(want, strings.TrimSuffix(string(wavefront.AppendDistribution(nil, &b.Dists[i])), "\n"))
	}
	for i := range b.Spans {
		want = append(want, strings.TrimSuffix(string(wavefront.AppendSpan(nil, &b.Spans[i])), "\n"))
	}
	// items that cannot be sent are dropped and counted
	b.Metrics = append(b.Metrics, model.Metric{Name: "nan", Value: math.NaN()},
		model.Metric{Name: "bad\nname", Value: 1})
	b.Dists = append(b.Dists, model.Distribution{Name: "empty"})
	if err := s.Send(context.Background(), b, sink.Meta{RecordID: "r"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	srv.waitFor(t, "EOF", func() bool { return srv.finished == 1 })
	if d := cmp.Diff(want, srv.lines()); d != "" {
		t.Errorf("-want +got\n%s", d)
	}
	want2 := Counts{Batches: 1, Items: uint64(len(want)), SkippedLogs: sinktest.NumLogs, Invalid: 3, Dials: 1}
	if d := cmp.Diff(want2, s.Counts()); d != "" {
		t.Errorf("counts -want +got\n%s", d)
	}
}

func TestReconnect(t *testing.T) {
	srv := newServer(t, nil)
	n := sinktest.NumMetrics + sinktest.NumDistributions + sinktest.NumSpans
	srv.closeAfter = n // close each connection after one batch
	s, err := New(Config{Address: srv.addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 1; i <= 3; i++ {
		b, _ := sinktest.Batch()
		if err := s.Send(context.Background(), b, sink.Meta{}); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
		srv.waitFor(t, "server to close", func() bool { return srv.finished == i })
	}
	if got := len(srv.lines()); got != 3*n {
		t.Errorf("server received %d lines, want %d", got, 3*n)
	}
	if c := s.Counts(); c.Dials != 3 || c.Batches != 3 {
		t.Errorf("counts %+v, want 3 dials and 3 batches", c)
	}
}

func TestWriteErrorIsRetryable(t *testing.T) {
	// The first connection is never read, so a large write times out; later
	// connections are drained.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stalled := make(chan net.Conn, 1)
	go func() {
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if i == 0 {
				stalled <- c
				continue
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	s, err := New(Config{Address: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	small, _ := sinktest.Batch()
	if err := s.Send(context.Background(), small, sink.Meta{}); err != nil { // connect
		t.Fatal(err)
	}
	b := &model.Batch{}
	for range 100_000 { // 20 MB: more than the socket buffers hold
		b.Metrics = append(b.Metrics, model.Metric{Name: strings.Repeat("m", 200), Value: 1})
	}
	// the Send context's deadline interrupts the blocked write
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err = s.Send(ctx, b, sink.Meta{})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sink.ErrPermanent) {
		t.Fatalf("Send to a stalled peer: %v, want a retryable deadline error", err)
	}
	(<-stalled).Close()
	if err := s.Send(context.Background(), b, sink.Meta{}); err != nil {
		t.Fatalf("Send after reconnect: %v", err)
	}
	if c := s.Counts(); c.Dials != 2 || c.WriteErrors != 1 || c.Batches != 2 {
		t.Errorf("counts %+v", c)
	}
}

func TestDialError(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	s, err := New(Config{Address: addr, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := sinktest.Batch()
	if err := s.Send(context.Background(), b, sink.Meta{}); err == nil || errors.Is(err, sink.ErrPermanent) {
		t.Fatalf("Send with nothing listening: %v, want a retryable error", err)
	}
	// nothing to send: no connection needed
	if err := s.Send(context.Background(), &model.Batch{Logs: make([]model.Log, 2)}, sink.Meta{}); err != nil {
		t.Fatalf("logs-only Send: %v", err)
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	cert, caFile := selfSigned(t, dir)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, ln)
	_, port, _ := net.SplitHostPort(srv.addr())
	s, err := New(Config{Address: "localhost:" + port, TLS: true, TLSCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := sinktest.Batch()
	if err := s.Send(context.Background(), b, sink.Meta{}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	srv.waitFor(t, "EOF", func() bool { return srv.finished == 1 })
	if got, want := len(srv.lines()), sinktest.NumMetrics+sinktest.NumDistributions+sinktest.NumSpans; got != want {
		t.Errorf("got %d lines over TLS, want %d", got, want)
	}

	// without the CA the server is not trusted
	s, _ = New(Config{Address: "localhost:" + port, TLS: true})
	if err := s.Send(context.Background(), b, sink.Meta{}); err == nil {
		t.Error("untrusted server accepted")
	}
	s.Close()
}

func selfSigned(t *testing.T, dir string) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}

func TestConfig(t *testing.T) {
	for _, bad := range []Config{{}, {Address: "proxy"}, {Address: "proxy:x"}, {Address: "proxy:0"},
		{Address: "proxy:2878", TLSCAFile: "ca.pem"}, {Address: ":2878", TLS: true},
		{Address: "proxy:2878", DialTimeout: -1}} {
		if _, err := New(bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
	c := Config{Address: "proxy:2878"}
	if err := c.Validate(); err != nil || c.DialTimeout != 5*time.Second || c.WriteTimeout != 10*time.Second {
		t.Errorf("defaults %+v %v", c, err)
	}
}

func BenchmarkSend(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	s, err := New(Config{Address: ln.Addr().String()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	batch := &model.Batch{}
	one, _ := sinktest.Batch()
	for len(batch.Metrics)+len(batch.Dists)+len(batch.Spans) < 1000 {
		batch.Metrics = append(batch.Metrics, one.Metrics...)
		batch.Dists = append(batch.Dists, one.Dists...)
		batch.Spans = append(batch.Spans, one.Spans...)
	}
	items := batch.Len()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Send(context.Background(), batch, sink.Meta{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*items)/b.Elapsed().Seconds(), "items/s")
	b.SetBytes(int64(len(s.buf)))
}

// readBack decodes the lines the proxy received with les' Wavefront
// decoders (metric and distribution lines, then span lines).
func readBack(t *testing.T, lines []string) []sinktest.Item {
	t.Helper()
	metrics := wavefront.NewDecoder(wavefront.Options{Mode: wavefront.ModeMetrics})
	spans := wavefront.NewDecoder(wavefront.Options{Mode: wavefront.ModeTrace})
	var b model.Batch
	for _, l := range lines {
		n := b.Len()
		metrics.Decode(&b, []byte(l+"\n"), time.Now().UnixNano())
		if b.Len() == n {
			spans.Decode(&b, []byte(l+"\n"), time.Now().UnixNano())
		}
		if b.Len() != n+1 {
			t.Fatalf("line %q decoded to %d items", l, b.Len()-n)
		}
	}
	return sinktest.FromBatch(&b)
}
