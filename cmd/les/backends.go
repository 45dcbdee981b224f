package main

import (
	"context"

	"github.com/les-streams/les/internal/app"
	embedsrv "github.com/les-streams/les/internal/stream/embedded/server"
)

// backends is the table of stream backends this binary offers: every
// client backend and the embedded server (cmd/les-agent, the agent-only
// build, has all but embedded).
func backends() []app.Backend {
	return append(app.ClientBackends(), app.Backend{Kind: "embedded", Dir: "embedded",
		Open: func(ctx context.Context, c *app.StreamConfig, d app.StreamDeps) (app.Stream, error) {
			return embedsrv.Open(ctx, c.Embedded, d.DataDir, c.Partitions, embedsrv.Deps{Log: d.Log, Metrics: d.Metrics})
		}})
}
