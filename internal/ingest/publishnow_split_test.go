package ingest

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
)

// logLines decodes each line into one log whose message is the line.
type logLines struct{}

func (logLines) Decode(dst *model.Batch, payload []byte, now int64) {
	for line := range bytes.Lines(payload) {
		dst.Logs = append(dst.Logs, model.Log{Message: bytes.TrimSuffix(line, []byte("\n")), Source: "fn", Timestamp: now})
	}
}

// TestHTTPIntakeLargeBodySplit: a body within max_body whose items encode
// to more than the stream's largest message is published as several
// records of at most max_batch_bytes, not refused by the stream with a 503
// that its client would retry forever.
func TestHTTPIntakeLargeBodySplit(t *testing.T) {
	st := openStream(t) // the embedded server takes messages up to 8 MiB
	reg := selfmetric.New()
	b, err := NewBatcher(BatchConfig{Compression: "none"}, st, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h := &LineHandler{
		Formats: map[string]*HTTPFormat{"logs": {Intake: NewIntake("logs", "http", b, reg),
			NewDecoder: func() Decoder { return logLines{} }}},
		Default: "logs", Batcher: b,
	}
	const lines = 12000
	body := strings.Repeat(strings.Repeat("q", 999)+"\n", lines) // 12 MB
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/logs", strings.NewReader(body)))
	if rec.Code != http.StatusAccepted {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if got := reg.Counter("les_stream_published_items_total").Get(); got != lines {
		t.Fatalf("published %d items, want %d", got, lines)
	}
	if last := st.Store().Len(); last < 12 {
		t.Fatalf("%d records for 12 MB at max_batch_bytes 1 MiB", last)
	}
}
