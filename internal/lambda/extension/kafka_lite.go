//go:build !les_kafka

package extension

import (
	"context"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/kafka/kafkaconf"
	"github.com/les-streams/les/internal/stream/kafka/kafkalite"
)

// addKafka offers stream kind kafka through kafkalite (kafka.go).
func addKafka(m map[string]backend) {
	m["kafka"] = kafkaBackend(func(ctx context.Context, c kafkaconf.Config, partitions int, d streamDeps) (stream.Stream, error) {
		return kafkalite.Open(ctx, c, partitions, kafkalite.Deps{Log: d.Log, Metrics: d.Metrics})
	})
}
