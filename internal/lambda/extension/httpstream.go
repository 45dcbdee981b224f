package extension

import (
	"context"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/httpstream"
)

// addHTTP offers stream kind http (LES_STREAM=https://…): wire records
// POSTed to a central les (internal/stream/httpstream); the bearer token
// comes from the variable stream.http.token_env names (LES_STREAM_TOKEN
// by default).
func addHTTP(m map[string]backend) {
	m["http"] = backend{
		validate: func(s *StreamConfig) error {
			if s.HTTP.TokenEnv == "" && s.HTTP.TokenFile == "" {
				s.HTTP.TokenEnv = "LES_STREAM_TOKEN"
			}
			return s.HTTP.Validate()
		},
		open: func(ctx context.Context, s *StreamConfig, d streamDeps) (stream.Stream, error) {
			return httpstream.Open(ctx, s.HTTP, s.Partitions, httpstream.Deps{Log: d.Log, Metrics: d.Metrics})
		},
	}
}
