package app

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/embedded"
	"github.com/les-streams/les/internal/stream/httpstream"
	"github.com/les-streams/les/internal/stream/kafka"
	"github.com/les-streams/les/internal/stream/kinesis"
	"github.com/les-streams/les/internal/stream/natsjs"
)

// StreamConfig is the `stream:` section: which backend carries the
// records, how many logical partitions they are spread over, and each
// backend's settings under a key named like its kind.
type StreamConfig struct {
	// Kind is embedded (default), nats, kafka, kinesis or http (an
	// agent-only kind: records are forwarded to a central les).
	Kind string `yaml:"kind"`
	// Partitions is the number of logical partitions records are spread
	// over by series or source (docs/wire-format.md); consumers that split
	// the work are assigned partitions. Default 1 for embedded, 8 for the
	// others. Every producer of a stream must use the same number.
	Partitions int               `yaml:"partitions"`
	Embedded   embedded.Config   `yaml:"embedded"`
	NATS       natsjs.Config     `yaml:"nats"`
	Kafka      kafka.Config      `yaml:"kafka"`
	Kinesis    kinesis.Config    `yaml:"kinesis"`
	HTTP       httpstream.Config `yaml:"http"`
}

// Kinds of stream, in the order `les config example` lists them.
func streamKinds() []string { return []string{"embedded", "nats", "kafka", "kinesis", "http"} }

func (c *Config) validateStream() []error {
	s := &c.Stream
	if s.Kind == "" {
		s.Kind = "embedded"
	}
	if !slices.Contains(streamKinds(), s.Kind) {
		return []error{c.errAt(fmt.Sprintf("kind %q is not one of %s", s.Kind, strings.Join(streamKinds(), ", ")), "stream", "kind")}
	}
	if s.Partitions == 0 {
		s.Partitions = 8
		if s.Kind == "embedded" {
			s.Partitions = 1
		}
	}
	var errs []error
	if s.Partitions < 1 || s.Partitions > 4096 {
		errs = append(errs, c.errAt(fmt.Sprintf("partitions %d is not in 1…4096", s.Partitions), "stream", "partitions"))
	}
	var err error
	switch s.Kind {
	case "embedded":
		err = s.Embedded.Validate()
	case "nats":
		err = s.NATS.Validate()
		if err == nil && s.NATS.URL == "" && len(s.NATS.Servers) == 0 {
			err = fmt.Errorf("url or servers is required")
		}
	case "kafka":
		err = s.Kafka.Validate()
	case "kinesis":
		err = s.Kinesis.Validate()
	case "http":
		err = s.HTTP.Validate()
	}
	if err != nil {
		errs = append(errs, c.errAt(err.Error(), "stream", s.Kind))
	}
	return errs
}

// Stream is an open stream as the app uses it.
type Stream interface {
	stream.Stream
	// ClientURL is where other processes reach the stream (for the
	// start-up banner; "" when there is nothing to show).
	ClientURL() string
}

// StreamDeps is what a Backend's Open gets.
type StreamDeps struct {
	Log     *slog.Logger
	Metrics *selfmetric.Registry
	DataDir string
}

// Backend opens one kind of stream. The binary passes the table of the
// backends it offers to New; cmd/les has every one, the agent-only build
// (Lambda extension) all but embedded, so that it does not link
// nats-server. Adding a backend is one folder under internal/stream and
// one line in the table; a test in cmd/les checks the two agree.
type Backend struct {
	Kind string
	// Dir is the backend's folder under internal/stream (README.md,
	// example.yaml).
	Dir  string
	Open func(ctx context.Context, c *StreamConfig, deps StreamDeps) (Stream, error)
}

// ClientBackends are the backends that connect to a stream running
// elsewhere.
func ClientBackends() []Backend {
	return []Backend{
		{Kind: "nats", Dir: "natsjs", Open: func(ctx context.Context, c *StreamConfig, d StreamDeps) (Stream, error) {
			return natsjs.Open(ctx, c.NATS, c.Partitions, natsjs.Deps{Log: d.Log, Metrics: d.Metrics})
		}},
		{Kind: "kafka", Dir: "kafka", Open: func(ctx context.Context, c *StreamConfig, d StreamDeps) (Stream, error) {
			st, err := kafka.Open(ctx, c.Kafka, c.Partitions, kafka.Deps{Log: d.Log, Metrics: d.Metrics})
			return claimingStream{urlStream{st, "kafka://" + strings.Join(c.Kafka.Brokers, ",")}, st}, err
		}},
		{Kind: "kinesis", Dir: "kinesis", Open: func(ctx context.Context, c *StreamConfig, d StreamDeps) (Stream, error) {
			st, err := kinesis.Open(ctx, c.Kinesis, c.Partitions, kinesis.Deps{Log: d.Log, Metrics: d.Metrics})
			return urlStream{st, "kinesis://" + c.Kinesis.Stream}, err
		}},
		{Kind: "http", Dir: "httpstream", Open: func(ctx context.Context, c *StreamConfig, d StreamDeps) (Stream, error) {
			return httpstream.Open(ctx, c.HTTP, c.Partitions, httpstream.Deps{Log: d.Log, Metrics: d.Metrics})
		}},
	}
}

// urlStream gives a stream without a client URL of its own the one of
// its config (no credentials in it).
type urlStream struct {
	stream.Stream
	url string
}

func (u urlStream) ClientURL() string { return u.url }

// claimingStream is a urlStream that keeps its stream's stream.Claimer
// (Kafka: the processors claim partitions through it, ADR 0009).
type claimingStream struct {
	urlStream
	stream.Claimer
}

// openStream opens the configured stream with the first backend of kind.
func (a *App) openStream(ctx context.Context) (Stream, error) {
	c := &a.cfg.Stream
	if c.Kind == "http" && a.consumers() {
		// Located: the file and line of stream.kind.
		return nil, a.cfg.errAt("kind http only forwards records to a central les and cannot be read back: "+
			"run les agent with it, and point les up, les consume and les tail at the central les' stream", "stream", "kind")
	}
	for _, b := range a.backends {
		if b.Kind == c.Kind {
			st, err := b.Open(ctx, c, StreamDeps{Log: a.log, Metrics: a.reg, DataDir: a.cfg.DataDir})
			if err != nil {
				if strings.HasPrefix(err.Error(), "stream."+c.Kind) {
					return nil, err // names its setting already (stream.embedded.listen …)
				}
				return nil, fmt.Errorf("stream %s: %w", c.Kind, err)
			}
			return st, nil
		}
	}
	return nil, fmt.Errorf("stream.kind %s is not offered by this binary (it offers %s)", c.Kind, strings.Join(a.kinds(), ", "))
}

func (a *App) kinds() []string {
	var ks []string
	for _, b := range a.backends {
		ks = append(ks, b.Kind)
	}
	return ks
}

// OpenClient opens the configured stream to read it from another process
// (les tail). Kind embedded means the embedded stream of a running les up,
// reached at stream.embedded.listen with its token; a NATS stream must
// already exist. Other kinds open as their backend does.
func OpenClient(ctx context.Context, cfg *Config, backends []Backend, log *slog.Logger) (Stream, error) {
	c := &cfg.Stream
	deps := natsjs.Deps{Log: log, MustExist: true}
	switch c.Kind {
	case "embedded":
		return natsjs.Open(ctx, natsjs.Config{URL: "nats://" + c.Embedded.Listen, Token: c.Embedded.Token, Name: c.Embedded.Name}, c.Partitions, deps)
	case "nats":
		return natsjs.Open(ctx, c.NATS, c.Partitions, deps)
	}
	a := &App{cfg: cfg, log: log, reg: selfmetric.New(), backends: backends}
	return a.openStream(ctx)
}
