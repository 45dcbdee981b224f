package app

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/les-streams/les/internal/config"
	"github.com/les-streams/les/internal/format/statsd"
	"github.com/les-streams/les/internal/format/wavefront"
	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/sink"
	datadogsink "github.com/les-streams/les/internal/sink/datadog"
	execsink "github.com/les-streams/les/internal/sink/exec"
	httpsink "github.com/les-streams/les/internal/sink/http"
	"github.com/les-streams/les/internal/sink/influxdb"
	lokisink "github.com/les-streams/les/internal/sink/loki"
	otlpsink "github.com/les-streams/les/internal/sink/otlp"
	promrw "github.com/les-streams/les/internal/sink/prometheus_remote_write"
	"github.com/les-streams/les/internal/wire"
)

// Config is les.yaml.
type Config struct {
	// DataDir holds the embedded stream and consumer checkpoints.
	DataDir string       `yaml:"data_dir"`
	Agent   AgentConfig  `yaml:"agent"`
	Stream  StreamConfig `yaml:"stream"`
	Sinks   []SinkConfig `yaml:"sinks"`
	Rollup  RollupConfig `yaml:"rollup"`
	// Logmetric derives metrics from logs (logmetric.go).
	Logmetric LogmetricConfig `yaml:"logmetric"`
	// Inputs pull data from outside, e.g. Kinesis streams (inputs.go).
	Inputs InputsConfig `yaml:"inputs"`
	Log    LogConfig    `yaml:"log"`

	// UI bounds what is kept for /query and the web UI (uiconfig.go).
	UI UIConfig `yaml:"ui"`

	doc  *yaml.Node
	file string
}

// LogConfig configures les' own log.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // text (default) or json
}

// NewLogger returns les' logger writing to w at the configured level and
// format.
func (c LogConfig) NewLogger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	level := c.Level
	if level == "" {
		level = "info"
	}
	_ = lvl.UnmarshalText([]byte(strings.ToUpper(level)))
	o := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// AgentConfig is the front half: listeners, HTTP API and batching.
type AgentConfig struct {
	// Listeners replaces the default listeners when set.
	Listeners []ListenerConfig   `yaml:"listeners"`
	HTTP      HTTPConfig         `yaml:"http"`
	Batch     ingest.BatchConfig `yaml:"batch"`
	// Spool holds batches the stream did not take in time.
	Spool ingest.SpoolConfig `yaml:"spool"`
	// DefaultSource is the source of items that name none, in every
	// format (default: $AWS_LAMBDA_FUNCTION_NAME inside Lambda, else the
	// host name).
	DefaultSource string `yaml:"default_source"`
}

// HTTPConfig is the les API on 2880.
type HTTPConfig struct {
	Listen string `yaml:"listen"`
	// Token, when set, is required as a Bearer token on intake endpoints
	// and /query.
	Token string `yaml:"token"`
	// MaxBody bounds a request body in bytes (default 16 MiB).
	MaxBody int64 `yaml:"max_body"`
	// ReadTimeout bounds reading one request, body included (default 1m),
	// so slow or stalled clients do not hold connections and buffers.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// MaxConcurrent bounds intake requests served at once (default 16);
	// others wait up to 10s, then get a 503. A request takes a slot only
	// once its whole body has arrived (at 4 KiB/s at least after a 5 s
	// grace, else 408); the bodies received or being received hold at most
	// max_concurrent × max_body bytes together (beyond: 503).
	MaxConcurrent int `yaml:"max_concurrent"`
	// ProtectMetrics, when true, requires Token on /metrics too.
	ProtectMetrics bool `yaml:"protect_metrics"`
}

// ListenerConfig is one socket.
type ListenerConfig struct {
	// Format: see the formats table in listeners.go.
	Format string `yaml:"format"`
	// Transport: tcp, udp or unixgram (otlp: http or grpc).
	Transport string `yaml:"transport"`
	// Address: host:port, or a path for unixgram.
	Address string `yaml:"address"`
	// MaxLine (tcp) and MaxDatagram (udp) bound input sizes.
	MaxLine     int `yaml:"max_line"`
	MaxDatagram int `yaml:"max_datagram"`
	// Readers is the number of goroutines reading a datagram socket.
	Readers int `yaml:"readers"`
	// MaxConnections bounds open TCP connections (default 1024).
	MaxConnections int `yaml:"max_connections"`
	// MaxBody (otlp) bounds a request body, decompressed (default
	// agent.http.max_body).
	MaxBody int64 `yaml:"max_body"`
	// Flavor (statsd): dogstatsd (default; a signed gauge value is the
	// value) or etsy (a leading +/- on a gauge value is a change).
	Flavor string `yaml:"flavor"`
	// Source is the source of items that name none (default
	// agent.default_source).
	Source string `yaml:"source"`

	// seriesBudget is set by bind for a tcp listener: the series caches
	// of its connections' decoders share it (wavefront.DefaultCacheBudget).
	seriesBudget *wavefront.CacheBudget
}

// SinkConfig is one entry of `sinks:`: a durable consumer delivering to
// one backend. The backend's settings live under a key named like its type.
type SinkConfig struct {
	Name    string           `yaml:"name"`
	Type    string           `yaml:"type"`
	Signals []string         `yaml:"signals"`
	Retry   sink.RetryConfig `yaml:"retry"`
	// Concurrency is the most requests in flight to the backend (default
	// 1; the sink table may give a type another default).
	Concurrency int `yaml:"concurrency"`
	// Batch bounds the requests records are merged into.
	Batch SinkBatchConfig `yaml:"batch"`
	// StartAt is where a new sink begins: oldest (default: back-fill what
	// the stream retains), newest, or an RFC 3339 time. A sink that has
	// a cursor already goes on from it.
	StartAt string `yaml:"start_at"`
	// Backend settings, one per type (see sinks.go).
	File      *fileSinkConfig      `yaml:"file"`
	Wavefront *wavefrontSinkConfig `yaml:"wavefront"`
	Discard   *discardSinkConfig   `yaml:"discard"`
	InfluxDB  *influxdb.Config     `yaml:"influxdb"`
	HTTP      *httpsink.Config     `yaml:"http"`
	Exec      *execsink.Config     `yaml:"exec"`
	OTLP      *otlpsink.Config     `yaml:"otlp"`

	// prometheus_remote_write: Prometheus, VictoriaMetrics, Mimir, …
	PrometheusRemoteWrite *promrw.Config `yaml:"prometheus_remote_write"`
	// loki: Grafana Loki's push API
	Loki *lokisink.Config `yaml:"loki"`
	// datadog: series, sketches and logs APIs
	Datadog *datadogsink.Config `yaml:"datadog"`
}

// SinkBatchConfig is a sink's `batch:` block.
type SinkBatchConfig struct {
	// MaxItems and MaxBytes bound one request (default 10,000 items and
	// 4 MiB of stream records); records read together are merged up to
	// them. A record is never split across requests.
	MaxItems int `yaml:"max_items"`
	MaxBytes int `yaml:"max_bytes"`
}

// Load reads and validates a config file; path "" gives the defaults.
func Load(path string) (*Config, error) {
	var c Config
	if path != "" {
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		doc, err := config.Decode(src, path, &c)
		if err != nil {
			return nil, err
		}
		c.doc = doc
		c.file = path
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// errAt builds a located error for the key at path.
func (c *Config) errAt(msg string, path ...any) error {
	var b strings.Builder
	for i, p := range path {
		switch v := p.(type) {
		case string:
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(v)
		case int:
			fmt.Fprintf(&b, "[%d]", v)
		}
	}
	return &config.Error{File: c.file, Line: config.Locate(c.doc, path...), Path: b.String(), Msg: msg}
}

// Validate fills defaults and checks everything, reporting every problem.
func (c *Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		c.DataDir = "./les-data"
	}
	if abs, err := filepath.Abs(c.DataDir); err == nil {
		c.DataDir = abs
	}
	if c.Agent.HTTP.Listen == "" {
		c.Agent.HTTP.Listen = "127.0.0.1:2880"
	}
	if c.Agent.HTTP.ReadTimeout == 0 {
		c.Agent.HTTP.ReadTimeout = time.Minute
	}
	if c.Agent.HTTP.ReadTimeout < 0 {
		errs = append(errs, c.errAt("read_timeout must be positive", "agent", "http", "read_timeout"))
	}
	if c.Agent.HTTP.MaxConcurrent == 0 {
		c.Agent.HTTP.MaxConcurrent = 16
	}
	if c.Agent.HTTP.MaxConcurrent < 0 {
		errs = append(errs, c.errAt("max_concurrent must be positive", "agent", "http", "max_concurrent"))
	}
	c.Agent.Batch.Compression = autoCompression(c.Agent.Batch.Compression, c.Stream.Kind) // compression.go
	if err := c.Agent.Batch.Validate(); err != nil {
		errs = append(errs, c.errAt(err.Error(), "agent", "batch"))
	}
	if err := c.Agent.Spool.Validate(); err != nil {
		errs = append(errs, c.errAt(err.Error(), "agent", "spool"))
	}
	errs = append(errs, c.validateStream()...)
	if c.Agent.DefaultSource == "" {
		c.Agent.DefaultSource = defaultSource(os.Getenv, os.Hostname)
	}
	if c.Agent.Listeners == nil {
		c.Agent.Listeners = DefaultListeners()
	}
	for i := range c.Agent.Listeners {
		if err := c.Agent.Listeners[i].validate(); err != nil {
			errs = append(errs, c.errAt(err.Error(), "agent", "listeners", i))
		}
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		errs = append(errs, c.errAt(fmt.Sprintf("level %q is not one of debug, info, warn, error", c.Log.Level), "log", "level"))
	}
	switch c.Log.Format {
	case "", "text", "json":
	default:
		errs = append(errs, c.errAt(fmt.Sprintf("format %q is not one of text, json", c.Log.Format), "log", "format"))
	}
	errs = append(errs, c.validateRollup()...)
	errs = append(errs, c.validateLogmetric()...)
	errs = append(errs, c.validateInputs()...)
	errs = append(errs, c.validateUI()...)
	names := map[string]bool{"rollup": true, "logmetric": true}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		if s.Name == "" {
			errs = append(errs, c.errAt("name is required", "sinks", i))
		} else if names[s.Name] {
			errs = append(errs, c.errAt(fmt.Sprintf("duplicate sink name %q (\"rollup\" and \"logmetric\" are reserved)", s.Name), "sinks", i, "name"))
		} else if !validName(s.Name) {
			errs = append(errs, c.errAt(fmt.Sprintf("name %q may only contain letters, digits, '-' and '_'", s.Name), "sinks", i, "name"))
		}
		names[s.Name] = true
		for j, sig := range s.Signals {
			if _, err := wire.ParseSignal(sig); err != nil {
				errs = append(errs, c.errAt(err.Error(), "sinks", i, "signals", j))
			}
		}
		if err := s.Retry.Validate(); err != nil {
			errs = append(errs, c.errAt(err.Error(), "sinks", i, "retry"))
		}
		if s.Concurrency < 0 || s.Concurrency > 64 {
			errs = append(errs, c.errAt(fmt.Sprintf("concurrency %d is not in 1…64", s.Concurrency), "sinks", i, "concurrency"))
		}
		if _, err := parseStartAt(s.StartAt); err != nil {
			errs = append(errs, c.errAt(err.Error(), "sinks", i, "start_at"))
		}
		if s.Batch.MaxItems < 0 || s.Batch.MaxBytes < 0 {
			errs = append(errs, c.errAt("max_items and max_bytes must not be negative", "sinks", i, "batch"))
		}
		errs = append(errs, c.validateSink(i)...)
	}
	return errors.Join(errs...)
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func (l *ListenerConfig) validate() error {
	if _, ok := formats[l.Format]; !ok {
		return fmt.Errorf("format %q is not one of %s", l.Format, strings.Join(formatNames(), ", "))
	}
	if l.MaxLine < 0 || l.MaxDatagram < 0 || l.Readers < 0 || l.MaxConnections < 0 || l.MaxBody < 0 {
		return errors.New("max_line, max_datagram, readers, max_connections and max_body must not be negative")
	}
	if l.Readers > 64 {
		return fmt.Errorf("readers %d is more than 64", l.Readers)
	}
	if _, ok := statsd.ParseFlavor(l.Flavor); !ok {
		return fmt.Errorf("flavor %q is not one of dogstatsd, etsy", l.Flavor)
	}
	if l.Flavor != "" && l.Format != "statsd" {
		return fmt.Errorf("flavor is a statsd setting; format %s has none", l.Format)
	}
	f := formats[l.Format]
	if !slices.Contains(f.transports, l.Transport) {
		return fmt.Errorf("format %s does not support transport %q (use %s)", l.Format, l.Transport, strings.Join(f.transports, ", "))
	}
	if l.Address == "" {
		return errors.New("address is required")
	}
	return nil
}
