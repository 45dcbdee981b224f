package kinesis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// Backoff between PutRecords attempts after a failure.
const (
	putBackoffBase = 100 * time.Millisecond
	putBackoffMax  = 5 * time.Second
)

// putEntry is one record on its way to PutRecords.
type putEntry struct {
	key  string // partition key
	ehk  string // explicit hash key
	data []byte // the caller's Data, not copied
	size int    // data + key bytes, what Kinesis counts
}

// Publish implements stream.Stream. It blocks until every record is stored
// (nil) or ctx ends, a whole call fails for good, or a record is too large
// (errors). It does not keep recs' Data after returning.
//
// Order: records with the same partition key (origin, signal and logical
// partition) are stored in the order given, even across retries, because
// one PutRecords call carries at most one record per partition key: a
// record is sent only after the previous record of its key was stored. A
// Publish of k records per key therefore makes at least k calls. Records
// of different keys may be stored in any order when some are throttled
// and retried. Throttled (ProvisionedThroughputExceededException) and
// failed (InternalFailure) entries are retried alone, with jittered
// backoff, until ctx ends. An error after partial success means some
// records may be stored: publishing them again duplicates them (consumers
// de-duplicate by record id).
func (s *Stream) Publish(ctx context.Context, recs ...stream.Record) error {
	if s.closed() {
		return stream.ErrClosed
	}
	// Queues per partition key, in the order keys first appear.
	var queues [][]putEntry
	byKey := map[string]int{}
	for i := range recs {
		r := &recs[i]
		if !stream.ValidOrigin(r.Origin) {
			return fmt.Errorf("kinesis: record %s: unknown origin %q", r.ID, r.Origin)
		}
		if !slices.Contains(wire.Signals[:], r.Signal) {
			return fmt.Errorf("kinesis: record %s: unknown signal %v", r.ID, r.Signal)
		}
		if r.Partition < 0 || r.Partition >= s.partitions {
			return fmt.Errorf("kinesis: record %s: partition %d not in [0,%d)", r.ID, r.Partition, s.partitions)
		}
		if int64(len(r.Data)) > s.maxData {
			return fmt.Errorf("kinesis: %w: record %s is %d bytes, the stream accepts %d", stream.ErrTooLarge, r.ID, len(r.Data), s.maxData)
		}
		e := putEntry{key: PartitionKey(r.Origin, r.Signal, r.Partition), ehk: s.hashKeys[r.Partition], data: r.Data}
		e.size = len(e.data) + len(e.key)
		q, ok := byKey[e.key]
		if !ok {
			q = len(queues)
			byKey[e.key] = q
			queues = append(queues, nil)
		}
		queues[q] = append(queues[q], e)
	}
	left := len(recs)
	b := backoff{base: putBackoffBase, max: putBackoffMax}
	var in kinesis.PutRecordsInput
	var sent []int // queue index of each entry of the call
	for left > 0 {
		in = kinesis.PutRecordsInput{StreamName: aws.String(s.cfg.Stream), Records: in.Records[:0]}
		sent = sent[:0]
		bytes := 0
		for q, es := range queues {
			if len(es) == 0 || len(in.Records) == s.cfg.MaxRecordsPerCall || bytes+es[0].size > MaxCallBytes {
				continue
			}
			e := es[0]
			bytes += e.size
			sent = append(sent, q)
			in.Records = append(in.Records, types.PutRecordsRequestEntry{Data: e.data, PartitionKey: aws.String(e.key), ExplicitHashKey: aws.String(e.ehk)})
		}
		out, err := s.put(ctx, &in)
		if err == nil && len(out.Records) != len(in.Records) {
			err = fmt.Errorf("%d results for %d records", len(out.Records), len(in.Records))
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("kinesis: publish: %w (last error: %v)", ctx.Err(), err)
			}
			if !retryable(err) {
				return fmt.Errorf("kinesis: publish to %s: %w", s.cfg.Stream, err)
			}
			s.retries.Add(len(in.Records))
			s.log.Debug("kinesis: put records failed; retrying", "records", len(in.Records), "err", err)
			if werr := b.wait(ctx); werr != nil {
				return fmt.Errorf("kinesis: publish: %w (last error: %v)", werr, err)
			}
			continue
		}
		failed := 0
		var lastErr string
		for i, res := range out.Records {
			code := aws.ToString(res.ErrorCode)
			if code == "" {
				q := sent[i]
				queues[q][0] = putEntry{} // drop the reference to the caller's data
				queues[q] = queues[q][1:]
				left--
				continue
			}
			failed++
			lastErr = code + ": " + aws.ToString(res.ErrorMessage)
			if code == "ProvisionedThroughputExceededException" {
				s.throttled.Inc()
			}
		}
		if failed == 0 {
			b.reset()
			continue
		}
		s.retries.Add(failed)
		if werr := b.wait(ctx); werr != nil {
			return fmt.Errorf("kinesis: publish: %w (%d records not stored, last error: %s)", werr, left, lastErr)
		}
	}
	return nil
}

// put makes one PutRecords call bounded by cfg.PutTimeout.
func (s *Stream) put(ctx context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PutTimeout)
	defer cancel()
	out, err := s.api.PutRecords(ctx, in)
	if err != nil {
		var throttled *types.ProvisionedThroughputExceededException
		if errors.As(err, &throttled) {
			s.throttled.Inc()
		}
		return nil, err
	}
	return out, nil
}

// retryable reports whether a failed PutRecords call may succeed when
// repeated: everything except errors about the request, the stream or the
// caller's permissions (network errors, throttling and 5xx are retried).
func retryable(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return true
	}
	switch ae.ErrorCode() {
	case "ResourceNotFoundException", "InvalidArgumentException", "ValidationException",
		"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
		"KMSDisabledException", "KMSInvalidStateException", "KMSNotFoundException",
		"KMSAccessDeniedException", "KMSOptInRequired":
		return false
	}
	return true
}
