// Package consumer runs the back half of les: it reads records from the
// stream with a durable cursor, decodes them, hands them to processors or
// sinks, and acknowledges a record only after everything it produced is
// delivered or durably checkpointed. The ack rule lives here and nowhere
// else.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// SinkConfig configures one sink consumer.
type SinkConfig struct {
	// Name is the durable consumer name (its cursor survives restarts).
	Name string
	// Origins and Signals the consumer reads (see stream.ConsumeOptions).
	Origins []string
	Signals []wire.Signal
	// Partitions assigned to this process (nil: all). On streams with
	// durable cursors of their own the stream may assign them instead
	// (Kafka consumer groups) and this must be nil.
	Partitions []int
	Retry      sink.RetryConfig
	// Batch is the most records per fetch (default 16).
	Batch int
	// PositionsPath is where the cursor is kept on streams that keep none
	// (Capabilities.DurableCursors false: Kinesis); required there.
	PositionsPath string
}

// SinkRunner delivers every record on its subjects to one sink.
type SinkRunner struct {
	cfg   SinkConfig
	st    stream.Stream
	sk    sink.Sink
	log   *slog.Logger
	dec   wire.Decoder
	b     model.Batch
	lag   atomic.Int64
	posMu sync.Mutex
	// pos is the cursor kept in PositionsPath (streams without durable
	// cursors); nil otherwise.
	pos *checkpoint

	consumed   *metrics.Counter
	delivered  *metrics.Counter
	deadLetter *metrics.Counter
	retries    *metrics.Counter
}

// NewSinkRunner returns a runner; it does no I/O until Run.
func NewSinkRunner(cfg SinkConfig, st stream.Stream, sk sink.Sink, reg *selfmetric.Registry, log *slog.Logger) (*SinkRunner, error) {
	if cfg.Name == "" {
		return nil, errors.New("consumer: name is required")
	}
	if err := cfg.Retry.Validate(); err != nil {
		return nil, err
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 16
	}
	if !st.Capabilities().DurableCursors && cfg.PositionsPath == "" {
		return nil, fmt.Errorf("consumer %s: the %s stream keeps no cursors; a positions file is required", cfg.Name, st.Capabilities().Backend)
	}
	r := &SinkRunner{cfg: cfg, st: st, sk: sk, log: log.With("consumer", cfg.Name),
		consumed:   reg.Counter("les_consumer_records_total", "consumer", cfg.Name),
		delivered:  reg.Counter("les_sink_delivered_items_total", "sink", cfg.Name),
		deadLetter: reg.Counter("les_consumer_dead_lettered_total", "consumer", cfg.Name),
		retries:    reg.Counter("les_sink_retries_total", "sink", cfg.Name),
	}
	r.lag.Store(-1)
	reg.Gauge("les_consumer_lag_records", func() float64 { return float64(r.lag.Load()) }, "consumer", cfg.Name)
	return r, nil
}

// Run consumes until ctx is cancelled, then closes the sink.
func (r *SinkRunner) Run(ctx context.Context) error {
	o := stream.ConsumeOptions{Origins: r.cfg.Origins, Signals: r.cfg.Signals,
		Partitions: r.cfg.Partitions, Batch: r.cfg.Batch}
	q := stream.LagQuery{Origins: o.Origins, Signals: o.Signals, Partitions: o.Partitions}
	if r.st.Capabilities().DurableCursors {
		o.Durable, q.Durable = r.cfg.Name, r.cfg.Name
	} else {
		ck, err := loadCheckpoint(r.cfg.PositionsPath)
		if err != nil {
			return fmt.Errorf("consumer %s: %w", r.cfg.Name, err)
		}
		r.pos = &ck
		o.After = maps.Clone(ck.positions)
	}
	lagCtx, stopLag := context.WithCancel(ctx)
	lagDone := make(chan struct{})
	go func() {
		defer close(lagDone)
		pollLag(lagCtx, r.st, q, r.positions, &r.lag)
	}()
	err := r.st.Consume(ctx, o, r.handle)
	stopLag()
	<-lagDone
	if cerr := r.sk.Close(); err == nil {
		err = cerr
	}
	return err
}

func (r *SinkRunner) handle(ctx context.Context, ds []stream.Delivery) error {
	for _, d := range ds {
		r.b.Reset()
		h, err := r.dec.Decode(&r.b, d.Data)
		if err != nil {
			// A record we cannot decode will never decode: dead-letter it.
			if err := r.deadLetterRecord(ctx, d, err); err != nil {
				return err
			}
			continue
		}
		if r.b.Len() == 0 {
			r.consumed.Inc()
			continue
		}
		err = sink.Deliver(ctx, r.sk, &r.b, sink.Meta{RecordID: h.ID(), Partition: d.Partition, Pos: string(d.Pos)}, r.cfg.Retry,
			func(error) { r.retries.Inc() })
		switch {
		case err == nil:
			r.delivered.Add(r.b.Len())
		case ctx.Err() != nil:
			return err // shutting down: redeliver later
		default:
			// A permanent failure, or retry.max_attempts used up.
			if err := r.deadLetterRecord(ctx, d, err); err != nil {
				return err
			}
		}
		r.consumed.Inc()
	}
	if r.pos != nil {
		r.posMu.Lock()
		for _, d := range ds {
			r.pos.positions[d.Partition] = d.Pos
		}
		err := r.pos.save(r.cfg.PositionsPath)
		r.posMu.Unlock()
		if err != nil {
			return fmt.Errorf("consumer %s: positions: %w", r.cfg.Name, err)
		}
	}
	return nil
}

// positions returns a copy of the cursor kept in PositionsPath (nil when
// the stream keeps it).
func (r *SinkRunner) positions() map[string]stream.Position {
	if r.pos == nil {
		return nil
	}
	r.posMu.Lock()
	defer r.posMu.Unlock()
	return maps.Clone(r.pos.positions)
}

// deadLetterRecord publishes d unchanged under origin dlq, same signal and
// partition; its id names the consumer and the record's place.
func (r *SinkRunner) deadLetterRecord(ctx context.Context, d stream.Delivery, cause error) error {
	r.log.Warn("dead-lettering record", "partition", d.Partition, "pos", d.Pos, "err", cause)
	p, _ := strconv.Atoi(d.Partition)
	if p < 0 || p >= r.st.Capabilities().Partitions {
		p = 0 // a physical partition that is not a logical one (a shard id)
	}
	err := r.st.Publish(ctx, stream.Record{
		Origin: stream.OriginDLQ, Signal: d.Signal, Partition: p,
		ID:   "dlq-" + r.cfg.Name + "-" + d.Partition + "-" + string(d.Pos),
		Data: d.Data,
	})
	if err == nil {
		r.deadLetter.Inc()
	}
	return err
}

// pollLag refreshes a consumer's lag every few seconds; positions, when
// not nil, gives the cursor of a consumer that keeps its own.
func pollLag(ctx context.Context, st stream.Stream, q stream.LagQuery, positions func() map[string]stream.Position, lag *atomic.Int64) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		if q.Durable == "" {
			q.After = positions()
		}
		if n, err := st.Lag(ctx, q); err == nil {
			lag.Store(int64(n))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
