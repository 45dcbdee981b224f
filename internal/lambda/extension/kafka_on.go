//go:build les_kafka

package extension

import (
	"context"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/kafka"
	"github.com/les-streams/les/internal/stream/kafka/kafkaconf"
)

// addKafka offers stream kind kafka through the full franz-go backend
// (build tag les_kafka; kafka.go).
func addKafka(m map[string]backend) {
	m["kafka"] = kafkaBackend(func(ctx context.Context, c kafkaconf.Config, partitions int, d streamDeps) (stream.Stream, error) {
		return kafka.Open(ctx, c, partitions, kafka.Deps{Log: d.Log, Metrics: d.Metrics})
	})
}
