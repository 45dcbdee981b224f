package extension

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/kinesis"
	"github.com/les-streams/les/internal/stream/natsjs"
)

// backend is one stream kind the extension publishes to.
type backend struct {
	validate func(s *StreamConfig) error
	open     func(ctx context.Context, s *StreamConfig, d streamDeps) (stream.Stream, error)
}

type streamDeps struct {
	Log     *slog.Logger
	Metrics *selfmetric.Registry
}

// backends is the explicit table of stream kinds in this build. kafka is
// added by kafka_lite.go (kafkalite, the small producer) or, with the
// les_kafka build tag, kafka_on.go (franz-go, 3 MB more: ADR 0005); http
// by httpstream.go.
func backends() map[string]backend {
	m := map[string]backend{
		"kinesis": {
			validate: func(s *StreamConfig) error {
				if s.Kinesis.CreateShards != 0 {
					return errors.New("stream.kinesis.create_shards: the extension never creates streams (create it with les or the AWS CLI)")
				}
				return s.Kinesis.Validate()
			},
			open: func(ctx context.Context, s *StreamConfig, d streamDeps) (stream.Stream, error) {
				return kinesis.Open(ctx, s.Kinesis, s.Partitions, kinesis.Deps{Log: d.Log, Metrics: d.Metrics})
			},
		},
		"nats": {
			validate: func(s *StreamConfig) error {
				if err := s.NATS.Validate(); err != nil {
					return err
				}
				if s.NATS.URL == "" && len(s.NATS.Servers) == 0 {
					return errors.New("stream.nats: url or servers is required")
				}
				return nil
			},
			open: func(ctx context.Context, s *StreamConfig, d streamDeps) (stream.Stream, error) {
				return natsjs.Open(ctx, s.NATS, s.Partitions, natsjs.Deps{Log: d.Log, Metrics: d.Metrics})
			},
		},
	}
	addKafka(m)
	addHTTP(m)
	return m
}

// errShut is what Publish returns while the gate is shut (between the end
// of an invocation and the next event): the batcher spools the record.
var errShut = errors.New("les extension: sandbox about to freeze; record spooled")

// publisher is the stream the batcher and spool publish to. It opens the
// real stream at the first Publish (no network call during init), and it
// is a gate: Shut cancels publishes in flight and fails new ones at once,
// so that what the stream has not taken at the end of an invocation is
// spooled before the sandbox freezes; Open lets publishes through again.
// It only publishes: Consume and Lag are unsupported.
type publisher struct {
	cfg  *StreamConfig
	b    backend
	deps streamDeps
	caps stream.Capabilities

	sem chan struct{} // held while opening
	st  atomic.Pointer[streamBox]

	mu     sync.Mutex
	epoch  context.Context
	cancel context.CancelFunc
	shut   bool

	healthy atomic.Bool // the last publish (or open) succeeded
}

type streamBox struct{ stream.Stream }

func newPublisher(cfg *StreamConfig, b backend, deps streamDeps) *publisher {
	p := &publisher{cfg: cfg, b: b, deps: deps, sem: make(chan struct{}, 1),
		caps: stream.Capabilities{Backend: cfg.Kind, Partitions: cfg.Partitions, MaxRecordBytes: 1 << 20}}
	p.epoch, p.cancel = context.WithCancel(context.Background())
	p.healthy.Store(true)
	return p
}

// Open lets publishes through.
func (p *publisher) Open() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shut {
		p.epoch, p.cancel = context.WithCancel(context.Background())
		p.shut = false
	}
}

// Shut cancels publishes in flight and fails new ones until Open.
func (p *publisher) Shut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.shut = true
	p.cancel()
}

// Healthy reports whether the last publish succeeded.
func (p *publisher) Healthy() bool { return p.healthy.Load() }

func (p *publisher) Publish(ctx context.Context, recs ...stream.Record) error {
	p.mu.Lock()
	shut, epoch := p.shut, p.epoch
	p.mu.Unlock()
	if shut {
		return errShut
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(epoch, cancel)
	defer stop()
	st, err := p.get(ctx)
	if err == nil {
		err = st.Publish(ctx, recs...)
	}
	if err != nil && epoch.Err() != nil {
		err = fmt.Errorf("%w (%v)", errShut, err)
	}
	p.healthy.Store(err == nil)
	return err
}

// get returns the stream, opening it (bounded by ctx) on first use.
func (p *publisher) get(ctx context.Context) (stream.Stream, error) {
	if b := p.st.Load(); b != nil {
		return b.Stream, nil
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-p.sem }()
	if b := p.st.Load(); b != nil {
		return b.Stream, nil
	}
	st, err := p.b.open(ctx, p.cfg, p.deps)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", p.cfg.Kind, err)
	}
	p.st.Store(&streamBox{st})
	return st, nil
}

func (p *publisher) Capabilities() stream.Capabilities {
	if b := p.st.Load(); b != nil {
		c := b.Capabilities()
		c.Partitions = p.cfg.Partitions
		return c
	}
	return p.caps
}

func (p *publisher) Consume(context.Context, stream.ConsumeOptions, stream.Handler) error {
	return fmt.Errorf("les extension: consume: %w", errors.ErrUnsupported)
}

func (p *publisher) Lag(context.Context, stream.LagQuery) (uint64, error) {
	return 0, fmt.Errorf("les extension: lag: %w", errors.ErrUnsupported)
}

// Close closes the stream if it was opened (waiting for an open in
// progress).
func (p *publisher) Close() error {
	p.Shut()
	p.sem <- struct{}{}
	defer func() { <-p.sem }()
	if b := p.st.Load(); b != nil {
		return b.Close()
	}
	return nil
}
