package app

import (
	"net/http"

	"github.com/les-streams/les/internal/ingest"
)

// intakeLimit bounds the intake endpoints (ingest.LimitIntake): each
// request's body is read first (at least 4 KiB/s after a 5 s grace, all
// bodies together within agent.http.max_concurrent × max_body bytes), and
// only then does it wait for one of agent.http.max_concurrent slots. A
// slow client holds a connection and the bytes it sent, never a slot.
func (a *App) intakeLimit(h http.Handler) http.Handler {
	hc := a.cfg.Agent.HTTP
	return ingest.LimitIntake(h, ingest.IntakeLimits{MaxBody: hc.MaxBody, MaxConcurrent: hc.MaxConcurrent,
		ReadTimeout: hc.ReadTimeout, Metrics: a.reg})
}
