// Package consumer is les' back half as an AWS Lambda function: a handler
// for a Kinesis event source mapping (and an MSK/Kafka one) that decodes
// the les records of an event, derives metrics from their logs
// (internal/logmetric, as `les consume` does) and delivers items and
// derived points to the configured sinks with sink.Deliver, bounded by the
// invocation's deadline.
//
// The answer to a Kinesis event is a partial batch response
// (ReportBatchItemFailures): everything before the first record that could
// not be delivered is done, and that record's sequence number is returned
// so the mapping retries exactly from there. Records that are not les
// records are logged with their reason, counted and skipped (retrying them
// can never help and would block the shard); a les record of a wire
// version this build does not implement is reported as a failure, so the
// shard waits for an upgraded function instead of losing data (see
// README.md and docs/adr/0006-lambda-consumer-rollups.md).
//
// Rollups do not run in the function (ADR 0006): the rollup's raw input
// that logmetric derives is published to the stream for a `les consume`
// rollup, or, with the rollup disabled, delivered to the sinks as it is.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// DefaultReserve is the time kept back before the invocation's deadline:
// no delivery runs into it, so the handler always answers in time.
const DefaultReserve = 250 * time.Millisecond

// maxLoggedRejects bounds the per-record warnings of one invocation; the
// rest are counted and summarised.
const maxLoggedRejects = 10

// RollupMode says where the rollup's raw input goes (model.Metric.Aggregated
// points and raw distributions).
type RollupMode string

const (
	// RollupStream: a `les consume` runs the rollup. Records of origin agg
	// on the stream are left to it, and the raw input logmetric derives is
	// published to the stream under origin agg (Deps.Publish).
	RollupStream RollupMode = "stream"
	// RollupNone: no rollup anywhere (rollup.disabled). Raw input is
	// delivered to the sinks as it is, as `les up` does without a rollup.
	RollupNone RollupMode = "none"
)

// Sink is one configured sink.
type Sink struct {
	Name string
	Sink sink.Sink
	// Signals the sink takes (empty: all).
	Signals []wire.Signal
	Retry   sink.RetryConfig
}

func (s *Sink) wants(sig wire.Signal) bool {
	return len(s.Signals) == 0 || slices.Contains(s.Signals, sig)
}

// Logmetric is the logmetric processor's transform (*logmetric.Processor).
type Logmetric interface {
	Add(b *model.Batch, now int64)
	Advance(now int64, out *model.Batch)
}

// Config configures a Handler.
type Config struct {
	// Sinks receive every item of the records of origins in, rollup and
	// derived (and agg with RollupNone), and the points logmetric derives.
	Sinks []Sink
	// Logmetric, when not nil, derives points from the log records of
	// origin in.
	Logmetric Logmetric
	// Rollup is where raw rollup input goes (default RollupStream).
	Rollup RollupMode
	// Partitions is stream.partitions: derived records are spread over
	// them by the partition function.
	Partitions int
	// Compression of the records the handler publishes.
	Compression wire.Compression
	// MaxRecordBytes bounds the body of one published record (default 1 MiB).
	MaxRecordBytes int
	// Reserve is the time kept back before the deadline (default
	// DefaultReserve).
	Reserve time.Duration
	// TopicPrefix starts the names of les' Kafka topics (stream.kafka.topic_prefix,
	// default "les").
	TopicPrefix string
}

// Deps is what code supplies.
type Deps struct {
	Log     *slog.Logger
	Metrics *selfmetric.Registry
	// Publish stores records on the stream (stream.Stream.Publish). It is
	// required with RollupStream and a Logmetric.
	Publish func(ctx context.Context, recs ...stream.Record) error
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Handler handles event source mapping events. Invocations are
// serialised: it is safe for concurrent use, one event at a time.
type Handler struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	mu      sync.Mutex
	dec     wire.Decoder
	b       model.Batch
	derived model.Batch
	direct  model.Batch
	raw     model.Batch
	buf     []byte

	records   *metrics.Counter
	delivered *metrics.Counter
	published *metrics.Counter
	skipped   *selfmetric.ReasonCounters
	rejected  *selfmetric.ReasonCounters
	failed    *selfmetric.ReasonCounters
	retries   *metrics.Counter
}

// New validates cfg and returns a handler. It does no I/O. Self-metrics:
// les_lambda_consumer_records_total (records handled: delivered, skipped
// or rejected), les_lambda_consumer_rejected_records_total{reason} (not
// les records, skipped), les_lambda_consumer_skipped_records_total{reason}
// (les records that are not for the sinks), les_lambda_consumer_failed_records_total{reason}
// (records reported in batchItemFailures), les_sink_delivered_items_total{sink},
// les_sink_retries_total{sink} and les_lambda_consumer_published_records_total.
func New(cfg Config, deps Deps) (*Handler, error) {
	switch cfg.Rollup {
	case "":
		cfg.Rollup = RollupStream
	case RollupStream, RollupNone:
	default:
		return nil, fmt.Errorf("lambda consumer: rollup mode %q is not stream or none", cfg.Rollup)
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 1
	}
	if cfg.MaxRecordBytes <= 0 {
		cfg.MaxRecordBytes = 1 << 20
	}
	if cfg.Reserve <= 0 {
		cfg.Reserve = DefaultReserve
	}
	if cfg.TopicPrefix == "" {
		cfg.TopicPrefix = "les"
	}
	if cfg.Logmetric != nil && cfg.Rollup == RollupStream && deps.Publish == nil {
		return nil, errors.New("lambda consumer: logmetric derives rollup input (counters, samples): it needs a stream to publish it to (stream.kind nats, kafka or kinesis, read by the les consume that runs the rollup) or rollup.disabled to deliver it to the sinks as it is")
	}
	names := map[string]bool{}
	for i := range cfg.Sinks {
		s := &cfg.Sinks[i]
		if s.Name == "" || names[s.Name] || s.Sink == nil {
			return nil, fmt.Errorf("lambda consumer: sink %d: name %q empty or repeated, or no sink", i, s.Name)
		}
		names[s.Name] = true
		if err := s.Retry.Validate(); err != nil {
			return nil, fmt.Errorf("lambda consumer: sink %s: %w", s.Name, err)
		}
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Metrics == nil {
		deps.Metrics = selfmetric.New()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	reg := deps.Metrics
	h := &Handler{cfg: cfg, deps: deps, log: deps.Log,
		records:   reg.Counter("les_lambda_consumer_records_total"),
		delivered: reg.Counter("les_lambda_consumer_delivered_items_total"),
		published: reg.Counter("les_lambda_consumer_published_records_total"),
		skipped:   reg.NewReasonCounters("les_lambda_consumer_skipped_records_total"),
		rejected:  reg.NewReasonCounters("les_lambda_consumer_rejected_records_total"),
		failed:    reg.NewReasonCounters("les_lambda_consumer_failed_records_total"),
		retries:   reg.Counter("les_lambda_consumer_sink_retries_total"),
	}
	return h, nil
}

// Close closes every sink.
func (h *Handler) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for i := range h.cfg.Sinks {
		if err := h.cfg.Sinks[i].Sink.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sink %s: %w", h.cfg.Sinks[i].Name, err))
		}
	}
	return errors.Join(errs...)
}

// Reasons a record is rejected (not a les record) or skipped.
const (
	ReasonForeignKey     = "foreign_partition_key" // the partition key is not <origin>.<signal>.<partition>
	ReasonShort          = "short"                 // shorter than the 48-byte header
	ReasonMagic          = "bad_magic"             // does not start with LESR
	ReasonCorrupt        = "corrupt"               // the body does not hold what the header says
	ReasonCompression    = "unknown_compression"
	ReasonTooLarge       = "too_large" // decompressed body over the limit
	ReasonSignalMismatch = "signal_mismatch"
	ReasonVersion        = "unsupported_version" // a failure, not a skip: upgrade the function
	ReasonDeadline       = "deadline"            // not delivered before the invocation's deadline
	ReasonSink           = "sink"                // a sink failed for good (permanent or out of attempts)
	ReasonPublish        = "publish"             // publishing derived rollup input failed
	ReasonDLQ            = "dead_letter"         // skipped: origin dlq
	ReasonRollupInput    = "rollup_input"        // skipped: origin agg, left to the rollup
)

// rejectReason classifies a decode error.
func rejectReason(err error) string {
	switch {
	case errors.Is(err, wire.ErrShort):
		return ReasonShort
	case errors.Is(err, wire.ErrMagic):
		return ReasonMagic
	case errors.Is(err, wire.ErrVersion):
		return ReasonVersion
	case errors.Is(err, wire.ErrTooLarge):
		return ReasonTooLarge
	case errors.Is(err, wire.ErrCompression):
		return ReasonCompression
	}
	return ReasonCorrupt
}

// item is one record of an event, whatever the event source.
type item struct {
	origin    string
	signal    wire.Signal
	keyOK     bool   // origin and signal are known
	partition string // physical partition: shard id or topic-partition
	pos       string // sequence number or offset
	data      []byte
}

// outcome of one invocation.
type outcome struct {
	failedAt int // index of the first record not done; -1 when all are
	reason   string
	err      error
	records  int
	items    int
	rejects  map[string]int
	logged   int
}

// process handles items in order until one fails; it holds h.mu.
func (h *Handler) process(ctx context.Context, items []item) outcome {
	out := outcome{failedAt: -1}
	work := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		work, cancel = context.WithDeadline(ctx, dl.Add(-h.cfg.Reserve))
		defer cancel()
	}
	for i := range items {
		if work.Err() != nil {
			out.failedAt, out.reason, out.err = i, ReasonDeadline, work.Err()
			break
		}
		reason, err := h.one(work, &items[i], &out)
		if err != nil {
			if work.Err() != nil && reason != ReasonVersion {
				reason = ReasonDeadline
			}
			out.failedAt, out.reason, out.err = i, reason, err
			break
		}
		out.records++
		h.records.Inc()
	}
	if out.failedAt >= 0 {
		h.failed.Inc(out.reason)
	}
	return out
}

// one handles one record: nil when it is done (delivered, skipped or
// rejected), else the reason and error to report it failed.
func (h *Handler) one(ctx context.Context, it *item, out *outcome) (string, error) {
	if !it.keyOK {
		h.reject(it, ReasonForeignKey, nil, out)
		return "", nil
	}
	switch {
	case it.origin == stream.OriginDLQ:
		h.skipped.Inc(ReasonDLQ)
		return "", nil
	case it.origin == stream.OriginAgg && h.cfg.Rollup == RollupStream:
		h.skipped.Inc(ReasonRollupInput)
		return "", nil
	}
	h.b.Reset()
	hdr, err := h.dec.Decode(&h.b, it.data)
	if err != nil {
		reason := rejectReason(err)
		if reason == ReasonVersion {
			// docs/wire-format.md, Versioning: never skip a record of a
			// newer version; the shard waits for an upgraded function.
			h.log.Error("les record of a wire version this function does not implement: upgrade les-consumer; the mapping retries it until then",
				"partition", it.partition, "pos", it.pos, "err", err)
			return reason, err
		}
		h.reject(it, reason, err, out)
		return "", nil
	}
	if hdr.Signal != it.signal {
		h.reject(it, ReasonSignalMismatch, fmt.Errorf("header signal %v, key signal %v", hdr.Signal, it.signal), out)
		return "", nil
	}
	id := hdr.ID()
	// Derive before delivering: a failure below retries the record, and
	// the derived points (and their ids) come out the same again.
	h.direct.Reset()
	h.raw.Reset()
	if h.cfg.Logmetric != nil && it.origin == stream.OriginIngest && hdr.Signal == wire.SignalLogs && len(h.b.Logs) > 0 {
		now := h.deps.Now().UnixNano()
		h.derived = model.Batch{}
		h.cfg.Logmetric.Add(&h.b, now)
		h.cfg.Logmetric.Advance(now, &h.derived)
		for j := range h.derived.Metrics {
			m := &h.derived.Metrics[j]
			if m.Aggregated() && h.cfg.Rollup == RollupStream {
				h.raw.Metrics = append(h.raw.Metrics, *m)
			} else {
				h.direct.Metrics = append(h.direct.Metrics, *m)
			}
		}
	}
	if len(h.raw.Metrics) > 0 {
		if err := h.publishRaw(ctx, &hdr); err != nil {
			return ReasonPublish, err
		}
	}
	if h.b.Len() > 0 {
		if reason, err := h.deliver(ctx, hdr.Signal, &h.b, sink.Meta{RecordID: id, Partition: it.partition, Pos: it.pos}); err != nil {
			return reason, err
		}
		out.items += h.b.Len()
	}
	if len(h.direct.Metrics) > 0 {
		did := derivedID(&hdr, 0)
		if reason, err := h.deliver(ctx, wire.SignalMetrics, &h.direct, sink.Meta{RecordID: did, Partition: it.partition, Pos: it.pos}); err != nil {
			return reason, err
		}
		out.items += len(h.direct.Metrics)
	}
	return "", nil
}

// deliver hands b to every sink that takes sig.
func (h *Handler) deliver(ctx context.Context, sig wire.Signal, b *model.Batch, m sink.Meta) (string, error) {
	for i := range h.cfg.Sinks {
		s := &h.cfg.Sinks[i]
		if !s.wants(sig) {
			continue
		}
		err := sink.Deliver(ctx, s.Sink, b, m, s.Retry, func(error) { h.retries.Inc() })
		if err != nil {
			if ctx.Err() != nil {
				return ReasonDeadline, fmt.Errorf("sink %s: %w", s.Name, err)
			}
			return ReasonSink, fmt.Errorf("sink %s: %w", s.Name, err)
		}
		h.deps.Metrics.Counter("les_sink_delivered_items_total", "sink", s.Name).Add(b.Len())
	}
	h.delivered.Add(b.Len())
	return "", nil
}

// publishRaw publishes the rollup input derived from the record of hdr
// under origin agg, one record per logical partition, with ids derived
// from hdr's: a retried invocation publishes the same ids, and the rollup
// folds each in once (it de-duplicates by record id).
func (h *Handler) publishRaw(ctx context.Context, hdr *wire.Header) error {
	parts := wire.Split(&h.raw, stream.OriginAgg, stream.OriginAgg, h.cfg.MaxRecordBytes, h.cfg.Partitions)
	recs := make([]stream.Record, 0, len(parts))
	for k, p := range parts {
		producer, seq := derivedProducer(hdr, k+1), hdr.Seq
		data, err := p.Enc.Finish(nil, producer, seq, h.cfg.Compression)
		if err != nil {
			return fmt.Errorf("encode derived record: %w", err)
		}
		ph := wire.Header{Producer: producer, Seq: seq}
		recs = append(recs, stream.Record{Origin: p.Origin, Signal: p.Enc.Signal(), Partition: p.Partition, ID: ph.ID(), Data: data})
	}
	if err := h.deps.Publish(ctx, recs...); err != nil {
		return fmt.Errorf("publish derived rollup input: %w", err)
	}
	h.published.Add(len(recs))
	return nil
}

// derivedSalt separates the ids of derived records from their source's.
const derivedSalt = 0x6c616d6264612d6c // "lambda-l"

// derivedProducer is the producer id of the k-th record derived from the
// record of hdr: a bijection of the source producer for each k, so
// derived ids of different source records differ.
func derivedProducer(hdr *wire.Header, k int) uint64 {
	return wire.Mix(hdr.Producer ^ (derivedSalt + uint64(k)))
}

// derivedID is the record id of the k-th record derived from hdr's.
func derivedID(hdr *wire.Header, k int) string {
	h := wire.Header{Producer: derivedProducer(hdr, k), Seq: hdr.Seq}
	return h.ID()
}

// reject counts a record that is not a les record and logs why (the
// first few of an invocation).
func (h *Handler) reject(it *item, reason string, err error, out *outcome) {
	h.rejected.Inc(reason)
	if out.rejects == nil {
		out.rejects = map[string]int{}
	}
	out.rejects[reason]++
	if out.logged < maxLoggedRejects {
		out.logged++
		args := []any{"reason", reason, "partition", it.partition, "pos", it.pos, "bytes", len(it.data)}
		if err != nil {
			args = append(args, "err", err)
		}
		h.log.Warn("skipping a record that is not a les record", args...)
	}
}
