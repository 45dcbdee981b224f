package extension

import (
	"context"
	"errors"
	"strings"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/kafka/kafkaconf"
)

// kafkaBackend is stream kind kafka with open as its client: kafkalite,
// the small producer that fits the 10 MB budget (kafka_lite.go, the
// default), or the full franz-go backend (kafka_on.go, build tag
// les_kafka; ADR 0005). Both take the one stream.kafka config.
func kafkaBackend(open func(ctx context.Context, c kafkaconf.Config, partitions int, d streamDeps) (stream.Stream, error)) backend {
	return backend{
		validate: func(s *StreamConfig) error { _, err := kafkaConfig(s); return err },
		open: func(ctx context.Context, s *StreamConfig, d streamDeps) (stream.Stream, error) {
			c, err := kafkaConfig(s)
			if err != nil {
				return nil, err
			}
			return open(ctx, c, s.Partitions, d)
		},
	}
}

// kafkaConfig is stream.kafka of LES_CONFIG with the brokers and topic
// prefix of a kafka:// LES_STREAM, checked.
func kafkaConfig(s *StreamConfig) (kafkaconf.Config, error) {
	var c kafkaconf.Config
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
