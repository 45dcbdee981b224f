package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/httpstream"
	"github.com/les-streams/les/internal/wire"
)

// RecordConfig configures a RecordHandler.
type RecordConfig struct {
	// Token, when set, is required as "Authorization: Bearer <token>"
	// (checked as Authorized does, like every intake endpoint).
	Token string
	// MaxBody bounds a record (default 16 MiB, agent.http.max_body).
	MaxBody int64
	// PublishTimeout bounds the wait for the stream (default 10s); then
	// the answer is 503.
	PublishTimeout time.Duration
	// MaxBatchBytes bounds the uncompressed body of the records the
	// handler re-encodes when it must split one (default 1 MiB,
	// agent.batch.max_batch_bytes).
	MaxBatchBytes int
}

// RecordHandler serves POST /v1/records: wire records forwarded by agents
// with stream.kind http (package httpstream; docs/wire-format.md, "HTTP
// forwarding"). It decodes each record completely, publishes it to its
// stream under the same origin and id, and answers 200 only after the
// stream acknowledged it. A record whose items belong to more than one
// of this stream's partitions (the agent runs with a different
// stream.partitions) or that is larger than the stream takes is split
// into records per partition with ids derived from the original
// (SplitID). It is safe for concurrent use.
type RecordHandler struct {
	cfg RecordConfig
	st  stream.Stream
	// scratch holds *recordScratch: a wire decoder, a batch and a body
	// buffer.
	scratch sync.Pool

	accepted  *metrics.Counter
	published *metrics.Counter
	items     *metrics.Counter
	split     *metrics.Counter
	rejected  *selfmetric.ReasonCounters
}

// Reasons a forwarded record is refused (label reason of
// les_ingest_records_rejected_total).
const (
	RecordReasonUnauthorized = "unauthorized"
	RecordReasonMethod       = "method"
	RecordReasonBadHeader    = "bad_header"
	RecordReasonBadRecord    = "bad_record"
	RecordReasonMismatch     = "header_mismatch"
	RecordReasonTooLarge     = "too_large"
	RecordReasonReadError    = "read_error"
	RecordReasonUnavailable  = "stream_unavailable"
)

// NewRecordHandler returns a handler publishing to st.
func NewRecordHandler(cfg RecordConfig, st stream.Stream, reg *selfmetric.Registry) *RecordHandler {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 16 << 20
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 10 * time.Second
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = 1 << 20
	}
	return &RecordHandler{cfg: cfg, st: st,
		accepted:  reg.Counter("les_ingest_records_accepted_total"),
		published: reg.Counter("les_ingest_records_published_total"),
		items:     reg.Counter("les_ingest_records_items_total"),
		split:     reg.Counter("les_ingest_records_split_total"),
		rejected:  reg.NewReasonCounters("les_ingest_records_rejected_total"),
	}
}

type recordScratch struct {
	dec   wire.Decoder
	batch model.Batch
	body  []byte
}

// refuse answers status with msg and counts reason.
func (h *RecordHandler) refuse(w http.ResponseWriter, status int, reason, msg string) {
	h.rejected.Inc(reason)
	http.Error(w, msg, status)
}

func (h *RecordHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		h.refuse(w, http.StatusMethodNotAllowed, RecordReasonMethod, "use POST")
		return
	}
	if !Authorized(r, h.cfg.Token) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="les"`)
		h.refuse(w, http.StatusUnauthorized, RecordReasonUnauthorized, "missing or wrong bearer token")
		return
	}
	origin := r.Header.Get(httpstream.HeaderOrigin)
	if !stream.ValidOrigin(origin) {
		h.refuse(w, http.StatusBadRequest, RecordReasonBadHeader, fmt.Sprintf("%s %q is not one of in, agg, rollup, derived, dlq", httpstream.HeaderOrigin, origin))
		return
	}
	sig, err := wire.ParseSignal(r.Header.Get(httpstream.HeaderSignal))
	if err != nil {
		h.refuse(w, http.StatusBadRequest, RecordReasonBadHeader, httpstream.HeaderSignal+": "+err.Error())
		return
	}
	id := r.Header.Get(httpstream.HeaderRecordID)
	if id == "" {
		h.refuse(w, http.StatusBadRequest, RecordReasonBadHeader, httpstream.HeaderRecordID+" is required")
		return
	}
	if p := r.Header.Get(httpstream.HeaderPartition); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 0 {
			h.refuse(w, http.StatusBadRequest, RecordReasonBadHeader, fmt.Sprintf("%s %q is not a partition number", httpstream.HeaderPartition, p))
			return
		}
	}
	limit := h.cfg.MaxBody
	if r.ContentLength > limit {
		h.refuse(w, http.StatusRequestEntityTooLarge, RecordReasonTooLarge, fmt.Sprintf("record of %d bytes is larger than %d (agent.http.max_body)", r.ContentLength, limit))
		return
	}
	sc, _ := h.scratch.Get().(*recordScratch)
	if sc == nil {
		sc = &recordScratch{}
	}
	defer h.scratch.Put(sc)
	if r.ContentLength > 0 && int64(cap(sc.body)) < r.ContentLength {
		sc.body = make([]byte, 0, r.ContentLength)
	}
	sc.body, err = readAllLimit(sc.body[:0], r.Body, limit)
	if err != nil {
		if errors.Is(err, errBodyTooLarge) {
			h.refuse(w, http.StatusRequestEntityTooLarge, RecordReasonTooLarge, fmt.Sprintf("record larger than %d bytes (agent.http.max_body)", limit))
			return
		}
		h.refuse(w, http.StatusBadRequest, RecordReasonReadError, "read body: "+err.Error())
		return
	}
	sc.batch.Reset()
	hdr, err := sc.dec.Decode(&sc.batch, sc.body)
	if err != nil {
		if errors.Is(err, wire.ErrTooLarge) {
			h.refuse(w, http.StatusRequestEntityTooLarge, RecordReasonTooLarge, "record body: "+err.Error())
			return
		}
		h.refuse(w, http.StatusBadRequest, RecordReasonBadRecord, "not a valid les wire record: "+err.Error())
		return
	}
	if hdr.Signal != sig || hdr.ID() != id {
		h.refuse(w, http.StatusBadRequest, RecordReasonMismatch, fmt.Sprintf("headers say %s %s, the record's header %s %s", sig, id, hdr.Signal, hdr.ID()))
		return
	}
	recs, err := h.place(sc, origin, &hdr)
	if err != nil {
		h.refuse(w, http.StatusRequestEntityTooLarge, RecordReasonTooLarge, err.Error())
		return
	}
	if len(recs) > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.PublishTimeout)
		err = h.st.Publish(ctx, recs...)
		cancel()
	}
	switch {
	case errors.Is(err, stream.ErrTooLarge):
		h.refuse(w, http.StatusRequestEntityTooLarge, RecordReasonTooLarge, err.Error())
		return
	case err != nil:
		w.Header().Set("Retry-After", "1")
		h.refuse(w, http.StatusServiceUnavailable, RecordReasonUnavailable, "stream unavailable: "+err.Error())
		return
	}
	h.accepted.Inc()
	h.published.Add(len(recs))
	h.items.Add(int(hdr.Count))
	if len(recs) != 1 || recs[0].ID != id {
		h.split.Inc()
	}
	w.Header().Set("Content-Type", "application/json")
	out, _ := json.Marshal(struct {
		Published int `json:"published"`
		Items     int `json:"items"`
	}{len(recs), int(hdr.Count)})
	_, _ = w.Write(append(out, '\n'))
}

// place returns the records to publish for the decoded record in sc: the
// record as it is when all its items belong to one partition of the
// stream and it fits; otherwise the parts of a split. Data of the
// returned records alias sc.
func (h *RecordHandler) place(sc *recordScratch, origin string, hdr *wire.Header) ([]stream.Record, error) {
	caps := h.st.Capabilities()
	n := max(caps.Partitions, 1)
	p, one := itemsPartition(&sc.batch, n)
	fits := caps.MaxRecordBytes <= 0 || int64(len(sc.body)) <= caps.MaxRecordBytes
	if one && fits {
		return []stream.Record{{Origin: origin, Signal: hdr.Signal, Partition: p, ID: hdr.ID(), Data: sc.body}}, nil
	}
	maxBytes := h.cfg.MaxBatchBytes
	if mr := caps.MaxRecordBytes; mr > 0 {
		maxBytes = min(maxBytes, int(mr/2))
	}
	parts := wire.Split(&sc.batch, origin, origin, maxBytes, n)
	if len(parts) > maxSplitParts {
		return nil, fmt.Errorf("record %s would split into %d records, more than %d", hdr.ID(), len(parts), maxSplitParts)
	}
	recs := make([]stream.Record, 0, len(parts))
	for i, part := range parts {
		producer, seq := SplitID(hdr.Producer, hdr.Seq, i)
		buf, err := part.Enc.Finish(nil, producer, seq, hdr.Compression)
		if err != nil {
			return nil, fmt.Errorf("re-encode record %s: %w", hdr.ID(), err)
		}
		ph, _ := wire.ParseHeader(buf)
		recs = append(recs, stream.Record{Origin: part.Origin, Signal: hdr.Signal, Partition: part.Partition, ID: ph.ID(), Data: buf})
	}
	return recs, nil
}

// maxSplitParts bounds the records one forwarded record may split into
// (SplitID's part index has 16 bits).
const maxSplitParts = 1 << 16

// splitSalt separates the producer ids of split parts from the producer
// they came from ("les-splt").
const splitSalt = 0x6c65732d73706c74

// SplitID is the batch id of part i of the record (producer, seq) that a
// RecordHandler split: producer mix(producer XOR "les-splt"), seq
// seq·65536 + i. It is a function of the original id only, so a record
// forwarded again (a retry, the agent's spool) is split into records of
// the same ids, which the stream de-duplicates where it can.
func SplitID(producer, seq uint64, i int) (uint64, uint64) {
	return wire.Mix(producer ^ splitSalt), seq<<16 | uint64(i)
}

// itemsPartition reports the partition of n all items of b belong to (ok)
// or that they span several; an empty batch is partition 0.
func itemsPartition(b *model.Batch, n int) (p int, ok bool) {
	if n <= 1 {
		return 0, true
	}
	p = -1
	same := func(q int) bool {
		if p < 0 {
			p = q
		}
		return p == q
	}
	for i := range b.Metrics {
		if !same(wire.MetricPartition(&b.Metrics[i], n)) {
			return 0, false
		}
	}
	for i := range b.Dists {
		if !same(wire.DistPartition(&b.Dists[i], n)) {
			return 0, false
		}
	}
	for i := range b.Logs {
		if !same(wire.LogPartition(&b.Logs[i], n)) {
			return 0, false
		}
	}
	for i := range b.Spans {
		if !same(wire.SpanPartition(&b.Spans[i], n)) {
			return 0, false
		}
	}
	return max(p, 0), true
}

var errBodyTooLarge = errors.New("body too large")

// readAllLimit appends r to dst, failing with errBodyTooLarge beyond limit
// bytes.
func readAllLimit(dst []byte, r io.Reader, limit int64) ([]byte, error) {
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if int64(len(dst)) > limit {
			return dst, errBodyTooLarge
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}
