package ingest

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/les-streams/les/internal/selfmetric"
)

// ReasonDiskFull is the reason items are refused or dropped for while
// nothing can be stored (label of les_ingest_rejected_total and
// les_ingest_http_refused_total).
const ReasonDiskFull = "disk_full"

// StoreGate tells intake whether what it accepts can be stored: while
// check reports a reason (the stream refuses writes for lack of storage
// and the spool cannot take more), HTTP intake answers 503 with the reason
// and Retry-After, and TCP and UDP drop what they read, counted with
// reason disk_full. Intake opens again by itself once check reports "".
// A nil *StoreGate never refuses. It is safe for concurrent use.
type StoreGate struct {
	check func() string
	every int64 // nanoseconds between two checks for Refusal
	next  atomic.Int64
	last  atomic.Pointer[string]
}

// NewStoreGate returns a gate asking check (which must be safe for
// concurrent use and cheap: a statfs) at most once per every for Refusal,
// and on each call of Check.
func NewStoreGate(check func() string, every time.Duration) *StoreGate {
	g := &StoreGate{check: check, every: int64(every)}
	empty := ""
	g.last.Store(&empty)
	return g
}

// Check asks check now and returns its reason ("" when data can be stored).
func (g *StoreGate) Check() string {
	if g == nil {
		return ""
	}
	r := g.check()
	g.last.Store(&r)
	g.next.Store(time.Now().UnixNano() + g.every)
	return r
}

// Refusal is Check at most once per every; in between it returns the last
// answer (for the per-datagram paths).
func (g *StoreGate) Refusal() string {
	if g == nil {
		return ""
	}
	now := time.Now().UnixNano()
	if n := g.next.Load(); now >= n && g.next.CompareAndSwap(n, now+g.every) {
		r := g.check()
		g.last.Store(&r)
		return r
	}
	return *g.last.Load()
}

// RefuseWhenFull answers 503 with the reason and Retry-After (counted in
// les_ingest_http_refused_total{reason="disk_full"}) instead of calling next
// while g says nothing can be stored.
func RefuseWhenFull(next http.Handler, g *StoreGate, reg *selfmetric.Registry) http.Handler {
	if g == nil {
		return next
	}
	refused := reg.Counter("les_ingest_http_refused_total", "reason", ReasonDiskFull)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if why := g.Check(); why != "" {
			refused.Inc()
			w.Header().Set("Retry-After", "10")
			w.Header().Set("Connection", "close")
			http.Error(w, "les cannot store data now, retry later: "+why, http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	})
}
