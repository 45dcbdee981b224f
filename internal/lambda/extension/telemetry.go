package extension

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/les-streams/les/internal/format/jsonscan"
	"github.com/les-streams/les/internal/format/lambda"
	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/model"
)

// Telemetry API subscription of the extension: every record type, schema
// 2025-01-29 (required on Managed Instances, backward compatible), and
// the smallest buffering Lambda allows, so platform.runtimeDone arrives
// soon after the runtime is done.
var telemetryBuffering = Buffering{MaxItems: 1000, MaxBytes: 256 << 10, TimeoutMs: 25}

const telemetrySchema = "2025-01-29"

// maxTelemetryBody bounds one delivery: Lambda's batches can reach
// 2 × maxBytes plus envelopes (reference: Telemetry API buffering).
const maxTelemetryBody = 4 << 20

// Reasons for telemetry deliveries refused as a whole (counted in
// les_ingest_rejected_total{format="telemetry"}).
const (
	reasonBadJSON  = "invalid_json"
	reasonReadBody = "read_error"
)

// telemetryHandler receives Telemetry API batches. It answers 200 as soon
// as the body is read (Lambda retries otherwise, and a batch les cannot
// use would not improve), then turns platform records into aws.lambda.*
// metrics and function/extension records into logs (internal/format/lambda),
// and tells the tracker about runtimeDone and report records.
type telemetryHandler struct {
	in         *ingest.Intake
	deliveries interface{ Inc() } // les_lambda_telemetry_deliveries_total
	source     string
	tr         *tracker

	mu  sync.Mutex // ext
	ext lambda.Extractor
}

func (h *telemetryHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		w.Header().Set("Allow", "POST")
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxTelemetryBody+1))
	defer h.deliveries.Inc()
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "OK")
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	switch {
	case err != nil:
		h.in.Reject(reasonReadBody)
		return
	case len(body) > maxTelemetryBody:
		h.in.Reject(ingest.ReasonBodyTooLarge)
		return
	}
	h.decode(body)
}

// decode handles one delivery (a JSON array of events, or one event).
func (h *telemetryHandler) decode(body []byte) {
	var b model.Batch
	h.mu.Lock()
	err := h.ext.FromTelemetry(&b, h.source, body)
	if err == nil {
		err = h.ext.LogsFromTelemetry(&b, h.source, body)
	}
	src := h.source
	if src == "" {
		src = h.ext.FunctionName()
	}
	h.mu.Unlock()
	if errors.Is(err, lambda.ErrPayload) || err != nil {
		h.in.Reject(reasonBadJSON)
		return
	}
	for i := range b.Logs {
		if b.Logs[i].Source == "" {
			b.Logs[i].Source = src
		}
	}
	h.in.Deliver(&b)
	if h.tr != nil {
		h.tr.scan(body)
	}
}

// tracker follows the lifecycle records of the Telemetry API: which
// requests' runtime is done and which have their platform.report.
type tracker struct {
	mu       sync.Mutex
	done     map[string]string // requestId → runtimeDone status
	reported map[string]bool
	started  map[string]bool
	order    []string // request ids in arrival order, to bound the maps
	changed  chan struct{}
	// lastStart is the request id of the last platform.start (Managed
	// Instances have no INVOKE events).
	lastStart string
}

func newTracker() *tracker {
	return &tracker{done: map[string]string{}, reported: map[string]bool{}, started: map[string]bool{}, changed: make(chan struct{})}
}

const trackedRequests = 256

// scan notes platform.start, platform.runtimeDone and platform.report
// records of a delivery; anything else, and anything malformed, is
// ignored here (the extractor counts it).
func (t *tracker) scan(body []byte) {
	v, _, ok := jsonscan.Value(body, 0)
	if !ok {
		return
	}
	each := func(ev []byte) {
		var typ string
		var rec []byte
		it := jsonscan.Members(ev)
		for it.Next() {
			switch {
			case it.KeyIs("type"):
				typ, _ = jsonscan.Str(it.Val)
			case it.KeyIs("record"):
				rec = it.Val
			}
		}
		if typ != "platform.start" && typ != "platform.runtimeDone" && typ != "platform.report" || jsonscan.KindOf(rec) != jsonscan.Object {
			return
		}
		var id, status string
		it = jsonscan.Members(rec)
		for it.Next() {
			switch {
			case it.KeyIs("requestId"):
				id, _ = jsonscan.Str(it.Val)
			case it.KeyIs("status"):
				status, _ = jsonscan.Str(it.Val)
			}
		}
		if id != "" {
			t.note(typ, strings.Clone(id), strings.Clone(status))
		}
	}
	switch jsonscan.KindOf(v) {
	case jsonscan.Array:
		it := jsonscan.Elems(v)
		for it.Next() {
			if jsonscan.KindOf(it.Val) == jsonscan.Object {
				each(it.Val)
			}
		}
	case jsonscan.Object:
		each(v)
	}
}

func (t *tracker) note(typ, id, status string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, known := t.done[id]
	if !known && !t.reported[id] && !t.started[id] {
		t.order = append(t.order, id)
		if len(t.order) > trackedRequests {
			old := t.order[0]
			t.order = t.order[1:]
			delete(t.done, old)
			delete(t.reported, old)
			delete(t.started, old)
		}
	}
	switch typ {
	case "platform.start":
		t.lastStart = id
		t.started[id] = true
	case "platform.runtimeDone":
		t.done[id] = status
	case "platform.report":
		t.reported[id] = true
		if _, ok := t.done[id]; !ok {
			t.done[id] = status // a report implies the runtime is done
		}
	}
	close(t.changed)
	t.changed = make(chan struct{})
}

// waitRuntimeDone waits for platform.runtimeDone (or the report) of id.
func (t *tracker) waitRuntimeDone(ctx context.Context, id string) (status string, err error) {
	for {
		t.mu.Lock()
		s, ok := t.done[id]
		ch := t.changed
		t.mu.Unlock()
		if ok {
			return s, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// waitStarted waits for the platform.start of id (or any later record).
func (t *tracker) waitStarted(ctx context.Context, id string) bool {
	for {
		t.mu.Lock()
		_, done := t.done[id]
		ok := t.started[id] || done || t.reported[id]
		ch := t.changed
		t.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// waitReported waits for the platform.report of id.
func (t *tracker) waitReported(ctx context.Context, id string) bool {
	for {
		t.mu.Lock()
		ok := t.reported[id]
		ch := t.changed
		t.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

func (t *tracker) lastStarted() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastStart
}
