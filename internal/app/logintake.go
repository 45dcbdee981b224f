package app

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/les-streams/les/internal/format/cwlogs"
	"github.com/les-streams/les/internal/format/emf"
	"github.com/les-streams/les/internal/format/lambda"
	"github.com/les-streams/les/internal/format/logline"
	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/model"
)

// Log intake: the `logs` and `emf` listener formats, and the HTTP
// endpoints /logs, /cwlogs and /telemetry. Logs travel on the stream as
// log records; the logmetric consumer derives metrics from them.

// Reasons for payloads refused as a whole by the HTTP log endpoints (they
// label les_ingest_rejected_total like the decoders' reasons).
const (
	reasonBadBase64   = "bad_base64"
	reasonBadJSON     = "invalid_json"
	reasonMessageType = "invalid_message_type"
	reasonReadError   = "read_error"
)

func logsDecoder(l ListenerConfig) ingest.Decoder {
	o := logline.Options{DefaultSource: l.Source}
	if l.MaxLine > 0 {
		o.MaxLineLen = l.MaxLine
	}
	return logline.NewDecoder(o)
}

// emfLineDecoder adapts emf.Decoder to ingest.Decoder: every line (TCP) or
// datagram (UDP) is one EMF document, as the CloudWatch agent reads them.
type emfLineDecoder struct{ d emf.Decoder }

func (e *emfLineDecoder) Decode(dst *model.Batch, payload []byte, _ int64) {
	_ = e.d.Decode(dst, payload) // the error is always nil; rejects are in dst
}

func emfDecoder(l ListenerConfig) ingest.Decoder {
	return &emfLineDecoder{d: emf.Decoder{DefaultSource: l.Source}}
}

// logHandlers registers /logs, /cwlogs and /telemetry on mux.
func (a *App) logHandlers(mux *http.ServeMux, b *ingest.Batcher) {
	cfg := a.cfg.Agent.HTTP
	mux.Handle("/logs", &logsHandler{
		formats: map[string]logsFormat{
			"logs": {ingest.NewIntake("logs", "http", b, a.reg), logsDecoder},
			"emf":  {ingest.NewIntake("emf", "http", b, a.reg), emfDecoder},
		},
		source: a.cfg.Agent.DefaultSource, token: cfg.Token, maxBody: cfg.MaxBody, batcher: b,
	})
	mux.Handle("/cwlogs", &ingest.PayloadHandler{In: ingest.NewIntake("cwlogs", "http", b, a.reg),
		Token: cfg.Token, MaxBody: cfg.MaxBody, Batcher: b, Decode: decodeCWLogs})
	th := &telemetryHandler{}
	mux.Handle("/telemetry", &ingest.PayloadHandler{In: ingest.NewIntake("telemetry", "http", b, a.reg),
		Token: cfg.Token, MaxBody: cfg.MaxBody, Batcher: b, Gunzip: true, Decode: th.decode})
}

// logsHandler serves POST /logs: newline-delimited log lines (f=logs, the
// default) or EMF documents (f=emf). ?source=NAME is the source of lines
// that name none (default agent.default_source), so a function posting
// plain text names itself. Answered 202 with the accept/reject summary once
// every accepted item is durable in the stream.
type logsHandler struct {
	formats map[string]logsFormat
	source  string
	token   string
	maxBody int64
	batcher *ingest.Batcher
}

type logsFormat struct {
	in         *ingest.Intake
	newDecoder func(ListenerConfig) ingest.Decoder
}

func (h *logsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	if !ingest.Authorized(r, h.token) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="les"`)
		http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
		return
	}
	q := r.URL.Query()
	name := cmp.Or(q.Get("f"), q.Get("format"), "logs")
	f, ok := h.formats[name]
	if !ok {
		http.Error(w, fmt.Sprintf("unknown format %q (supported: emf, logs)", name), http.StatusBadRequest)
		return
	}
	maxBody := h.maxBody
	if maxBody <= 0 {
		maxBody = 16 << 20
	}
	body, reason, err := ingest.ReadBody(r, maxBody)
	if err != nil {
		f.in.Reject(reason)
		status := http.StatusBadRequest
		if reason == ingest.ReasonBodyTooLarge {
			status = http.StatusRequestEntityTooLarge
		}
		http.Error(w, err.Error(), status)
		return
	}
	// Decoders are small; one per request carries the request's source.
	dec := f.newDecoder(ListenerConfig{Source: cmp.Or(q.Get("source"), h.source)})
	var batch model.Batch
	dec.Decode(&batch, body, time.Now().UnixNano())
	f.in.Account(&batch)
	if batch.Len() > 0 {
		if err := h.batcher.PublishNow(r.Context(), &batch); err != nil {
			http.Error(w, "stream unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	ingest.WriteSummary(w, &batch)
}

// decodeCWLogs decodes a CloudWatch Logs subscription payload: raw gzip,
// base64 of it, the Lambda {"awslogs":{"data":...}} envelope, or plain
// JSON. CONTROL_MESSAGE payloads append nothing and are answered 200.
func decodeCWLogs(dst *model.Batch, _ *http.Request, body []byte) (string, error) {
	var d cwlogs.Decoder
	_, err := d.Decode(dst, body)
	switch {
	case err == nil:
		return "", nil
	case errors.Is(err, cwlogs.ErrBase64):
		return reasonBadBase64, err
	case errors.Is(err, cwlogs.ErrGzip):
		return ingest.ReasonBadGzip, err
	case errors.Is(err, cwlogs.ErrTooLarge):
		return ingest.ReasonBodyTooLarge, err
	case errors.Is(err, cwlogs.ErrMessageType):
		return reasonMessageType, err
	default:
		return reasonBadJSON, err
	}
}

// telemetryHandler decodes Lambda Telemetry API batches: platform records
// become aws.lambda.* metrics, function and extension records logs.
// ?source=NAME names the function (default: the name announced by
// platform.initStart). One Extractor remembers that name across batches.
type telemetryHandler struct {
	mu  sync.Mutex
	ext lambda.Extractor
}

func (t *telemetryHandler) decode(dst *model.Batch, r *http.Request, body []byte) (string, error) {
	src := r.URL.Query().Get("source")
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.ext.FromTelemetry(dst, src, body); err != nil {
		return reasonBadJSON, err
	}
	if err := t.ext.LogsFromTelemetry(dst, src, body); err != nil {
		dst.Reset()
		return reasonBadJSON, err
	}
	if src == "" {
		src = t.ext.FunctionName()
	}
	for i := range dst.Logs {
		if dst.Logs[i].Source == "" {
			dst.Logs[i].Source = src
		}
	}
	return "", nil
}
