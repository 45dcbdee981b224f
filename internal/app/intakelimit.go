package app

import (
	"net/http"
	"time"

	"github.com/les-streams/les/internal/ingest"
)

// intakeWait is how long an intake request whose body has arrived waits
// for a slot before it is answered 503.
const intakeWait = 10 * time.Second

// intakeLimit bounds the intake endpoints: each request's body is read
// first (ingest.BodyFirst: at least 4 KiB/s after a 5 s grace, all bodies
// together within agent.http.max_concurrent × max_body bytes), and only
// then does it wait for one of agent.http.max_concurrent slots. A slow
// client holds a connection and the bytes it sent, never a slot.
func (a *App) intakeLimit(h http.Handler) http.Handler {
	hc := a.cfg.Agent.HTTP
	maxBody := hc.MaxBody
	if maxBody <= 0 {
		maxBody = 16 << 20
	}
	return ingest.BodyFirst(limitConcurrency(h, hc.MaxConcurrent, intakeWait), ingest.BodyFirstConfig{
		MaxBody: maxBody, Budget: int64(max(hc.MaxConcurrent, 1)) * maxBody,
		Timeout: hc.ReadTimeout, Metrics: a.reg,
	})
}
