// Package kafkaconf is the `stream.kafka:` configuration shared by the
// full Kafka backend (internal/stream/kafka, franz-go) and the Lambda
// layer's small producer (kafkalite): one set of keys, defaults, rules
// and messages. It links no Kafka client (the layer's size budget).
package kafkaconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Defaults of Config, applied by Validate.
const (
	DefaultTopicPrefix       = "les"
	DefaultReplicationFactor = 1
	DefaultMaxRecordBytes    = 1 << 20
	DefaultClientID          = "les"
	DefaultProduceTimeout    = 10 * time.Second
	DefaultSessionTimeout    = 10 * time.Second
	DefaultRebalanceTimeout  = 10 * time.Second
)

// BatchSlack is what a produced batch may carry beyond max_record_bytes of
// Data: the batch and record headers, the key and the les-id header. The
// producer's batch limit is max_record_bytes+batchSlack and topics les
// creates allow max_record_bytes+2·batchSlack, so a batch les builds never
// exceeds a topic it created.
const BatchSlack = 16 << 10

// Config is what users write under `stream.kafka:`. The logical partition
// count is not here: it is stream.partitions, passed to Open.
type Config struct {
	// Brokers are the seed brokers, host:port (required).
	Brokers []string `yaml:"brokers"`
	// TopicPrefix starts every topic name: <prefix>.<origin>.<signal>
	// (default "les"). It also prefixes consumer group names.
	TopicPrefix string `yaml:"topic_prefix"`
	// CreateTopics creates missing topics with stream.partitions
	// partitions (default true). Nil means the default.
	CreateTopics *bool `yaml:"create_topics"`
	// ReplicationFactor of created topics (default 1; -1 is the broker's
	// default.replication.factor).
	ReplicationFactor int `yaml:"replication_factor"`
	// MaxRecordBytes is the largest record Data Publish accepts (default
	// 1 MiB); it is Capabilities().MaxRecordBytes.
	MaxRecordBytes int64 `yaml:"max_record_bytes"`
	// ClientID is the Kafka client id (default "les").
	ClientID string `yaml:"client_id"`
	// TLS configures encryption to the brokers.
	TLS TLSConfig `yaml:"tls"`
	// SASL configures authentication.
	SASL SASLConfig `yaml:"sasl"`
	// ProduceTimeout bounds one Publish call (default 10s); a caller's
	// shorter deadline wins.
	ProduceTimeout time.Duration `yaml:"produce_timeout"`
	// SessionTimeout is how long a consumer-group member may go silent
	// before the group drops it and moves its partitions (default 10s,
	// Kafka's group.min.session.timeout.ms is 6s): a crashed les holds its
	// partitions this long. RebalanceTimeout bounds how long a rebalance
	// waits for members to rejoin (default 10s).
	SessionTimeout   time.Duration `yaml:"session_timeout"`
	RebalanceTimeout time.Duration `yaml:"rebalance_timeout"`
	// InstanceID, when set, makes this process a static member (KIP-345)
	// of the consumer groups it joins: restarted within session_timeout
	// under the same id, it takes its partitions back without a
	// rebalance, and a stopped one keeps them (unread) until then. Each
	// process sharing a durable needs an id of its own (a second process
	// with the same id fences the first out), for example
	// ${HOSTNAME}-consume. Empty (default): dynamic members, which leave
	// the group when they stop.
	InstanceID string `yaml:"instance_id"`
}

// TLSConfig configures TLS to the brokers.
type TLSConfig struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`   // PEM roots; empty: the system pool
	CertFile           string `yaml:"cert_file"` // client certificate (with KeyFile)
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"` // default: the broker host
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// SASLConfig configures SASL authentication. Its String, GoString,
// MarshalJSON and LogValue methods leave the password out.
type SASLConfig struct {
	// Mechanism is plain, scram-sha-256 or scram-sha-512; empty disables
	// SASL.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	// Password, or PasswordFile: a file whose content (trailing newline
	// trimmed) is the password, read by Open.
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// String implements fmt.Stringer without the password.
func (s SASLConfig) String() string {
	pw := ""
	if s.Password != "" {
		pw = "<redacted>"
	}
	return fmt.Sprintf("{mechanism:%s username:%s password:%s password_file:%s}", s.Mechanism, s.Username, pw, s.PasswordFile)
}

// GoString implements fmt.GoStringer without the password.
func (s SASLConfig) GoString() string { return s.String() }

// MarshalJSON implements json.Marshaler without the password. It writes
// the JSON itself: json.Marshal of a struct would link encoding/json's
// struct encoder, about 15 kB the extension does not otherwise need.
func (s SASLConfig) MarshalJSON() ([]byte, error) {
	b := append([]byte(`{"mechanism":`), jsonString(s.Mechanism)...)
	b = append(append(b, `,"username":`...), jsonString(s.Username)...)
	b = append(append(b, `,"password_set":`...), strconv.FormatBool(s.Password != "")...)
	b = append(append(b, `,"password_file":`...), jsonString(s.PasswordFile)...)
	return append(b, '}'), nil
}

// jsonString quotes s as a JSON string.
func jsonString(s string) []byte {
	b := []byte{'"'}
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20 || r == 0x2028 || r == 0x2029:
			b = append(b, `\u`...)
			b = append(b, fmt.Sprintf("%04x", r)...)
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}

// LogValue implements slog.LogValuer without the password.
func (s SASLConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.String("mechanism", s.Mechanism), slog.String("username", s.Username),
		slog.Bool("password_set", s.Password != ""), slog.String("password_file", s.PasswordFile))
}

// CreateTopicsOn reports the effective create_topics setting.
func (c *Config) CreateTopicsOn() bool { return c.CreateTopics == nil || *c.CreateTopics }

// Validate fills defaults and reports the first invalid field by its YAML
// name. It does no I/O.
func (c *Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka.brokers: at least one broker is required")
	}
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("kafka.brokers: %q is not host:port: %w", b, err)
		}
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = DefaultTopicPrefix
	}
	if strings.ContainsAny(c.TopicPrefix, "/\\ ,:") || len(c.TopicPrefix) > 200 {
		return fmt.Errorf("kafka.topic_prefix: %q is not a valid topic name prefix (use letters, digits, '.', '_', '-')", c.TopicPrefix)
	}
	for _, r := range c.TopicPrefix {
		if !(r == '.' || r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return fmt.Errorf("kafka.topic_prefix: %q is not a valid topic name prefix (use letters, digits, '.', '_', '-')", c.TopicPrefix)
		}
	}
	switch {
	case c.ReplicationFactor == 0:
		c.ReplicationFactor = DefaultReplicationFactor
	case c.ReplicationFactor < -1 || c.ReplicationFactor > 32767:
		return fmt.Errorf("kafka.replication_factor: %d is not a replication factor (≥ 1, or -1 for the broker default)", c.ReplicationFactor)
	}
	switch {
	case c.MaxRecordBytes == 0:
		c.MaxRecordBytes = DefaultMaxRecordBytes
	case c.MaxRecordBytes < 0 || c.MaxRecordBytes > 1<<30:
		return fmt.Errorf("kafka.max_record_bytes: %d is out of range (1 to 1 GiB)", c.MaxRecordBytes)
	}
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	switch {
	case c.ProduceTimeout == 0:
		c.ProduceTimeout = DefaultProduceTimeout
	case c.ProduceTimeout < 0:
		return fmt.Errorf("kafka.produce_timeout: %v is negative", c.ProduceTimeout)
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = DefaultRebalanceTimeout
	}
	if c.SessionTimeout < time.Second || c.RebalanceTimeout < time.Second {
		return errors.New("kafka.session_timeout and kafka.rebalance_timeout must be at least 1s")
	}
	if err := ValidInstanceID(c.InstanceID); err != nil {
		return fmt.Errorf("kafka.instance_id: %w", err)
	}
	if !c.TLS.Enabled && (c.TLS.CAFile != "" || c.TLS.CertFile != "" || c.TLS.KeyFile != "" || c.TLS.ServerName != "" || c.TLS.InsecureSkipVerify) {
		return errors.New("kafka.tls: options are set but kafka.tls.enabled is false")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("kafka.tls: cert_file and key_file go together")
	}
	switch strings.ToLower(c.SASL.Mechanism) {
	case "":
		if c.SASL.Username != "" || c.SASL.Password != "" || c.SASL.PasswordFile != "" {
			return errors.New("kafka.sasl.mechanism: required when sasl credentials are set (plain, scram-sha-256 or scram-sha-512)")
		}
		return nil
	case "plain", "scram-sha-256", "scram-sha-512":
		c.SASL.Mechanism = strings.ToLower(c.SASL.Mechanism)
	default:
		return fmt.Errorf("kafka.sasl.mechanism: %q is not plain, scram-sha-256 or scram-sha-512", c.SASL.Mechanism)
	}
	if c.SASL.Username == "" {
		return errors.New("kafka.sasl.username: required with a sasl mechanism")
	}
	if (c.SASL.Password == "") == (c.SASL.PasswordFile == "") {
		return errors.New("kafka.sasl: set exactly one of password and password_file")
	}
	return nil
}

// Config builds the TLS client configuration; it reads the CA and
// certificate files.
func (t *TLSConfig) Config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // the user asked for it
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.tls.ca_file: %s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.cert_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Auth builds the SASL mechanism; it reads the password file.
func (s *SASLConfig) Auth() (sasl.Mechanism, error) {
	pw := s.Password
	if s.PasswordFile != "" {
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.sasl.password_file: %w", err)
		}
		pw = strings.TrimRight(string(b), "\r\n")
	}
	switch s.Mechanism {
	case "plain":
		return plain.Auth{User: s.Username, Pass: pw}.AsMechanism(), nil
	case "scram-sha-256":
		return scram.Auth{User: s.Username, Pass: pw}.AsSha256Mechanism(), nil
	case "scram-sha-512":
		return scram.Auth{User: s.Username, Pass: pw}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("kafka.sasl.mechanism: %q is not plain, scram-sha-256 or scram-sha-512", s.Mechanism)
}

// ValidInstanceID checks a group instance id as Kafka does (at most 249
// of [a-zA-Z0-9._-]); empty is valid (no static membership).
func ValidInstanceID(id string) error {
	if len(id) > 249 {
		return fmt.Errorf("%d characters; at most 249", len(id))
	}
	if id == "." || id == ".." {
		return fmt.Errorf("%q is not allowed", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%q: only letters, digits, '.', '_' and '-' are allowed", id)
		}
	}
	return nil
}
