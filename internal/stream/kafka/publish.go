package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/les-streams/les/internal/stream"
)

// headerID is the record header carrying stream.Record.ID.
const headerID = "les-id"

// Publish implements stream.Stream. It sends every record to its topic
// and Kafka partition (the logical partition, modulo a smaller topic's
// partition count) with acks=all and returns nil once all are acknowledged.
// It blocks until then, ctx is done or produce_timeout passes. Records a
// broker definitely refused with a retriable error (NOT_ENOUGH_REPLICAS,
// NOT_LEADER, a dropped connection) are re-sent with backoff and counted
// in les_stream_publish_retries_total; writes whose outcome is unknown
// (request timeouts) are retried by the client's idempotent producer. A
// record whose Data exceeds max_record_bytes, or that a broker rejects as
// MESSAGE_TOO_LARGE, fails with an error wrapping stream.ErrTooLarge. On
// error some records may be stored (re-publishing them stores them again).
// Close makes a running Publish fail with an error wrapping
// stream.ErrClosed. Publish copies Data; recs are not kept after it
// returns.
func (s *Stream) Publish(ctx context.Context, recs ...stream.Record) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.wg.Done()
	if len(recs) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.closeCtx, cancel)()
	err := s.publish(ctx, recs)
	if err != nil {
		s.publishErrors.Inc()
		if s.closeCtx.Err() != nil {
			err = fmt.Errorf("%w: %w", stream.ErrClosed, err)
		}
	}
	return err
}

func (s *Stream) publish(ctx context.Context, recs []stream.Record) error {
	total := 0
	names := make([]string, 0, 1)
	for i := range recs {
		r := &recs[i]
		if int64(len(r.Data)) > s.cfg.MaxRecordBytes {
			return fmt.Errorf("kafka: %w: record %s is %d bytes, max_record_bytes is %d", stream.ErrTooLarge, r.ID, len(r.Data), s.cfg.MaxRecordBytes)
		}
		if r.Partition < 0 || r.Partition >= s.partitions {
			return fmt.Errorf("kafka: record %s: partition %d out of range [0,%d)", r.ID, r.Partition, s.partitions)
		}
		if !stream.ValidOrigin(r.Origin) {
			return fmt.Errorf("kafka: record %s: unknown origin %q", r.ID, r.Origin)
		}
		total += len(r.Data)
		name := s.topicName(r.Origin, r.Signal)
		if !contains(names, name) {
			names = append(names, name)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ProduceTimeout)
	defer cancel()
	parts, err := s.publishTopics(ctx, names)
	if err != nil {
		return err
	}

	// One copy of all the data: the client may still read a record after
	// Publish returned early on ctx.
	buf := make([]byte, 0, total)
	krs := make([]kgo.Record, len(recs))
	pending := make([]*kgo.Record, len(recs))
	for i := range recs {
		r := &recs[i]
		off := len(buf)
		buf = append(buf, r.Data...)
		name := s.topicName(r.Origin, r.Signal)
		krs[i] = kgo.Record{Topic: name, Partition: kafkaPartition(r.Partition, parts[name]),
			Key:     strconv.AppendInt(nil, int64(r.Partition), 10),
			Value:   buf[off:len(buf):len(buf)],
			Headers: []kgo.RecordHeader{{Key: headerID, Value: []byte(r.ID)}}}
		pending[i] = &krs[i]
	}
	for attempt := 1; ; attempt++ {
		failed, err := s.produce(ctx, pending)
		if len(failed) == 0 {
			return err
		}
		lastErr := err
		s.publishRetries.Add(len(failed))
		if !wait(ctx, backoff(attempt, 100*time.Millisecond, time.Second)) {
			return fmt.Errorf("kafka: publish: %d of %d records not acknowledged: %w (last error: %w)", len(failed), len(recs), ctx.Err(), lastErr)
		}
		pending = failed
	}
}

// publishTopics waits for names to exist (creating them if configured),
// retrying while brokers are unreachable, and returns partition counts.
func (s *Stream) publishTopics(ctx context.Context, names []string) (map[string]int32, error) {
	for attempt := 1; ; attempt++ {
		parts, missing, err := s.ensureTopics(ctx, names)
		if err == nil && len(missing) == 0 {
			return parts, nil
		}
		if err == nil {
			err = fmt.Errorf("kafka: topics %v do not exist (create_topics is %v)", missing, s.cfg.CreateTopicsOn())
			if !s.cfg.CreateTopicsOn() {
				return nil, err
			}
		}
		if ctx.Err() != nil || !retriable(err) {
			return nil, err
		}
		if !wait(ctx, backoff(attempt, 100*time.Millisecond, time.Second)) {
			return nil, fmt.Errorf("%w (%w)", err, ctx.Err())
		}
	}
}

// produce sends rs and waits for all of them or ctx. It returns the
// records to send again (retriable failures, in order) with the last such
// error, or no records and nil or a final error.
//
// When it returns early on ctx, rs stay buffered in the shared client,
// and franz-go fails every record buffered for a partition when the first
// one's context is done (kgo.Client.Produce): records of later calls to
// that partition, whose ctx is live, fail with the context error of this
// one. Those were never written, so produce returns them to be sent again
// (errFailedWithOthers), rather than as a final error.
func (s *Stream) produce(ctx context.Context, rs []*kgo.Record) ([]*kgo.Record, error) {
	errs := make([]error, len(rs))
	done := make(chan struct{})
	var left atomic.Int64
	left.Store(int64(len(rs)))
	for i, r := range rs {
		s.cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			errs[i] = err
			if left.Add(-1) == 0 {
				close(done)
			}
		})
	}
	select {
	case <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("kafka: publish: %d of %d records not acknowledged: %w", left.Load(), len(rs), ctx.Err())
	}
	var failed []*kgo.Record
	var last error
	for i, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, kerr.MessageTooLarge):
			return nil, fmt.Errorf("kafka: publish to %s: %w: %w", rs[i].Topic, stream.ErrTooLarge, err)
		case ctx.Err() != nil:
			return nil, fmt.Errorf("kafka: publish to %s: %w", rs[i].Topic, err)
		case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
			// Not our ctx (it is live, and was when the record failed):
			// an earlier call's, whose records were buffered ahead.
			failed = append(failed, rs[i])
			last = fmt.Errorf("%w (%v)", errFailedWithOthers, err)
		case !retriable(err):
			return nil, fmt.Errorf("kafka: publish to %s: %w", rs[i].Topic, err)
		default:
			failed = append(failed, rs[i])
			last = err
		}
	}
	return failed, last
}

// errFailedWithOthers is a record the client failed together with an
// earlier call's record whose context ended (see produce); it was not
// written, and sending it again succeeds.
var errFailedWithOthers = errors.New("kafka: record failed with an earlier one buffered for its partition, whose caller gave up")

// retriable reports whether sending again may succeed: Kafka's retriable
// errors and connection errors, not context, closed-client or
// non-retriable broker errors.
func retriable(err error) bool {
	if errors.Is(err, errFailedWithOthers) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, kgo.ErrClientClosed) || errors.Is(err, kerr.MessageTooLarge) {
		return false
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Retriable
	}
	return true
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
