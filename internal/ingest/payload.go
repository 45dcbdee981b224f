package ingest

import (
	"net/http"

	"github.com/les-streams/les/internal/model"
)

// PayloadHandler serves POSTs whose body is one payload (not lines):
// Decode appends items and per-item rejects, or returns the reason and
// error for a payload unusable as a whole (answered 400, or 413 for
// size). A 200 answer means the accepted items are handed on as Accept
// says (by default: durable in the stream).
type PayloadHandler struct {
	In *Intake
	// Token, when set, is required (see Authorized).
	Token string
	// MaxBody bounds the body, decompressed (default 16 MiB).
	MaxBody int64
	Batcher *Batcher
	// Gunzip decompresses a gzip body (Gunzip decides by its bytes).
	Gunzip bool
	// Decode decodes body (valid only during the call) into dst.
	Decode func(dst *model.Batch, r *http.Request, body []byte) (reason string, err error)
	Accept Accept
}

func (h *PayloadHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !postAuthorized(w, r, h.Token) {
		return
	}
	maxBody := h.MaxBody
	if maxBody <= 0 {
		maxBody = 16 << 20
	}
	read := ReadRawBody
	if h.Gunzip {
		read = ReadBody
	}
	body, reason, err := read(r, maxBody)
	var batch model.Batch
	if err == nil {
		reason, err = h.Decode(&batch, r, body)
	}
	if err != nil {
		h.In.Reject(reason)
		status := http.StatusBadRequest
		if reason == ReasonBodyTooLarge {
			status = http.StatusRequestEntityTooLarge
		}
		http.Error(w, reason+": "+err.Error(), status)
		return
	}
	if !h.Accept.accept(w, r, h.In, h.Batcher, &batch) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	WriteSummary(w, &batch)
}
