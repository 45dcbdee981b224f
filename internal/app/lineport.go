package app

import (
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"
)

// Port unification (issue 11 item 4): the Wavefront proxy serves raw lines
// and HTTP on the same push and trace ports, and wavefront-sdk-go in proxy
// mode posts HTTP there (`/report?f=wavefront|histogram|trace|spanLogs`,
// `/api/v2/event`). So les' tcp listeners of these formats also answer
// HTTP (ingest/unify.go), with the handlers, token, limits and timeouts of
// the HTTP intake.

// unifiedFormats are the listener formats whose tcp port also serves HTTP:
// the ports wavefront-sdk-go posts to (2878 and the traces port).
var unifiedFormats = map[string]bool{"wavefront": true, "trace": true}

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

// linePortHandler is what a unified line port serves over HTTP: the
// Wavefront intake endpoints through the HTTP intake's limits, and the
// health endpoints; the API and UI stay on agent.http.listen only.
func linePortHandler(limited, mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/report", "/api/v2/event":
			limited.ServeHTTP(w, r)
		case "/healthz", "/livez", "/readyz":
			mux.ServeHTTP(w, r)
		default:
			http.Error(w, "this Wavefront line port serves /report and /api/v2/event over HTTP; the les API is on agent.http.listen", http.StatusNotFound)
		}
	})
}

// linePortServer is the HTTP server of a unified line listener, with the
// HTTP intake's slow-client protections.
func (a *App) linePortServer() *http.Server {
	return &http.Server{Handler: &a.linePort, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: a.cfg.Agent.HTTP.ReadTimeout, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
}
