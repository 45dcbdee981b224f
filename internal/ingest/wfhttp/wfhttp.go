// Package wfhttp serves the Wavefront HTTP endpoints, POST
// /report?f=wavefront|graphite_v2|histogram|trace|spanLogs (lines, gzip
// or plain) and POST /api/v2/event (a JSON event, or "@Event" lines), for
// les' HTTP intake and unified line ports (internal/app) and the Lambda
// extension's unified line ports (internal/lambda/extension): one table,
// so the two cannot drift. ADR 0012.
package wfhttp

import (
	"net/http"
	"time"

	"github.com/les-streams/les/internal/format/wavefront"
	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
)

// Unified reports whether the tcp listeners of a listener format also
// serve these endpoints over HTTP (ingest.TCPConfig.HTTP): wavefront and
// trace, the ports wavefront-sdk-go in proxy mode posts to (2878 and its
// traces port).
func Unified(format string) bool { return format == "wavefront" || format == "trace" }

// Config is what the endpoints share.
type Config struct {
	// Token, when set, is required (ingest.Authorized).
	Token string
	// MaxBody bounds a body, decompressed (default 16 MiB).
	MaxBody int64
	// DefaultSource is the source of items that name none.
	DefaultSource string
	// Accept is what a 2xx answer promises (ingest.Accept).
	Accept ingest.Accept
}

// Handle registers /report and /api/v2/event on mux. Their intakes count
// as transport http: formats wavefront (also for graphite_v2), histogram,
// trace, spanLogs and wavefront_event.
func Handle(mux *http.ServeMux, c Config, b *ingest.Batcher, reg *selfmetric.Registry) {
	mux.Handle("/report", Report(c, b, reg))
	mux.Handle("/api/v2/event", Event(c, b, reg))
}

// Report is the handler of /report; f= (or format=) picks the format,
// wavefront when absent. Answered 202 with the accept/reject summary.
func Report(c Config, b *ingest.Batcher, reg *selfmetric.Registry) *ingest.LineHandler {
	wf := func(mode wavefront.Mode, f string) *ingest.HTTPFormat {
		return &ingest.HTTPFormat{
			Intake: ingest.NewIntake(f, "http", b, reg),
			NewDecoder: func() ingest.Decoder {
				return wavefront.NewDecoder(wavefront.Options{Mode: mode, Window: model.WindowNone, DefaultSource: c.DefaultSource})
			},
		}
	}
	return &ingest.LineHandler{
		Formats: map[string]*ingest.HTTPFormat{
			"wavefront":   wf(wavefront.ModeMetrics, "wavefront"),
			"graphite_v2": wf(wavefront.ModeMetrics, "wavefront"),
			"histogram":   wf(wavefront.ModeHistogram, "histogram"),
			"trace":       wf(wavefront.ModeTrace, "trace"),
			// Span logs (JSON lines) become log records with
			// trace_id/span_id (wavefront/logs.go).
			"spanLogs": wf(wavefront.ModeTrace, "spanLogs"),
		},
		Default: "wavefront", Token: c.Token, MaxBody: c.MaxBody, Batcher: b, Accept: c.Accept,
	}
}

// Event is the handler of /api/v2/event: Wavefront events (the JSON of a
// REST API client such as wavefront-sdk-go's direct sender, or the
// "@Event" lines of its proxy mode) become log records. A JSON body that
// is no event is answered 400 invalid_event; success is 200 with the
// summary.
func Event(c Config, b *ingest.Batcher, reg *selfmetric.Registry) *ingest.PayloadHandler {
	return &ingest.PayloadHandler{In: ingest.NewIntake("wavefront_event", "http", b, reg),
		Token: c.Token, MaxBody: c.MaxBody, Batcher: b, Gunzip: true, Accept: c.Accept,
		Decode: func(dst *model.Batch, _ *http.Request, body []byte) (string, error) {
			d := wavefront.NewDecoder(wavefront.Options{DefaultSource: c.DefaultSource})
			if err := d.DecodeEvent(dst, body, time.Now().UnixNano()); err != nil {
				return wavefront.ReasonInvalidEvent, err
			}
			return "", nil
		}}
}
