//go:build !les_kafka

package extension

import (
	"context"
	"errors"
	"strings"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/kafka/kafkalite"
)

// addKafka offers stream kind kafka through kafkalite, the small producer
// that fits the 10 MB budget (ADR 0005). With the les_kafka build tag,
// kafka_on.go links the full franz-go backend instead.
func addKafka(m map[string]backend) {
	cfgOf := func(s *StreamConfig) (kafkalite.Config, error) {
		var c kafkalite.Config
		if s.Kafka.Kind != 0 {
			if err := s.Kafka.Decode(&c); err != nil {
				return c, err
			}
		}
		if u := s.kafkaURL; u != nil {
			c.Brokers = strings.Split(u.Host, ",")
			if p := strings.Trim(u.Path, "/"); p != "" {
				c.TopicPrefix = p
			}
		}
		if len(c.Brokers) == 0 {
			return c, errors.New("stream.kafka.brokers is required")
		}
		return c, c.Validate()
	}
	m["kafka"] = backend{
		validate: func(s *StreamConfig) error { _, err := cfgOf(s); return err },
		open: func(ctx context.Context, s *StreamConfig, d streamDeps) (stream.Stream, error) {
			c, err := cfgOf(s)
			if err != nil {
				return nil, err
			}
			return kafkalite.Open(ctx, c, s.Partitions, kafkalite.Deps{Log: d.Log, Metrics: d.Metrics})
		},
	}
}
