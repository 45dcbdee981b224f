package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/mem"
	"github.com/les-streams/les/internal/wire"
)

func getReady(t *testing.T, h http.Handler) (int, []string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var body struct {
		Ready   bool     `json:"ready"`
		Reasons []string `json:"reasons"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("/readyz body %q: %v", rec.Body, err)
	}
	if body.Ready != (rec.Code == http.StatusOK) {
		t.Fatalf("/readyz %d with ready=%v", rec.Code, body.Ready)
	}
	return rec.Code, body.Reasons
}

// TestReadyz: /readyz answers 503 with the reasons while the stream does
// not take publishes, the spool cannot take another batch, or the data
// directory's disk is full, and 200 again when that is over.
func TestReadyz(t *testing.T) {
	store := mem.NewStore()
	st := urlStream{mem.New(store, mem.Config{Partitions: 1}), ""}
	var down atomic.Bool
	store.SetPublishFault(func(context.Context, []stream.Record) error {
		if down.Load() {
			return errors.New("nats: no responders available for request")
		}
		return nil
	})
	pub := watchPublish(st)
	spool, err := ingest.OpenSpool(ingest.SpoolConfig{Dir: t.TempDir(), MaxBytes: 4096}, pub, selfmetric.New(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rd := &readiness{pub: pub, spool: spool, spoolReserve: 1024, dataDir: dir, minFree: 1}
	if code, rs := getReady(t, rd); code != http.StatusOK {
		t.Fatalf("healthy: %d %v", code, rs)
	}
	rec := stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalMetrics, ID: "r", Data: []byte(strings.Repeat("x", 3500))}
	down.Store(true)
	if err := pub.Publish(context.Background(), rec); err == nil {
		t.Fatal("publish succeeded with the stream down")
	}
	if err := spool.Write(rec); err != nil {
		t.Fatal(err)
	}
	rd.minFree = 1 << 62 // no disk has that much free
	code, rs := getReady(t, rd)
	joined := strings.Join(rs, "\n")
	if code != http.StatusServiceUnavailable || !strings.Contains(joined, "stream down") ||
		!strings.Contains(joined, "no responders") || !strings.Contains(joined, "spool full") || !strings.Contains(joined, "disk full") {
		t.Fatalf("outage: %d %q; want 503 with stream down, spool full and disk full", code, rs)
	}
	down.Store(false)
	rd.minFree = 1
	if err := spool.Replay(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, rs := getReady(t, rd); code != http.StatusOK {
		t.Fatalf("after the outage: %d %v", code, rs)
	}
}

// TestHealthEndpoints: /healthz and /livez say the process is alive,
// /readyz that it can take data; with agent.http.protect_metrics /metrics
// needs agent.http.token.
func TestHealthEndpoints(t *testing.T) {
	cfg := &Config{DataDir: t.TempDir()}
	cfg.Stream.Embedded.Listen = "127.0.0.1:-1"
	cfg.Agent.HTTP.Listen = "127.0.0.1:0"
	cfg.Agent.HTTP.Token = "s3cret"
	cfg.Agent.HTTP.ProtectMetrics = true
	cfg.Agent.Listeners = []ListenerConfig{}
	info := startApp(t, cfg)
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+info.HTTP+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, p := range []string{"/healthz", "/livez"} {
		if code, body := get(p, ""); code != http.StatusOK || body != "ok\n" {
			t.Errorf("%s: %d %q", p, code, body)
		}
	}
	if code, body := get("/readyz", ""); code != http.StatusOK || !strings.Contains(body, `"ready":true`) {
		t.Errorf("/readyz: %d %q", code, body)
	}
	if code, _ := get("/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without the token: %d, want 401", code)
	}
	if code, body := get("/metrics", "s3cret"); code != http.StatusOK || !strings.Contains(body, "les_") {
		t.Errorf("/metrics with the token: %d", code)
	}
}
