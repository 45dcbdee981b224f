package kafka

import (
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/les-streams/les/internal/stream/kafka/kafkaconf"
)

// Config is what users write under `stream.kafka:` (keys, defaults and
// rules in kafkaconf, shared with the Lambda layer's producer). The
// logical partition count is not there: it is stream.partitions, passed
// to Open.
type (
	Config     = kafkaconf.Config
	TLSConfig  = kafkaconf.TLSConfig
	SASLConfig = kafkaconf.SASLConfig
)

// Defaults of Config, applied by Validate.
const (
	DefaultTopicPrefix       = kafkaconf.DefaultTopicPrefix
	DefaultReplicationFactor = kafkaconf.DefaultReplicationFactor
	DefaultMaxRecordBytes    = kafkaconf.DefaultMaxRecordBytes
	DefaultClientID          = kafkaconf.DefaultClientID
	DefaultProduceTimeout    = kafkaconf.DefaultProduceTimeout
	DefaultSessionTimeout    = kafkaconf.DefaultSessionTimeout
	DefaultRebalanceTimeout  = kafkaconf.DefaultRebalanceTimeout
)

// batchSlack: see kafkaconf.BatchSlack.
const batchSlack = kafkaconf.BatchSlack

// validInstanceID: see kafkaconf.ValidInstanceID.
var validInstanceID = kafkaconf.ValidInstanceID

// clientOpts returns the kgo options every client of c shares: brokers,
// client id, TLS and SASL. It reads the TLS and password files.
func clientOpts(c *Config) ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ClientID(c.ClientID)}
	if c.TLS.Enabled {
		tc, err := c.TLS.Config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if c.SASL.Mechanism != "" {
		m, err := c.SASL.Auth()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}
