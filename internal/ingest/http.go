package ingest

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/les-streams/les/internal/model"
)

// HTTPFormat is one value of the `f=` parameter of a line intake endpoint.
type HTTPFormat struct {
	Intake     *Intake
	NewDecoder func() Decoder
	pool       sync.Pool
}

// LineHandler serves POSTs of newline-delimited lines (the Wavefront
// direct-ingestion API `/report?f=...`, and log intake). A 2xx answer means
// every accepted item is durable in the stream.
type LineHandler struct {
	// Formats maps the f= (or format=) value to its decoder; Default is used
	// when the parameter is absent.
	Formats map[string]*HTTPFormat
	Default string
	// Token, when set, is required as "Authorization: Bearer <token>" (or
	// X-AUTH-TOKEN, or ?t= / ?token= as the Wavefront proxy accepts).
	Token string
	// MaxBody bounds the (decompressed) body (default 16 MiB).
	MaxBody int64
	Batcher *Batcher
	// Status is the success status (the Wavefront API answers 202).
	Status int
	// Accept is what the success answer promises (default
	// AcceptPublished).
	Accept Accept
}

// Accept is what the 2xx answer of an HTTP intake handler (LineHandler,
// PayloadHandler) promises about the items it accepted.
type Accept uint8

const (
	// AcceptPublished: they are in the stream (Batcher.PublishNow) before
	// the answer; while the stream does not take them, the answer is 503
	// with Retry-After. les up and les agent.
	AcceptPublished Accept = iota
	// AcceptQueued: they are in the batcher (Intake.Deliver), as raw lines
	// are once read, and the answer never waits for the stream: the Lambda
	// extension, whose batcher publishes or spools everything before the
	// sandbox freezes (ADR 0005). The intake's Gate is not asked: put
	// RefuseWhenFull in front when there is one.
	AcceptQueued
)

// accept delivers or publishes batch as a says; when it cannot, it answers
// 503 itself and returns false.
func (a Accept) accept(w http.ResponseWriter, r *http.Request, in *Intake, b *Batcher, batch *model.Batch) bool {
	if a == AcceptQueued {
		in.Deliver(batch)
		return true
	}
	in.Account(batch)
	if batch.Len() > 0 {
		if err := b.PublishNow(r.Context(), batch); err != nil {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "stream unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return false
		}
	}
	return true
}

// Authorized reports whether r carries the token (always true without one).
func Authorized(r *http.Request, token string) bool {
	if token == "" {
		return true
	}
	got := r.Header.Get("X-AUTH-TOKEN")
	if a := r.Header.Get("Authorization"); a != "" {
		got = strings.TrimPrefix(a, "Bearer ")
	}
	if got == "" {
		got = r.URL.Query().Get("t")
	}
	if got == "" {
		got = r.URL.Query().Get("token")
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// postAuthorized answers 405 to anything but a POST and 401 to a request
// without token (none needed when token is empty), and reports whether r
// may go on.
func postAuthorized(w http.ResponseWriter, r *http.Request, token string) bool {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return false
	}
	if !Authorized(r, token) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="les"`)
		http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
		return false
	}
	return true
}

func (h *LineHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !postAuthorized(w, r, h.Token) {
		return
	}
	q := r.URL.Query()
	name := q.Get("f")
	if name == "" {
		name = q.Get("format")
	}
	if name == "" {
		name = h.Default
	}
	f := h.Formats[name]
	if f == nil {
		known := make([]string, 0, len(h.Formats))
		for k := range h.Formats {
			known = append(known, k)
		}
		http.Error(w, fmt.Sprintf("unknown format %q (supported: %s)", name, strings.Join(known, ", ")), http.StatusBadRequest)
		return
	}
	maxBody := h.MaxBody
	if maxBody <= 0 {
		maxBody = 16 << 20
	}
	body, reason, err := ReadBody(r, maxBody)
	if err != nil {
		f.Intake.Reject(reason)
		status := http.StatusBadRequest
		if reason == ReasonBodyTooLarge {
			status = http.StatusRequestEntityTooLarge
		}
		http.Error(w, err.Error(), status)
		return
	}
	dec, _ := f.pool.Get().(Decoder)
	if dec == nil {
		dec = f.NewDecoder()
	}
	defer f.pool.Put(dec)
	var batch model.Batch
	dec.Decode(&batch, body, time.Now().UnixNano())
	if !h.Accept.accept(w, r, f.Intake, h.Batcher, &batch) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	status := h.Status
	if status == 0 {
		status = http.StatusAccepted
	}
	w.WriteHeader(status)
	WriteSummary(w, &batch)
}

// WriteSummary writes the answer of an intake request,
// {"accepted":N,"rejected":M,"reasons":{...}}, the reasons sorted.
func WriteSummary(w io.Writer, b *model.Batch) {
	reasons := map[string]int{}
	for _, rj := range b.Rejects {
		reasons[rj.Reason]++
	}
	var sb strings.Builder
	sb.WriteString(`{"accepted":` + strconv.Itoa(b.Len()) + `,"rejected":` + strconv.Itoa(len(b.Rejects)) + `,"reasons":{`)
	for i, k := range slices.Sorted(maps.Keys(reasons)) {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.Quote(k) + ":" + strconv.Itoa(reasons[k]))
	}
	sb.WriteString("}}\n")
	_, _ = io.WriteString(w, sb.String())
}

// ReadBody reads the request body, bounded by maxBody, and gunzips it
// when it is gzip (see Gunzip).
func ReadBody(r *http.Request, maxBody int64) ([]byte, string, error) {
	raw, reason, err := ReadRawBody(r, maxBody)
	if err != nil {
		return nil, reason, err
	}
	return Gunzip(raw, maxBody)
}

// ReadRawBody reads the request body as sent, bounded by maxBody.
func ReadRawBody(r *http.Request, maxBody int64) ([]byte, string, error) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, "read_error", fmt.Errorf("read body: %w", err)
	}
	if int64(len(raw)) > maxBody {
		return nil, ReasonBodyTooLarge, fmt.Errorf("body larger than %d bytes", maxBody)
	}
	return raw, "", nil
}

// Gunzip returns body decompressed, bounded by maxBody, when it starts
// with the gzip magic bytes (1f 8b), else body itself. The bytes decide,
// not Content-Encoding, as the Wavefront proxy and servers do:
// wavefront-sdk-go's direct sender posts plain JSON events with
// "Content-Encoding: gzip", and no text or JSON payload starts with 1f 8b.
func Gunzip(body []byte, maxBody int64) ([]byte, string, error) {
	if len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b {
		return body, "", nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, ReasonBadGzip, fmt.Errorf("body is not valid gzip: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, maxBody+1))
	if err != nil {
		return nil, ReasonBadGzip, fmt.Errorf("body is not valid gzip: %w", err)
	}
	if int64(len(out)) > maxBody {
		return nil, ReasonBodyTooLarge, errors.New("decompressed body too large")
	}
	return out, "", nil
}
