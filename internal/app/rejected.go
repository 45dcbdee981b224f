package app

import (
	"net/http"
	"time"

	"github.com/les-streams/les/internal/selfmetric"
)

type rejectedJSON struct {
	Time      time.Time `json:"time"`
	Format    string    `json:"format"`
	Transport string    `json:"transport"`
	Reason    string    `json:"reason"`
	Input     string    `json:"input"`
	Size      int       `json:"size"`
	Truncated bool      `json:"truncated,omitempty"`
}

// serveRejected answers GET /api/v1/rejected: the last rejected inputs of
// each intake format of this process, newest first, escaped (docs/api.md).
func (a *App) serveRejected(w http.ResponseWriter, r *http.Request) {
	recent, totals := a.reg.Rejects().Recent()
	out := struct {
		Rejected  []rejectedJSON    `json:"rejected"`
		Totals    map[string]uint64 `json:"totals"`
		PerFormat int               `json:"per_format"`
		MaxBytes  int               `json:"max_bytes"`
	}{Rejected: make([]rejectedJSON, 0, len(recent)), Totals: totals, PerFormat: selfmetric.RejectsPerFormat, MaxBytes: selfmetric.RejectMaxBytes}
	for _, x := range recent {
		out.Rejected = append(out.Rejected, rejectedJSON{Time: x.Time.UTC(), Format: x.Format, Transport: x.Transport, Reason: x.Reason,
			Input: x.Input, Size: x.Size, Truncated: x.Truncated})
	}
	writeJSON(w, out)
}
