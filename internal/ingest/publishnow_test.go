package ingest

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
)

// stuckStream never takes a record: Publish waits for its context.
type stuckStream struct{ stream.Stream }

func (stuckStream) Publish(ctx context.Context, _ ...stream.Record) error {
	<-ctx.Done()
	return ctx.Err()
}

func (stuckStream) Capabilities() stream.Capabilities {
	return stream.Capabilities{Backend: "stuck", Partitions: 1, MaxRecordBytes: 1 << 20}
}

// TestHTTPIntakeStreamStuck: when the stream does not take records, an
// HTTP POST is answered 503 after PublishTimeout (the client retries)
// instead of holding the request, its body and its goroutine forever, and
// the failure is counted.
func TestHTTPIntakeStreamStuck(t *testing.T) {
	reg := selfmetric.New()
	b, err := NewBatcher(BatchConfig{PublishTimeout: 50 * time.Millisecond}, stuckStream{}, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h := &LineHandler{
		Formats: map[string]*HTTPFormat{"wavefront": {Intake: NewIntake("wavefront", "http", b, reg),
			NewDecoder: func() Decoder { return fakeDecoder{} }}},
		Default: "wavefront", Batcher: b,
	}
	req := httptest.NewRequest(http.MethodPost, "/report", strings.NewReader("a 1 source=x\n"))
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() { h.ServeHTTP(rec, req); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("POST still waiting for the stream 5s after a 50ms publish_timeout")
	}
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", rec.Code)
	}
	if got := reg.Counter("les_stream_publish_errors_total").Get(); got != 1 {
		t.Fatalf("les_stream_publish_errors_total = %d, want 1", got)
	}
}
