package app

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/les-streams/les/internal/format/cwlogs"
	"github.com/les-streams/les/internal/format/emf"
	"github.com/les-streams/les/internal/format/lambda"
	"github.com/les-streams/les/internal/format/logline"
	"github.com/les-streams/les/internal/format/wavefront"
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
	mux.Handle("/cwlogs", &payloadHandler{in: ingest.NewIntake("cwlogs", "http", b, a.reg),
		token: cfg.Token, maxBody: cfg.MaxBody, batcher: b, decode: decodeCWLogs})
	th := &telemetryHandler{}
	mux.Handle("/telemetry", &payloadHandler{in: ingest.NewIntake("telemetry", "http", b, a.reg),
		token: cfg.Token, maxBody: cfg.MaxBody, batcher: b, gunzip: true, decode: th.decode})
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
	_, _ = io.WriteString(w, summary(&batch))
}

// payloadHandler serves POSTs whose body is one payload (not lines):
// decode appends items and per-item rejects, or returns the reason and
// error for a payload unusable as a whole (answered 400, or 413 for
// size). A 200 answer means every accepted item is durable in the stream.
type payloadHandler struct {
	in      *ingest.Intake
	token   string
	maxBody int64
	batcher *ingest.Batcher
	gunzip  bool
	decode  func(dst *model.Batch, r *http.Request, body []byte) (reason string, err error)
}

func (h *payloadHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
	maxBody := h.maxBody
	if maxBody <= 0 {
		maxBody = 16 << 20
	}
	body, reason, err := readPayload(r, maxBody, h.gunzip)
	var batch model.Batch
	if err == nil {
		reason, err = h.decode(&batch, r, body)
	}
	if err != nil {
		h.in.Reject(reason)
		status := http.StatusBadRequest
		if reason == ingest.ReasonBodyTooLarge {
			status = http.StatusRequestEntityTooLarge
		}
		http.Error(w, reason+": "+err.Error(), status)
		return
	}
	h.in.Account(&batch)
	if batch.Len() > 0 {
		if err := h.batcher.PublishNow(r.Context(), &batch); err != nil {
			http.Error(w, "stream unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, summary(&batch))
}

// summary is {"accepted":N,"rejected":M,"reasons":{...}}.
func summary(b *model.Batch) string {
	reasons := map[string]int{}
	for _, rj := range b.Rejects {
		reasons[rj.Reason]++
	}
	keys := make([]string, 0, len(reasons))
	for k := range reasons {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	sb.WriteString(`{"accepted":` + strconv.Itoa(b.Len()) + `,"rejected":` + strconv.Itoa(len(b.Rejects)) + `,"reasons":{`)
	for i, k := range keys {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.Quote(k) + ":" + strconv.Itoa(reasons[k]))
	}
	sb.WriteString("}}\n")
	return sb.String()
}

// readPayload reads a bounded body, gunzipping it when asked and it is gzip
// (ingest.Gunzip decides by its bytes).
func readPayload(r *http.Request, maxBody int64, gunzip bool) ([]byte, string, error) {
	if gunzip {
		return ingest.ReadBody(r, maxBody)
	}
	return ingest.ReadRawBody(r, maxBody)
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

// decodeWavefrontEvent decodes the JSON event of POST /api/v2/event, or
// Wavefront lines: wavefront-sdk-go in proxy mode posts its "@Event" lines
// there (on the proxy's port, which takes lines on any path).
func (a *App) decodeWavefrontEvent(dst *model.Batch, _ *http.Request, body []byte) (string, error) {
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && t[0] == '@' {
		d := wavefront.NewDecoder(wavefront.Options{Mode: wavefront.ModeMetrics, DefaultSource: a.cfg.Agent.DefaultSource})
		d.Decode(dst, body, time.Now().UnixNano())
		return "", nil
	}
	d := wavefront.NewDecoder(wavefront.Options{DefaultSource: a.cfg.Agent.DefaultSource})
	if err := d.DecodeEventJSON(dst, body, time.Now().UnixNano()); err != nil {
		return wavefront.ReasonInvalidEvent, err
	}
	return "", nil
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
