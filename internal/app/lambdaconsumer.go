package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	lambdaconsumer "github.com/les-streams/les/internal/lambda/consumer"
	"github.com/les-streams/les/internal/logmetric"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// LambdaConsumerOptions are what the Lambda consumer binary decides.
type LambdaConsumerOptions struct {
	// Backends are the stream backends the binary offers (ClientBackends):
	// the stream is opened, on first use, only to publish the rollup input
	// logmetric derives.
	Backends []Backend
	// Reserve is the time kept back before each invocation's deadline
	// (default lambdaconsumer.DefaultReserve).
	Reserve time.Duration
}

// LambdaConsumer is the handler of the Lambda consumer function
// (cmd/les-consumer) with what it owns.
type LambdaConsumer struct {
	*lambdaconsumer.Handler
	// Registry holds the self-metrics.
	Registry *selfmetric.Registry
	st       *lazyStream
}

// Close closes the sinks and the stream, if it was opened.
func (c *LambdaConsumer) Close() error {
	err := c.Handler.Close()
	if c.st != nil {
		err = errors.Join(err, c.st.Close())
	}
	return err
}

// NewLambdaConsumer builds the Lambda consumer's handler from cfg (already
// validated by Load): the sinks of `sinks:` from the sink table, logmetric
// from `logmetric:`, and, unless rollup.disabled, the stream of `stream:`
// to publish the rollup input logmetric derives (ADR 0006). It does no
// I/O.
func NewLambdaConsumer(cfg *Config, log *slog.Logger, o LambdaConsumerOptions) (*LambdaConsumer, error) {
	a := New(cfg, log, Options{Mode: ModeConsume, Backends: o.Backends})
	comp, err := wire.ParseCompression(cfg.Agent.Batch.Compression)
	if err != nil {
		return nil, err
	}
	hc := lambdaconsumer.Config{
		Rollup:         lambdaconsumer.RollupStream,
		Partitions:     cfg.Stream.Partitions,
		Compression:    comp,
		MaxRecordBytes: cfg.Agent.Batch.MaxBatchBytes,
		Reserve:        o.Reserve,
		TopicPrefix:    cfg.Stream.Kafka.TopicPrefix,
	}
	if cfg.Rollup.Disabled {
		hc.Rollup = lambdaconsumer.RollupNone
	}
	deps := lambdaconsumer.Deps{Log: log, Metrics: a.reg}
	lc := &LambdaConsumer{Registry: a.reg}
	lm := &cfg.Logmetric
	if !lm.Disabled {
		if len(lm.compiled) != len(lm.Filters) {
			return nil, errors.New("logmetric: config not validated")
		}
		p, err := logmetric.New(logmetric.Config{
			Filters:    slices.Clone(lm.compiled),
			EMF:        lm.EMF == nil || *lm.EMF,
			Lambda:     lm.Lambda == nil || *lm.Lambda,
			MaxPending: lm.MaxPending,
		}, a.reg)
		if err != nil {
			return nil, err
		}
		hc.Logmetric = p
		if hc.Rollup == lambdaconsumer.RollupStream {
			if cfg.Stream.Kind == "embedded" {
				return nil, errors.New("les-consumer: logmetric derives rollup input (counters, samples) for the rollup of a les consume: set stream.kind (kinesis, kafka or nats) to the stream it reads, or set rollup.disabled: true to deliver that input to the sinks as it is, or logmetric.disabled: true")
			}
			lc.st = &lazyStream{open: func(ctx context.Context) (stream.Stream, error) { return a.openClientStream(ctx) }}
			deps.Publish = lc.st.Publish
		}
	}
	for i := range cfg.Sinks {
		sc := &cfg.Sinks[i]
		sk, err := a.newSink(sc)
		if err != nil {
			for _, s := range hc.Sinks {
				_ = s.Sink.Close()
			}
			return nil, fmt.Errorf("sink %s: %w", sc.Name, err)
		}
		var sigs []wire.Signal
		for _, s := range sc.Signals {
			sig, _ := wire.ParseSignal(s)
			sigs = append(sigs, sig)
		}
		hc.Sinks = append(hc.Sinks, lambdaconsumer.Sink{Name: sc.Name, Sink: sk, Signals: sigs, Retry: sc.Retry})
	}
	h, err := lambdaconsumer.New(hc, deps)
	if err != nil {
		for _, s := range hc.Sinks {
			_ = s.Sink.Close()
		}
		return nil, err
	}
	lc.Handler = h
	return lc, nil
}

// openClientStream opens the configured stream with one of a.backends,
// never the embedded server.
func (a *App) openClientStream(ctx context.Context) (stream.Stream, error) {
	kind := a.cfg.Stream.Kind
	for _, b := range a.backends {
		if b.Kind == kind && kind != "embedded" {
			return b.Open(ctx, &a.cfg.Stream, StreamDeps{Log: a.log, Metrics: a.reg, DataDir: a.cfg.DataDir})
		}
	}
	return nil, fmt.Errorf("stream kind %q is not available in this binary", kind)
}

// lazyStream opens a stream on the first Publish (and again after a
// failed open), so that init does no network I/O.
type lazyStream struct {
	open func(ctx context.Context) (stream.Stream, error)
	mu   sync.Mutex
	st   stream.Stream
}

func (l *lazyStream) Publish(ctx context.Context, recs ...stream.Record) error {
	l.mu.Lock()
	if l.st == nil {
		st, err := l.open(ctx)
		if err != nil {
			l.mu.Unlock()
			return fmt.Errorf("open stream: %w", err)
		}
		l.st = st
	}
	st := l.st
	l.mu.Unlock()
	return st.Publish(ctx, recs...)
}

func (l *lazyStream) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st == nil {
		return nil
	}
	err := l.st.Close()
	l.st = nil
	return err
}
