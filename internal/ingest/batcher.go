// Package ingest holds the agent's transports (UDP, TCP, HTTP, unix
// datagram) and the batcher that turns decoded items into stream records.
// Decoding is done by the pure decoders in internal/format.
package ingest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
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
	// Publishers is the number of concurrent publishing goroutines.
	Publishers int `yaml:"publishers"`
	// Compression of record bodies: none, gzip or zstd.
	Compression string `yaml:"compression"`
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
	if _, err := wire.ParseCompression(c.Compression); err != nil {
		return err
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
type Batcher struct {
	cfg      BatchConfig
	comp     wire.Compression
	st       stream.Stream
	log      *slog.Logger
	producer uint64
	seq      atomic.Uint64
	// partitions is the stream's number of logical partitions; items go
	// to the one the wire partition function names.
	partitions int

	spool *Spool // may be nil: then a batch the stream refuses is lost (logged, counted)

	mu     sync.Mutex
	open   map[openKey]*openBatch
	queue  chan sealed
	pool   sync.Pool
	closed bool // b.mu; set by the drain, after which Add drops (counted)
	// sending counts Adds and Flushes that cut batches before the drain
	// and have not queued them yet; the drain waits for them before it
	// closes the queue.
	sending sync.WaitGroup
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

type openBatch struct {
	enc       *wire.Encoder
	origin    string
	partition int
	opened    time.Time
}

// NewBatcher returns a batcher publishing to st. Call Run to start it.
func NewBatcher(cfg BatchConfig, st stream.Stream, reg *selfmetric.Registry, log *slog.Logger) (*Batcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	comp, _ := wire.ParseCompression(cfg.Compression)
	var id [8]byte
	_, _ = rand.Read(id[:])
	b := &Batcher{
		cfg: cfg, comp: comp, st: st, log: log,
		producer:   binary.LittleEndian.Uint64(id[:]),
		partitions: max(st.Capabilities().Partitions, 1),
		open:       map[openKey]*openBatch{},
		queue:      make(chan sealed, cfg.QueueBatches),

		publishedRecords: reg.Counter("les_stream_published_records_total"),
		publishedBytes:   reg.Counter("les_stream_published_bytes_total"),
		publishedItems:   reg.Counter("les_stream_published_items_total"),
		publishErrors:    reg.Counter("les_stream_publish_errors_total"),
		droppedItems:     reg.Counter("les_ingest_dropped_items_total"),
	}
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
	var full []sealed
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.droppedItems.Add(batch.Len())
		return
	}
	for i := range batch.Metrics {
		m := &batch.Metrics[i]
		ob := b.get(metricOrigin(m), wire.SignalMetrics, wire.MetricPartition(m, b.partitions))
		ob.enc.AppendMetric(m)
		full = b.cutIfFull(full, ob)
	}
	for i := range batch.Dists {
		d := &batch.Dists[i]
		ob := b.get(stream.OriginAgg, wire.SignalDistributions, wire.DistPartition(d, b.partitions))
		ob.enc.AppendDistribution(d)
		full = b.cutIfFull(full, ob)
	}
	for i := range batch.Logs {
		l := &batch.Logs[i]
		ob := b.get(stream.OriginIngest, wire.SignalLogs, wire.LogPartition(l, b.partitions))
		ob.enc.AppendLog(l)
		full = b.cutIfFull(full, ob)
	}
	for i := range batch.Spans {
		s := &batch.Spans[i]
		ob := b.get(stream.OriginIngest, wire.SignalSpans, wire.SpanPartition(s, b.partitions))
		ob.enc.AppendSpan(s)
		full = b.cutIfFull(full, ob)
	}
	b.enqueueAll(full)
}

// metricOrigin: raw input of the rollup goes to its own subjects, so the
// rollup reads only what it aggregates and sinks only what they deliver.
func metricOrigin(m *model.Metric) string {
	if m.Aggregated() {
		return stream.OriginAgg
	}
	return stream.OriginIngest
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
		if e, _ := b.pool.Get().(*wire.Encoder); e != nil && e.Signal() == sig {
			ob.enc = e
		} else {
			if e != nil {
				b.pool.Put(e)
			}
			ob.enc = wire.NewEncoder(sig)
		}
		ob.opened = time.Now()
	}
	return ob
}

func (b *Batcher) cutIfFull(full []sealed, ob *openBatch) []sealed {
	if ob.enc.Size() < b.cfg.MaxBatchBytes {
		return full
	}
	full = append(full, sealed{enc: ob.enc, origin: ob.origin, partition: ob.partition, opened: ob.opened})
	ob.enc = nil
	b.unsettled.add(1)
	return full
}

// enqueueAll unlocks b.mu (held, b.closed false) and queues full; the
// drain does not close the queue before it is done.
func (b *Batcher) enqueueAll(full []sealed) {
	if len(full) == 0 {
		b.mu.Unlock()
		return
	}
	b.sending.Add(1)
	b.mu.Unlock()
	defer b.sending.Done()
	for _, s := range full {
		b.queued.Add(1)
		b.queue <- s
	}
}

// Flush closes every open batch older than age (0: all of them).
func (b *Batcher) Flush(age time.Duration) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.enqueueAll(b.cut(age))
}

// flushUntil is Flush for Run: it stops queuing when ctx ends (the queue
// may be full for a long time while the stream is down) and returns the
// batches it cut but did not queue (nil when it queued them all).
func (b *Batcher) flushUntil(ctx context.Context, age time.Duration) []sealed {
	b.mu.Lock()
	full := b.cut(age)
	b.mu.Unlock()
	for i, s := range full {
		b.queued.Add(1)
		select {
		case b.queue <- s:
		case <-ctx.Done():
			b.queued.Add(-1)
			return full[i:]
		}
	}
	return nil
}

// cut takes every open batch older than age out of b.open. b.mu held.
func (b *Batcher) cut(age time.Duration) []sealed {
	now := time.Now()
	var full []sealed
	for _, ob := range b.open {
		if ob.enc != nil && ob.enc.Count() > 0 && now.Sub(ob.opened) >= age {
			full = append(full, sealed{enc: ob.enc, origin: ob.origin, partition: ob.partition, opened: ob.opened})
			ob.enc = nil
			b.unsettled.add(1)
		}
	}
	return full
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
	var left []sealed // cut by a flush, not queued when ctx ended
	for left == nil {
		select {
		case <-tick.C:
			left = b.flushUntil(ctx, b.cfg.FlushInterval)
			continue
		case <-ctx.Done():
		}
		break
	}
	// Drain: refuse further Adds, queue what is open and what concurrent
	// Adds cut, close the queue, let publishers finish. drainTimeout counts
	// from here: queuing may itself wait for publishers.
	timer := time.AfterFunc(drainTimeout, cancelPub) // then queued batches fail fast and go to the spool
	defer timer.Stop()
	b.mu.Lock()
	b.closed = true
	full := append(left, b.cut(0)...)
	b.mu.Unlock()
	for _, s := range full {
		b.queued.Add(1)
		b.queue <- s
	}
	b.sending.Wait()
	close(b.queue)
	wg.Wait()
	if timer.Stop() {
		return nil
	}
	if b.spool != nil {
		return errors.New("ingest: drain timed out; unpublished batches were spooled")
	}
	return errors.New("ingest: drain timed out; unpublished batches were lost")
}

func (b *Batcher) publishLoop(ctx context.Context) {
	var buf []byte
	for s := range b.queue {
		b.queued.Add(-1)
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
		b.pool.Put(s.enc)
		b.unsettled.done()
	}
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
