package kafkalite

import "github.com/les-streams/les/internal/stream/kafka/kafkaconf"

// Config is the `stream.kafka:` block, the same type as
// internal/stream/kafka's (kafkaconf). The consumer-group keys
// (session_timeout, rebalance_timeout, instance_id) are accepted and
// checked but unused: this package only publishes.
type (
	Config     = kafkaconf.Config
	TLSConfig  = kafkaconf.TLSConfig
	SASLConfig = kafkaconf.SASLConfig
)

// DefaultProduceTimeout bounds a Publish without a deadline.
const DefaultProduceTimeout = kafkaconf.DefaultProduceTimeout

// batchSlack: see kafkaconf.BatchSlack (batches are at most
// max_record_bytes+batchSlack, created topics allow
// max_record_bytes+2·batchSlack).
const batchSlack = kafkaconf.BatchSlack
