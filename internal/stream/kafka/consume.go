package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/les-streams/les/internal/stream"
)

// Consumer defaults and bounds.
const (
	defaultBatch   = 64
	defaultMaxWait = 200 * time.Millisecond
	retryStep      = 250 * time.Millisecond // handler retry n waits n·retryStep
	retryMax       = 10 * time.Second
	commitTimeout  = 5 * time.Second // a final commit or group leave after ctx is done
)

// Consume implements stream.Stream. It blocks until ctx is cancelled or
// the Stream is closed, then returns nil; it returns an error for invalid
// options or an error retrying cannot fix (such as authorization).
//
// With o.Durable it joins consumer group <topic_prefix>.<durable>
// (cooperative-sticky) on the topics of o.Origins × o.Signals; the group
// assigns partitions, so o.Partitions must be nil. Offsets are committed
// only after h returned nil, and never for partitions revoked from this
// member while their batch was held (unless they were assigned back to it
// since). A new group starts at the oldest record.
//
// Without Durable it reads the Kafka partitions numbered o.Partitions
// (nil: all) of those topics directly, from just after o.After[
// "<origin>.<signal>/<partition>"], from the oldest record for partitions
// missing from a non-nil After, else from the oldest (FromStart) or the
// newest record.
//
// o.Rewind (keys as Delivery.Partition) moves a group's committed offset
// back when the group assigns the partition to this member (adjust), and
// a direct consumer's start after o.After.
//
// h gets up to o.Batch deliveries per call, waiting at most o.MaxWait to
// fill a batch. When h fails, the same deliveries are handed to it again
// after 250ms·n (at most 10s) until it succeeds or ctx is done; their
// NumDelivered counts the calls. Delivery.Data is the fetched record's
// value, owned by the delivery. While brokers are unreachable Consume
// retries connecting and creating topics, and ctx cancellation stops it.
func (s *Stream) Consume(ctx context.Context, o stream.ConsumeOptions, h stream.Handler) error {
	if o.Durable != "" && o.Partitions != nil {
		return errors.New("kafka: consume: Partitions cannot be combined with Durable (the consumer group assigns partitions)")
	}
	refs, err := s.wanted(o.Origins, o.Signals)
	if err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.wg.Done()
	if o.Batch <= 0 {
		o.Batch = defaultBatch
	}
	if o.MaxWait <= 0 {
		o.MaxWait = defaultMaxWait
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.closeCtx, cancel)()

	names := make([]string, len(refs))
	byTopic := make(map[string]*topicRef, len(refs))
	for i := range refs {
		names[i] = refs[i].name
		byTopic[refs[i].name] = &refs[i]
	}
	parts, err := s.consumeTopics(ctx, names)
	if err != nil || ctx.Err() != nil {
		return err
	}
	for label, pos := range o.Rewind {
		if at, err := strconv.ParseInt(string(pos), 10, 64); err != nil || at < 0 {
			return fmt.Errorf("kafka: consume: bad rewind position %q for %s", pos, label)
		}
	}
	c := &consumer{s: s, o: o, h: h, refs: byTopic, labels: map[tp]string{}, rewind: maps.Clone(o.Rewind)}
	if o.Durable != "" {
		return c.runGroup(ctx, names)
	}
	return c.runDirect(ctx, refs, parts)
}

// consumeTopics waits for the wanted topics, creating them if configured;
// topics still missing (create_topics off) are left out. It returns nil,
// nil when ctx ends first.
func (s *Stream) consumeTopics(ctx context.Context, names []string) (map[string]int32, error) {
	for attempt := 1; ; attempt++ {
		parts, missing, err := s.ensureTopics(ctx, names)
		if err == nil {
			if len(missing) > 0 {
				s.log.Warn("kafka: consume: topics do not exist and create_topics is off; they are not read until they exist",
					"topics", missing)
			}
			return parts, nil
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		if !retriable(err) {
			return nil, fmt.Errorf("kafka: consume: %w", err)
		}
		if attempt == 1 {
			s.log.Warn("kafka: consume: brokers not ready; retrying", "err", err)
		}
		if !wait(ctx, backoff(attempt, retryStep, retryMax)) {
			return nil, nil
		}
	}
}

// tp is a topic partition.
type tp struct {
	topic string
	part  int32
}

type consumer struct {
	s      *Stream
	o      stream.ConsumeOptions
	h      stream.Handler
	refs   map[string]*topicRef
	labels map[tp]string // "<origin>.<signal>/<partition>"
	cl     *kgo.Client
	group  *groupState // nil without Durable
	// rewind is what is left of o.Rewind in a group: a partition's entry
	// is applied and removed when the group assigns it (adjust).
	rewind map[string]stream.Position

	lastErr string // last fetch or commit error logged
}

func (c *consumer) runDirect(ctx context.Context, refs []topicRef, parts map[string]int32) error {
	offsets := map[string]map[int32]kgo.Offset{}
	for _, ref := range refs {
		n, ok := parts[ref.name]
		if !ok {
			continue
		}
		m := map[int32]kgo.Offset{}
		for kp := range n {
			if !c.wantsKafkaPartition(kp, n) {
				continue
			}
			switch {
			case c.o.After != nil:
				m[kp] = startOffset(c.o.Start)
				if pos := c.o.After[c.label(tp{ref.name, kp})]; pos != "" {
					off, err := strconv.ParseInt(string(pos), 10, 64)
					if err != nil || off < 0 {
						return fmt.Errorf("kafka: consume: bad position %q for %s", pos, c.label(tp{ref.name, kp}))
					}
					m[kp] = kgo.NewOffset().At(off + 1)
					if rw, ok := c.o.Rewind[c.label(tp{ref.name, kp})]; ok {
						if at, _ := strconv.ParseInt(string(rw), 10, 64); at <= off {
							m[kp] = kgo.NewOffset().At(at) // only back
						}
					}
				}
			case c.o.FromStart:
				m[kp] = kgo.NewOffset().AtStart()
			default:
				m[kp] = kgo.NewOffset().AtEnd()
			}
		}
		if len(m) > 0 {
			offsets[ref.name] = m
		}
	}
	if len(offsets) == 0 {
		<-ctx.Done()
		return nil
	}
	cl, err := kgo.NewClient(c.s.clientOpts(kgo.ConsumePartitions(offsets),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return fmt.Errorf("kafka: consume: %w", err)
	}
	defer cl.Close()
	c.cl = cl
	return c.loop(ctx)
}

// wantsKafkaPartition reports whether Kafka partition kp of a topic of n
// partitions holds a wanted logical partition.
func (c *consumer) wantsKafkaPartition(kp, n int32) bool {
	if c.o.Partitions == nil {
		return true
	}
	for _, p := range c.o.Partitions {
		if p >= 0 && kafkaPartition(p, n) == kp {
			return true
		}
	}
	return false
}

func (c *consumer) runGroup(ctx context.Context, names []string) error {
	c.group = &groupState{revoked: map[tp]bool{}}
	opts := []kgo.Opt{
		kgo.ConsumerGroup(c.s.cfg.TopicPrefix + "." + c.o.Durable),
		kgo.ConsumeTopics(names...),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		// A partition the group has no committed offset for begins where
		// Start says (Kafka's auto.offset.reset; it also applies to an
		// offset the topic no longer retains).
		kgo.ConsumeResetOffset(startOffset(c.o.Start)),
		kgo.OnPartitionsAssigned(c.group.assign),
		kgo.OnPartitionsRevoked(c.group.revoke),
		kgo.OnPartitionsLost(c.group.revoke),
		kgo.SessionTimeout(c.s.cfg.SessionTimeout),
		kgo.RebalanceTimeout(c.s.cfg.RebalanceTimeout),
	}
	if len(c.rewind) > 0 {
		opts = append(opts, kgo.AdjustFetchOffsetsFn(c.adjust))
	}
	if id := c.s.cfg.InstanceID; id != "" {
		opts = append(opts, kgo.InstanceID(id)) // static membership
	}
	cl, err := kgo.NewClient(c.s.clientOpts(opts...)...)
	if err != nil {
		return fmt.Errorf("kafka: consume: %w", err)
	}
	defer func() {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
		defer cancel()
		// Leaving late only delays the rebalance. A static member
		// (instance_id) does not leave: its partitions wait for it to
		// come back, at most session_timeout.
		_ = cl.LeaveGroupContext(lctx)
		// Close waits for an in-flight JoinGroup, up to the rebalance
		// timeout; a shutdown waits at most commitTimeout more for it.
		closed := make(chan struct{})
		go func() { cl.Close(); close(closed) }()
		t := time.NewTimer(commitTimeout)
		defer t.Stop()
		select {
		case <-closed:
		case <-t.C:
			c.s.log.Warn("kafka: leaving the consumer group is taking long; not waiting for it", "group", c.s.cfg.TopicPrefix+"."+c.o.Durable)
		}
	}()
	c.cl = cl
	return c.loop(ctx)
}

// adjust applies o.Rewind to the partitions the group has just assigned
// to this member, after their committed offsets were fetched and before
// they are read: a committed offset past the rewind position is replaced
// by it. Each entry is used once per Consume call (a partition assigned
// back later resumes from its commit, which the re-delivered records
// moved). A partition without a commit is left to Start. Only the member
// a partition is assigned to moves it, so several members never race.
// It runs on the client's group goroutine.
func (c *consumer) adjust(_ context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	none := startOffset(c.o.Start).EpochOffset().Offset // what a partition without a commit has
	for topic, parts := range offsets {
		ref := c.refs[topic]
		if ref == nil {
			continue
		}
		for p, off := range parts {
			label := ref.label + "/" + strconv.Itoa(int(p))
			pos, ok := c.rewind[label]
			if !ok {
				continue
			}
			delete(c.rewind, label)
			at, _ := strconv.ParseInt(string(pos), 10, 64) // checked by Consume
			cur := off.EpochOffset().Offset
			if cur < 0 || cur == none || at >= cur {
				continue // no commit yet, or already at or before pos
			}
			parts[p] = kgo.NewOffset().At(at).WithEpoch(-1)
			c.s.log.Info("kafka: consume: rewinding the group's offset to re-deliver records",
				"group", c.o.Durable, "partition", label, "committed", cur, "from", at)
		}
	}
	return offsets, nil
}

// loop polls batches and hands them to the handler until ctx is done.
func (c *consumer) loop(ctx context.Context) error {
	var ds []stream.Delivery
	for {
		c.group.reset() // before polling: revocations after this apply to the batch
		recs := c.fill(ctx)
		if ctx.Err() != nil {
			return nil // not handled, so not acknowledged
		}
		if len(recs) == 0 {
			continue
		}
		recs, ds = c.deliveries(ds[:0], recs)
		if !c.handle(ctx, recs, ds) {
			return nil
		}
	}
}

// fill polls up to Batch records, waiting for the first without bound and
// for the rest at most MaxWait.
func (c *consumer) fill(ctx context.Context) []*kgo.Record {
	fs := c.cl.PollRecords(ctx, c.o.Batch)
	c.fetchErrors(fs)
	recs := fs.Records()
	if len(recs) == 0 {
		return nil
	}
	deadline := time.Now().Add(c.o.MaxWait)
	for len(recs) < c.o.Batch {
		wctx, cancel := context.WithDeadline(ctx, deadline)
		fs = c.cl.PollRecords(wctx, c.o.Batch-len(recs))
		cancel()
		c.fetchErrors(fs)
		recs = append(recs, fs.Records()...)
		if wctx.Err() != nil {
			break
		}
	}
	return recs
}

// fetchErrors counts fetch errors (the client retries them) and logs a
// new kind once.
func (c *consumer) fetchErrors(fs kgo.Fetches) {
	fs.EachError(func(topic string, part int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kgo.ErrClientClosed) {
			return
		}
		c.s.consumeErrors.Inc()
		c.logOnce("kafka: consume: fetch error; retrying", err, "topic", topic, "partition", part)
	})
}

func (c *consumer) logOnce(msg string, err error, kv ...any) {
	if e := err.Error(); e != c.lastErr {
		c.lastErr = e
		c.s.log.Warn(msg, append(kv, "err", err)...)
	}
}

func (c *consumer) label(t tp) string {
	l, ok := c.labels[t]
	if !ok {
		l = c.refs[t.topic].label + "/" + strconv.Itoa(int(t.part))
		c.labels[t] = l
	}
	return l
}

// deliveries appends one delivery per record to ds, dropping records of
// topics not subscribed (which the client does not return), and returns
// the records kept, index-aligned with ds.
func (c *consumer) deliveries(ds []stream.Delivery, recs []*kgo.Record) ([]*kgo.Record, []stream.Delivery) {
	kept := recs[:0]
	for _, r := range recs {
		ref := c.refs[r.Topic]
		if ref == nil {
			continue
		}
		kept = append(kept, r)
		ds = append(ds, stream.Delivery{Origin: ref.origin, Signal: ref.signal,
			Partition: c.label(tp{r.Topic, r.Partition}), Pos: stream.Position(strconv.FormatInt(r.Offset, 10)),
			Data: r.Value, Time: r.Timestamp})
	}
	return kept, ds
}

// handle calls the handler until it accepts ds, then commits recs (in a
// group). It reports false when ctx ended first.
func (c *consumer) handle(ctx context.Context, recs []*kgo.Record, ds []stream.Delivery) bool {
	for n := 1; ; n++ {
		recs, ds = c.group.keep(recs, ds)
		if len(ds) == 0 {
			return true // every partition was revoked; their new owner reads them
		}
		for i := range ds {
			ds[i].NumDelivered = uint64(n)
		}
		if err := c.h(ctx, ds); err == nil {
			if c.group != nil {
				c.commit(ctx, recs)
			}
			return true
		}
		if ctx.Err() != nil || !wait(ctx, backoff(n, retryStep, retryMax)) {
			return false
		}
	}
}

// commit commits recs of partitions still assigned. It runs even when ctx
// is done (the handler accepted the records), bounded by commitTimeout. A
// failed commit is counted and logged, not returned: the records come
// again (at least once) unless a later commit covers them.
func (c *consumer) commit(ctx context.Context, recs []*kgo.Record) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	g := c.group
	g.mu.Lock()
	defer g.mu.Unlock() // a revocation waits for the commit, so it never races it
	kept := recs[:0]
	for _, r := range recs {
		if !g.revoked[tp{r.Topic, r.Partition}] {
			kept = append(kept, r)
		}
	}
	if len(kept) == 0 {
		return
	}
	if err := c.cl.CommitRecords(cctx, kept...); err != nil {
		c.s.commitErrors.Inc()
		c.logOnce("kafka: consume: commit failed; the records may be delivered again", err, "group", c.o.Durable)
	}
}

// groupState tracks partitions revoked from this member while a batch is
// held, so that their records are neither handed to the handler nor
// committed: their new owner reads them from the last commit. The
// callbacks run on the client's group goroutine.
//
// A partition assigned back to this member is no longer revoked. The
// cooperative protocol does that routinely: it revokes a partition in one
// generation and assigns it in the next, to this member when the one it
// was meant for is gone. The client then fetches it again from the last
// commit, and the records it returns must be kept, even when the poll
// that returns them began before the revocation (an idle consumer waits
// in one poll through a whole rebalance). Records of the old assignment
// still held are then kept too: the partition is this member's again, so
// handling and committing them is at least once, never a loss.
type groupState struct {
	mu      sync.Mutex
	revoked map[tp]bool
}

func (g *groupState) revoke(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for topic, ps := range lost {
		for _, p := range ps {
			g.revoked[tp{topic, p}] = true
		}
	}
}

// assign runs before the client fetches the offsets of the newly
// assigned partitions, so before any of their records can be polled.
func (g *groupState) assign(_ context.Context, _ *kgo.Client, added map[string][]int32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for topic, ps := range added {
		for _, p := range ps {
			delete(g.revoked, tp{topic, p})
		}
	}
}

// reset forgets revocations before the next poll; nil-safe.
func (g *groupState) reset() {
	if g == nil {
		return
	}
	g.mu.Lock()
	clear(g.revoked)
	g.mu.Unlock()
}

// keep drops records and deliveries of revoked partitions; nil-safe.
func (g *groupState) keep(recs []*kgo.Record, ds []stream.Delivery) ([]*kgo.Record, []stream.Delivery) {
	if g == nil {
		return recs, ds
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.revoked) == 0 {
		return recs, ds
	}
	j := 0
	for i, r := range recs {
		if !g.revoked[tp{r.Topic, r.Partition}] {
			recs[j], ds[j] = r, ds[i]
			j++
		}
	}
	return recs[:j], ds[:j]
}

// startOffset is where stream.StartAt begins in a partition.
func startOffset(st stream.StartAt) kgo.Offset {
	switch {
	case st.Newest:
		return kgo.NewOffset().AtEnd()
	case !st.Time.IsZero():
		return kgo.NewOffset().AfterMilli(st.Time.UnixMilli())
	}
	return kgo.NewOffset().AtStart()
}
