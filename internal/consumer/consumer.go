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
	"slices"
	"strconv"
	"strings"
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
	// Batch is the most records per fetch (default 16). Records fetched
	// together are merged into Sends as MaxItems and MaxBytes allow; the
	// stream's wait for a partial fetch bounds a batch's age.
	Batch int
	// MaxItems and MaxBytes bound one merged Send: items, and wire record
	// bytes (default 10,000 items, 4 MiB). A single record is never split.
	MaxItems int
	MaxBytes int
	// PerRecord sends every record alone with its RecordID (sinks that
	// de-duplicate by record id: file). Merged Sends carry no RecordID.
	PerRecord bool
	// Concurrency is the most Sends in flight (default 1). Acknowledgement
	// stays in stream order: a fetch is acknowledged when all its Sends
	// are done.
	Concurrency int
	// Ordered keeps the Sends of one stream partition sequential, so the
	// points of a series (which all travel in one partition) reach the
	// backend in order (TSDBs refuse out-of-order samples); Sends of
	// different partitions still overlap.
	Ordered bool
	// Dropped are the sink's own counters of items it dropped by design
	// (sink.Deps.Drops); they are kept out of les_sink_delivered_items_total.
	Dropped *selfmetric.ReasonCounters
	// PositionsPath is where the cursor is kept on streams that keep none
	// (Capabilities.DurableCursors false: Kinesis); required there.
	PositionsPath string
	// Start is where a sink with no cursor yet begins (start_at): the
	// oldest record retained (zero), the newest, or a time. Once the sink
	// has a cursor it is ignored. On streams without durable cursors the
	// start is fixed as a time in the positions file on the first run
	// (newest = that run's start), so shards found later begin there too.
	Start stream.StartAt
}

// SinkRunner delivers every record on its subjects to one sink.
type SinkRunner struct {
	cfg   SinkConfig
	st    stream.Stream
	sk    sink.Sink
	log   *slog.Logger
	lag   atomic.Int64
	posMu sync.Mutex
	// pos is the cursor kept in PositionsPath (streams without durable
	// cursors); nil otherwise.
	pos *checkpoint
	// decs decode the records of one fetch (one decoder per record: items
	// alias their decoder's buffer until its next Decode); groups are the
	// Sends built from them. Both are reused across fetches.
	decs   []wire.Decoder
	groups []*sendGroup
	out    []*sendGroup

	consumed   *metrics.Counter
	delivered  *metrics.Counter
	deadLetter *metrics.Counter
	retries    *metrics.Counter
	fails      *failLog // faillog.go

	// rewinding is where the stream was asked to re-read from for a sink
	// that guards its output (rewind.go), per partition not yet reached;
	// reached are the partitions that got there in the last fetch, told
	// to the sink once it is acknowledged. Used by handle only.
	rewinding map[string]stream.Position
	reached   []string
}

// sendGroup is one Send: the merged items of records ds[first:last+1]
// that decoded (skipped holds the indices of those that did not).
type sendGroup struct {
	b         model.Batch
	partition string
	recs      []int // indices into the fetch's deliveries
	ids       []string
	from      []place // where each record was read, as ids
	bytes     int
	sent      int   // items delivered
	err       error // set when the fetch must be redelivered
}

// place is where a record was read from.
type place struct {
	partition string
	pos       stream.Position
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
		if !cfg.PerRecord {
			cfg.Batch = 64 // more to merge
		}
	}
	if cfg.MaxItems <= 0 {
		cfg.MaxItems = 10_000
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 4 << 20
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
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
	r.fails = &failLog{log: r.log}
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
		o.Durable, q.Durable, o.Start = r.cfg.Name, r.cfg.Name, r.cfg.Start
	} else {
		ck, err := loadCheckpoint(r.cfg.PositionsPath)
		if err != nil {
			return fmt.Errorf("consumer %s: %w", r.cfg.Name, err)
		}
		r.pos = &ck
		o.After = maps.Clone(ck.positions)
		start, err := r.fixStart(&ck)
		if err != nil {
			return fmt.Errorf("consumer %s: positions: %w", r.cfg.Name, err)
		}
		o.Start = start
	}
	lagCtx, stopLag := context.WithCancel(ctx)
	lagDone := make(chan struct{})
	go func() {
		defer close(lagDone)
		pollLag(lagCtx, r.st, q, r.positions, &r.lag)
	}()
	err := r.consume(ctx, o) // rewind.go
	stopLag()
	<-lagDone
	if cerr := r.sk.Close(); err == nil {
		err = cerr
	}
	return err
}

// startPrefix marks the start time kept in a sink's positions file (its
// checkpoint state).
const startPrefix = "start="

// fixStart returns where a sink without durable cursors begins in a
// partition it has no position for: the time kept in its positions file,
// or — on the first run — cfg.Start turned into a time and saved.
func (r *SinkRunner) fixStart(ck *checkpoint) (stream.StartAt, error) {
	if v, ok := strings.CutPrefix(string(ck.state), startPrefix); ok {
		ns, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return stream.StartAt{}, fmt.Errorf("bad start %q", ck.state)
		}
		return stream.StartAt{Time: time.Unix(0, ns)}, nil
	}
	if len(ck.positions) > 0 || r.cfg.Start.IsZero() {
		return stream.StartAt{}, nil // a cursor exists, or oldest: nothing to fix
	}
	t := r.cfg.Start.Time
	if r.cfg.Start.Newest {
		t = time.Now()
	}
	ck.state = []byte(startPrefix + strconv.FormatInt(t.UnixNano(), 10))
	r.posMu.Lock()
	defer r.posMu.Unlock()
	if err := ck.save(r.cfg.PositionsPath); err != nil {
		return stream.StartAt{}, err
	}
	return stream.StartAt{Time: t}, nil
}

// handle delivers one fetch: it decodes the records into Sends, runs them
// (up to Concurrency at once), dead-letters what cannot be delivered, and
// returns nil — acknowledging the fetch — only when every record is
// delivered or dead-lettered.
func (r *SinkRunner) handle(ctx context.Context, ds []stream.Delivery) error {
	r.confirmRewound() // the fetch before this one is acknowledged
	groups, err := r.group(ctx, ds)
	if err != nil {
		return err
	}
	var dropped0 int64
	if r.cfg.Dropped != nil {
		dropped0 = r.cfg.Dropped.Total()
	}
	r.run(ctx, ds, groups)
	sent := 0
	for _, g := range groups {
		if g.err != nil {
			return g.err // shutting down, or the dead-letter stream failed: redeliver
		}
		sent += g.sent
	}
	if r.cfg.Dropped != nil {
		sent -= int(r.cfg.Dropped.Total() - dropped0)
	}
	r.delivered.Add(max(sent, 0))
	r.consumed.Add(len(ds))
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
	r.noteRewound(ds)
	return nil
}

// group decodes ds into Sends. Records that do not decode never will:
// they are dead-lettered here. Records of one partition go to the same
// Sends in stream order.
func (r *SinkRunner) group(ctx context.Context, ds []stream.Delivery) ([]*sendGroup, error) {
	for len(r.decs) < len(ds) {
		r.decs = append(r.decs, wire.Decoder{})
	}
	var open []*sendGroup // the group being filled, per partition
	used := 0
	take := func(part string) *sendGroup {
		for _, g := range open {
			if g.partition == part {
				return g
			}
		}
		if used == len(r.groups) {
			r.groups = append(r.groups, &sendGroup{})
		}
		g := r.groups[used]
		used++
		g.b.Reset()
		g.partition, g.recs, g.ids, g.from, g.bytes, g.err = part, g.recs[:0], g.ids[:0], g.from[:0], 0, nil
		open = append(open, g)
		return g
	}
	for i, d := range ds {
		part := d.Partition
		if !r.cfg.Ordered {
			part = ""
		}
		g := take(part)
		m := mark(&g.b)
		h, err := r.decs[i].Decode(&g.b, d.Data)
		if err != nil {
			m.truncate(&g.b)
			if err := r.deadLetterRecord(ctx, d, err); err != nil {
				return nil, err
			}
			continue
		}
		g.recs = append(g.recs, i)
		g.ids = append(g.ids, h.ID())
		g.from = append(g.from, place{d.Partition, d.Pos})
		g.bytes += len(d.Data)
		if r.cfg.PerRecord || g.b.Len() >= r.cfg.MaxItems || g.bytes >= r.cfg.MaxBytes {
			open = slices.DeleteFunc(open, func(x *sendGroup) bool { return x == g }) // full: the next record starts another
		}
	}
	// Groups whose every record failed to decode are left out.
	out := r.out[:0]
	for _, g := range r.groups[:used] {
		if len(g.recs) > 0 {
			out = append(out, g)
		}
	}
	r.out = out
	return out, nil
}

// run delivers the groups, at most Concurrency Sends at a time; with
// Ordered the groups of one partition go one after another.
func (r *SinkRunner) run(ctx context.Context, ds []stream.Delivery, groups []*sendGroup) {
	if r.cfg.Concurrency == 1 || len(groups) == 1 {
		for _, g := range groups {
			r.deliver(ctx, ds, g)
		}
		return
	}
	sem := make(chan struct{}, r.cfg.Concurrency)
	var wg sync.WaitGroup
	// Lanes: one per partition when Ordered, else one per group.
	lanes := map[string][]*sendGroup{}
	var order []string
	for i, g := range groups {
		key := g.partition
		if !r.cfg.Ordered {
			key = strconv.Itoa(i)
		}
		if _, ok := lanes[key]; !ok {
			order = append(order, key)
		}
		lanes[key] = append(lanes[key], g)
	}
	for _, key := range order {
		wg.Go(func() {
			for _, g := range lanes[key] {
				sem <- struct{}{}
				r.deliver(ctx, ds, g)
				<-sem
				if g.err != nil {
					return // the fetch is redelivered: later groups of the lane would be out of order
				}
			}
		})
	}
	wg.Wait()
}

// deliver sends g, and when that fails for good finds the records at
// fault — sending each alone, in order, before the lane goes on — and
// dead-letters only those. It sets g.sent to the items delivered and
// g.err only when the fetch must be redelivered (ctx ended, or the
// dead-letter publish failed).
func (r *SinkRunner) deliver(ctx context.Context, ds []stream.Delivery, g *sendGroup) {
	g.sent, g.err = 0, nil
	err := r.send(ctx, g)
	switch {
	case err == nil:
		g.sent = g.b.Len()
	case ctx.Err() != nil, isRewinding(err):
		g.err = err // redelivered (after the rewind, rewind.go)
	case len(g.recs) > 1:
		g.sent, g.err = r.isolate(ctx, ds, g, err)
	default:
		g.err = r.deadLetterRecord(ctx, ds[g.recs[0]], err)
	}
}

func (r *SinkRunner) send(ctx context.Context, g *sendGroup) error {
	if g.b.Len() == 0 {
		return nil
	}
	m := sink.Meta{Partition: g.partition}
	if len(g.ids) == 1 {
		m.RecordID = g.ids[0]
		if len(g.from) == 1 {
			m.Partition, m.Pos = g.from[0].partition, string(g.from[0].pos)
		}
	}
	err := sink.Deliver(ctx, r.sk, &g.b, m, r.cfg.Retry, func(err error) {
		r.retries.Inc()
		if !isRewinding(err) {
			r.fails.failure(err)
		}
	})
	if err == nil {
		r.fails.success()
	}
	return err
}

// isolate re-sends the records of a failed merged group one at a time and
// dead-letters those that fail alone; it returns the items delivered.
func (r *SinkRunner) isolate(ctx context.Context, ds []stream.Delivery, g *sendGroup, cause error) (int, error) {
	r.log.Warn("merged send failed; sending its records one by one", "records", len(g.recs), "err", cause)
	one := &sendGroup{partition: g.partition}
	var dec wire.Decoder
	sent := 0
	for _, i := range g.recs {
		d := ds[i]
		one.b.Reset()
		h, err := dec.Decode(&one.b, d.Data)
		if err != nil { // decoded before: cannot happen, but never lose it
			if err := r.deadLetterRecord(ctx, d, err); err != nil {
				return sent, err
			}
			continue
		}
		one.ids = append(one.ids[:0], h.ID())
		one.from = append(one.from[:0], place{d.Partition, d.Pos})
		err = r.send(ctx, one)
		switch {
		case err == nil:
			sent += one.b.Len()
		case ctx.Err() != nil, isRewinding(err):
			return sent, err
		default:
			if err := r.deadLetterRecord(ctx, d, err); err != nil {
				return sent, err
			}
		}
	}
	return sent, nil
}

// batchMark is where each slice of a batch ended, to undo a failed decode.
type batchMark struct{ metrics, dists, logs, spans, rejects, arena, centroids int }

func mark(b *model.Batch) batchMark {
	return batchMark{len(b.Metrics), len(b.Dists), len(b.Logs), len(b.Spans), len(b.Rejects), len(b.Arena), len(b.CentroidArena)}
}

func (m batchMark) truncate(b *model.Batch) {
	b.Metrics, b.Dists, b.Logs, b.Spans = b.Metrics[:m.metrics], b.Dists[:m.dists], b.Logs[:m.logs], b.Spans[:m.spans]
	b.Rejects, b.Arena, b.CentroidArena = b.Rejects[:m.rejects], b.Arena[:m.arena], b.CentroidArena[:m.centroids]
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
