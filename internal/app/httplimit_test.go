package app

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/les-streams/les/internal/ingest"
)

// TestIntakeConcurrencyBounded: intake requests beyond
// agent.http.max_concurrent wait for a slot and, when none frees up in
// time, are answered 503 with Retry-After instead of each reading a body
// of up to max_body into memory.
func TestIntakeConcurrencyBounded(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	h := ingest.LimitConcurrency(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}), 1, 50*time.Millisecond)
	first := make(chan struct{})
	go func() {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/report", nil))
		close(first)
	}()
	<-entered
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/report", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("second request: %d %v, want 503 with Retry-After", rec.Code, rec.Header())
	}
	close(release)
	<-first
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/report", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("request after the slot freed: %d", rec.Code)
	}
}

func TestHTTPMaxConcurrentConfig(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Agent.HTTP.MaxConcurrent != 16 {
		t.Fatalf("max_concurrent default %d", c.Agent.HTTP.MaxConcurrent)
	}
	c.Agent.HTTP.MaxConcurrent = -1
	if err := c.Validate(); err == nil {
		t.Fatal("negative max_concurrent accepted")
	}
}
