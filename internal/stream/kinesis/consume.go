package kinesis

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/les-streams/les/internal/stream"
)

// listInterval is how often a consumer lists shards to find new ones
// (besides right after a shard it reads was closed and read to its end).
const listInterval = 30 * time.Second

// Backoff of failed AWS calls of a consumer.
const (
	readBackoffBase = 200 * time.Millisecond
	readBackoffMax  = 10 * time.Second
)

// Backoff of a failed handler: 250ms·n, at most 10s.
const (
	handlerBackoffStep = 250 * time.Millisecond
	handlerBackoffMax  = 10 * time.Second
)

// Consume implements stream.Stream. It blocks until ctx is cancelled or
// the Stream is closed and then returns nil promptly (within one AWS call
// or handler call), whether or not the endpoint is reachable; AWS errors
// are retried with backoff and logged. It fails at once for options it
// cannot honour: Durable (Kinesis keeps no consumer cursors) and
// partitions out of range.
//
// Shards: with o.Partitions nil every shard is read; otherwise every shard
// whose hash-key range contains the start key of an assigned partition,
// and only records of assigned partitions are delivered, so consumers
// with disjoint assignments handle each record once even where partitions
// share a shard. A child shard is read only after its parents (those this
// consumer reads) were read to their end. Starting points: o.After[shard]
// (after that sequence number), TRIM_HORIZON for shards missing from a
// non-nil After and for shards that appear while running; with After nil,
// TRIM_HORIZON if o.FromStart, else LATEST. o.Rewind[shard] at or before
// o.After[shard] starts that shard at the rewind position, inclusive
// (AT_SEQUENCE_NUMBER); Kinesis keeps no cursor to move, so the caller's
// checkpoint moves back as it stores the re-delivered positions.
//
// The handler is called by one goroutine, one call at a time, in shard
// order per shard; Delivery.Partition is the shard id and Pos the sequence
// number. A failed call is repeated with the same deliveries (250ms·n
// backoff, at most 10s) until it succeeds or ctx ends. The deliveries and
// their Data are valid until the handler returns; it must not keep them.
func (s *Stream) Consume(ctx context.Context, o stream.ConsumeOptions, h stream.Handler) error {
	if s.closed() {
		return stream.ErrClosed
	}
	if o.Durable != "" {
		return fmt.Errorf("kinesis: durable consumer %q: Kinesis keeps no consumer cursors; checkpoint the delivered positions and pass them in ConsumeOptions.After", o.Durable)
	}
	c := &consumer{s: s, o: o, out: make(chan []stream.Delivery), finished: make(chan string)}
	if o.Partitions != nil {
		c.keys = []*big.Int{} // non-nil: read only owning shards
		for _, p := range o.Partitions {
			if p < 0 || p >= s.partitions {
				return fmt.Errorf("kinesis: consume: partition %d not in [0,%d)", p, s.partitions)
			}
			c.keys = append(c.keys, s.starts[p])
		}
	}
	if c.o.Batch <= 0 {
		c.o.Batch = 64
	}
	if c.o.MaxWait <= 0 {
		c.o.MaxWait = 200 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	})
	wg.Go(func() { c.manage(ctx, &wg) })
	c.deliver(ctx, h)
	cancel()
	wg.Wait()
	return nil
}

// consumer is the state of one Consume call.
type consumer struct {
	s *Stream
	o stream.ConsumeOptions
	// keys are the start hash keys of the assigned partitions; nil: all
	// shards are read.
	keys []*big.Int
	// out carries each shard reader's deliveries, in shard order, to
	// deliver.
	out chan []stream.Delivery
	// finished carries the ids of shards read to their end to manage.
	finished chan string
}

// start is where a shard reader begins.
type start struct {
	typ types.ShardIteratorType // TRIM_HORIZON, LATEST or AFTER_SEQUENCE_NUMBER
	seq string                  // for AFTER_SEQUENCE_NUMBER and AT_SEQUENCE_NUMBER (a rewind)
	at  time.Time               // for LATEST: when Consume began
}

// manage lists shards and starts a reader (in wg) for every owned shard
// whose owned parents are read to their end, until ctx ends.
func (c *consumer) manage(ctx context.Context, wg *sync.WaitGroup) {
	began := time.Now()
	started, done := map[string]bool{}, map[string]bool{}
	var initial map[string]bool // shards of the first listing
	b := backoff{base: readBackoffBase, max: readBackoffMax}
	for {
		shards, err := c.s.listShards(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.s.log.Warn("kinesis: listing shards failed; retrying", "err", err)
			if b.wait(ctx) != nil {
				return
			}
			continue
		}
		b.reset()
		if initial == nil {
			initial = map[string]bool{}
			for _, sh := range shards {
				initial[aws.ToString(sh.ShardId)] = true
			}
		}
		byID := make(map[string]*types.Shard, len(shards))
		for i := range shards {
			byID[aws.ToString(shards[i].ShardId)] = &shards[i]
		}
		for changed := true; changed; {
			changed = false
			for i := range shards {
				sh := &shards[i]
				id := aws.ToString(sh.ShardId)
				if started[id] || done[id] || !c.owns(sh) || c.waitsForParent(sh, byID, done) {
					continue
				}
				st, skip := c.startOf(id, initial[id], sh.SequenceNumberRange != nil && sh.SequenceNumberRange.EndingSequenceNumber != nil, began)
				if skip {
					done[id], changed = true, true
					continue
				}
				started[id] = true
				wg.Go(func() {
					if c.readShard(ctx, id, st) {
						select {
						case c.finished <- id:
						case <-ctx.Done():
						}
					}
				})
			}
		}
		t := time.NewTimer(listInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case id := <-c.finished:
			done[id] = true
		case <-t.C:
		}
		t.Stop()
	}
}

// owns reports whether the consumer reads sh.
func (c *consumer) owns(sh *types.Shard) bool {
	if c.keys == nil {
		return true
	}
	if sh.HashKeyRange == nil {
		return false
	}
	lo, ok1 := new(big.Int).SetString(aws.ToString(sh.HashKeyRange.StartingHashKey), 10)
	hi, ok2 := new(big.Int).SetString(aws.ToString(sh.HashKeyRange.EndingHashKey), 10)
	if !ok1 || !ok2 {
		return false
	}
	for _, k := range c.keys {
		if k.Cmp(lo) >= 0 && k.Cmp(hi) <= 0 {
			return true
		}
	}
	return false
}

// waitsForParent reports whether a parent of sh that this consumer reads
// is still listed and not yet read to its end. Parents no longer listed
// (trimmed by retention) do not hold sh back.
func (c *consumer) waitsForParent(sh *types.Shard, byID map[string]*types.Shard, done map[string]bool) bool {
	for _, parent := range []*string{sh.ParentShardId, sh.AdjacentParentShardId} {
		pid := aws.ToString(parent)
		if p, listed := byID[pid]; listed && c.owns(p) && !done[pid] {
			return true
		}
	}
	return false
}

// startOf returns where shard id begins; skip reports a shard there is
// nothing to read in (LATEST of a shard already closed).
func (c *consumer) startOf(id string, initial, closed bool, began time.Time) (st start, skip bool) {
	switch {
	case c.o.After != nil:
		if pos := c.o.After[id]; pos != "" {
			if rw, ok := c.o.Rewind[id]; ok && stream.ComparePositions(rw, pos) <= 0 {
				return start{typ: types.ShardIteratorTypeAtSequenceNumber, seq: string(rw)}, false // only back
			}
			return start{typ: types.ShardIteratorTypeAfterSequenceNumber, seq: string(pos)}, false
		}
		switch {
		case !c.o.Start.Time.IsZero():
			return start{typ: types.ShardIteratorTypeAtTimestamp, at: c.o.Start.Time}, false
		case c.o.Start.Newest && initial:
			if closed {
				return start{}, true
			}
			return start{typ: types.ShardIteratorTypeLatest, at: began}, false
		}
		return start{typ: types.ShardIteratorTypeTrimHorizon}, false
	case !initial || c.o.FromStart:
		return start{typ: types.ShardIteratorTypeTrimHorizon}, false
	case closed:
		return start{}, true
	default:
		return start{typ: types.ShardIteratorTypeLatest, at: began}, false
	}
}

func (s *Stream) listShards(ctx context.Context) ([]types.Shard, error) {
	var out []types.Shard
	in := &kinesis.ListShardsInput{StreamName: aws.String(s.cfg.Stream)}
	for {
		res, err := s.api.ListShards(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("kinesis: list shards of %s: %w", s.cfg.Stream, err)
		}
		out = append(out, res.Shards...)
		if res.NextToken == nil {
			return out, nil
		}
		// With NextToken the stream name must be absent.
		in = &kinesis.ListShardsInput{NextToken: res.NextToken}
	}
}

// readShard reads shard id from st and sends its wanted deliveries to
// c.out. It returns true when the shard is closed and read to its end,
// false when ctx ended.
func (c *consumer) readShard(ctx context.Context, id string, st start) bool {
	log := c.s.log.With("shard", id)
	b := backoff{base: readBackoffBase, max: readBackoffMax}
	last := st.seq // the last sequence number read (or the one to start after)
	if st.typ == types.ShardIteratorTypeAtSequenceNumber {
		last = "" // until a record is read: start at st.seq
	}
	latestTaken := false
	var iter *string
	for ctx.Err() == nil {
		if iter == nil {
			in := &kinesis.GetShardIteratorInput{StreamName: aws.String(c.s.cfg.Stream), ShardId: aws.String(id)}
			switch {
			case last != "":
				in.ShardIteratorType, in.StartingSequenceNumber = types.ShardIteratorTypeAfterSequenceNumber, aws.String(last)
			case st.typ == types.ShardIteratorTypeLatest && latestTaken:
				// Iterator expired before any record: nothing since began was read.
				in.ShardIteratorType, in.Timestamp = types.ShardIteratorTypeAtTimestamp, aws.Time(st.at)
			case st.typ == types.ShardIteratorTypeAtSequenceNumber:
				in.ShardIteratorType, in.StartingSequenceNumber = st.typ, aws.String(st.seq)
			case st.typ == types.ShardIteratorTypeAtTimestamp:
				in.ShardIteratorType, in.Timestamp = st.typ, aws.Time(st.at)
			default:
				in.ShardIteratorType = st.typ
			}
			out, err := c.s.api.GetShardIterator(ctx, in)
			var invalid *types.InvalidArgumentException
			switch {
			case ctx.Err() != nil:
				return false
			case err != nil && (last != "" || st.typ == types.ShardIteratorTypeAtSequenceNumber) && errors.As(err, &invalid):
				// The position is not in the shard any more (trimmed by
				// retention) or never was: read what is retained.
				c.s.gaps.Inc()
				log.Warn("kinesis: position not in the shard (trimmed by retention?); reading from the oldest retained record, records in between are lost",
					"position", last, "err", err)
				last, st.typ = "", types.ShardIteratorTypeTrimHorizon
				continue
			case err != nil:
				c.countThrottled(err)
				log.Warn("kinesis: getting a shard iterator failed; retrying", "err", err)
				_ = b.wait(ctx)
				continue
			case out.ShardIterator == nil: // closed shard, past its end
				return true
			}
			latestTaken = latestTaken || st.typ == types.ShardIteratorTypeLatest
			iter = out.ShardIterator
		}
		out, err := c.s.api.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
		if err != nil {
			var expired *types.ExpiredIteratorException
			switch {
			case ctx.Err() != nil:
				return false
			case errors.As(err, &expired):
				iter = nil // again after the last record read
				continue
			case c.countThrottled(err):
			default:
				log.Warn("kinesis: getting records failed; retrying", "err", err)
			}
			_ = b.wait(ctx)
			continue
		}
		b.reset()
		if n := len(out.Records); n > 0 {
			last = aws.ToString(out.Records[n-1].SequenceNumber)
		}
		if ds := c.deliveries(id, out.Records); len(ds) > 0 {
			select {
			case c.out <- ds:
			case <-ctx.Done():
				return false
			}
		}
		if out.NextShardIterator == nil {
			return true
		}
		iter = out.NextShardIterator
		wait := c.s.cfg.PollInterval
		if len(out.Records) > 0 && aws.ToInt64(out.MillisBehindLatest) > 0 {
			wait = MinPollInterval // behind: read on at the shard's rate limit
		}
		if sleep(ctx, wait) != nil {
			return false
		}
	}
	return false
}

// countThrottled counts err in les_stream_throttled_total if it is a
// throttling error and reports whether it was.
func (c *consumer) countThrottled(err error) bool {
	var throttled *types.ProvisionedThroughputExceededException
	var limit *types.LimitExceededException
	var kms *types.KMSThrottlingException
	if errors.As(err, &throttled) || errors.As(err, &limit) || errors.As(err, &kms) {
		c.s.throttled.Inc()
		return true
	}
	return false
}

// deliveries turns the records of shard id into the deliveries the
// consumer wants; their Data aliases the records'. Records of other
// producers are counted and skipped.
func (c *consumer) deliveries(id string, recs []types.Record) []stream.Delivery {
	var ds []stream.Delivery
	for i := range recs {
		r := &recs[i]
		key := aws.ToString(r.PartitionKey)
		origin, sig, p, ok := ParsePartitionKey(key)
		if !ok || p >= c.s.partitions {
			c.s.foreign.Inc()
			if c.s.warnedAlien.CompareAndSwap(false, true) {
				c.s.log.Warn("kinesis: skipping records not written by les (or with another stream.partitions); counted in les_stream_foreign_records_total",
					"shard", id, "partition_key", key)
			}
			continue
		}
		if !c.o.WantsPartition(p) || !c.o.Wants(origin, sig) {
			continue
		}
		ds = append(ds, stream.Delivery{Origin: origin, Signal: sig, Partition: id,
			Pos: stream.Position(aws.ToString(r.SequenceNumber)), Data: r.Data,
			Time: aws.ToTime(r.ApproximateArrivalTimestamp)})
	}
	return ds
}

// deliver hands the readers' deliveries to h in batches of at most
// o.Batch, waiting at most o.MaxWait for a batch to fill, until ctx ends.
func (c *consumer) deliver(ctx context.Context, h stream.Handler) {
	var pending []stream.Delivery
	for {
		if len(pending) == 0 {
			select {
			case <-ctx.Done():
				return
			case pending = <-c.out:
			}
		}
		if len(pending) < c.o.Batch {
			t := time.NewTimer(c.o.MaxWait)
		fill:
			for len(pending) < c.o.Batch {
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case ds := <-c.out:
					pending = append(pending, ds...)
				case <-t.C:
					break fill
				}
			}
			t.Stop()
		}
		n := min(len(pending), c.o.Batch)
		if !c.handle(ctx, h, pending[:n:n]) {
			return
		}
		clear(pending[:n]) // release the records' data
		pending = pending[n:]
	}
}

// handle calls h with ds until it returns nil (true) or ctx ends (false).
func (c *consumer) handle(ctx context.Context, h stream.Handler, ds []stream.Delivery) bool {
	for attempt := 1; ; attempt++ {
		for i := range ds {
			ds[i].NumDelivered = uint64(attempt)
		}
		err := h(ctx, ds)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		c.s.log.Debug("kinesis: handler failed; redelivering", "deliveries", len(ds), "attempt", attempt, "err", err)
		if sleep(ctx, min(time.Duration(attempt)*handlerBackoffStep, handlerBackoffMax)) != nil {
			return false
		}
	}
}
