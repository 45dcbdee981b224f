// Package consumer runs the back half of les: it reads records from the
// stream with a durable cursor, decodes them, hands them to processors or
// sinks, and acknowledges a record only after everything it produced is
// delivered or durably checkpointed. The ack rule lives here and nowhere
// else.
package consumer

import (
	"context"
	"errors"
	"log/slog"
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
	// Subjects the consumer reads (see stream.SubjectsFor).
	Subjects []string
	Retry    sink.RetryConfig
	// Batch is the most records per fetch (default 16).
	Batch int
}

// SinkRunner delivers every record on its subjects to one sink.
type SinkRunner struct {
	cfg SinkConfig
	st  stream.Stream
	sk  sink.Sink
	log *slog.Logger
	dec wire.Decoder
	b   model.Batch
	lag atomic.Int64

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
	go pollLag(ctx, r.st, r.cfg.Name, &r.lag)
	err := r.st.Consume(ctx, stream.ConsumeOptions{
		Durable: r.cfg.Name, Subjects: r.cfg.Subjects, Batch: r.cfg.Batch,
	}, r.handle)
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
		err = sink.Deliver(ctx, r.sk, &r.b, sink.Meta{RecordID: h.ID(), Seq: d.Seq}, r.cfg.Retry,
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
	return nil
}

func (r *SinkRunner) deadLetterRecord(ctx context.Context, d stream.Delivery, cause error) error {
	r.log.Warn("dead-lettering record", "seq", d.Seq, "err", cause)
	err := r.st.Publish(ctx, stream.Record{
		Subject: stream.DLQSubject(r.cfg.Name),
		ID:      "dlq-" + r.cfg.Name + "-" + uitoa(d.Seq),
		Data:    d.Data,
	})
	if err == nil {
		r.deadLetter.Inc()
	}
	return err
}

func uitoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}

// pollLag refreshes a consumer's lag every few seconds.
func pollLag(ctx context.Context, st stream.Stream, name string, lag *atomic.Int64) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		if n, err := st.Lag(ctx, name); err == nil {
			lag.Store(int64(n))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
