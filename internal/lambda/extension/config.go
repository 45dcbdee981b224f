package extension

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/les-streams/les/internal/config"
	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/stream/httpstream"
	"github.com/les-streams/les/internal/stream/kinesis"
	"github.com/les-streams/les/internal/stream/natsjs"
)

// Config is the extension's configuration: LES_STREAM and the LES_*
// variables, or the agent and stream sections of the les.yaml named by
// LES_CONFIG (then the variables override what they name).
type Config struct {
	Stream    StreamConfig
	Listeners []ListenerConfig
	Batch     ingest.BatchConfig
	Spool     ingest.SpoolConfig
	Flush     FlushConfig
	// HTTP bounds the HTTP requests of the unified Wavefront line ports.
	HTTP HTTPConfig
	// Source is the default source of items that name none:
	// LES_SOURCE, else agent.default_source of LES_CONFIG, else the
	// function name. A listener's source overrides it for that listener.
	Source string
	// FunctionName ($AWS_LAMBDA_FUNCTION_NAME) is the source of what the
	// extension itself says about the function — the Telemetry API's
	// platform metrics and function logs, the records of timeouts and
	// failures — whatever Source is: those are the function's.
	FunctionName string
	// TelemetryPort is the port of the Telemetry API listener (default
	// 0: any free port).
	TelemetryPort int
	// LogLevel of the extension's own log on stderr (default warn:
	// with extension logs subscribed, the log comes back as telemetry).
	LogLevel string
	// OnConfigError is disable (default: log the error; the extension
	// idles and the function runs without les) or fail (init/error
	// Extension.ConfigInvalid: Lambda fails the init, so the function
	// does not run). ADR 0005.
	OnConfigError string
}

// StreamConfig is the stream section of les.yaml, as far as the extension
// publishes: kind, partitions and the settings of the client backends.
type StreamConfig struct {
	Kind       string         `yaml:"kind"`
	Partitions int            `yaml:"partitions"`
	NATS       natsjs.Config  `yaml:"nats"`
	Kinesis    kinesis.Config `yaml:"kinesis"`
	// Kafka and HTTP are decoded by their backends (kafka is in the
	// binary only with the les_kafka build tag).
	Kafka yaml.Node         `yaml:"kafka"`
	HTTP  httpstream.Config `yaml:"http"`
	// Embedded is accepted (a shared les.yaml has it) and refused as a
	// kind: the extension links no server.
	Embedded yaml.Node `yaml:"embedded"`
	// kafkaURL carries LES_STREAM=kafka://… to the kafka backend.
	kafkaURL *url.URL
}

// HTTPConfig is what the unified Wavefront line ports (the tcp listeners
// of formats wavefront and trace, which also answer HTTP as les up's do:
// ADR 0012) apply to HTTP requests: the keys of agent.http in les.yaml
// that les up applies to its line ports. The other keys of agent.http
// (listen, protect_metrics) are les up's API port, which the extension
// does not have, and are ignored.
type HTTPConfig struct {
	// Token, when set, is required as les up requires it (Bearer,
	// X-AUTH-TOKEN, ?t=); by default none: the listeners are on the
	// sandbox's loopback.
	Token string `yaml:"token"`
	// MaxBody bounds a body, decompressed (default 4 MiB: a sandbox's
	// memory is small; wavefront-sdk-go's default batch of 10,000 lines
	// is about 1–2 MB). Larger bodies are answered 413.
	MaxBody int64 `yaml:"max_body"`
	// ReadTimeout bounds reading one request (default 1m).
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// MaxConcurrent bounds requests served at once (default 4); all
	// bodies being read hold at most max_concurrent × max_body bytes.
	MaxConcurrent int `yaml:"max_concurrent"`
}

// FlushConfig is the end-of-invocation flush policy (ADR 0005).
type FlushConfig struct {
	// Mode: adaptive (default), end or periodic.
	Mode string
	// Timeout bounds the wait for the stream after platform.runtimeDone
	// (default 10ms); what is not published by then is spooled.
	Timeout time.Duration
	// Interval: in adaptive mode, invocations closer than this on
	// average are frequent and flushed in the background; and however
	// frequent, an end-of-invocation flush happens at least this often
	// (default 10s).
	Interval time.Duration
	// SpoolTimeout bounds spooling what the stream did not take
	// (default 100ms).
	SpoolTimeout time.Duration
}

// lesFile is the part of les.yaml the extension reads; the other
// sections are accepted and ignored (one file may serve les up and les
// consume too). The agent section has every key of les up's.
type lesFile struct {
	DataDir string `yaml:"data_dir"`
	Agent   struct {
		Listeners []ListenerConfig   `yaml:"listeners"`
		HTTP      yaml.Node          `yaml:"http"`
		Batch     ingest.BatchConfig `yaml:"batch"`
		Spool     ingest.SpoolConfig `yaml:"spool"`
		// DefaultSource replaces the function name as the default
		// source (as in les up, where it replaces the host name).
		DefaultSource string `yaml:"default_source"`
	} `yaml:"agent"`
	Stream    StreamConfig `yaml:"stream"`
	Sinks     yaml.Node    `yaml:"sinks"`
	Rollup    yaml.Node    `yaml:"rollup"`
	Logmetric yaml.Node    `yaml:"logmetric"`
	Inputs    yaml.Node    `yaml:"inputs"`
	UI        yaml.Node    `yaml:"ui"`
	Log       struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	} `yaml:"log"`
}

// Load reads the configuration from the environment (getenv). It fills
// defaults and reports every problem at once.
func Load(getenv func(string) string) (*Config, error) {
	c := &Config{
		Source:        getenv("AWS_LAMBDA_FUNCTION_NAME"),
		FunctionName:  getenv("AWS_LAMBDA_FUNCTION_NAME"),
		LogLevel:      "warn",
		OnConfigError: "disable",
		Batch: ingest.BatchConfig{
			MaxBatchBytes:  512 << 10, // half a Kinesis record
			QueueBatches:   16,
			PublishTimeout: 2 * time.Second,
		},
		Spool: ingest.SpoolConfig{Dir: "/tmp/les/spool", MaxBytes: 64 << 20, Retry: time.Second},
	}
	var errs []error
	if v := getenv("LES_ON_CONFIG_ERROR"); v != "" {
		if v != "fail" && v != "disable" {
			errs = append(errs, fmt.Errorf("LES_ON_CONFIG_ERROR=%q: want disable or fail", v))
		} else {
			c.OnConfigError = v
		}
	}
	streamURL, file := getenv("LES_STREAM"), getenv("LES_CONFIG")
	if file != "" {
		if err := c.loadFile(file); err != nil {
			errs = append(errs, err)
		}
	}
	if streamURL != "" {
		if err := c.Stream.fromURL(streamURL); err != nil {
			errs = append(errs, err)
		}
	}
	if streamURL == "" && file == "" {
		errs = append(errs, errors.New("neither LES_STREAM (kinesis://STREAM, kafka://BROKER:9092/PREFIX, nats://HOST:4222, https://HOST/) nor LES_CONFIG (a les.yaml) is set"))
	}
	if len(c.Listeners) == 0 {
		c.Listeners = DefaultListeners()
	}
	for _, l := range c.Listeners {
		if err := validateListener(l); err != nil {
			errs = append(errs, err)
		}
	}
	durations := []struct {
		env string
		dst *time.Duration
		def time.Duration
	}{
		{"LES_FLUSH_TIMEOUT", &c.Flush.Timeout, 10 * time.Millisecond},
		{"LES_FLUSH_INTERVAL", &c.Flush.Interval, 10 * time.Second},
		{"LES_SPOOL_TIMEOUT", &c.Flush.SpoolTimeout, 100 * time.Millisecond},
	}
	for _, d := range durations {
		*d.dst = d.def
		if v := getenv(d.env); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil || x < 0 {
				errs = append(errs, fmt.Errorf("%s=%q: want a duration like 10ms", d.env, v))
				continue
			}
			*d.dst = x
		}
	}
	c.Flush.Mode = "adaptive"
	if v := getenv("LES_FLUSH"); v != "" {
		if !slices.Contains([]string{"adaptive", "end", "periodic"}, v) {
			errs = append(errs, fmt.Errorf("LES_FLUSH=%q: want adaptive, end or periodic", v))
		} else {
			c.Flush.Mode = v
		}
	}
	if v := getenv("LES_SPOOL_DIR"); v != "" {
		c.Spool.Dir = v
	}
	if v := getenv("LES_SOURCE"); v != "" {
		c.Source = v
	}
	if v := getenv("LES_LOG_LEVEL"); v != "" {
		c.LogLevel = v
	}
	if v := getenv("LES_TELEMETRY_PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("LES_TELEMETRY_PORT=%q: want a port number", v))
		}
		c.TelemetryPort = p
	}
	if err := c.HTTP.defaults(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Batch.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Spool.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 && (streamURL != "" || file != "") {
		if err := c.Stream.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("les extension configuration: %w", err)
	}
	return c, nil
}

// defaults fills the unset limits and rejects negative ones.
func (h *HTTPConfig) defaults() error {
	if h.MaxBody < 0 || h.ReadTimeout < 0 || h.MaxConcurrent < 0 {
		return fmt.Errorf("agent.http: max_body %d, read_timeout %s, max_concurrent %d: none may be negative", h.MaxBody, h.ReadTimeout, h.MaxConcurrent)
	}
	if h.MaxBody == 0 {
		h.MaxBody = 4 << 20
	}
	if h.ReadTimeout == 0 {
		h.ReadTimeout = time.Minute
	}
	if h.MaxConcurrent == 0 {
		h.MaxConcurrent = 4
	}
	return nil
}

// loadFile reads the agent and stream sections of a les.yaml (strict
// YAML with ${ENV}, as les reads it).
func (c *Config) loadFile(path string) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("LES_CONFIG: %w", err)
	}
	var f lesFile
	if _, err := config.Decode(src, path, &f); err != nil {
		return fmt.Errorf("LES_CONFIG: %w", err)
	}
	c.Stream = f.Stream
	c.Listeners = f.Agent.Listeners
	if f.Agent.DefaultSource != "" {
		c.Source = f.Agent.DefaultSource
	}
	if !f.Agent.HTTP.IsZero() {
		// Not strict: les up's other agent.http keys are accepted.
		if err := f.Agent.HTTP.Decode(&c.HTTP); err != nil {
			return fmt.Errorf("LES_CONFIG: agent.http: %w", err)
		}
	}
	b, s := f.Agent.Batch, f.Agent.Spool
	if b.FlushInterval != 0 {
		c.Batch.FlushInterval = b.FlushInterval
	}
	if b.MaxBatchBytes != 0 {
		c.Batch.MaxBatchBytes = b.MaxBatchBytes
	}
	if b.QueueBatches != 0 {
		c.Batch.QueueBatches = b.QueueBatches
	}
	if b.Publishers != 0 {
		c.Batch.Publishers = b.Publishers
	}
	if b.Compression != "" {
		c.Batch.Compression = b.Compression
	}
	if b.PublishTimeout != 0 {
		c.Batch.PublishTimeout = b.PublishTimeout
	}
	if s.Dir != "" {
		c.Spool.Dir = s.Dir
	}
	if s.MaxBytes != 0 {
		c.Spool.MaxBytes = s.MaxBytes
	}
	if s.Retry != 0 {
		c.Spool.Retry = s.Retry
	}
	if f.Log.Level != "" {
		c.LogLevel = f.Log.Level
	}
	return nil
}

// fromURL sets the stream from LES_STREAM; the query may set partitions.
func (s *StreamConfig) fromURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("LES_STREAM: %w", err)
	}
	q := u.Query()
	if p := q.Get("partitions"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("LES_STREAM: partitions=%q is not a number", p)
		}
		s.Partitions = n
	}
	u.RawQuery = ""
	switch u.Scheme {
	case "kinesis":
		name := u.Host + strings.TrimSuffix(u.Path, "/")
		if name == "" {
			return errors.New("LES_STREAM: kinesis://STREAM needs a stream name")
		}
		s.Kind, s.Kinesis.Stream = "kinesis", name
	case "nats", "tls":
		if u.Host == "" {
			return errors.New("LES_STREAM: nats://HOST:PORT needs a host")
		}
		s.Kind, s.NATS.URL = "nats", u.String()
	case "kafka":
		if u.Host == "" {
			return errors.New("LES_STREAM: kafka://BROKER:9092/TOPICPREFIX needs a broker")
		}
		s.Kind, s.kafkaURL = "kafka", u
	case "https", "http":
		if u.Host == "" {
			return errors.New("LES_STREAM: https://HOST/ needs a host")
		}
		s.Kind, s.HTTP.URL = "http", u.String()
	default:
		return fmt.Errorf("LES_STREAM=%q: scheme %q is not one of kinesis, kafka, nats, https", raw, u.Scheme)
	}
	return nil
}

func (s *StreamConfig) validate() error {
	if s.Partitions == 0 {
		s.Partitions = 8
	}
	if s.Partitions < 1 || s.Partitions > 4096 {
		return fmt.Errorf("stream.partitions %d is not in 1…4096", s.Partitions)
	}
	b, ok := backends()[s.Kind]
	if !ok {
		if s.Kind == "embedded" || s.Kind == "" {
			return errors.New("stream.kind embedded (the default of les up) cannot be used in Lambda: the extension publishes to a stream other processes read (kinesis, nats, kafka or http)")
		}
		return fmt.Errorf("stream.kind %q is not offered by this build (it offers %v)", s.Kind, sortedKeys(backends()))
	}
	return b.validate(s)
}
