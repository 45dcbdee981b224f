package otlp

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/sink/sinktest"
)

func nan() float64 { return math.NaN() }

// dropCount reads les_sink_dropped_items_total{sink=d.Name,reason} from
// the registry's /metrics text.
func dropCount(t *testing.T, d sink.Deps, reason string) int64 {
	t.Helper()
	var buf bytes.Buffer
	d.Metrics.WritePrometheus(&buf)
	prefix := fmt.Sprintf(`les_sink_dropped_items_total{sink=%q,reason=%q} `, d.Name, reason)
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	return 0
}

// fakeBackend records requests per path and answers with answer(path).
type fakeBackend struct {
	mu      sync.Mutex
	paths   []string
	headers []http.Header
	bodies  [][]byte
	answer  func(w http.ResponseWriter, r *http.Request)
}

func newFake(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) (*fakeBackend, *httptest.Server) {
	f := &fakeBackend{answer: answer}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err == nil {
			body, _ = io.ReadAll(zr)
		}
	} else {
		body, _ = io.ReadAll(r.Body)
	}
	f.mu.Lock()
	f.paths = append(f.paths, r.URL.Path)
	f.headers = append(f.headers, r.Header.Clone())
	f.bodies = append(f.bodies, body)
	f.mu.Unlock()
	f.answer(w, r)
}

func (f *fakeBackend) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, p := range f.paths {
		if p == path {
			n++
		}
	}
	return n
}

// rpcStatus is a google.rpc.Status with code and message, as OTLP/HTTP
// servers put in error answers.
func rpcStatus(code int, msg string) []byte {
	b := protowire.AppendTag(nil, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(code))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendString(b, msg)
}

func newSink(t *testing.T, cfg Config) (*Sink, sink.Deps) {
	t.Helper()
	d, _ := deps(t)
	s, err := New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, d
}

func TestSinkBadAnswers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		answer     func(w http.ResponseWriter)
		permanent  bool
		retryAfter time.Duration
		reason     string
	}{
		{name: "400 with rpc status", answer: func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/x-protobuf")
			w.WriteHeader(400)
			w.Write(rpcStatus(3, "metric name is empty"))
		}, permanent: true, reason: "HTTP 400 Bad Request: metric name is empty"},
		{name: "413", answer: func(w http.ResponseWriter) {
			w.WriteHeader(413)
			io.WriteString(w, "request body too large")
		}, permanent: true, reason: "HTTP 413 Request Entity Too Large: request body too large"},
		{name: "401", answer: func(w http.ResponseWriter) { w.WriteHeader(401) }, permanent: true, reason: "HTTP 401 Unauthorized"},
		{name: "429 Retry-After", answer: func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(429)
		}, retryAfter: 7 * time.Second, reason: "HTTP 429 Too Many Requests"},
		{name: "500", answer: func(w http.ResponseWriter) { w.WriteHeader(500) }, reason: "HTTP 500 Internal Server Error"},
		{name: "503 rpc status", answer: func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/x-protobuf")
			w.WriteHeader(503)
			w.Write(rpcStatus(14, "memory limiter refused the data"))
		}, reason: "HTTP 503 Service Unavailable: memory limiter refused the data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, srv := newFake(t, func(w http.ResponseWriter, r *http.Request) { tc.answer(w) })
			t.Setenv("LES_TEST_OTLP_TOKEN", "s3cret-t0ken")
			s, _ := newSink(t, Config{Endpoint: srv.URL, TokenEnv: "LES_TEST_OTLP_TOKEN"})
			b, _ := sinktest.Batch()
			err := s.Send(context.Background(), b, sink.Meta{RecordID: "r1"})
			if err == nil {
				t.Fatal("Send succeeded")
			}
			if got := errors.Is(err, sink.ErrPermanent); got != tc.permanent {
				t.Errorf("permanent = %v, want %v: %v", got, tc.permanent, err)
			}
			ra, ok := errors.AsType[*sink.RetryAfterError](err)
			if tc.retryAfter != 0 && (!ok || ra.After != tc.retryAfter) {
				t.Errorf("want RetryAfterError %v, got %v", tc.retryAfter, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "otlp otel: metrics: ") || !strings.Contains(msg, tc.reason) {
				t.Errorf("error %q does not name the sink, the signal and %q", msg, tc.reason)
			}
			if strings.Contains(msg, "s3cret") {
				t.Errorf("error shows the token: %q", msg)
			}
		})
	}
}

func TestSinkRequests(t *testing.T) {
	f, srv := newFake(t, func(w http.ResponseWriter, r *http.Request) {})
	t.Setenv("LES_TEST_OTLP_KEY", "k3y")
	s, _ := newSink(t, Config{Endpoint: srv.URL + "/otlp/", TokenEnv: "LES_TEST_OTLP_KEY", TokenHeader: "x-api-key",
		Headers: map[string]string{"X-Scope-OrgID": "team-a"}})
	b, _ := sinktest.Batch()
	if err := s.Send(context.Background(), b, sink.Meta{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"/otlp/v1/metrics", "/otlp/v1/logs", "/otlp/v1/traces"}
	if fmt.Sprint(f.paths) != fmt.Sprint(want) {
		t.Errorf("paths %v, want %v", f.paths, want)
	}
	h := f.headers[0]
	for k, v := range map[string]string{"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip",
		"X-Api-Key": "k3y", "X-Scope-Orgid": "team-a", "Authorization": ""} {
		if h.Get(k) != v {
			t.Errorf("header %s = %q, want %q", k, h.Get(k), v)
		}
	}
	req := pmetricotlp.NewExportRequest()
	if err := req.UnmarshalProto(f.bodies[0]); err != nil {
		t.Fatalf("metrics body: %v", err)
	}
	if n := req.Metrics().DataPointCount(); n != sinktest.NumMetrics+sinktest.NumDistributions {
		t.Errorf("%d data points, want %d", n, sinktest.NumMetrics+sinktest.NumDistributions)
	}
	c := s.Counts()
	if c.Requests != 3 || c.Items != uint64(b.Len()) {
		t.Errorf("counts %+v", c)
	}

	// no compression, bearer token from a file
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte("t0k\n"), 0o600)
	s2, _ := newSink(t, Config{Endpoint: srv.URL, Compression: "none", TokenFile: tok})
	if err := s2.Send(context.Background(), b, sink.Meta{}); err != nil {
		t.Fatal(err)
	}
	h = f.headers[3]
	if h.Get("Content-Encoding") != "" || h.Get("Authorization") != "Bearer t0k" {
		t.Errorf("headers %v", h)
	}
}

func TestSinkPartialSuccess(t *testing.T) {
	_, srv := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-protobuf")
		switch r.URL.Path {
		case "/v1/metrics":
			resp := pmetricotlp.NewExportResponse()
			resp.PartialSuccess().SetRejectedDataPoints(2)
			resp.PartialSuccess().SetErrorMessage("2 points too old")
			b, _ := resp.MarshalProto()
			w.Write(b)
		case "/v1/logs":
			w.Header().Set("Content-Type", "application/json")
			resp := plogotlp.NewExportResponse()
			resp.PartialSuccess().SetRejectedLogRecords(1)
			b, _ := resp.MarshalJSON()
			w.Write(b)
		}
	})
	s, d := newSink(t, Config{Endpoint: srv.URL})
	b, _ := sinktest.Batch()
	if err := s.Send(context.Background(), b, sink.Meta{}); err != nil {
		t.Fatalf("partial success is a success: %v", err)
	}
	if got := dropCount(t, d, ReasonPartialSuccess); got != 3 {
		t.Errorf("dropped{reason=partial_success} = %d, want 3", got)
	}
	if c := s.Counts(); c.Rejected != 3 {
		t.Errorf("Counts.Rejected = %d", c.Rejected)
	}
}

// TestSinkRetrySendsOnlyWhatFailed: metrics accepted, logs refused with 503;
// the retry of the same record sends logs and traces, not metrics again.
func TestSinkRetrySendsOnlyWhatFailed(t *testing.T) {
	var mu sync.Mutex
	failLogs := true
	f, srv := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/v1/logs" && failLogs {
			failLogs = false
			w.WriteHeader(503)
		}
	})
	s, _ := newSink(t, Config{Endpoint: srv.URL})
	b, _ := sinktest.Batch()
	var retries int
	err := sink.Deliver(context.Background(), s, b, sink.Meta{RecordID: "p-1"},
		sink.RetryConfig{InitialBackoff: time.Millisecond, MaxAttempts: 3}, func(error) { retries++ })
	if err != nil {
		t.Fatal(err)
	}
	if retries != 1 || f.count("/v1/metrics") != 1 || f.count("/v1/logs") != 2 || f.count("/v1/traces") != 1 {
		t.Errorf("retries %d, requests %v", retries, f.paths)
	}
	if c := s.Counts(); c.Skipped != 1 {
		t.Errorf("Skipped = %d, want 1", c.Skipped)
	}
	if len(s.progress) != 0 {
		t.Errorf("progress kept after success: %v", s.progress)
	}
}

func TestSinkSlowAndReset(t *testing.T) {
	t.Run("slow", func(t *testing.T) {
		_, srv := newFake(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		s, _ := newSink(t, Config{Endpoint: srv.URL})
		b, _ := sinktest.Batch()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		err := s.Send(ctx, b, sink.Meta{})
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sink.ErrPermanent) {
			t.Errorf("want a retryable deadline error, got %v", err)
		}
	})
	t.Run("reset", func(t *testing.T) {
		_, srv := newFake(t, func(w http.ResponseWriter, r *http.Request) {
			c, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				c.Close()
			}
		})
		s, _ := newSink(t, Config{Endpoint: srv.URL})
		b, _ := sinktest.Batch()
		err := s.Send(context.Background(), b, sink.Meta{})
		if err == nil || errors.Is(err, sink.ErrPermanent) || !strings.Contains(err.Error(), "otlp otel: metrics:") {
			t.Errorf("want a retryable error naming the sink, got %v", err)
		}
	})
}

func TestSinkTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	b, _ := sinktest.Batch()

	s, _ := newSink(t, Config{Endpoint: srv.URL, TLS: sink.TLSConfig{CAFile: ca}})
	if err := s.Send(context.Background(), b, sink.Meta{}); err != nil {
		t.Fatalf("with ca_file: %v", err)
	}
	s.Close() // closes its own client's idle connections

	s2, _ := newSink(t, Config{Endpoint: srv.URL})
	err := s2.Send(context.Background(), b, sink.Meta{})
	if err == nil || !strings.Contains(err.Error(), "otlp otel: metrics:") || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("unknown CA: want a certificate error naming the sink, got %v", err)
	}
}

func TestSinkConfig(t *testing.T) {
	neg := -11
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "endpoint: required"},
		{Config{Endpoint: "collector:4318"}, `endpoint: "collector:4318" is not an http or https URL`},
		{Config{Endpoint: "http://"}, `endpoint: "http://" is not`},
		{Config{Endpoint: "http://u:pw@c:4318"}, "endpoint: must not hold credentials"},
		{Config{Endpoint: "http://c:4318", Compression: "zstd"}, "compression:"},
		{Config{Endpoint: "http://c:4318", Headers: map[string]string{"bad header": "x"}}, "headers:"},
		{Config{Endpoint: "http://c:4318", TokenEnv: "A", TokenFile: "b"}, "token_env, token_file"},
		{Config{Endpoint: "http://c:4318", TokenHeader: "api-key", TokenScheme: "Bearer"}, "token_scheme:"},
		{Config{Endpoint: "http://c:4318", TLS: sink.TLSConfig{InsecureSkipVerify: true}}, "tls: set, but endpoint is not https"},
		{Config{Endpoint: "http://c:4318", MaxScale: &neg}, "max_scale:"},
		{Config{Endpoint: "http://c:4318", MaxBuckets: 1}, "max_buckets:"},
		{Config{Endpoint: "http://c:4318", LogsPath: "v1/logs"}, "logs_path:"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q…", tc.cfg, err, tc.want)
		}
	}
	c := Config{Endpoint: "http://c:4318"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Compression != "gzip" || *c.MaxScale != 6 || c.MaxBuckets != 2048 || c.SourceAttribute != "service.name" ||
		c.TokenHeader != "Authorization" || c.TokenScheme != "Bearer" || c.MetricsPath != "/v1/metrics" {
		t.Errorf("defaults %+v", c)
	}
	// a missing credential names the variable, never a value
	d, _ := deps(t)
	_, err := New(Config{Endpoint: "http://c:4318", TokenEnv: "LES_TEST_OTLP_UNSET"}, d)
	if err == nil || !strings.Contains(err.Error(), "LES_TEST_OTLP_UNSET") || !strings.Contains(err.Error(), "otlp otel") {
		t.Errorf("missing token: %v", err)
	}
}

// TestSinkConcurrentSends: Sends in flight at once (the runner's
// concurrency) share the sink's pools and progress map.
func TestSinkConcurrentSends(t *testing.T) {
	f, srv := newFake(t, func(w http.ResponseWriter, r *http.Request) {})
	s, _ := newSink(t, Config{Endpoint: srv.URL})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 10 {
				b, _ := sinktest.Batch()
				if err := s.Send(context.Background(), b, sink.Meta{RecordID: fmt.Sprintf("r-%d-%d", i, j)}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if n := f.count("/v1/metrics"); n != 80 {
		t.Errorf("%d metrics requests, want 80", n)
	}
	if c := s.Counts(); c.Requests != 240 || c.Items != 240/3*uint64(sinktest.NumMetrics+sinktest.NumDistributions+sinktest.NumLogs+sinktest.NumSpans) {
		t.Errorf("counts %+v", c)
	}
}
