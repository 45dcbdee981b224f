package ingest

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/les-streams/les/internal/selfmetric"
)

// What a unified Wavefront line port (TCPConfig.HTTP, unify.go) serves over
// HTTP, shared by les up's line ports (internal/app/lineport.go) and the
// Lambda extension's (internal/lambda/extension): the routing, the limits
// on bodies and slow clients, and the server's timeouts. ADR 0012.

// RefusedUnknownPath is the reason a unified line port refuses a path it
// does not serve (label reason of les_ingest_http_refused_total).
const RefusedUnknownPath = "unknown_path"

// IntakeWait is how long an intake request whose body has arrived waits
// for a slot before it is answered 503.
const IntakeWait = 10 * time.Second

// IntakeLimits bounds HTTP intake requests (LimitIntake).
type IntakeLimits struct {
	// MaxBody is the largest body taken (default 16 MiB).
	MaxBody int64
	// MaxConcurrent requests are served at once (at least 1).
	MaxConcurrent int
	// ReadTimeout bounds a whole request (0: none).
	ReadTimeout time.Duration
	// Metrics counts refusals in les_ingest_http_refused_total.
	Metrics *selfmetric.Registry
}

// LimitIntake bounds intake requests: each request's body is read first
// (BodyFirst: at least 4 KiB/s after a 5 s grace, all bodies together
// within MaxConcurrent × MaxBody bytes), and only then does it wait, up to
// IntakeWait, for one of MaxConcurrent slots (LimitConcurrency). A slow
// client holds a connection and the bytes it sent, never a slot.
func LimitIntake(h http.Handler, l IntakeLimits) http.Handler {
	if l.MaxBody <= 0 {
		l.MaxBody = 16 << 20
	}
	n := max(l.MaxConcurrent, 1)
	return BodyFirst(LimitConcurrency(h, n, IntakeWait), BodyFirstConfig{
		MaxBody: l.MaxBody, Budget: int64(n) * l.MaxBody, Timeout: l.ReadTimeout, Metrics: l.Metrics,
	})
}

// LimitConcurrency serves at most n requests through h at once; a request
// waits up to wait for a slot, then is answered 503 with Retry-After.
func LimitConcurrency(h http.Handler, n int, wait time.Duration) http.Handler {
	slots := make(chan struct{}, n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
		default:
			t := time.NewTimer(wait)
			defer t.Stop()
			select {
			case slots <- struct{}{}:
			case <-t.C:
				w.Header().Set("Retry-After", "1")
				http.Error(w, "too many concurrent requests", http.StatusServiceUnavailable)
				return
			case <-r.Context().Done():
				return
			}
		}
		defer func() { <-slots }()
		h.ServeHTTP(w, r)
	})
}

// LinePortHandler is what a unified line port serves over HTTP: the
// Wavefront endpoints /report and /api/v2/event through intake (already
// limited), and, when health is not nil, /healthz, /livez and /readyz
// through health. Any other path is answered 404 and counted in
// les_ingest_http_refused_total{reason="unknown_path"} (reg may be nil).
func LinePortHandler(intake, health http.Handler, reg *selfmetric.Registry) http.Handler {
	var unknown interface{ Inc() }
	if reg != nil {
		unknown = reg.Counter("les_ingest_http_refused_total", "reason", RefusedUnknownPath)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/report", "/api/v2/event":
			intake.ServeHTTP(w, r)
			return
		case "/healthz", "/livez", "/readyz":
			if health != nil {
				health.ServeHTTP(w, r)
				return
			}
		}
		if unknown != nil {
			unknown.Inc()
		}
		http.Error(w, "this Wavefront line port serves /report and /api/v2/event over HTTP (the les API and UI are not on it)", http.StatusNotFound)
	})
}

// LinePortServer returns a new HTTP server for one unified line listener
// (TCPConfig.HTTP takes one server per listener), serving h with the HTTP
// intake's slow-client timeouts: 10 s for the request header, readTimeout
// for the whole request, 2 min idle. Its error log goes to log at debug
// level.
func LinePortServer(h http.Handler, readTimeout time.Duration, log *slog.Logger) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: readTimeout, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
}
