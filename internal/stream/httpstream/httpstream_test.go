package httpstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// handlerTransport serves requests with h in the calling goroutine: no
// sockets, so tests can run inside synctest bubbles.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

type failTransport struct{ err error }

func (t failTransport) RoundTrip(*http.Request) (*http.Response, error) { return nil, t.err }

const testURL = "https://central.test/"

func open(t *testing.T, cfg Config, rt http.RoundTripper) *Stream {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = testURL
	}
	s, err := Open(context.Background(), cfg, 4, Deps{HTTP: &http.Client{Transport: rt}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// record is a real wire record: one gauge.
func record(t testing.TB) stream.Record {
	t.Helper()
	enc := wire.NewEncoder(wire.SignalMetrics)
	enc.AppendMetric(&model.Metric{Name: "m", Value: 1, Timestamp: 1})
	data, err := enc.Finish(nil, 0xfeedface, 7, wire.CompressionNone)
	if err != nil {
		t.Fatal(err)
	}
	return stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalMetrics, Partition: 3, ID: "feedface-7", Data: data}
}

// TestFraming: one POST per record to <url>/v1/records, the wire bytes as
// the body, origin, signal, partition and id in headers, the token as a
// bearer token.
func TestFraming(t *testing.T) {
	t.Setenv("LES_TEST_HTTP_TOKEN", "s3cret")
	var got []*http.Request
	var bodies [][]byte
	s := open(t, Config{URL: "https://central.test/base/", TokenEnv: "LES_TEST_HTTP_TOKEN"}, handlerTransport{http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, r)
		bodies = append(bodies, b)
		w.WriteHeader(http.StatusOK)
	})})
	rec := record(t)
	rec2 := rec
	rec2.Origin, rec2.Partition, rec2.ID = stream.OriginAgg, 0, "feedface-8"
	if err := s.Publish(context.Background(), rec, rec2); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d requests, want 2", len(got))
	}
	r := got[0]
	want := map[string]string{
		"Content-Type": "application/vnd.les.record", "Authorization": "Bearer s3cret",
		"Les-Origin": "in", "Les-Signal": "metrics", "Les-Partition": "3", "Les-Record-Id": "feedface-7",
	}
	for k, v := range want {
		if r.Header.Get(k) != v {
			t.Errorf("header %s = %q, want %q", k, r.Header.Get(k), v)
		}
	}
	if r.Method != http.MethodPost || r.URL.String() != "https://central.test/base/v1/records" {
		t.Errorf("request %s %s", r.Method, r.URL)
	}
	if string(bodies[0]) != string(rec.Data) {
		t.Errorf("body is not the wire record")
	}
	if got[1].Header.Get("Les-Origin") != "agg" || got[1].Header.Get("Les-Record-Id") != "feedface-8" || got[1].Header.Get("Les-Partition") != "0" {
		t.Errorf("second request headers %v", got[1].Header)
	}
}

// TestClassification: 408, 429 and 5xx are retried (the second attempt
// succeeds); every other 4xx fails at once with an error naming the URL
// and the reason, never the token; 413 is stream.ErrTooLarge.
func TestClassification(t *testing.T) {
	cases := []struct {
		code      int
		retryable bool
		tooLarge  bool
	}{
		{400, false, false}, {401, false, false}, {403, false, false}, {404, false, false},
		{409, false, false}, {413, false, true},
		{408, true, false}, {429, true, false}, {500, true, false}, {502, true, false}, {503, true, false},
	}
	for _, c := range cases {
		t.Run(http.StatusText(c.code), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				t.Setenv("LES_TEST_HTTP_TOKEN", "s3cret")
				var n atomic.Int32
				s := open(t, Config{TokenEnv: "LES_TEST_HTTP_TOKEN"}, handlerTransport{http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if n.Add(1) == 1 {
						http.Error(w, "the reason\n", c.code)
						return
					}
					w.WriteHeader(http.StatusNoContent)
				})})
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				err := s.Publish(ctx, record(t))
				if c.retryable {
					if err != nil || n.Load() != 2 {
						t.Fatalf("%d: err %v after %d requests, want success on the 2nd", c.code, err, n.Load())
					}
					return
				}
				if err == nil || n.Load() != 1 {
					t.Fatalf("%d: err %v after %d requests, want a failure after 1", c.code, err, n.Load())
				}
				if IsRetryable(err) {
					t.Errorf("%d: IsRetryable", c.code)
				}
				if errors.Is(err, stream.ErrTooLarge) != c.tooLarge {
					t.Errorf("%d: errors.Is(ErrTooLarge) = %v", c.code, !c.tooLarge)
				}
				msg := err.Error()
				if !strings.Contains(msg, "https://central.test/v1/records") || !strings.Contains(msg, "the reason") || strings.Contains(msg, "s3cret") {
					t.Errorf("%d: error %q should name the URL and reason, not the token", c.code, msg)
				}
				var se *StatusError
				if !errors.As(err, &se) || se.Code != c.code {
					t.Errorf("%d: not a *StatusError: %v", c.code, err)
				}
			})
		})
	}
}

// TestUnauthorizedMessage: a wrong token says which settings to check.
func TestUnauthorizedMessage(t *testing.T) {
	s := open(t, Config{}, handlerTransport{http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
	})})
	err := s.Publish(context.Background(), record(t))
	want := "stream http: https://central.test/v1/records answered 401 Unauthorized: missing or wrong bearer token (the token of stream.http.token_env or token_file must be the central les' agent.http.token)"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v\nwant %s", err, want)
	}
}

// TestRetryAfter: the wait follows Retry-After; when it would outlast the
// caller's deadline Publish returns at once so the caller can spool.
func TestRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int32
		s := open(t, Config{}, handlerTransport{http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) == 1 {
				w.Header().Set("Retry-After", "3")
				http.Error(w, "stream unavailable", http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusOK)
		})})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		if err := s.Publish(ctx, record(t)); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Errorf("waited %v, want Retry-After's 3s", d)
		}

		n.Store(0)
		ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel2()
		start = time.Now()
		err := s.Publish(ctx2, record(t))
		if !IsRetryable(err) || time.Since(start) != 0 || n.Load() != 1 {
			t.Errorf("deadline 2s, Retry-After 3s: err %v after %v and %d requests, want the 503 at once", err, time.Since(start), n.Load())
		}
	})
}

// TestBackoffUntilDeadline: with the central unreachable Publish retries
// with growing waits until its context ends, and says what failed last.
func TestBackoffUntilDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var at []time.Duration
		start := time.Now()
		s := open(t, Config{}, roundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			at = append(at, time.Since(start))
			mu.Unlock()
			return nil, errors.New("connection refused")
		}))
		ctx, cancel := context.WithTimeout(context.Background(), 1*time.Second)
		defer cancel()
		err := s.Publish(ctx, record(t))
		if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "central.test") {
			t.Fatalf("err %v", err)
		}
		// 50, 100, 200, 400ms waits: attempts at 0, 50, 150, 350, 750ms;
		// the next (800ms wait) would pass the deadline.
		want := []time.Duration{0, 50 * time.Millisecond, 150 * time.Millisecond, 350 * time.Millisecond, 750 * time.Millisecond}
		if len(at) != len(want) {
			t.Fatalf("attempts at %v, want %v", at, want)
		}
		for i := range want {
			if at[i] != want[i] {
				t.Fatalf("attempts at %v, want %v", at, want)
			}
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestTokenFileRotation: after a 401 the token file is read again; a new
// token is used at once, an unchanged one fails without a retry loop.
func TestTokenFileRotation(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	s := open(t, Config{TokenFile: file}, handlerTransport{http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if r.Header.Get("Authorization") != "Bearer new" {
			http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	})})
	err := s.Publish(context.Background(), record(t))
	if err == nil || n.Load() != 1 || strings.Contains(err.Error(), "old") {
		t.Fatalf("old token: err %v after %d requests", err, n.Load())
	}
	if err := os.WriteFile(file, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n.Store(0)
	if err := s.Publish(context.Background(), record(t)); err != nil || n.Load() != 2 {
		t.Fatalf("rotated token: err %v after %d requests, want success on the 2nd", err, n.Load())
	}
}

// TestCertificateErrorsArePermanent: a certificate that does not verify
// is not retried.
func TestCertificateErrorsArePermanent(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	s, err := Open(context.Background(), Config{URL: srv.URL}, 1, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = s.Publish(ctx, stream.Record{Origin: "in", ID: "x-1", Data: []byte("x")})
	if err == nil || IsRetryable(err) || ctx.Err() != nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted certificate: %v (ctx %v)", err, ctx.Err())
	}
}

// TestLocalChecks: records too large for max_record_bytes, on a partition
// outside stream.partitions or with an unknown origin fail before any
// request.
func TestLocalChecks(t *testing.T) {
	var n atomic.Int32
	s := open(t, Config{MaxRecordBytes: 4096}, handlerTransport{http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.Add(1) })})
	big := record(t)
	big.Data = make([]byte, 4097)
	if err := s.Publish(context.Background(), big); !errors.Is(err, stream.ErrTooLarge) {
		t.Errorf("too large: %v", err)
	}
	p := record(t)
	p.Partition = 4
	if err := s.Publish(context.Background(), p); err == nil || !strings.Contains(err.Error(), "partition 4") {
		t.Errorf("partition 4 of 4: %v", err)
	}
	o := record(t)
	o.Origin = "nope"
	if err := s.Publish(context.Background(), o); err == nil {
		t.Errorf("origin nope: accepted")
	}
	if n.Load() != 0 {
		t.Errorf("%d requests sent", n.Load())
	}
}

// TestAgentOnly: kind http cannot be consumed.
func TestAgentOnly(t *testing.T) {
	s := open(t, Config{}, failTransport{errors.New("unused")})
	if err := s.Consume(context.Background(), stream.ConsumeOptions{}, nil); !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), testURL) {
		t.Errorf("Consume: %v", err)
	}
	rw := stream.ConsumeOptions{Durable: "d", Rewind: map[string]stream.Position{"0": "1"}}
	if err := s.Consume(context.Background(), rw, nil); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Consume with Rewind: %v", err)
	}
	if _, err := s.Lag(context.Background(), stream.LagQuery{}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Lag: %v", err)
	}
	caps := s.Capabilities()
	if caps.Backend != "http" || caps.Partitions != 4 || caps.MaxRecordBytes != DefaultMaxRecordBytes || caps.DurableCursors {
		t.Errorf("capabilities %+v", caps)
	}
	s.Close()
	if err := s.Publish(context.Background(), record(t)); !errors.Is(err, stream.ErrClosed) {
		t.Errorf("Publish after Close: %v", err)
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "url is required"},
		{Config{URL: "ftp://x"}, `scheme "ftp"`},
		{Config{URL: "https://"}, "has no host"},
		{Config{URL: "https://u:p@x/"}, "must not carry credentials"},
		{Config{URL: "https://x/?a=b"}, "query"},
		{Config{URL: "https://x/", TokenEnv: "A", TokenFile: "b"}, "not both"},
		{Config{URL: "http://les.example.internal/", TokenEnv: "A"}, "in the clear"},
		{Config{URL: "http://127.0.0.1:2880/", TokenEnv: "A"}, ""},
		{Config{URL: "http://localhost:2880/", TokenFile: "x"}, ""},
		{Config{URL: "http://les.example.internal/"}, ""},
		{Config{URL: "https://x/", TLS: TLSConfig{CertFile: "c"}}, "go together"},
		{Config{URL: "https://x/", Timeout: -1}, "timeout"},
		{Config{URL: "https://x/", MaxRecordBytes: 10}, "max_record_bytes"},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", c.cfg, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: error %v, want %q", c.cfg, err, c.want)
		}
	}
	var c Config
	c.URL = "https://x"
	if err := c.Validate(); err != nil || c.Timeout != DefaultTimeout || c.MaxRecordBytes != DefaultMaxRecordBytes || c.endpoint() != "https://x/v1/records" {
		t.Errorf("defaults: %v %+v", err, c)
	}
}

// TestOpenTokenErrors: a token source that is not there fails Open,
// naming the source.
func TestOpenTokenErrors(t *testing.T) {
	_, err := Open(context.Background(), Config{URL: testURL, TokenEnv: "LES_TEST_UNSET_VARIABLE"}, 1, Deps{})
	if err == nil || !strings.Contains(err.Error(), "LES_TEST_UNSET_VARIABLE is not set") {
		t.Errorf("unset variable: %v", err)
	}
	_, err = Open(context.Background(), Config{URL: testURL, TokenFile: filepath.Join(t.TempDir(), "none")}, 1, Deps{})
	if err == nil || !strings.Contains(err.Error(), "token_file") {
		t.Errorf("missing file: %v", err)
	}
}
