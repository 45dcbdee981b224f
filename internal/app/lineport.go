package app

import (
	"net/http"
	"sync/atomic"

	"github.com/les-streams/les/internal/ingest"
)

// Port unification (issue 11 item 4): the Wavefront proxy serves raw lines
// and HTTP on the same push and trace ports, and wavefront-sdk-go in proxy
// mode posts HTTP there (`/report?f=wavefront|histogram|trace|spanLogs`,
// `/api/v2/event`). So les' tcp listeners of these formats also answer
// HTTP (ingest/unify.go), with the handlers, token, limits and timeouts of
// the HTTP intake, for the formats wfhttp.Unified names.

// lateHandler serves the handler set by Run once the HTTP intake is built
// (the line listeners are bound, and may run, before it); until then it
// answers 503 with Retry-After, which the SDK retries.
type lateHandler struct{ h atomic.Value }

func (l *lateHandler) set(h http.Handler) { l.h.Store(&h) }

func (l *lateHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, _ := l.h.Load().(*http.Handler)
	if h == nil {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	}
	(*h).ServeHTTP(w, r)
}

// linePortServer is the HTTP server of a unified line listener, with the
// HTTP intake's slow-client protections.
func (a *App) linePortServer() *http.Server {
	return ingest.LinePortServer(&a.linePort, a.cfg.Agent.HTTP.ReadTimeout, a.log)
}
