package kafka

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		err  string // substring; "" = valid
	}{
		{"no brokers", Config{}, "kafka.brokers: at least one broker is required"},
		{"bad broker", Config{Brokers: []string{"localhost"}}, "kafka.brokers"},
		{"minimal", Config{Brokers: []string{"b:9092"}}, ""},
		{"bad prefix", Config{Brokers: []string{"b:9092"}, TopicPrefix: "a/b"}, "kafka.topic_prefix"},
		{"bad rf", Config{Brokers: []string{"b:9092"}, ReplicationFactor: -2}, "kafka.replication_factor"},
		{"broker default rf", Config{Brokers: []string{"b:9092"}, ReplicationFactor: -1}, ""},
		{"negative max", Config{Brokers: []string{"b:9092"}, MaxRecordBytes: -1}, "kafka.max_record_bytes"},
		{"negative timeout", Config{Brokers: []string{"b:9092"}, ProduceTimeout: -time.Second}, "kafka.produce_timeout"},
		{"tls off with files", Config{Brokers: []string{"b:9092"}, TLS: TLSConfig{CAFile: "ca.pem"}}, "kafka.tls"},
		{"cert without key", Config{Brokers: []string{"b:9092"}, TLS: TLSConfig{Enabled: true, CertFile: "c.pem"}}, "cert_file and key_file"},
		{"sasl bad mechanism", Config{Brokers: []string{"b:9092"}, SASL: SASLConfig{Mechanism: "gssapi", Username: "u", Password: "p"}}, "kafka.sasl.mechanism"},
		{"sasl no user", Config{Brokers: []string{"b:9092"}, SASL: SASLConfig{Mechanism: "plain", Password: "p"}}, "kafka.sasl.username"},
		{"sasl no password", Config{Brokers: []string{"b:9092"}, SASL: SASLConfig{Mechanism: "plain", Username: "u"}}, "exactly one of password"},
		{"sasl both passwords", Config{Brokers: []string{"b:9092"}, SASL: SASLConfig{Mechanism: "plain", Username: "u", Password: "p", PasswordFile: "f"}}, "exactly one of password"},
		{"sasl creds without mechanism", Config{Brokers: []string{"b:9092"}, SASL: SASLConfig{Username: "u"}}, "kafka.sasl.mechanism"},
		{"scram", Config{Brokers: []string{"b:9092"}, SASL: SASLConfig{Mechanism: "SCRAM-SHA-512", Username: "u", Password: "p"}}, ""},
		{"instance id", Config{Brokers: []string{"b:9092"}, InstanceID: "host-1.consume_a"}, ""},
		{"instance id with a space", Config{Brokers: []string{"b:9092"}, InstanceID: "host 1"}, "kafka.instance_id"},
		{"instance id too long", Config{Brokers: []string{"b:9092"}, InstanceID: strings.Repeat("x", 250)}, "kafka.instance_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := Config{Brokers: []string{"b:9092"}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := Config{Brokers: []string{"b:9092"}, TopicPrefix: "les", ReplicationFactor: 1,
		MaxRecordBytes: 1 << 20, ClientID: "les", ProduceTimeout: 10 * time.Second,
		SessionTimeout: 10 * time.Second, RebalanceTimeout: 10 * time.Second}
	if d := cmp.Diff(want, c); d != "" {
		t.Fatalf("defaults (-want +got):\n%s", d)
	}
	if !c.CreateTopicsOn() {
		t.Fatal("create_topics defaults to false")
	}
}

func TestPasswordNotPrinted(t *testing.T) {
	c := Config{Brokers: []string{"b:9092"}, SASL: SASLConfig{Mechanism: "plain", Username: "u", Password: "hunter2"}}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("cfg", "sasl", c.SASL, "cfg", c)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("cfg", "sasl", c.SASL)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprint(c.SASL), logs.String()} {
		if strings.Contains(s, "hunter2") {
			t.Fatalf("password printed: %s", s)
		}
	}
}

func TestPasswordFile(t *testing.T) {
	f := t.TempDir() + "/pw"
	if err := os.WriteFile(f, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Brokers: []string{"127.0.0.1:1"}, SASL: SASLConfig{Mechanism: "scram-sha-256", Username: "u", PasswordFile: f}}
	s, err := Open(context.Background(), cfg, 4, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	cfg.SASL.PasswordFile = f + ".missing"
	if _, err := Open(context.Background(), cfg, 4, Deps{}); err == nil || !strings.Contains(err.Error(), "kafka.sasl.password_file") {
		t.Fatalf("missing password file: %v", err)
	}
	cfg = Config{Brokers: []string{"127.0.0.1:1"}, TLS: TLSConfig{Enabled: true, CAFile: f}}
	if _, err := Open(context.Background(), cfg, 4, Deps{}); err == nil || !strings.Contains(err.Error(), "kafka.tls.ca_file") {
		t.Fatalf("CA file without certificates: %v", err)
	}
}

// TestExample: example.yaml decodes strictly into Config and validates.
func TestExample(t *testing.T) {
	b, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Stream struct {
			Kind       string `yaml:"kind"`
			Partitions int    `yaml:"partitions"`
			Kafka      Config `yaml:"kafka"`
		} `yaml:"stream"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Stream.Kind != "kafka" || doc.Stream.Partitions != 8 {
		t.Fatalf("stream block %+v", doc.Stream)
	}
	c := doc.Stream.Kafka
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.ProduceTimeout != 10*time.Second || !c.CreateTopicsOn() || c.MaxRecordBytes != 1<<20 {
		t.Fatalf("example config %+v", c)
	}
	if _, err := os.Stat("README.md"); err != nil {
		t.Fatal(err)
	}
}
