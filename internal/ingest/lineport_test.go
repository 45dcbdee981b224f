package ingest

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/mem"
	"github.com/les-streams/les/internal/wire"
)

// TestAcceptQueued: with AcceptQueued, LineHandler and PayloadHandler
// answer as soon as the items are in the batcher, even while the stream
// takes nothing (a publish would wait an hour here), and the batcher
// publishes them later; a payload unusable as a whole is still 400 and
// counted.
func TestAcceptQueued(t *testing.T) {
	reg := selfmetric.New()
	st := openStream(t)
	gate := make(chan struct{}) // the stream takes nothing until closed
	b, err := NewBatcher(BatchConfig{PublishTimeout: time.Hour}, gatedStream{st, gate}, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	lines := &LineHandler{
		Formats: map[string]*HTTPFormat{"wavefront": {Intake: NewIntake("wavefront", "http", b, reg),
			NewDecoder: func() Decoder { return fakeDecoder{} }}},
		Default: "wavefront", Batcher: b, Accept: AcceptQueued,
	}
	payload := &PayloadHandler{In: NewIntake("event", "http", b, reg), Batcher: b, Accept: AcceptQueued,
		Decode: func(dst *model.Batch, _ *http.Request, body []byte) (string, error) {
			if string(body) == "bad" {
				return "invalid_event", errors.New("not an event")
			}
			dst.Logs = append(dst.Logs, model.Log{Source: "fn", Message: body})
			return "", nil
		}}
	serve := func(h http.Handler, body string) int {
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/x", strings.NewReader(body)))
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the answer waits for the stream")
		}
		return rec.Code
	}
	if c := serve(lines, "a 1\nb 2\n"); c != http.StatusAccepted {
		t.Errorf("lines: %d", c)
	}
	if c := serve(payload, "deployed"); c != http.StatusOK {
		t.Errorf("payload: %d", c)
	}
	if c := serve(payload, "bad"); c != http.StatusBadRequest {
		t.Errorf("bad payload: %d", c)
	}
	if got := reg.Counter("les_ingest_rejected_total", "format", "event", "reason", "invalid_event").Get(); got != 1 {
		t.Errorf("invalid_event rejects %d", got)
	}
	close(gate)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, 10*time.Second) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	metrics, logs := 0, 0
	var dec wire.Decoder
	for _, r := range st.Store().Records() {
		var mb model.Batch
		if _, err := dec.Decode(&mb, r.Data); err != nil {
			t.Fatal(err)
		}
		metrics += len(mb.Metrics)
		for _, l := range mb.Logs {
			if string(l.Message) == "deployed" {
				logs++
			}
		}
	}
	if metrics != 2 || logs != 1 {
		t.Errorf("stream holds %d metrics and %d logs, want 2 and 1", metrics, logs)
	}
}

// gatedStream publishes to Stream once gate is closed.
type gatedStream struct {
	*mem.Stream
	gate chan struct{}
}

func (g gatedStream) Publish(ctx context.Context, recs ...stream.Record) error {
	select {
	case <-g.gate:
		return g.Stream.Publish(ctx, recs...)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestLinePortHandler: the Wavefront paths go to the intake, the health
// paths to health when there is one; any other path is 404, counted.
func TestLinePortHandler(t *testing.T) {
	reg := selfmetric.New()
	ok := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(name)) })
	}
	for _, c := range []struct {
		health     http.Handler
		path, want string
		status     int
	}{
		{nil, "/report", "intake", 200},
		{nil, "/api/v2/event", "intake", 200},
		{nil, "/healthz", "", 404},
		{ok("health"), "/readyz", "health", 200},
		{ok("health"), "/query", "", 404},
	} {
		rec := httptest.NewRecorder()
		LinePortHandler(ok("intake"), c.health, reg).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, c.path, nil))
		if rec.Code != c.status || c.want != "" && rec.Body.String() != c.want {
			t.Errorf("%s: %d %q", c.path, rec.Code, rec.Body.String())
		}
	}
	if got := reg.Counter("les_ingest_http_refused_total", "reason", RefusedUnknownPath).Get(); got != 2 {
		t.Errorf("unknown_path refusals %d, want 2", got)
	}
}
