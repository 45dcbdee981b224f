package natsjs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/les-streams/les/internal/stream"
)

// Consume implements stream.Stream. A Durable is a JetStream durable
// consumer filtered to the wanted subjects; without one, an ordered
// consumer starts at the smallest position in o.After (skipping, per
// partition, what is at or before its position) or at the first or
// newest record.
//
// A Durable with Partitions is one durable consumer per assigned
// partition, named DurableName(o.Durable, p), so that processes splitting
// the partitions between them (les consume --partitions) each move only
// their partitions' cursors, and a partition keeps its cursor when it is
// assigned to another process. h is called for one partition at a time.
//
// o.Rewind with a Durable recreates the durable consumer (or, with
// Partitions, each named partition's) at the earliest position asked for
// before it is read (RewindDurable); without a Durable it lowers the
// positions of After. Positions are stream sequences, so a durable
// reading several partitions re-delivers every partition's records after
// that sequence.
func (s *Stream) Consume(ctx context.Context, o stream.ConsumeOptions, h stream.Handler) error {
	if len(o.Rewind) > 0 {
		if err := s.rewind(ctx, &o); err != nil {
			return err
		}
	}
	if o.Durable != "" && o.Partitions != nil {
		return s.consumePartitions(ctx, o, h)
	}
	return s.consume(ctx, o, h, false)
}

// rewind applies o.Rewind (see Consume) and clears it.
func (s *Stream) rewind(ctx context.Context, o *stream.ConsumeOptions) error {
	rw := o.Rewind
	o.Rewind = nil
	if o.Durable == "" {
		if o.After == nil {
			return nil // no cursor: FromStart decides
		}
		after := maps.Clone(o.After)
		for part, pos := range rw {
			seq, err := parsePos(pos)
			if err != nil || seq == 0 {
				return fmt.Errorf("stream: rewind: bad position %q", pos)
			}
			if cur, ok := after[part]; ok {
				if c, err := parsePos(cur); err == nil && c >= seq {
					after[part] = stream.Position(strconv.FormatUint(seq-1, 10))
				}
			}
		}
		o.After = after
		return nil
	}
	for s.ensure(ctx) != nil {
		if ctx.Err() != nil {
			return nil
		}
		sleep(ctx, time.Second)
	}
	targets := map[string]stream.Position{} // durable → position
	for part, pos := range rw {
		seq, err := parsePos(pos)
		if err != nil || seq == 0 {
			return fmt.Errorf("stream: rewind %s: bad position %q", o.Durable, pos)
		}
		name := o.Durable // one durable for every partition: its earliest sequence
		if o.Partitions != nil {
			name = o.Durable + "_p" + part // the partition's own (DurableName)
		}
		if cur, ok := targets[name]; !ok || stream.ComparePositions(pos, cur) < 0 {
			targets[name] = pos
		}
	}
	for name, pos := range targets {
		// A failure (the server away) is retried: consuming without the
		// rewind would skip what the caller needs again.
		for {
			err := s.RewindDurable(ctx, name, "", pos)
			if err == nil || errors.Is(err, jetstream.ErrConsumerNotFound) {
				break // done, or no cursor yet: Start decides
			}
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("stream: rewinding a durable failed; retrying", "consumer", name, "pos", pos, "err", err)
			sleep(ctx, time.Second)
		}
	}
	return nil
}

// consume is Consume with one JetStream consumer; exclusive says its
// durable is read by this process only (a partition's durable).
func (s *Stream) consume(ctx context.Context, o stream.ConsumeOptions, h stream.Handler, exclusive bool) error {
	if o.Batch <= 0 {
		o.Batch = 64
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 200 * time.Millisecond
	}
	if o.AckWait <= 0 {
		o.AckWait = 2 * time.Minute
	}
	for {
		if err := s.ensure(ctx); err == nil {
			break
		} else if ctx.Err() != nil {
			return nil
		} else {
			s.log.Debug("waiting for the stream", "err", err)
			sleep(ctx, time.Second)
		}
	}
	subjects := s.filters(o.Origins, o.Signals, o.Partitions)
	var after map[string]uint64
	var cons jetstream.Consumer
	var err error
	if o.Durable == "" {
		cfg := jetstream.OrderedConsumerConfig{FilterSubjects: subjects,
			// Fetch takes no ctx; with unlimited attempts it retries
			// recreating the consumer forever while the server is
			// unreachable. One attempt per Fetch hands the retry to the
			// loop below, which stops with ctx.
			MaxResetAttempts: 1}
		switch {
		case o.After != nil:
			after = map[string]uint64{}
			start := uint64(math.MaxUint64)
			for p := range s.partitions {
				if !o.WantsPartition(p) {
					continue
				}
				key := strconv.Itoa(p)
				pos, perr := parsePos(o.After[key])
				if perr != nil {
					return perr
				}
				after[key] = pos
				start = min(start, pos+1)
			}
			// Positions of partitions beyond this stream's count (a
			// producer configured with more) are honoured too.
			for key, v := range o.After {
				p, err := strconv.Atoi(key)
				if _, done := after[key]; done || err != nil || !o.WantsPartition(p) {
					continue
				}
				pos, perr := parsePos(v)
				if perr != nil {
					return perr
				}
				after[key] = pos
				start = min(start, pos+1)
			}
			cfg.DeliverPolicy = jetstream.DeliverAllPolicy
			if start > 1 && start != math.MaxUint64 {
				cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
				s.checkGap(ctx, start)
			}
		case o.FromStart:
			cfg.DeliverPolicy = jetstream.DeliverAllPolicy
		default:
			cfg.DeliverPolicy = jetstream.DeliverNewPolicy
		}
		cons, err = s.js.OrderedConsumer(ctx, s.cfg.Name, cfg)
	} else {
		want := jetstream.ConsumerConfig{
			Durable:        o.Durable,
			FilterSubjects: subjects,
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        o.AckWait,
			MaxAckPending:  o.Batch * 4,
			DeliverPolicy:  jetstream.DeliverAllPolicy,
		}
		// Where a new durable begins; an existing one keeps its policy
		// (reclaimPending copies it: JetStream refuses to change it).
		switch {
		case o.Start.Newest:
			want.DeliverPolicy = jetstream.DeliverNewPolicy
		case !o.Start.Time.IsZero():
			t := o.Start.Time
			want.DeliverPolicy, want.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
		}
		// A partition's durable belongs to the one process assigned the
		// partition, so like the embedded server's it may be reclaimed.
		cons, err = s.reclaimPending(ctx, &want, exclusive)
		if err == nil && cons == nil {
			cons, err = s.js.CreateOrUpdateConsumer(ctx, s.cfg.Name, want)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while the consumer was being created
		}
		return fmt.Errorf("stream: consumer %q: %w", o.Durable, err)
	}
	ds := make([]stream.Delivery, 0, o.Batch)
	msgs := make([]jetstream.Msg, 0, o.Batch)
	in := make([]jetstream.Msg, 0, o.Batch)
	fetch := func() ([]jetstream.Msg, error) {
		batch, err := cons.Fetch(o.Batch, jetstream.FetchMaxWait(o.MaxWait))
		if err != nil {
			return in[:0], err
		}
		in = in[:0]
		for m := range batch.Messages() {
			in = append(in, m)
		}
		return in, nil
	}
	if o.Durable == "" {
		// An ordered consumer is deleted and created again by every Fetch
		// (nats.go resets it to resume after the last message), two API
		// calls with JSON per batch: 8–12 % of les' CPU at 200 k lines/s.
		// Its message iterator keeps one consumer and pulls ahead.
		ob := &orderedBatches{cons: cons, batch: o.Batch, maxWait: o.MaxWait}
		defer ob.stop()
		fetch = func() ([]jetstream.Msg, error) { return ob.next(ctx, in[:0]) }
	}
	retry := 0
	for ctx.Err() == nil {
		in, err := fetch()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			s.log.Debug("fetch", "consumer", o.Durable, "err", err)
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		ds, msgs = ds[:0], msgs[:0]
		for _, m := range in {
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			origin, sig, part, ok := parseSubject(m.Subject())
			if !ok {
				continue // the stream takes only les.> subjects
			}
			msgs = append(msgs, m)
			if after != nil && md.Sequence.Stream <= after[part] {
				continue // at or before this partition's checkpoint
			}
			ds = append(ds, stream.Delivery{Origin: origin, Signal: sig, Partition: part,
				Pos: stream.Position(strconv.FormatUint(md.Sequence.Stream, 10)), Data: m.Data(),
				NumDelivered: md.NumDelivered, Time: md.Timestamp})
		}
		if len(ds) == 0 {
			s.ackAll(ctx, o.Durable, msgs)
			continue
		}
		if o.Durable == "" {
			// An ordered consumer cannot redeliver: hand the same
			// deliveries to the handler again until it takes them.
			if !retryHandler(ctx, h, ds) {
				return nil
			}
		} else if err := h(ctx, ds); err != nil {
			retry++
			delay := min(time.Duration(retry)*250*time.Millisecond, 10*time.Second)
			for _, m := range msgs {
				_ = m.NakWithDelay(delay)
			}
			continue
		}
		retry = 0
		for _, d := range ds {
			if after != nil {
				after[d.Partition], _ = parsePos(d.Pos)
			}
		}
		s.ackAll(ctx, o.Durable, msgs)
	}
	return nil
}

// orderedBatches reads an ordered consumer in batches like Fetch (up to
// batch messages, waiting at most maxWait after the first for the rest)
// through one message iterator, which pulls at most batch messages ahead.
type orderedBatches struct {
	cons    jetstream.Consumer
	it      jetstream.MessagesContext
	batch   int
	maxWait time.Duration
}

// next appends the next batch to in: it waits for the first message until
// ctx ends, then for the rest until maxWait has passed. An iterator that
// fails is dropped (the next call starts another, which resumes after the
// last message delivered).
func (ob *orderedBatches) next(ctx context.Context, in []jetstream.Msg) ([]jetstream.Msg, error) {
	if ob.it == nil {
		it, err := ob.cons.Messages(jetstream.PullMaxMessages(ob.batch))
		if err != nil {
			return in, err
		}
		ob.it = it
	}
	m, err := ob.it.Next(jetstream.NextContext(ctx))
	if err != nil {
		if ctx.Err() == nil {
			ob.stop()
		}
		return in, err
	}
	in = append(in, m)
	if len(in) == ob.batch {
		return in, nil
	}
	rest, cancel := context.WithTimeout(ctx, ob.maxWait)
	defer cancel()
	for len(in) < ob.batch {
		m, err := ob.it.Next(jetstream.NextContext(rest))
		if err != nil {
			if rest.Err() == nil {
				ob.stop()
			}
			break // what was read is delivered; an error recurs on the next call
		}
		in = append(in, m)
	}
	return in, nil
}

func (ob *orderedBatches) stop() {
	if ob.it != nil {
		ob.it.Stop()
		ob.it = nil
	}
}

// DurableName is the JetStream durable consumer of partition p of the
// durable named name, when consumers are assigned partitions.
func DurableName(name string, p int) string { return name + "_p" + strconv.Itoa(p) }

func (s *Stream) consumePartitions(ctx context.Context, o stream.ConsumeOptions, h stream.Handler) error {
	var mu sync.Mutex
	serial := func(ctx context.Context, ds []stream.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		return h(ctx, ds)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(o.Partitions))
	for _, p := range o.Partitions {
		po := o
		po.Durable, po.Partitions = DurableName(o.Durable, p), []int{p}
		go func() {
			err := s.consume(ctx, po, serial, true)
			if err != nil {
				cancel() // one failed: stop the others, return its error
			}
			errc <- err
		}()
	}
	var first error
	for range o.Partitions {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// checkGap reports positions the stream no longer holds: records from
// start on were trimmed by retention before this consumer read them, so it
// starts at the oldest record retained.
func (s *Stream) checkGap(ctx context.Context, start uint64) {
	st, err := s.js.Stream(ctx, s.cfg.Name)
	if err != nil {
		return
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.FirstSeq <= start {
		return
	}
	s.gaps.Inc()
	s.log.Warn("resuming after records the stream no longer holds (trimmed by retention); starting at the oldest",
		"from_seq", start, "oldest_seq", info.State.FirstSeq, "records_missed_at_most", info.State.FirstSeq-start)
}

// retryHandler calls h with ds until it returns nil (true) or ctx ends
// (false), backing off 250ms·n up to 10s; NumDelivered counts the calls.
func retryHandler(ctx context.Context, h stream.Handler, ds []stream.Delivery) bool {
	for n := uint64(1); ; n++ {
		for i := range ds {
			ds[i].NumDelivered = n
		}
		if h(ctx, ds) == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		sleep(ctx, min(time.Duration(n)*250*time.Millisecond, 10*time.Second))
	}
}

// ackAll acknowledges msgs of a durable consumer; it waits for the server
// to confirm the last one: that bounds what a crash can re-deliver.
func (s *Stream) ackAll(ctx context.Context, durable string, msgs []jetstream.Msg) {
	if durable == "" {
		return
	}
	for i, m := range msgs {
		if i == len(msgs)-1 {
			// The handler's effects are done, so confirm the ack even
			// when ctx was cancelled meanwhile.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = m.DoubleAck(actx)
			cancel()
		} else {
			_ = m.Ack()
		}
	}
}

func parsePos(p stream.Position) (uint64, error) {
	if p == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(string(p), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stream: position %q is not a JetStream sequence", p)
	}
	return v, nil
}

// reclaimPending looks up the durable consumer want describes. When it
// exists, want keeps its deliver policy (which cannot be updated). When
// this process is the durable's only client (the embedded server), every
// ack still pending belongs to a crashed incarnation; JetStream would hold
// those records back for AckWait (2m) — and stop delivering altogether
// once a few crashes have filled MaxAckPending. Then the consumer is
// recreated at its ack floor and returned, so they are delivered at once;
// records acknowledged out of order after the floor come again (at least
// once; id-aware sinks skip them). The same holds for a partition's
// durable (DurableName), which only the process assigned the partition
// reads. It returns nil when the caller should create or update the
// consumer itself.
func (s *Stream) reclaimPending(ctx context.Context, want *jetstream.ConsumerConfig, exclusive bool) (jetstream.Consumer, error) {
	c, err := s.js.Consumer(ctx, s.cfg.Name, want.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return nil, err
	}
	want.DeliverPolicy, want.OptStartSeq, want.OptStartTime = info.Config.DeliverPolicy, info.Config.OptStartSeq, info.Config.OptStartTime
	if !(s.deps.SoleClient || exclusive) || info.NumAckPending == 0 {
		return nil, nil
	}
	if err := s.js.DeleteConsumer(ctx, s.cfg.Name, want.Durable); err != nil {
		return nil, fmt.Errorf("reclaim: %w", err)
	}
	want.DeliverPolicy, want.OptStartTime = jetstream.DeliverByStartSequencePolicy, nil
	want.OptStartSeq = info.AckFloor.Stream + 1
	c, err = s.js.CreateConsumer(ctx, s.cfg.Name, *want)
	if err != nil {
		return nil, fmt.Errorf("reclaim: %w", err)
	}
	s.log.Info("redelivering records a previous run left unacknowledged", "consumer", want.Durable,
		"pending", info.NumAckPending, "from_seq", want.OptStartSeq)
	return c, nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Lag implements stream.Stream. For a durable it is exact (pending plus
// in flight); for positions it counts every record after the smallest
// one, including subjects the consumer does not read: an upper bound.
func (s *Stream) Lag(ctx context.Context, q stream.LagQuery) (uint64, error) {
	if q.Durable != "" {
		names := []string{q.Durable}
		if q.Partitions != nil {
			names = names[:0]
			for _, p := range q.Partitions {
				names = append(names, DurableName(q.Durable, p))
			}
		}
		var n uint64
		for _, name := range names {
			c, err := s.js.Consumer(ctx, s.cfg.Name, name)
			if err != nil {
				return 0, err
			}
			info, err := c.Info(ctx)
			if err != nil {
				return 0, err
			}
			n += info.NumPending + uint64(info.NumAckPending)
		}
		return n, nil
	}
	return s.lagAfter(ctx, q) // lag.go: exact, per partition and filter
}

// Close implements stream.Stream: it drains the connection.
func (s *Stream) Close() error {
	s.closed.Do(func() {
		if s.stopWatch != nil {
			s.stopWatch()
			<-s.watchDone
			s.lastLook()
		}
		if s.nc.IsConnected() {
			_ = s.nc.Drain()
			for s.nc.IsDraining() {
				time.Sleep(10 * time.Millisecond)
			}
		}
		s.nc.Close()
	})
	return nil
}
