// Package discard is a sink that counts items and drops them, for
// benchmarks and for measuring the pipeline without a backend.
package discard

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/sink"
)

// Config is what users write under `discard:`; it has no settings.
type Config struct{}

// Validate fills defaults and checks values.
func (c *Config) Validate() error { return nil }

// Counts are the totals seen since New.
type Counts struct {
	Batches       uint64
	Metrics       uint64
	Distributions uint64
	Logs          uint64
	Spans         uint64
}

// Sink counts and drops. It is safe for concurrent use.
type Sink struct {
	batches, metrics, dists, logs, spans atomic.Uint64
	closed                               atomic.Bool
}

var _ sink.Sink = (*Sink)(nil)

// New returns a discarding sink.
func New(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Sink{}, nil
}

// Send counts the items of b and drops them. It does not keep b.
func (s *Sink) Send(ctx context.Context, b *model.Batch, m sink.Meta) error {
	if s.closed.Load() {
		return errors.New("discard: sink is closed")
	}
	s.batches.Add(1)
	s.metrics.Add(uint64(len(b.Metrics)))
	s.dists.Add(uint64(len(b.Dists)))
	s.logs.Add(uint64(len(b.Logs)))
	s.spans.Add(uint64(len(b.Spans)))
	return nil
}

// Counts returns the totals so far.
func (s *Sink) Counts() Counts {
	return Counts{Batches: s.batches.Load(), Metrics: s.metrics.Load(), Distributions: s.dists.Load(),
		Logs: s.logs.Load(), Spans: s.spans.Load()}
}

// Close marks the sink closed; later Sends fail. Calling it again is a no-op.
func (s *Sink) Close() error {
	s.closed.Store(true)
	return nil
}
