package app

import (
	"context"

	embedsrv "github.com/les-streams/les/internal/stream/embedded/server"
)

// testOptions offers every backend, as cmd/les does.
func testOptions() Options {
	return Options{Backends: append(ClientBackends(), Backend{Kind: "embedded", Dir: "embedded",
		Open: func(ctx context.Context, c *StreamConfig, d StreamDeps) (Stream, error) {
			return embedsrv.Open(ctx, c.Embedded, d.DataDir, c.Partitions, embedsrv.Deps{Log: d.Log, Metrics: d.Metrics})
		}})}
}
