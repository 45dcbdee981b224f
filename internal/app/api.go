package app

import (
	"net/http"
	"time"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/ui"
)

// apiServer holds the read-side endpoints of the HTTP API and the web UI
// (docs/api.md). Nothing here runs while nobody calls it, except the
// history reader (which /query needs) when the rollup runs.
type apiServer struct {
	query *queryAPI // nil without a rollup in this process
	tail  *tailAPI
}

// mountAPI registers /query, /api/v1/* and the UI on mux. hist is nil when
// this process runs no rollup; then /query and the history endpoints answer
// 404 with the reason.
func (a *App) mountAPI(mux *http.ServeMux, st stream.Stream, hist *historyStore, errLogs *errorLogs) *apiServer {
	token := a.cfg.Agent.HTTP.Token
	s := &apiServer{tail: newTailAPI(st, a.reg)}
	if hist != nil {
		s.query = &queryAPI{hist: hist, percentiles: hist.percentiles, now: time.Now, maxPoints: a.cfg.UI.History.MaxQueryPoints}
		mux.Handle("/query", requireToken(token, http.HandlerFunc(s.query.serveQuery)))
		mux.Handle("/api/v1/names", requireToken(token, http.HandlerFunc(s.query.serveNames)))
		mux.Handle("/api/v1/series", requireToken(token, http.HandlerFunc(s.query.serveSeries)))
	} else {
		noRollup := func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "this les runs no rollup (rollup.disabled, or les agent): no rolled-up history to query", http.StatusNotFound)
		}
		for _, p := range []string{"/query", "/api/v1/names", "/api/v1/series"} {
			mux.Handle(p, requireToken(token, http.HandlerFunc(noRollup)))
		}
	}
	if errLogs != nil {
		mux.Handle("/api/v1/errors", requireToken(token, http.HandlerFunc(errLogs.serveErrors)))
	} else {
		mux.Handle("/api/v1/errors", requireToken(token, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "this les keeps no error logs (les agent, or ui.error_logs.disabled)", http.StatusNotFound)
		})))
	}
	mux.Handle("/api/v1/rejected", requireToken(token, http.HandlerFunc(a.serveRejected))) // rejected.go
	if a.selfHist != nil {
		mux.Handle("/api/v1/pipeline", requireToken(token, http.HandlerFunc(a.selfHist.servePipeline))) // selfhistory.go
	}
	mux.Handle("/api/v1/tail", requireToken(token, s.tail))
	mux.Handle("/api/v1/auth", requireToken(token, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]bool{"ok": true})
	})))
	// The UI's files hold no data: served without the token, which the
	// UI then asks for and sends with every API call.
	uiHandler := ui.Handler()
	mux.Handle("GET /{$}", uiHandler)
	mux.Handle("GET /ui/", uiHandler)
	return s
}

// shutdown ends open live tails so the HTTP server can stop.
func (s *apiServer) shutdown() { s.tail.closeAll() }
