package http

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/sink/sinktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// receiver is a real net/http server that keeps what it was sent.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	answer func(w http.ResponseWriter, r *http.Request) bool // true: answered

	mu     sync.Mutex
	bodies [][]byte // decompressed
	reqs   []*http.Request
}

func newReceiver(t *testing.T, tls bool, answer func(w http.ResponseWriter, r *http.Request) bool) *receiver {
	rc := &receiver{t: t, answer: answer}
	h := http.HandlerFunc(rc.serve)
	rc.srv = httptest.NewUnstartedServer(h)
	rc.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are what some tests want
	if tls {
		rc.srv.StartTLS()
	} else {
		rc.srv.Start()
	}
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	var rd io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			rc.t.Errorf("gzip: %v", err)
			w.WriteHeader(400)
			return
		}
		rd = zr
	}
	body, err := io.ReadAll(rd)
	if err != nil {
		rc.t.Errorf("read body: %v", err)
	}
	if rc.answer != nil && rc.answer(w, r) {
		return
	}
	rc.mu.Lock()
	rc.bodies = append(rc.bodies, body)
	rc.reqs = append(rc.reqs, r)
	rc.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

// ndjson returns every body received, as NDJSON (arrays are unpacked).
func (rc *receiver) ndjson(t *testing.T) []byte {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out bytes.Buffer
	for _, b := range rc.bodies {
		if len(b) > 0 && b[0] == '[' {
			var objs []json.RawMessage
			if err := json.Unmarshal(b, &objs); err != nil {
				t.Fatalf("body is not a JSON array: %v", err)
			}
			for _, o := range objs {
				out.Write(bytes.TrimSpace(o))
				out.WriteByte('\n')
			}
			continue
		}
		out.Write(b)
	}
	return out.Bytes()
}

func deps(name string) sink.Deps {
	return sink.Deps{Name: name, Metrics: selfmetric.New(), HTTP: &http.Client{Transport: sink.NewTransport()}}
}

func newSink(t *testing.T, cfg Config, d sink.Deps) *Sink {
	t.Helper()
	s, err := New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		if d.HTTP != nil {
			d.HTTP.CloseIdleConnections()
		}
		s.client.CloseIdleConnections()
	})
	return s
}

func TestConformance(t *testing.T) {
	for _, tc := range []struct{ format, compression string }{{"ndjson", "none"}, {"ndjson", "gzip"}, {"json_array", "gzip"}} {
		t.Run(tc.format+"-"+tc.compression, func(t *testing.T) {
			var rc *receiver
			sinktest.Run(t, func(t *testing.T) sink.Sink {
				rc = newReceiver(t, false, nil)
				return newSink(t, Config{URL: rc.srv.URL + "/ingest", Format: tc.format, Compression: tc.compression}, deps("conf"))
			}, func(t *testing.T) []sinktest.Item {
				return sinktest.FromNDJSON(t, rc.ndjson(t))
			}, sinktest.Options{})
		})
	}
}

func TestRequestHeadersAndTLS(t *testing.T) {
	rc := newReceiver(t, true, nil)
	// Trust the server's self-signed certificate through tls.ca_file.
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rc.srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("tok-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, Config{URL: rc.srv.URL, TokenFile: tok, HTTPAuth: sink.HTTPAuth{Headers: map[string]string{"X-Tenant": "team-a"}},
		TLS: sink.TLSConfig{CAFile: ca}}, deps("tls"))
	b, _ := sinktest.Batch()
	if err := s.Send(context.Background(), b, sink.Meta{RecordID: "p-7"}); err != nil {
		t.Fatal(err)
	}
	r := rc.reqs[0]
	for k, want := range map[string]string{"Authorization": "Bearer tok-123", "X-Tenant": "team-a", "Content-Type": "application/x-ndjson",
		"X-Les-Record": "p-7", "X-Les-Part": "1/1"} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	var first struct {
		Record      string
		Item, Items int
	}
	if err := json.Unmarshal(rc.bodies[0][:bytes.IndexByte(rc.bodies[0], '\n')], &first); err != nil || first.Record != "p-7" || first.Items != b.Len() {
		t.Errorf("first line %+v %v", first, err)
	}

	// A name the certificate is not for, and no CA at all, are refused.
	s2 := newSink(t, Config{URL: rc.srv.URL, TLS: sink.TLSConfig{ServerName: "other.invalid", CAFile: ca}}, deps("tls-bad"))
	err := s2.Send(context.Background(), b, sink.Meta{})
	if err == nil || !strings.Contains(err.Error(), `http sink "tls-bad"`) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("wrong server name: %v", err)
	}
	s3 := newSink(t, Config{URL: rc.srv.URL}, sink.Deps{Name: "no-ca", HTTP: &http.Client{Transport: sink.NewTransport()}})
	if err := s3.Send(context.Background(), b, sink.Meta{}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("self-signed without ca_file: %v", err)
	}
}

func TestMaxBodySplits(t *testing.T) {
	for _, format := range []string{"ndjson", "json_array"} {
		t.Run(format, func(t *testing.T) {
			rc := newReceiver(t, false, nil)
			d := deps("split")
			s := newSink(t, Config{URL: rc.srv.URL, Format: format, MaxBody: 2048}, d)
			b := &model.Batch{}
			for i := range 60 {
				b.Metrics = append(b.Metrics, model.Metric{Name: fmt.Sprintf("metric.number.%03d", i), Value: float64(i), Timestamp: 1e18, Source: "host-1"})
			}
			big := strings.Repeat("x", 3000)
			b.Logs = append(b.Logs, model.Log{Timestamp: 1e18, Source: "fn", Message: []byte(big)}) // alone > max_body
			b.Logs = append(b.Logs, model.Log{Timestamp: 1e18, Source: "fn", Message: []byte("last")})
			if err := s.Send(context.Background(), b, sink.Meta{RecordID: "r-1"}); err != nil {
				t.Fatal(err)
			}
			for i, body := range rc.bodies {
				if len(body) > 2048 {
					t.Errorf("body %d has %d bytes", i, len(body))
				}
				if want := fmt.Sprintf("%d/%d", i+1, len(rc.bodies)); rc.reqs[i].Header.Get("X-Les-Part") != want {
					t.Errorf("part header %q, want %q", rc.reqs[i].Header.Get("X-Les-Part"), want)
				}
			}
			items := sinktest.FromNDJSON(t, rc.ndjson(t))
			if len(rc.bodies) < 3 || len(items) != 61 || items[60].Message != "last" || items[59].Name != "metric.number.059" {
				t.Errorf("%d bodies, %d items", len(rc.bodies), len(items))
			}
			if c := s.Counts(); c.Dropped != 1 || c.Items != 61 {
				t.Errorf("counts %+v", c)
			}
			var out bytes.Buffer
			d.Metrics.WritePrometheus(&out)
			if !strings.Contains(out.String(), `les_sink_dropped_items_total{sink="split",reason="item_too_large"} 1`) {
				t.Error("item_too_large not counted")
			}
		})
	}
}

func TestBadAnswers(t *testing.T) {
	const token = "tok-must-not-leak"
	for _, tc := range []struct {
		name      string
		answer    func(w http.ResponseWriter)
		permanent bool
		after     time.Duration
		want      string
	}{
		{"400", func(w http.ResponseWriter) { w.WriteHeader(400); io.WriteString(w, "line 3: unknown field \"kind\"") }, true, 0, `unknown field "kind"`},
		{"401 wrong token", func(w http.ResponseWriter) { w.WriteHeader(401); io.WriteString(w, "bad token") }, true, 0, "401"},
		{"413", func(w http.ResponseWriter) { w.WriteHeader(413) }, true, 0, "413"},
		{"429 Retry-After", func(w http.ResponseWriter) { w.Header().Set("Retry-After", "3"); w.WriteHeader(429) }, false, 3 * time.Second, "429"},
		{"500", func(w http.ResponseWriter) { w.WriteHeader(500) }, false, 0, "500"},
		{"503 Retry-After", func(w http.ResponseWriter) { w.Header().Set("Retry-After", "1"); w.WriteHeader(503) }, false, time.Second, "503"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, false, func(w http.ResponseWriter, _ *http.Request) bool { tc.answer(w); return true })
			t.Setenv("LES_TEST_HTTP_TOKEN", token)
			s := newSink(t, Config{URL: rc.srv.URL, TokenEnv: "LES_TEST_HTTP_TOKEN"}, deps("webhook"))
			b, _ := sinktest.Batch()
			err := s.Send(context.Background(), b, sink.Meta{})
			if err == nil {
				t.Fatal("Send succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, `http sink "webhook"`) || !strings.Contains(msg, tc.want) || strings.Contains(msg, token) {
				t.Errorf("error %q: want the sink's name and %q, never the token", msg, tc.want)
			}
			if errors.Is(err, sink.ErrPermanent) != tc.permanent {
				t.Errorf("permanent: %v, want %v", errors.Is(err, sink.ErrPermanent), tc.permanent)
			}
			ra, ok := errors.AsType[*sink.RetryAfterError](err)
			if (tc.after != 0) != ok || (ok && ra.After != tc.after) {
				t.Errorf("retry after: %v %v, want %v", ra, ok, tc.after)
			}
		})
	}
}

// TestRetriedByDeliver: a 503 then a 2xx, through the shared retry helper.
func TestRetriedByDeliver(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	rc := newReceiver(t, false, func(w http.ResponseWriter, _ *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(503)
			return true
		}
		return false
	})
	s := newSink(t, Config{URL: rc.srv.URL}, deps("retry"))
	b, _ := sinktest.Batch()
	retries := 0
	if err := sink.Deliver(context.Background(), s, b, sink.Meta{}, sink.RetryConfig{MaxAttempts: 3}, func(error) { retries++ }); err != nil {
		t.Fatal(err)
	}
	if retries != 1 || len(sinktest.FromNDJSON(t, rc.ndjson(t))) != b.Len() {
		t.Errorf("%d retries, %d bodies", retries, len(rc.bodies))
	}
}

func TestSlowAndReset(t *testing.T) {
	release := make(chan struct{})
	slow := newReceiver(t, false, func(w http.ResponseWriter, r *http.Request) bool {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return true
	})
	defer close(release)
	s := newSink(t, Config{URL: slow.srv.URL}, deps("slow"))
	b, _ := sinktest.Batch()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Send(ctx, b, sink.Meta{}); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sink.ErrPermanent) {
		t.Errorf("slow receiver: %v, want a retryable deadline error", err)
	}

	reset := newReceiver(t, false, func(w http.ResponseWriter, r *http.Request) bool {
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.(interface{ SetLinger(int) error }).SetLinger(0) // RST instead of FIN
		conn.Close()
		return true
	})
	s = newSink(t, Config{URL: reset.srv.URL}, deps("reset"))
	if err := s.Send(context.Background(), b, sink.Meta{}); err == nil || errors.Is(err, sink.ErrPermanent) || !strings.Contains(err.Error(), `http sink "reset"`) {
		t.Errorf("connection reset: %v, want a retryable error naming the sink", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "url: required"},
		{Config{URL: "localhost:80"}, "url:"},
		{Config{URL: "https://u:p@x"}, "url: must not hold credentials"},
		{Config{URL: "http://x", Format: "xml"}, "format:"},
		{Config{URL: "http://x", Compression: "br"}, "compression:"},
		{Config{URL: "http://x", HTTPAuth: sink.HTTPAuth{Headers: map[string]string{"Bad Name": "v"}}}, "headers:"},
		{Config{URL: "http://x", HTTPAuth: sink.HTTPAuth{Headers: map[string]string{"content-type": "text/plain"}}}, "headers: Content-Type is set by the sink"},
		{Config{URL: "http://x", HTTPAuth: sink.HTTPAuth{Headers: map[string]string{"X-A": "a\nb"}}}, "headers:"},
		{Config{URL: "http://x", TokenEnv: "A", HTTPAuth: sink.HTTPAuth{Headers: map[string]string{"authorization": "x"}}}, "headers: Authorization"},
		{Config{URL: "http://x", TokenEnv: "A", TokenFile: "f"}, "token_env, token_file"},
		{Config{URL: "http://x", MaxBody: 5}, "max_body:"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	_, err := New(Config{URL: "http://x", TokenEnv: "LES_TEST_UNSET_TOKEN"}, deps("x"))
	if err == nil || !strings.Contains(err.Error(), "LES_TEST_UNSET_TOKEN") {
		t.Errorf("unset token variable: %v", err)
	}
}

func TestEncodeDoesNotAllocate(t *testing.T) {
	b, _ := sinktest.Batch()
	buf, ends := EncodeNDJSON(nil, nil, b, "p-1")
	if n := testing.AllocsPerRun(100, func() { buf, ends = EncodeNDJSON(buf[:0], ends[:0], b, "p-1") }); n != 0 {
		t.Errorf("%v allocations per warm EncodeNDJSON, want 0", n)
	}
}

// TestBasicAuthAndBearerKeys: the sink takes HTTPAuth's keys besides
// token_env / token_file (which stay the bearer token).
func TestBasicAuthAndBearerKeys(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
	}))
	defer srv.Close()
	t.Setenv("LES_TEST_HTTP_SECRET", "s3cret")
	b, _ := sinktest.Batch()
	for _, cfg := range []Config{
		{URL: srv.URL, HTTPAuth: sink.HTTPAuth{BasicAuth: &sink.BasicAuth{Username: "u", PasswordEnv: "LES_TEST_HTTP_SECRET"}}},
		{URL: srv.URL, HTTPAuth: sink.HTTPAuth{BearerTokenEnv: "LES_TEST_HTTP_SECRET"}},
		{URL: srv.URL, TokenEnv: "LES_TEST_HTTP_SECRET"},
	} {
		s := newSink(t, cfg, deps("auth"))
		if err := s.Send(context.Background(), b, sink.Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"Basic dTpzM2NyZXQ=", "Bearer s3cret", "Bearer s3cret"}; !slices.Equal(got, want) {
		t.Errorf("Authorization %q, want %q", got, want)
	}
	c := Config{URL: srv.URL, TokenEnv: "A", HTTPAuth: sink.HTTPAuth{BearerTokenEnv: "B"}}
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "token_env, token_file: give them or") {
		t.Errorf("token_env with bearer_token_env: %v", err)
	}
}
