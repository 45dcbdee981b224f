package consumer

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// Processor is a stateful transform (rollup, logmetric). It never sees the
// stream: the runner feeds it batches, asks it for what is ready, and
// checkpoints its state together with the stream position.
type Processor interface {
	// Add folds the items of b in. b and its strings are only valid during
	// the call. A large record comes in parts, one Add each, with nothing
	// else called in between (b.Continues, b.More; wire.DecodeParts).
	Add(b *model.Batch, now int64)
	// Advance appends to out whatever is ready to be emitted at now.
	Advance(now int64, out *model.Batch)
	MarshalState() ([]byte, error)
	UnmarshalState([]byte) error
}

// SeriesProcessor is a Processor that takes series-encoded metrics
// records by series index (wire.Decoder.DecodeSeriesParts) instead of as
// whole metrics: the runner hands every such record's parts to
// AddSeries, as it would hand them to Add, and every other record to Add.
// sp is only valid during the call.
type SeriesProcessor interface {
	Processor
	AddSeries(sp *wire.SeriesPart, now int64)
}

// ProcConfig configures a processor consumer.
type ProcConfig struct {
	// Name identifies the consumer and its checkpoint file.
	Name string
	// Origins and Signals the processor reads (see stream.ConsumeOptions).
	Origins []string
	Signals []wire.Signal
	// Partitions assigned to this process (nil: all); processes splitting
	// the partitions between them each roll up their own series.
	Partitions []int
	// Origin of the records it publishes (e.g. stream.OriginRollup).
	Origin string
	// AggOrigin, when set, is where emitted raw input of the rollup goes
	// (model.Metric.Aggregated points and distributions), so the rollup
	// reads it; the rest goes to Origin.
	AggOrigin string
	// CheckpointPath is the checkpoint file.
	CheckpointPath string
	// Tick is how often Advance runs (default 1s); a checkpoint is written
	// at most this often while records arrive.
	Tick time.Duration
	// Compression of emitted records.
	Compression wire.Compression
	// Batch is the most records per fetch (default 16: records are up to
	// max_batch_bytes each, and a fetched batch is held in memory).
	Batch int
	// MaxRecordBytes bounds the uncompressed body of one emitted record
	// (default 1 MiB, the ingest batch default): a tick that closes many
	// windows is split into several records, each below the stream's
	// message size limit.
	MaxRecordBytes int
	// DedupWindow is how long record ids are remembered, so a record
	// published twice (a producer that retried or replayed its spool after
	// the stream had in fact stored it) is folded in once on streams that
	// do not drop re-published ids themselves (default 15m; at least the
	// stream's own window).
	DedupWindow time.Duration
	// Now is the clock (default time.Now().UnixNano).
	Now func() int64
}

// ProcRunner runs one Processor with exactly-once effects: its cursor is
// the position in every partition, stored in its own checkpoint next to
// the processor state, the ids of the records folded in lately (dropping
// re-published records) and an outbox of emitted records not yet
// confirmed published. Emitted records carry ids derived from a persisted
// counter, so a re-publish after a crash is de-duplicated by streams that
// do, by processors downstream and by id-aware sinks.
type ProcRunner struct {
	cfg   ProcConfig
	st    stream.Stream
	p     Processor
	log   *slog.Logger
	store ckptStore
	// claimed: the runner owns one claimed partition (ClaimRunner), so
	// each claim draws a producer id of its own.
	claimed bool

	mu       sync.Mutex
	ck       checkpoint
	dirty    bool
	lastCkpt time.Time
	dec      wire.Decoder
	in       model.Batch
	out      model.Batch
	caps     stream.Capabilities
	// warnedPartitions: newPartition has warned.
	warnedPartitions bool

	consumed *metrics.Counter
	dups     *metrics.Counter
	emitted  *metrics.Counter
	ckpts    *metrics.Counter
	// inLast leading records of the outbox are in the newest checkpoint
	// file, stable of them in the previous one too. Only stable records
	// are published: were the newest file damaged, the previous one
	// still holds every record already published — with the state after
	// emitting it — so starting from it re-publishes the same ids with the
	// same content (dropped by the stream as duplicates) instead of
	// emitting the same windows again under other ids.
	inLast, stable int
	corrupt        *metrics.Counter
	lag            atomic.Int64
}

// NewProcRunner returns a runner; it does no I/O until Run.
func NewProcRunner(cfg ProcConfig, st stream.Stream, p Processor, reg *selfmetric.Registry, log *slog.Logger) (*ProcRunner, error) {
	if cfg.Name == "" || cfg.CheckpointPath == "" || cfg.Origin == "" {
		return nil, errors.New("consumer: processor needs a name, origin and checkpoint path")
	}
	r := newProcRunner(cfg, st, p, fileStore{cfg.CheckpointPath}, reg, log)
	r.lag.Store(-1)
	reg.Gauge("les_consumer_lag_records", func() float64 { return float64(r.lag.Load()) }, "consumer", cfg.Name)
	return r, nil
}

// newProcRunner is NewProcRunner over store, without the lag gauge.
func newProcRunner(cfg ProcConfig, st stream.Stream, p Processor, store ckptStore, reg *selfmetric.Registry, log *slog.Logger) *ProcRunner {
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 16
	}
	if cfg.Now == nil {
		cfg.Now = func() int64 { return time.Now().UnixNano() }
	}
	if cfg.MaxRecordBytes <= 0 {
		cfg.MaxRecordBytes = 1 << 20
	}
	caps := st.Capabilities()
	if cfg.DedupWindow <= 0 {
		cfg.DedupWindow = 15 * time.Minute
	}
	cfg.DedupWindow = max(cfg.DedupWindow, caps.DedupWindow)
	r := &ProcRunner{cfg: cfg, st: st, p: p, log: log.With("consumer", cfg.Name), caps: caps, store: store,
		consumed: reg.Counter("les_consumer_records_total", "consumer", cfg.Name),
		dups:     reg.Counter("les_consumer_duplicate_records_total", "consumer", cfg.Name),
		emitted:  reg.Counter("les_processor_emitted_items_total", "consumer", cfg.Name),
		ckpts:    reg.Counter("les_processor_checkpoints_total", "consumer", cfg.Name),
		corrupt:  reg.Counter("les_consumer_corrupt_records_total", "consumer", cfg.Name),
	}
	r.lag.Store(-1)
	return r
}

// Run restores the checkpoint, re-publishes its outbox, then consumes from
// the checkpointed position until ctx is cancelled; it writes a final
// checkpoint on the way out.
func (r *ProcRunner) Run(ctx context.Context) error {
	ck, from, problems, err := r.store.load(ctx)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", r.cfg.Name, err)
	}
	switch from {
	case loadedPrevious:
		r.log.Warn("the newest checkpoint is damaged or missing: starting from the previous one; records after it are folded in again and its unconfirmed output re-published under the same ids",
			"problems", problems, "positions", ck.positions, "emit_seq", ck.emitSeq)
	case loadedNone:
		r.log.Error("no good checkpoint: rebuilding the state from the oldest record the stream holds; windows emitted before may be emitted again and records the stream no longer holds are not counted",
			"problems", problems)
	}
	r.mu.Lock()
	if ck.state != nil {
		if err := r.p.UnmarshalState(ck.state); err != nil {
			r.mu.Unlock()
			return fmt.Errorf("consumer %s: restore state: %w", r.cfg.Name, err)
		}
	}
	ck.expandPositions(r.caps.Partitions)
	if ck.producer == 0 || r.claimed {
		// A claimed partition's previous owner may not be dead (a
		// zombie the group dropped): a producer id of its own keeps its
		// ids apart from everything the zombie emits. The loaded outbox
		// keeps its ids.
		ck.producer = r.newProducer(ck)
	}
	r.ck = ck
	// The loaded outbox is in one file; the first save puts it in both
	// (see stable), so that it may be published.
	r.inLast, r.stable = len(ck.outbox), 0
	if err := r.checkpointLocked(ctx); err != nil {
		r.mu.Unlock()
		return err
	}
	after := maps.Clone(ck.positions)
	r.mu.Unlock()
	r.log.Info("processor starting", "positions", len(after), "outbox", len(ck.outbox), "backend", r.caps.Backend)
	if err := r.publishOutbox(ctx); err != nil {
		// Not fatal: the outbox stays checkpointed and every tick retries it.
		r.log.Warn("re-publishing the checkpointed outbox failed; will retry", "err", err)
	}
	tickCtx, stopTick := context.WithCancel(ctx)
	tickDone := make(chan struct{})
	go func() {
		defer close(tickDone)
		t := time.NewTicker(r.cfg.Tick)
		defer t.Stop()
		for {
			select {
			case <-tickCtx.Done():
				return
			case <-t.C:
				if err := r.advance(tickCtx); err != nil && tickCtx.Err() == nil {
					r.log.Error("advance", "err", err)
				}
				r.updateLag(tickCtx)
			}
		}
	}()
	err = r.consume(ctx, after)
	stopTick()
	<-tickDone
	// Final checkpoint so a clean restart replays nothing.
	r.mu.Lock()
	if r.dirty {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalCheckpointTimeout)
		if cerr := r.checkpointLocked(fctx); cerr != nil && err == nil {
			err = cerr
		}
		cancel()
	}
	r.mu.Unlock()
	return err
}

// finalCheckpointTimeout bounds the checkpoint written after ctx ended
// (on a remote store: a partition handed to another process waits for it).
const finalCheckpointTimeout = 10 * time.Second

// positionClamper is implemented by streams whose end can move backwards
// (natsjs: a server that found a damaged block file cuts the stream there,
// and new records reuse the sequences lost).
type positionClamper interface {
	// ClampPositions returns after with positions beyond the stream's end
	// moved back to it, and the generation to pass as since next time.
	ClampPositions(ctx context.Context, after map[string]stream.Position, since uint64) (map[string]stream.Position, uint64, error)
	// Truncated is closed when the stream's end next moves backwards.
	Truncated() <-chan struct{}
}

// consume reads from after on. On a stream whose end can move backwards,
// positions beyond the end are moved back first (else the records that
// reuse those sequences would be skipped as already folded), and again —
// restarting the read — whenever the end moves back while it runs.
func (r *ProcRunner) consume(ctx context.Context, after map[string]stream.Position) error {
	o := stream.ConsumeOptions{Origins: r.cfg.Origins, Signals: r.cfg.Signals,
		Partitions: r.cfg.Partitions, After: after, Batch: r.cfg.Batch}
	pc, ok := r.st.(positionClamper)
	if !ok {
		return r.st.Consume(ctx, o, r.handle)
	}
	var gen uint64
	for {
		truncated := pc.Truncated() // before clamping: a truncation meanwhile restarts
		o.After, gen = r.clampPositions(ctx, pc, gen)
		cctx, cancel := context.WithCancel(ctx)
		stop := make(chan struct{})
		go func() {
			select {
			case <-truncated:
				cancel()
			case <-stop:
			}
		}()
		err := r.st.Consume(cctx, o, r.handle)
		close(stop)
		restart := ctx.Err() == nil && cctx.Err() != nil
		cancel()
		if !restart {
			return err
		}
	}
}

// clampPositions moves the checkpointed positions beyond the stream's end
// back to it and logs each at ERROR; it returns the positions to resume
// after.
func (r *ProcRunner) clampPositions(ctx context.Context, pc positionClamper, since uint64) (map[string]stream.Position, uint64) {
	r.mu.Lock()
	cur := maps.Clone(r.ck.positions)
	r.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	clamped, gen, err := pc.ClampPositions(cctx, cur, since)
	if err != nil {
		r.log.Warn("could not check the checkpointed positions against the stream's end", "err", err)
		return cur, since
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for p, pos := range clamped {
		if pos == cur[p] {
			continue
		}
		r.log.Error("processor position was beyond the stream's end (the stream lost records, see its report): moved back so that new records are read",
			"partition", p, "checkpointed_pos", cur[p], "stream_end", pos)
		r.ck.positions[p] = pos
		r.dirty = true
	}
	return clamped, gen
}

func (r *ProcRunner) handle(ctx context.Context, ds []stream.Delivery) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now()
	for _, d := range ds {
		if stream.ComparePositions(d.Pos, r.ck.positions[d.Partition]) <= 0 {
			continue // already folded into the checkpointed state
		}
		if _, ok := r.ck.positions[d.Partition]; !ok {
			r.newPartition(d.Partition)
		}
		r.ck.positions[d.Partition] = d.Pos
		r.dirty = true
		r.consumed.Inc()
		h, err := wire.ParseHeader(d.Data)
		if err != nil {
			r.corrupt.Inc()
			r.log.Warn("skipping undecodable record", "partition", d.Partition, "pos", d.Pos, "err", err)
			continue
		}
		id := h.ID()
		if _, dup := r.ck.seen[id]; dup {
			r.dups.Inc()
			continue
		}
		// In parts: the processor holds a part's metrics at a time, not
		// the record's (a corrupt record is found before any part).
		r.in.Reset()
		add := func(b *model.Batch) { r.p.Add(b, now) }
		if sp, ok := r.p.(SeriesProcessor); ok {
			_, err = r.dec.DecodeSeriesParts(&r.in, d.Data, 0, add, func(p *wire.SeriesPart) { sp.AddSeries(p, now) })
		} else {
			_, err = r.dec.DecodeParts(&r.in, d.Data, 0, add)
		}
		if err != nil {
			r.corrupt.Inc()
			r.log.Warn("skipping undecodable record", "partition", d.Partition, "pos", d.Pos, "err", err)
			continue
		}
		r.ck.seen[id] = now
	}
	return nil
}

// newProducer picks the producer id of a checkpoint that has none: the
// id earlier versions derived from the name when the checkpoint has
// emitted before (so ids stay unique), else a random one.
func (r *ProcRunner) newProducer(ck checkpoint) uint64 {
	if ck.emitSeq > 0 && !r.claimed {
		h := fnv.New64a()
		h.Write([]byte("les-processor/" + r.cfg.Name))
		return h.Sum64()
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) | 1
}

// newPartition warns once when records arrive on a logical partition
// beyond stream.partitions: a producer configured with more partitions
// than this consumer, so series may be split between consumers.
func (r *ProcRunner) newPartition(part string) {
	p, err := strconv.Atoi(part)
	if err != nil || p < r.caps.Partitions || r.warnedPartitions {
		return // a shard id, or a partition in range
	}
	r.warnedPartitions = true
	r.log.Warn("records on a partition beyond stream.partitions: producers and consumers disagree on the number of partitions",
		"partition", p, "stream.partitions", r.caps.Partitions)
}

// pruneSeen forgets record ids older than the dedup window. r.mu held.
func (r *ProcRunner) pruneSeen(now int64) {
	for id, t := range r.ck.seen {
		if now-t > int64(r.cfg.DedupWindow) {
			delete(r.ck.seen, id)
		}
	}
}

// advance asks the processor for what is ready, checkpoints state, position
// and outbox together, then publishes the outbox.
func (r *ProcRunner) advance(ctx context.Context) error {
	r.mu.Lock()
	r.out.Reset()
	now := r.cfg.Now()
	r.p.Advance(now, &r.out)
	r.pruneSeen(now)
	if r.out.Len() > 0 {
		if err := r.encodeOutbox(); err != nil {
			r.mu.Unlock()
			return err
		}
		r.dirty = true
	}
	if len(r.ck.outbox) > r.stable {
		r.dirty = true // one more save makes them publishable
	}
	if r.dirty {
		if err := r.checkpointLocked(ctx); err != nil {
			r.mu.Unlock()
			return err
		}
	}
	r.mu.Unlock()
	return r.publishOutbox(ctx)
}

func (r *ProcRunner) encodeOutbox() error {
	for _, p := range wire.Split(&r.out, r.cfg.Origin, r.cfg.AggOrigin, r.cfg.MaxRecordBytes, r.caps.Partitions) {
		r.ck.emitSeq++
		data, err := p.Enc.Finish(nil, r.ck.producer, r.ck.emitSeq, r.cfg.Compression)
		if err != nil {
			return err
		}
		h, _ := wire.ParseHeader(data)
		r.ck.outbox = append(r.ck.outbox, stream.Record{
			Origin: p.Origin, Signal: p.Enc.Signal(), Partition: p.Partition, ID: h.ID(), Data: data,
		})
		r.emitted.Add(p.Enc.Count())
	}
	return nil
}

func (r *ProcRunner) checkpointLocked(ctx context.Context) error {
	state, err := r.p.MarshalState()
	if err != nil {
		return fmt.Errorf("consumer %s: marshal state: %w", r.cfg.Name, err)
	}
	r.ck.state = state
	err = r.store.save(ctx, &r.ck)
	r.ck.state = nil // the processor holds the state; do not keep a second copy
	if err != nil {
		return fmt.Errorf("consumer %s: checkpoint: %w", r.cfg.Name, err)
	}
	r.ckpts.Inc()
	r.stable, r.inLast = r.inLast, len(r.ck.outbox)
	r.dirty = false
	r.lastCkpt = time.Now()
	return nil
}

// publishOutbox publishes the stable part of the outbox (in both
// checkpoint files), then forgets it (the next checkpoint records that).
func (r *ProcRunner) publishOutbox(ctx context.Context) error {
	r.mu.Lock()
	out := r.ck.outbox[:r.stable]
	r.mu.Unlock()
	if len(out) == 0 {
		return nil
	}
	if err := r.st.Publish(ctx, out...); err != nil {
		return fmt.Errorf("consumer %s: publish: %w", r.cfg.Name, err)
	}
	r.mu.Lock()
	// Only drop what we published; encodeOutbox may have appended more.
	// Copy the rest so the published records' bytes can be freed.
	r.ck.outbox = append([]stream.Record(nil), r.ck.outbox[len(out):]...)
	r.stable -= len(out)
	r.inLast -= len(out)
	r.dirty = true
	r.mu.Unlock()
	return nil
}

func (r *ProcRunner) updateLag(ctx context.Context) {
	r.mu.Lock()
	after := maps.Clone(r.ck.positions)
	r.mu.Unlock()
	n, err := r.st.Lag(ctx, stream.LagQuery{After: after, Partitions: r.cfg.Partitions, Origins: r.cfg.Origins, Signals: r.cfg.Signals})
	if err == nil {
		r.lag.Store(int64(n))
	}
}

// Locked runs f while the processor is not being fed, so f may read its
// state (for example to answer a query).
func (r *ProcRunner) Locked(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f()
}
