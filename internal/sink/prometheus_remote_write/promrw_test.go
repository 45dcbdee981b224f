package promrw

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/sink/sinktest"
	"go.uber.org/goleak"
)

func leakCheck(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

func gauges(n int, at time.Time) *model.Batch {
	b := &model.Batch{}
	for i := range n {
		b.Metrics = append(b.Metrics, model.Metric{Name: fmt.Sprintf("g%02d", i), Value: float64(i), Timestamp: at.UnixNano()})
	}
	return b
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func TestRequestFormat(t *testing.T) {
	leakCheck(t)
	t.Setenv("PROMRW_TEST_PW", "s3cret")
	rc := newReceiver(t, nil)
	s := newSink(t, Config{URL: rc.URL + "/api/v1/write", HTTPAuth: sink.HTTPAuth{Headers: map[string]string{"X-Scope-OrgID": "team-a"}, BasicAuth: &sink.BasicAuth{Username: "les", PasswordEnv: "PROMRW_TEST_PW"}}}, nil)
	b, _ := sinktest.Batch()
	send(t, s, b, "r1")
	if rc.numRequests() != 1 {
		t.Fatalf("%d requests", rc.numRequests())
	}
	r := rc.requests[0]
	for k, want := range map[string]string{"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
		"X-Prometheus-Remote-Write-Version": "0.1.0", "X-Scope-Orgid": "team-a"} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if u, p, ok := r.BasicAuth(); !ok || u != "les" || p != "s3cret" {
		t.Errorf("basic auth %q %q %v", u, p, ok)
	}
	ms := t0Batch().UnixMilli()
	want := []string{
		fmt.Sprintf(`les_test_cold_start{env="prod",region="eu-west-1",source="host-1"} 2.5@%d`, ms),
		fmt.Sprintf(`les_test_latency_count{env="prod",region="eu-west-1",source="fn-checkout"} 5@%d`, ms),
		fmt.Sprintf(`les_test_latency_count{env="prod",region="eu-west-1",source="fn-checkout"} 5@%d`, ms+60000),
		fmt.Sprintf(`les_test_latency_max{env="prod",region="eu-west-1",source="fn-checkout"} 10@%d`, ms),
		fmt.Sprintf(`les_test_latency_max{env="prod",region="eu-west-1",source="fn-checkout"} 11@%d`, ms+60000),
		fmt.Sprintf(`les_test_latency_min{env="prod",region="eu-west-1",source="fn-checkout"} 1@%d`, ms),
		fmt.Sprintf(`les_test_latency_min{env="prod",region="eu-west-1",source="fn-checkout"} 1@%d`, ms+60000),
		fmt.Sprintf(`les_test_latency_sum{env="prod",region="eu-west-1",source="fn-checkout"} 32@%d`, ms),
		fmt.Sprintf(`les_test_latency_sum{env="prod",region="eu-west-1",source="fn-checkout"} 35@%d`, ms+60000),
		fmt.Sprintf(`les_test_latency{env="prod",quantile="0.5",region="eu-west-1",source="fn-checkout"} 10@%d`, ms),
		fmt.Sprintf(`les_test_latency{env="prod",quantile="0.5",region="eu-west-1",source="fn-checkout"} 10@%d`, ms+60000),
		fmt.Sprintf(`les_test_latency{env="prod",quantile="0.99",region="eu-west-1",source="fn-checkout"} 10@%d`, ms),
		fmt.Sprintf(`les_test_latency{env="prod",quantile="0.99",region="eu-west-1",source="fn-checkout"} 11@%d`, ms+60000),
		fmt.Sprintf(`les_test_latency{env="prod",region="eu-west-1",source="host-1"} 1.5@%d`, ms),
		fmt.Sprintf(`les_test_requests{env="prod",region="eu-west-1",source="host-1"} 0.5@%d`, ms),
	}
	if d := cmp.Diff(want, rc.samples()); d != "" {
		t.Errorf("-want +got\n%s", d)
	}
	// labels are sorted by name on the wire, __name__ among them
	for _, sr := range rc.bodies[0] {
		names := make([]string, len(sr.Labels))
		for i, l := range sr.Labels {
			names[i] = l[0]
		}
		if !slices.IsSorted(names) {
			t.Errorf("labels not sorted: %v", names)
		}
	}
	if c := s.Counts(); c.Ignored != sinktest.NumLogs+sinktest.NumSpans || c.Requests != 1 || c.Samples != 15 {
		t.Errorf("counts %+v", c)
	}
}

func t0Batch() time.Time { return time.Date(2026, 11, 22, 3, 4, 5, 0, time.UTC) } // sinktest.Batch's time

func TestBearerTokenFromFile(t *testing.T) {
	leakCheck(t)
	f := filepath.Join(t.TempDir(), "token")
	os.WriteFile(f, []byte("tok-123\n"), 0o600)
	rc := newReceiver(t, func(_ int, _ []wSeries) (int, string) { return 0, "" })
	s := newSink(t, Config{URL: rc.URL, HTTPAuth: sink.HTTPAuth{BearerTokenFile: f}}, nil)
	send(t, s, gauges(1, t0), "")
	if got := rc.requests[0].Header.Get("Authorization"); got != "Bearer tok-123" {
		t.Errorf("Authorization %q", got)
	}
	if _, err := New(Config{URL: rc.URL, HTTPAuth: sink.HTTPAuth{BearerTokenEnv: "PROMRW_UNSET_VAR"}}, sink.Deps{}); err == nil ||
		!strings.Contains(err.Error(), "PROMRW_UNSET_VAR") {
		t.Errorf("missing token variable: %v", err)
	}
}

func TestSplitsLargeBatches(t *testing.T) {
	leakCheck(t)
	rc := newReceiver(t, nil)
	s := newSink(t, Config{URL: rc.URL, MaxSamplesPerRequest: 4}, nil)
	send(t, s, gauges(10, t0), "")
	if n := rc.numRequests(); n != 3 {
		t.Errorf("%d requests, want 3 (4+4+2 samples)", n)
	}
	if n := len(rc.samples()); n != 10 {
		t.Errorf("%d samples stored", n)
	}
}

// TestRetrySkipsAcceptedRequests: a batch of three requests whose second
// fails once with 503 is retried by sink.Deliver; the first request is
// not sent again, and counter totals are added once.
func TestRetrySkipsAcceptedRequests(t *testing.T) {
	leakCheck(t)
	rc := newReceiver(t, func(n int, _ []wSeries) (int, string) {
		if n == 1 {
			return http.StatusServiceUnavailable, "busy"
		}
		return 0, ""
	})
	s := newSink(t, Config{URL: rc.URL, MaxSamplesPerRequest: 2}, nil)
	b := &model.Batch{}
	for i := range 6 {
		b.Metrics = append(b.Metrics, model.Metric{Name: fmt.Sprintf("c%d", i), Kind: model.Counter, Value: 1, Timestamp: t0.UnixNano()})
	}
	retries := 0
	err := sink.Deliver(context.Background(), s, b, sink.Meta{RecordID: "x"}, sink.RetryConfig{InitialBackoff: time.Millisecond}, func(error) { retries++ })
	if err != nil || retries != 1 {
		t.Fatalf("Deliver: %v after %d retries", err, retries)
	}
	if n := rc.numRequests(); n != 4 {
		t.Errorf("%d requests, want 4 (1, 2 refused, 2, 3)", n)
	}
	if c := s.Counts(); c.Skipped != 1 {
		t.Errorf("counts %+v: want the first request skipped on the retry", c)
	}
	b2 := &model.Batch{Metrics: []model.Metric{{Name: "c0", Kind: model.Counter, Value: 1, Timestamp: t0.Add(time.Minute).UnixNano()}}}
	send(t, s, b2, "y")
	got := rc.samples()
	want := fmt.Sprintf("c0{} 2@%d", t0.Add(time.Minute).UnixMilli())
	if !slices.Contains(got, want) {
		t.Errorf("stored %v, want %s", got, want)
	}
}

func TestCountersWithinOneBatch(t *testing.T) {
	rc := newReceiver(t, nil)
	s := newSink(t, Config{URL: rc.URL}, nil)
	c := func(v float64, at time.Time) model.Metric {
		return model.Metric{Name: "hits", Kind: model.Counter, Value: v, Timestamp: at.UnixNano()}
	}
	// raw counters (rollup off): several in one millisecond, one out of
	// time order within the batch: the encoder takes the batch in time
	// order (issue 9), so the late one counts at its own time
	send(t, s, &model.Batch{Metrics: []model.Metric{c(1, t0), c(2, t0), c(4, t0.Add(time.Second)), c(8, t0)}}, "")
	want := []string{fmt.Sprintf("hits{} 11@%d", t0.UnixMilli()), fmt.Sprintf("hits{} 15@%d", t0.Add(time.Second).UnixMilli())} // sorted as text
	if d := cmp.Diff(want, rc.samples()); d != "" {
		t.Errorf("-want +got\n%s", d)
	}
	// a late delta in a later batch is written just after the last point
	send(t, s, &model.Batch{Metrics: []model.Metric{c(1, t0)}}, "")
	if got := rc.samples(); !slices.Contains(got, fmt.Sprintf("hits{} 16@%d", t0.Add(time.Second).UnixMilli()+1)) {
		t.Errorf("stored %v", got)
	}
}

// TestAnswers: how each answer of the receiver ends a Send.
func TestAnswers(t *testing.T) {
	leakCheck(t)
	for _, tc := range []struct {
		name      string
		code      int
		body      string
		permanent bool
		retryIn   time.Duration
	}{
		{"bad request", 400, "invalid labels", true, 0},
		{"unauthorized", 401, "bad credentials", true, 0},
		{"too many requests", 429, "slow down", false, 7 * time.Second},
		{"server error", 500, "disk full", false, 0},
		{"native disabled", 500, "native histograms are disabled", true, 0},
		{"unavailable", 503, "", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.retryIn > 0 {
					w.Header().Set("Retry-After", "7")
				}
				http.Error(w, tc.body, tc.code)
			}))
			defer srv.Close()
			t.Setenv("PROMRW_TOKEN", "very-secret-token")
			s := newSink(t, Config{URL: srv.URL, HTTPAuth: sink.HTTPAuth{BearerTokenEnv: "PROMRW_TOKEN"}}, nil)
			err := s.Send(context.Background(), gauges(3, t0), sink.Meta{})
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, sink.ErrPermanent) != tc.permanent {
				t.Errorf("%v: permanent %v, want %v", err, !tc.permanent, tc.permanent)
			}
			if !strings.Contains(err.Error(), "prom") || strings.Contains(err.Error(), "very-secret-token") ||
				!strings.Contains(err.Error(), fmt.Sprint(tc.code)) || !strings.Contains(err.Error(), tc.body) {
				t.Errorf("error %q should name the sink, the status and the reason, never the token", err)
			}
			if ra, ok := errors.AsType[*sink.RetryAfterError](err); tc.retryIn > 0 && (!ok || ra.After != tc.retryIn) {
				t.Errorf("%v: want Retry-After %v", err, tc.retryIn)
			}
			s.Close()
			srv.CloseClientConnections()
		})
	}
}

// TestRefusedSamples: a receiver that, like Prometheus, refuses a whole
// request for one bad sample gets the rest delivered, and the bad one is
// counted as dropped; a refusal for another reason is an error.
func TestRefusedSamples(t *testing.T) {
	leakCheck(t)
	for _, tc := range []struct {
		code        int
		msg, reason string
	}{
		{400, "out of order sample", "out_of_order"},
		{400, "duplicate sample for timestamp", "duplicate_sample"},
		{400, "out of bounds", "out_of_bounds"},
		{400, "err-mimir-sample-too-old: the sample has been rejected because its timestamp is too old", "too_old"},
		{413, "request too large", "request_too_large"},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			rc := newReceiver(t, func(_ int, ss []wSeries) (int, string) {
				for _, s := range ss {
					if n := s.label("__name__"); n == "g03" || n == "g11" {
						return tc.code, tc.msg
					}
				}
				return 0, ""
			})
			s := newSink(t, Config{URL: rc.URL}, nil)
			send(t, s, gauges(16, t0), "")
			if n := len(rc.samples()); n != 14 {
				t.Errorf("%d samples stored, want 14", n)
			}
			if n := s.dropped.Total(); n != 2 {
				t.Errorf("%d dropped, want 2", n)
			}
			if c := s.Counts(); c.Refused != 2 || c.Requests == 0 || c.Splits > 2*2*4 {
				t.Errorf("counts %+v", c)
			}
		})
	}
}

func TestConnectionErrors(t *testing.T) {
	leakCheck(t)
	t.Run("reset", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, _, _ := w.(http.Hijacker).Hijack()
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}))
		defer srv.Close()
		s := newSink(t, Config{URL: srv.URL}, nil)
		err := s.Send(context.Background(), gauges(1, t0), sink.Meta{})
		if err == nil || errors.Is(err, sink.ErrPermanent) {
			t.Errorf("connection reset: %v, want a retryable error", err)
		}
	})
	t.Run("slow", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer srv.Close()
		defer close(release)
		s := newSink(t, Config{URL: srv.URL}, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		err := s.Send(ctx, gauges(1, t0), sink.Meta{})
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sink.ErrPermanent) {
			t.Errorf("slow receiver: %v, want a retryable deadline error", err)
		}
		s.Close()
	})
	t.Run("nothing listening", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		s := newSink(t, Config{URL: "http://" + addr}, nil)
		if err := s.Send(context.Background(), gauges(1, t0), sink.Meta{}); err == nil || errors.Is(err, sink.ErrPermanent) {
			t.Errorf("refused connection: %v, want a retryable error", err)
		}
	})
}

func TestTLS(t *testing.T) {
	leakCheck(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	s := newSink(t, Config{URL: srv.URL, TLS: sink.TLSConfig{CAFile: ca}}, nil)
	send(t, s, gauges(1, t0), "")
	s.Close()
	s = newSink(t, Config{URL: srv.URL}, nil) // system roots do not trust it
	if err := s.Send(context.Background(), gauges(1, t0), sink.Meta{}); err == nil {
		t.Error("untrusted server accepted")
	}
	s.Close()
}

func TestDuplicateRecordsSkipped(t *testing.T) {
	rc := newReceiver(t, nil)
	s := newSink(t, Config{URL: rc.URL}, nil)
	b := &model.Batch{Metrics: []model.Metric{{Name: "c", Kind: model.Counter, Value: 1, Timestamp: t0.UnixNano()}}}
	send(t, s, b, "rec-1")
	send(t, s, b, "rec-1")
	if n := rc.numRequests(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	if c := s.Counts(); c.Duplicates != 1 {
		t.Errorf("counts %+v", c)
	}
}

func TestConfig(t *testing.T) {
	for _, bad := range []Config{
		{}, {URL: "ftp://x"}, {URL: "http://u:p@x"}, {URL: "http://x", SourceLabel: "a.b"}, {URL: "http://x", SourceLabel: "__x"},
		{URL: "http://x", Labels: map[string]string{"1a": "v"}}, {URL: "http://x", Distributions: []string{"histogram"}},
		{URL: "http://x", Distributions: []string{"native", "native"}}, {URL: "http://x", HistogramSchema: new(9)},
		{URL: "http://x", MaxSamplesPerRequest: -1}, {URL: "http://x", HTTPAuth: sink.HTTPAuth{BasicAuth: &sink.BasicAuth{Username: "u"}}},
		{URL: "http://x", HTTPAuth: sink.HTTPAuth{BearerTokenEnv: "A", BearerTokenFile: "f"}}, {URL: "http://x", HTTPAuth: sink.HTTPAuth{Headers: map[string]string{"content-type": "x"}}},
		{URL: "http://x", HTTPAuth: sink.HTTPAuth{Headers: map[string]string{"bad header": "x"}}}, {URL: "http://x", TLS: sink.TLSConfig{CAFile: "/nonexistent"}},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
	c := Config{URL: "http://x/api/v1/write"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.SourceLabel != "source" || !slices.Equal(c.Distributions, []string{"summary", "min_max"}) || *c.HistogramSchema != 8 ||
		c.MaxSamplesPerRequest != 5000 || c.MaxLabelValueLength != 4096 {
		t.Errorf("defaults %+v", c)
	}
}
