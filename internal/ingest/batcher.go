// Package ingest holds the agent's transports (UDP, TCP, HTTP, unix
// datagram) and the batcher that turns decoded items into stream records.
// Decoding is done by the pure decoders in internal/format.
package ingest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// BatchConfig bounds batches and the publish queue. Memory held by the
// agent is at most about (QueueBatches + 2×open encoders) × MaxBatchBytes.
type BatchConfig struct {
	// FlushInterval is the longest an item waits in an open batch.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// MaxBatchBytes closes a batch when its uncompressed body reaches it.
	MaxBatchBytes int `yaml:"max_batch_bytes"`
	// QueueBatches is how many closed batches may wait for the stream;
	// when full, TCP and HTTP intake wait and UDP readers stop reading (the
	// kernel then drops datagrams, counted in les_ingest_udp_dropped_total).
	QueueBatches int `yaml:"queue_batches"`
	// Publishers is the number of concurrent publishing goroutines. Each
	// (origin, signal, partition) lane has at most one publish in flight
	// (per-series order), so more publishers than busy lanes do not help.
	Publishers int `yaml:"publishers"`
	// Compression of record bodies: none, gzip, zstd or s2.
	Compression string `yaml:"compression"`
	// Encoding of metrics records: series (the default: each series once
	// per record, then index, timestamp delta and value per point) or les
	// (every point carries its series; for readers older than the series
	// encoding). Other signals are always les. docs/wire-format.md.
	Encoding string `yaml:"encoding"`
	// PublishTimeout bounds how long a closed batch waits for the stream;
	// after it the batch goes to the local spool (default 10s).
	PublishTimeout time.Duration `yaml:"publish_timeout"`
}

// Validate fills defaults and checks values.
func (c *BatchConfig) Validate() error {
	if c.FlushInterval == 0 {
		c.FlushInterval = 200 * time.Millisecond
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = 1 << 20
	}
	if c.QueueBatches == 0 {
		c.QueueBatches = 64
	}
	if c.Publishers == 0 {
		c.Publishers = 2
	}
	if c.Compression == "" {
		c.Compression = "zstd"
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 10 * time.Second
	}
	if c.Encoding == "" {
		c.Encoding = "series"
	}
	if _, err := wire.ParseCompression(c.Compression); err != nil {
		return err
	}
	if _, err := wire.ParseEncoding(c.Encoding); err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	if c.FlushInterval < 0 || c.PublishTimeout < 0 || c.MaxBatchBytes < 1024 || c.QueueBatches < 1 || c.Publishers < 1 {
		return errors.New("batch: flush_interval and publish_timeout must be positive, max_batch_bytes ≥ 1024, queue_batches and publishers ≥ 1")
	}
	if c.MaxBatchBytes > 4<<20 {
		return errors.New("batch: max_batch_bytes must be at most 4 MiB (stream message size)")
	}
	return nil
}

// sealed is a closed batch waiting to be published.
type sealed struct {
	enc       *wire.Encoder
	origin    string
	partition int
	opened    time.Time
}

// Batcher collects items into per-signal, per-partition encoders and hands
// closed batches to its publishers. It is safe for concurrent use.
//
// Order: every (origin, signal, partition) is a publish lane. A batch is
// queued on its lane under the lock that cut it, so a lane's queue is in
// cut order, and a lane has at most one publish in flight; publishers run
// in parallel across lanes. The items of one series all travel in one
// lane, so they reach the stream in the order they were added (Prometheus
// refuses a series' samples out of order).
type Batcher struct {
	cfg      BatchConfig
	comp     wire.Compression
	enc      wire.Encoding
	st       stream.Stream
	log      *slog.Logger
	producer uint64
	seq      atomic.Uint64
	// partitions is the stream's number of logical partitions; items go
	// to the one the wire partition function names.
	partitions int

	spool *Spool // may be nil: then a batch the stream refuses is lost (logged, counted)

	mu   sync.Mutex
	open map[openKey]*openBatch // the lanes; b.mu
	// metricLanes are the metrics lanes of open by partition, ingest
	// then agg origin, so that a point finds its lane without hashing a
	// key (lanes are never removed from open); b.mu.
	metricLanes [2][]*openBatch
	// free are published batches' encoders, reset, for the next batches
	// to reuse: their buffers, and the series encoder's strings and
	// series from earlier records (ADR 0016), which make a series' first
	// point in a record cheap. A sync.Pool dropped them at every
	// collection, and the next encoders grew their buffers again (the
	// largest allocation of a loaded les after UDP addresses). At most
	// maxFree; b.mu.
	free []*wire.Encoder
	// ready are the lanes with queued batches and no publish in flight, in
	// the order they became ready; b.mu.
	ready []*openBatch
	// waiting is the number of queued batches no publisher has taken yet;
	// an Add that cut a batch waits while it exceeds QueueBatches. b.mu.
	waiting int
	work    sync.Cond // on b.mu: a lane became ready, or closed
	room    sync.Cond // on b.mu: waiting went down, or closed
	closed  bool      // b.mu; set by the drain, after which Add drops (counted)
	// unsettled counts batches cut and not yet published, spooled or
	// lost (Settle waits for it; settle.go).
	unsettled settler

	publishedRecords *metrics.Counter
	publishedBytes   *metrics.Counter
	publishedItems   *metrics.Counter
	publishErrors    *metrics.Counter
	droppedItems     *metrics.Counter
	queued           atomic.Int64
}

type openKey struct {
	origin    string
	sig       wire.Signal
	partition int
}

// openBatch is a lane: its open batch and its queue of closed ones. All
// fields are b.mu's.
type openBatch struct {
	enc       *wire.Encoder
	origin    string
	partition int
	opened    time.Time
	pending   []sealed // closed batches in cut order
	busy      bool     // in b.ready or being published
}

// NewBatcher returns a batcher publishing to st. Call Run to start it.
func NewBatcher(cfg BatchConfig, st stream.Stream, reg *selfmetric.Registry, log *slog.Logger) (*Batcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	comp, _ := wire.ParseCompression(cfg.Compression)
	enc, _ := wire.ParseEncoding(cfg.Encoding)
	var id [8]byte
	_, _ = rand.Read(id[:])
	b := &Batcher{
		cfg: cfg, comp: comp, enc: enc, st: st, log: log,
		producer:   binary.LittleEndian.Uint64(id[:]),
		partitions: max(st.Capabilities().Partitions, 1),
		open:       map[openKey]*openBatch{},

		publishedRecords: reg.Counter("les_stream_published_records_total"),
		publishedBytes:   reg.Counter("les_stream_published_bytes_total"),
		publishedItems:   reg.Counter("les_stream_published_items_total"),
		publishErrors:    reg.Counter("les_stream_publish_errors_total"),
		droppedItems:     reg.Counter("les_ingest_dropped_items_total"),
	}
	b.work.L, b.room.L = &b.mu, &b.mu
	reg.Gauge("les_ingest_queued_batches", func() float64 { return float64(b.queued.Load()) })
	return b, nil
}

// SetSpool makes the batcher spool batches the stream does not take within
// PublishTimeout (and those still queued when a drain times out). Call it
// before Run.
func (b *Batcher) SetSpool(s *Spool) { b.spool = s }

// Producer is the id written into every record header.
func (b *Batcher) Producer() uint64 { return b.producer }

// NextSeq reserves a batch sequence number.
func (b *Batcher) NextSeq() uint64 { return b.seq.Add(1) }

// Compression is the configured record compression.
func (b *Batcher) Compression() wire.Compression { return b.comp }

// Add encodes every accepted item of batch. It may block while the publish
// queue is full. The batch is not kept. After Run has begun its drain,
// the items are dropped and counted in les_ingest_dropped_items_total.
func (b *Batcher) Add(batch *model.Batch) {
	if batch.Len() == 0 {
		return
	}
	cut := false
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.droppedItems.Add(batch.Len())
		return
	}
	for i := range batch.Metrics {
		m := &batch.Metrics[i]
		ob := b.metricLane(m)
		ob.enc.AppendMetric(m)
		cut = b.cutIfFull(ob) || cut
	}
	for i := range batch.Dists {
		d := &batch.Dists[i]
		ob := b.get(stream.OriginAgg, wire.SignalDistributions, wire.DistPartition(d, b.partitions))
		ob.enc.AppendDistribution(d)
		cut = b.cutIfFull(ob) || cut
	}
	for i := range batch.Logs {
		l := &batch.Logs[i]
		ob := b.get(stream.OriginIngest, wire.SignalLogs, wire.LogPartition(l, b.partitions))
		ob.enc.AppendLog(l)
		cut = b.cutIfFull(ob) || cut
	}
	for i := range batch.Spans {
		s := &batch.Spans[i]
		ob := b.get(stream.OriginIngest, wire.SignalSpans, wire.SpanPartition(s, b.partitions))
		ob.enc.AppendSpan(s)
		cut = b.cutIfFull(ob) || cut
	}
	if cut {
		b.waitRoom()
	}
	b.mu.Unlock()
}

// metricLane is get for m's lane. Raw input of the rollup goes to its
// own subjects, so the rollup reads only what it aggregates and sinks
// only what they deliver. b.mu held.
func (b *Batcher) metricLane(m *model.Metric) *openBatch {
	o, origin := 0, stream.OriginIngest
	if m.Aggregated() {
		o, origin = 1, stream.OriginAgg
	}
	p := wire.MetricPartition(m, b.partitions)
	lanes := b.metricLanes[o]
	if p < len(lanes) {
		if ob := lanes[p]; ob != nil && ob.enc != nil {
			return ob
		}
	}
	ob := b.get(origin, wire.SignalMetrics, p)
	if p >= len(lanes) {
		lanes = append(lanes, make([]*openBatch, p+1-len(lanes))...)
		b.metricLanes[o] = lanes
	}
	lanes[p] = ob
	return ob
}

// get returns the open batch for (origin, sig, partition), creating it.
// b.mu held.
func (b *Batcher) get(origin string, sig wire.Signal, p int) *openBatch {
	k := openKey{origin, sig, p}
	ob := b.open[k]
	if ob == nil {
		ob = &openBatch{origin: origin, partition: p}
		b.open[k] = ob
	}
	if ob.enc == nil {
		ob.enc = b.takeFree(sig)
		if ob.enc == nil {
			ob.enc = wire.NewEncoding(sig, b.enc)
		}
		ob.opened = time.Now()
	}
	return ob
}

// cutIfFull queues ob's batch when it reached MaxBatchBytes and reports
// whether it did. b.mu held.
func (b *Batcher) cutIfFull(ob *openBatch) bool {
	if ob.enc.Size() < b.cfg.MaxBatchBytes {
		return false
	}
	b.enqueue(ob)
	return true
}

// enqueue closes ob's open batch and queues it on its lane, making the
// lane ready when no publish of it is in flight. b.mu held.
func (b *Batcher) enqueue(ob *openBatch) {
	ob.pending = append(ob.pending, sealed{enc: ob.enc, origin: ob.origin, partition: ob.partition, opened: ob.opened})
	ob.enc = nil
	b.unsettled.add(1)
	b.waiting++
	b.queued.Add(1)
	if !ob.busy {
		ob.busy = true
		b.ready = append(b.ready, ob)
		b.work.Signal()
	}
}

// waitRoom waits (releasing b.mu meanwhile) until no more than
// QueueBatches batches wait for a publisher, or the drain began: this is
// the back-pressure on intake while the stream is slow. b.mu held.
func (b *Batcher) waitRoom() {
	for b.waiting > b.cfg.QueueBatches && !b.closed {
		b.room.Wait()
	}
}

// Flush closes every open batch older than age (0: all of them). Like
// Add, it waits while the publish queue is full.
func (b *Batcher) Flush(age time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	if b.cut(age) > 0 {
		b.waitRoom()
	}
}

// cut queues every open batch older than age and returns how many.
// b.mu held.
func (b *Batcher) cut(age time.Duration) int {
	now := time.Now()
	n := 0
	for _, ob := range b.open {
		if ob.enc != nil && ob.enc.Count() > 0 && now.Sub(ob.opened) >= age {
			b.enqueue(ob)
			n++
		}
	}
	return n
}

// Run flushes batches on time and publishes them until ctx is cancelled;
// then it flushes and publishes everything still open, with drainTimeout
// as the limit, and returns.
func (b *Batcher) Run(ctx context.Context, drainTimeout time.Duration) error {
	pubCtx, cancelPub := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelPub()
	var wg sync.WaitGroup
	for range b.cfg.Publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.publishLoop(pubCtx)
		}()
	}
	tick := time.NewTicker(max(b.cfg.FlushInterval/4, time.Millisecond))
	defer tick.Stop()
	// Queuing never waits here: a flush cuts and queues under b.mu, and
	// only Add and Flush wait for room.
	for ctx.Err() == nil {
		select {
		case <-tick.C:
			b.mu.Lock()
			b.cut(b.cfg.FlushInterval)
			b.mu.Unlock()
		case <-ctx.Done():
		}
	}
	// Drain: refuse further Adds, queue what is open, let publishers
	// finish every lane. drainTimeout counts from here.
	timer := time.AfterFunc(drainTimeout, cancelPub) // then queued batches fail fast and go to the spool
	defer timer.Stop()
	b.mu.Lock()
	b.closed = true
	b.cut(0)
	b.work.Broadcast()
	b.room.Broadcast()
	b.mu.Unlock()
	wg.Wait()
	if timer.Stop() {
		return nil
	}
	if b.spool != nil {
		return errors.New("ingest: drain timed out; unpublished batches were spooled")
	}
	return errors.New("ingest: drain timed out; unpublished batches were lost")
}

// publishLoop takes the first ready lane, publishes the oldest batch of
// it, and puts the lane back at the end of the ready lanes when more
// batches wait on it. It returns when the drain began and no lane is
// ready: a lane still being published is then finished by its publisher.
func (b *Batcher) publishLoop(ctx context.Context) {
	var buf []byte
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		for len(b.ready) == 0 && !b.closed {
			b.work.Wait()
		}
		if len(b.ready) == 0 {
			return
		}
		ob := b.ready[0]
		b.ready = popFront(b.ready)
		s := ob.pending[0]
		ob.pending = popFront(ob.pending)
		b.waiting--
		b.queued.Add(-1)
		b.room.Broadcast()
		b.mu.Unlock()
		buf = b.publishSealed(ctx, buf, s)
		b.mu.Lock()
		if len(ob.pending) > 0 {
			b.ready = append(b.ready, ob) // behind the lanes that waited meanwhile
		} else {
			ob.busy = false
		}
	}
}

// popFront removes q's first element, keeping q's backing array (queues
// here are short: lanes, and batches up to about QueueBatches).
func popFront[T any](q []T) []T {
	n := copy(q, q[1:])
	var zero T
	q[n] = zero
	return q[:n]
}

// publishSealed publishes s within PublishTimeout, spools it when the
// stream refuses, and recycles its encoder. It returns buf for reuse.
func (b *Batcher) publishSealed(ctx context.Context, buf []byte, s sealed) []byte {
	pctx, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout)
	var rec stream.Record
	var err error
	buf, rec, err = b.publish(pctx, buf[:0], s)
	cancel()
	if err != nil {
		b.publishErrors.Inc()
		switch {
		case rec.Data == nil:
			b.log.Error("encoding a batch failed; batch lost", "items", s.enc.Count(), "err", err)
		case errors.Is(err, stream.ErrTooLarge):
			b.log.Error("batch larger than the stream accepts; batch lost", "items", s.enc.Count(), "err", err)
		case b.spool == nil:
			b.log.Error("publish failed; batch lost", "items", s.enc.Count(), "err", err)
		default:
			if serr := b.spool.Write(rec); serr != nil {
				b.log.Error("publish and spool failed; batch lost", "items", s.enc.Count(), "err", err, "spool_err", serr)
			}
		}
	}
	s.enc.Reset()
	b.mu.Lock()
	b.putFree(s.enc)
	b.mu.Unlock()
	b.unsettled.done()
	return buf
}

// maxFree bounds Batcher.free: what the publishers hand back between two
// cuts, of each signal in use.
func (b *Batcher) maxFree() int { return b.cfg.Publishers + 2 }

// takeFree returns a free encoder of sig, newest first, or nil. b.mu held.
func (b *Batcher) takeFree(sig wire.Signal) *wire.Encoder {
	for i := len(b.free) - 1; i >= 0; i-- {
		if e := b.free[i]; e.Signal() == sig {
			last := len(b.free) - 1
			copy(b.free[i:], b.free[i+1:])
			b.free[last] = nil // no stale pointer past the end
			b.free = b.free[:last]
			return e
		}
	}
	return nil
}

// putFree keeps e, a reset encoder, for reuse; when free is full the
// oldest goes. b.mu held.
func (b *Batcher) putFree(e *wire.Encoder) {
	if len(b.free) >= b.maxFree() {
		copy(b.free, b.free[1:])
		b.free = b.free[:len(b.free)-1]
	}
	b.free = append(b.free, e)
}

// PublishNow encodes and publishes the items of batch synchronously (used
// by HTTP intake, whose 2xx promises durability). It gives up after
// PublishTimeout, so a caller whose ctx has no deadline (an HTTP request)
// is answered rather than held while the stream is unavailable.
func (b *Batcher) PublishNow(ctx context.Context, batch *model.Batch) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout)
	defer cancel()
	for _, part := range wire.Split(batch, stream.OriginIngest, stream.OriginAgg, b.cfg.MaxBatchBytes, b.partitions) {
		r := sealed{enc: part.Enc, origin: part.Origin, partition: part.Partition}
		if _, _, err := b.publish(ctx, nil, r); err != nil {
			b.publishErrors.Inc()
			return err
		}
	}
	return nil
}

// publish encodes s and publishes it; on failure the returned record (if
// it could be encoded) is what to spool.
func (b *Batcher) publish(ctx context.Context, buf []byte, s sealed) ([]byte, stream.Record, error) {
	seq := b.NextSeq()
	buf, err := s.enc.Finish(buf, b.producer, seq, b.comp)
	if err != nil {
		return buf, stream.Record{}, err
	}
	h, _ := wire.ParseHeader(buf)
	rec := stream.Record{Origin: s.origin, Signal: s.enc.Signal(), Partition: s.partition, ID: h.ID(), Data: buf}
	if err := b.st.Publish(ctx, rec); err != nil {
		return buf, rec, err
	}
	b.publishedRecords.Inc()
	b.publishedBytes.Add(len(buf))
	b.publishedItems.Add(s.enc.Count())
	return buf, rec, nil
}
