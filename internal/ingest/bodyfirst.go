package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/les-streams/les/internal/selfmetric"
)

// Reasons BodyFirst refuses a request for (label reason of
// les_ingest_http_refused_total).
const (
	// RefusedSlowBody: the body arrived slower than MinRate.
	RefusedSlowBody = "slow_body"
	// RefusedBusy: the bodies being read or served already hold Budget
	// bytes.
	RefusedBusy = "busy"
	// RefusedReadError: the client went away or sent a broken body.
	RefusedReadError = "read_error"
)

// BodyFirstConfig bounds how request bodies are read before their
// request takes an intake slot.
type BodyFirstConfig struct {
	// MaxBody is the largest body handlers take: at most MaxBody+1 bytes
	// are read, so that the handler still answers 413 to a larger one
	// (default 16 MiB).
	MaxBody int64
	// Budget bounds the bytes that all bodies being read or served hold
	// together; a request whose body would go beyond it is answered 503
	// with Retry-After (default 16 × MaxBody).
	Budget int64
	// MinRate is the slowest a body may arrive once Grace has passed, in
	// bytes per second: the read deadline is start + Grace +
	// bytes read / MinRate, so a client that keeps up is never cut off and
	// one dribbling a byte at a time is answered 408 after Grace
	// (default 4 KiB/s).
	MinRate int64
	// Grace is the time any body gets before MinRate applies (default 5s).
	Grace time.Duration
	// Timeout bounds the whole request as http.Server.ReadTimeout does (0:
	// no bound); it is the read deadline again once the body is read.
	Timeout time.Duration
	// Metrics, when set, counts refusals in les_ingest_http_refused_total
	// by reason.
	Metrics *selfmetric.Registry
}

// BodyFirst reads a request's body into memory under cfg's byte and rate
// bounds before calling next with r.Body replaced by what was read. Put in
// front of a concurrency limit, it keeps slow clients from holding a slot
// while they send: only requests whose whole body has arrived compete for
// slots.
func BodyFirst(next http.Handler, cfg BodyFirstConfig) http.Handler {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 16 << 20
	}
	if cfg.Budget <= 0 {
		cfg.Budget = 16 * cfg.MaxBody
	}
	if cfg.MinRate <= 0 {
		cfg.MinRate = 4 << 10
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 5 * time.Second
	}
	b := &bodyFirst{cfg: cfg, next: next}
	return b
}

type bodyFirst struct {
	cfg  BodyFirstConfig
	next http.Handler
	mu   sync.Mutex
	held int64 // bytes of the bodies read or being read
}

// take reserves n bytes of the budget.
func (b *bodyFirst) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held+n > b.cfg.Budget {
		return false
	}
	b.held += n
	return true
}

func (b *bodyFirst) give(n int64) {
	b.mu.Lock()
	b.held -= n
	b.mu.Unlock()
}

func (b *bodyFirst) refuse(w http.ResponseWriter, reason string, status int, msg string) {
	if b.cfg.Metrics != nil {
		b.cfg.Metrics.Counter("les_ingest_http_refused_total", "reason", reason).Inc()
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Connection", "close")
	http.Error(w, msg, status)
}

func (b *bodyFirst) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodPut || r.Body == nil || r.Body == http.NoBody {
		b.next.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	rc := http.NewResponseController(w)
	var final time.Time // the read deadline of the whole request
	if b.cfg.Timeout > 0 {
		final = start.Add(b.cfg.Timeout)
	}
	deadline := func(read int64) time.Time {
		d := start.Add(b.cfg.Grace + time.Duration(float64(read)/float64(b.cfg.MinRate)*float64(time.Second)))
		if !final.IsZero() && final.Before(d) {
			return final
		}
		return d
	}
	var held int64
	defer func() { b.give(held) }()
	limit := b.cfg.MaxBody + 1
	var buf bytes.Buffer
	if n := r.ContentLength; n > 0 && n <= limit {
		// Grown as the bytes arrive, never ahead of them: a client
		// announcing a large body and sending nothing holds nothing.
		buf.Grow(int(min(n, 64<<10)))
	}
	chunk := make([]byte, 32<<10)
	var read int64
	for read < limit {
		_ = rc.SetReadDeadline(deadline(read))
		n, err := r.Body.Read(chunk[:min(int64(len(chunk)), limit-read)])
		if n > 0 {
			if !b.take(int64(n)) {
				b.refuse(w, RefusedBusy, http.StatusServiceUnavailable,
					"intake busy: the request bodies being received hold "+strconv.FormatInt(b.cfg.Budget, 10)+" bytes; retry")
				return
			}
			held += int64(n)
			read += int64(n)
			buf.Write(chunk[:n])
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				b.refuse(w, RefusedSlowBody, http.StatusRequestTimeout,
					fmt.Sprintf("request body arrived slower than %d bytes/s (%d bytes in %s)",
						b.cfg.MinRate, read, time.Since(start).Round(time.Millisecond)))
				return
			}
			b.refuse(w, RefusedReadError, http.StatusBadRequest, "read body: "+err.Error())
			return
		}
	}
	// The handler may take as long as the request may (a publish); a read
	// deadline in the past would cancel its context through the server's
	// background read.
	_ = rc.SetReadDeadline(final)
	r.Body = io.NopCloser(bytes.NewReader(buf.Bytes()))
	b.next.ServeHTTP(w, r)
}
