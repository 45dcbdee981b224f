package kafkalite

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

// Defaults of Config, the same as internal/stream/kafka's.
const (
	DefaultTopicPrefix       = "les"
	DefaultReplicationFactor = 1
	DefaultMaxRecordBytes    = 1 << 20
	DefaultClientID          = "les"
	DefaultProduceTimeout    = 10 * time.Second
)

// batchSlack is what a produced batch may carry beyond max_record_bytes
// of Data, as in internal/stream/kafka: batches are at most
// max_record_bytes+batchSlack and created topics allow
// max_record_bytes+2·batchSlack.
const batchSlack = 16 << 10

// Config is the `stream.kafka:` block, the same keys as
// internal/stream/kafka.Config (TestConfigMatchesKafka fails if they
// differ). The consumer-group keys (session_timeout, rebalance_timeout,
// instance_id) are accepted and checked but unused: this package only
// publishes.
type Config struct {
	Brokers           []string      `yaml:"brokers"`
	TopicPrefix       string        `yaml:"topic_prefix"`
	CreateTopics      *bool         `yaml:"create_topics"`
	ReplicationFactor int           `yaml:"replication_factor"`
	MaxRecordBytes    int64         `yaml:"max_record_bytes"`
	ClientID          string        `yaml:"client_id"`
	TLS               TLSConfig     `yaml:"tls"`
	SASL              SASLConfig    `yaml:"sasl"`
	ProduceTimeout    time.Duration `yaml:"produce_timeout"`
	SessionTimeout    time.Duration `yaml:"session_timeout"`
	RebalanceTimeout  time.Duration `yaml:"rebalance_timeout"`
	InstanceID        string        `yaml:"instance_id"`
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

// SASLConfig configures SASL authentication (plain, scram-sha-256,
// scram-sha-512). Its String, GoString, MarshalJSON and LogValue methods
// leave the password out.
type SASLConfig struct {
	Mechanism    string `yaml:"mechanism"`
	Username     string `yaml:"username"`
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

func (c *Config) createTopics() bool { return c.CreateTopics == nil || *c.CreateTopics }

// Validate fills defaults and reports the first invalid field by its YAML
// name, with the rules (and messages) of internal/stream/kafka's
// Config.Validate. It does no I/O.
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
	if len(c.TopicPrefix) > 200 || !validName(c.TopicPrefix) {
		return fmt.Errorf("kafka.topic_prefix: %q is not a valid topic name prefix (use letters, digits, '.', '_', '-')", c.TopicPrefix)
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
	// Consumer settings: checked as the full backend checks them, so
	// that one les.yaml is valid for both, and otherwise unused.
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = 10 * time.Second
	}
	if c.SessionTimeout < time.Second || c.RebalanceTimeout < time.Second {
		return errors.New("kafka.session_timeout and kafka.rebalance_timeout must be at least 1s")
	}
	if id := c.InstanceID; len(id) > 249 || id == "." || id == ".." || (id != "" && !validName(id)) {
		return fmt.Errorf("kafka.instance_id: %q: at most 249 letters, digits, '.', '_' and '-'", id)
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

// validName reports whether s has only [a-zA-Z0-9._-].
func validName(s string) bool {
	for _, r := range s {
		if !(r == '.' || r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func (t *TLSConfig) config() (*tls.Config, error) {
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

func (s *SASLConfig) mechanism() (sasl.Mechanism, error) {
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
