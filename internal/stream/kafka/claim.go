package kafka

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
)

// Claim implements stream.Claimer (ADR 0009). The checkpoints of group
// live in topic <topic_prefix>.ckpt.<group>, one Kafka partition per
// logical partition, and the consumer group of the same name over that
// topic (cooperative-sticky, static with instance_id) decides which
// process owns which logical partition: the member assigned checkpoint
// partition p owns logical partition p. The group never fetches the
// topic; a partition's StateStore reads it when run Loads.
//
// OnPartitionsRevoked cancels the partitions' runs and waits for them
// (their final Save) before the rebalance goes on; OnPartitionsLost (the
// group dropped this member) fences their stores first, so a Save after
// it fails. Claim creates the topic if it is missing and create_topics is
// on (retention unlimited: les trims it itself). It blocks until ctx is
// done or the Stream closed, stops every run, then leaves the group.
func (s *Stream) Claim(ctx context.Context, group string, run func(ctx context.Context, part int, st stream.StateStore) error) error {
	if err := validInstanceID(group); err != nil || group == "" {
		return fmt.Errorf("kafka: claim group %q: not a valid topic name part", group)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.closeCtx, cancel)()

	topic := s.claimTopic(group)
	if err := s.ensureClaimTopic(ctx, topic); err != nil || ctx.Err() != nil {
		return err
	}
	c := &claimer{s: s, topic: topic, group: group, run: run, runs: map[int32]*claimRun{}, errc: make(chan error, 1)}
	opts := []kgo.Opt{
		kgo.ConsumerGroup(topic),
		kgo.ConsumeTopics(topic),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(c.assigned),
		kgo.OnPartitionsRevoked(c.revoked),
		kgo.OnPartitionsLost(c.lost),
		kgo.SessionTimeout(s.cfg.SessionTimeout),
		kgo.RebalanceTimeout(s.cfg.RebalanceTimeout),
	}
	if id := s.cfg.InstanceID; id != "" {
		opts = append(opts, kgo.InstanceID(id))
	}
	cl, err := kgo.NewClient(s.clientOpts(opts...)...)
	if err != nil {
		return fmt.Errorf("kafka: claim: %w", err)
	}
	// The group assigns; it never fetches (the stores read what they need).
	cl.PauseFetchTopics(topic)
	c.cl = cl
	select {
	case <-ctx.Done():
	case err = <-c.errc:
	}
	// Final checkpoints first, while this member still owns the
	// partitions; then leave, and only then may others take them.
	c.stopAll()
	lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer lcancel()
	_ = cl.LeaveGroupContext(lctx) // a static member stays: its partitions wait for it
	closed := make(chan struct{})
	go func() { cl.Close(); close(closed) }()
	t := time.NewTimer(commitTimeout)
	defer t.Stop()
	select {
	case <-closed:
	case <-t.C:
		s.log.Warn("kafka: leaving the claim group is taking long; not waiting for it", "group", topic)
	}
	return err
}

// claimTopic is the checkpoint topic (and group) of a claimed consumer.
func (s *Stream) claimTopic(group string) string { return s.cfg.TopicPrefix + ".ckpt." + group }

// ensureClaimTopic waits for topic to exist with a partition per logical
// partition, creating it (unlimited retention) when create_topics is on.
// It returns nil without error when ctx ends first.
func (s *Stream) ensureClaimTopic(ctx context.Context, topic string) error {
	for attempt := 1; ; attempt++ {
		err := s.claimTopicOnce(ctx, topic)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errClaimTopic) || !retriable(err) {
			return err
		}
		if attempt == 1 {
			s.log.Warn("kafka: claim: brokers not ready; retrying", "err", err)
		}
		if !wait(ctx, backoff(attempt, retryStep, retryMax)) {
			return nil
		}
	}
}

// errClaimTopic is a checkpoint topic les cannot use; retrying cannot help.
var errClaimTopic = errors.New("kafka: checkpoint topic")

func (s *Stream) claimTopicOnce(ctx context.Context, topic string) error {
	found, missing, err := s.describe(ctx, []string{topic})
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		if !s.cfg.CreateTopicsOn() {
			return fmt.Errorf("%w %s does not exist and create_topics is off: create it with %d partitions and retention.ms=-1", errClaimTopic, topic, s.partitions)
		}
		size := strconv.FormatInt(s.cfg.MaxRecordBytes+2*batchSlack, 10)
		unlimited := "-1"
		del := "delete"
		resp, err := s.adm.CreateTopics(ctx, int32(s.partitions), int16(s.cfg.ReplicationFactor),
			map[string]*string{"max.message.bytes": &size, "retention.ms": &unlimited, "retention.bytes": &unlimited, "cleanup.policy": &del}, topic)
		if err != nil {
			return fmt.Errorf("kafka: create topic %s: %w", topic, err)
		}
		for _, r := range resp {
			if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
				return fmt.Errorf("kafka: create topic %s: %w (%s)", r.Topic, r.Err, r.ErrMessage)
			}
		}
		if found, missing, err = s.describe(ctx, []string{topic}); err != nil {
			return err
		}
		if len(missing) > 0 {
			return fmt.Errorf("kafka: topic %s not visible yet", topic) // retriable
		}
	}
	if n := found[topic]; int(n) < s.partitions {
		return fmt.Errorf("%w %s has %d partitions, stream.partitions is %d: each logical partition needs its own", errClaimTopic, topic, n, s.partitions)
	}
	return nil
}

// claimer is one Claim call's state. The callbacks run on the group
// client's goroutine, one at a time.
type claimer struct {
	s     *Stream
	topic string
	group string
	run   func(ctx context.Context, part int, st stream.StateStore) error
	cl    *kgo.Client
	errc  chan error

	mu       sync.Mutex
	runs     map[int32]*claimRun
	stopping bool
}

type claimRun struct {
	cancel context.CancelFunc
	done   chan struct{}
	store  *stateStore
}

func (c *claimer) assigned(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range m[c.topic] {
		if c.stopping || c.runs[p] != nil {
			continue
		}
		if int(p) >= c.s.partitions {
			continue // a checkpoint topic with more partitions than logical ones: nothing to run
		}
		ctx, cancel := context.WithCancel(c.s.closeCtx)
		r := &claimRun{cancel: cancel, done: make(chan struct{}), store: c.s.newStateStore(c.topic, p)}
		c.runs[p] = r
		go func() {
			defer close(r.done)
			err := c.run(ctx, int(p), r.store)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				err = fmt.Errorf("kafka: claim %s: partition %d stopped while assigned", c.group, p)
			}
			select {
			case c.errc <- err:
			default:
			}
		}()
	}
}

// revoked stops the partitions' runs and waits for their final Save.
func (c *claimer) revoked(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	c.stop(m[c.topic], false)
}

// lost fences the partitions' stores (another member may own them
// already), then stops their runs.
func (c *claimer) lost(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	c.stop(m[c.topic], true)
}

func (c *claimer) stop(parts []int32, fence bool) {
	c.mu.Lock()
	var rs []*claimRun
	for _, p := range parts {
		if r := c.runs[p]; r != nil {
			delete(c.runs, p)
			rs = append(rs, r)
		}
	}
	c.mu.Unlock()
	for _, r := range rs {
		if fence {
			r.store.fence()
		}
		r.cancel()
	}
	for _, r := range rs {
		<-r.done
	}
}

// stopAll stops every run (final checkpoints) and starts no more.
func (c *claimer) stopAll() {
	c.mu.Lock()
	c.stopping = true
	parts := make([]int32, 0, len(c.runs))
	for p := range c.runs {
		parts = append(parts, p)
	}
	c.mu.Unlock()
	c.stop(parts, false)
}

// Checkpoint records: the checkpoint is cut into chunks, each the value
// of one record on the partition's checkpoint topic partition, after a
// header: "LESK", version 1, epoch u64, writer u64, seq u64, chunk index
// u32, chunk count u32 (little endian). A checkpoint is complete when all
// its chunks are there; (writer, seq) names it.
const (
	chunkMagic  = "LESK\x01"
	chunkHeader = len(chunkMagic) + 8 + 8 + 8 + 4 + 4
	// trimEvery: records before the previous complete checkpoint are
	// deleted after every trimEvery-th save, so a takeover reads at most
	// about trimEvery+1 checkpoints.
	trimEvery = 4
)

// errFenced is returned by Save after the group took the partition away.
var errFenced = errors.New("kafka: checkpoint partition no longer assigned to this member")

// stateStore is one claimed partition's checkpoints. Its epoch is one more
// than any epoch in the partition when it was loaded, so a zombie's
// checkpoints (an older owner the group dropped but that still writes)
// are ignored by every later Load.
type stateStore struct {
	s     *Stream
	topic string
	part  int32

	mu     sync.Mutex
	fenced bool
	loaded bool
	// newest and previous are what the last scan found, until a Save
	// (a Load after one reads the partition again).
	newest   []byte
	previous []byte
	epoch    uint64
	writer   uint64
	seq      uint64
	saves    int
	// newestAt and prevAt are the first offsets of the newest and the
	// previous complete checkpoint (-1: none); logStart is the
	// partition's log start offset as last known.
	newestAt, prevAt, logStart int64

	m *ckptMetrics
}

// ckptMetrics are the les_stream_checkpoint_* series of a Stream.
type ckptMetrics struct {
	saves, saveBytes, saveErrors, loads, loadBytes, trims *metrics.Counter
	saveNanos, loadNanos                                  atomic.Int64
}

func newCkptMetrics(reg *selfmetric.Registry) *ckptMetrics {
	l := []string{"backend", "kafka"}
	m := &ckptMetrics{
		saves:      reg.Counter("les_stream_checkpoint_saves_total", l...),
		saveBytes:  reg.Counter("les_stream_checkpoint_saved_bytes_total", l...),
		saveErrors: reg.Counter("les_stream_checkpoint_save_errors_total", l...),
		loads:      reg.Counter("les_stream_checkpoint_loads_total", l...),
		loadBytes:  reg.Counter("les_stream_checkpoint_loaded_bytes_total", l...),
		trims:      reg.Counter("les_stream_checkpoint_trims_total", l...),
	}
	reg.Gauge("les_stream_checkpoint_save_seconds_total", func() float64 { return time.Duration(m.saveNanos.Load()).Seconds() }, l...)
	reg.Gauge("les_stream_checkpoint_load_seconds_total", func() float64 { return time.Duration(m.loadNanos.Load()).Seconds() }, l...)
	return m
}

func (s *Stream) newStateStore(topic string, part int32) *stateStore {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &stateStore{s: s, topic: topic, part: part, writer: binary.LittleEndian.Uint64(b[:]),
		newestAt: -1, prevAt: -1, m: s.ckptMetrics}
}

func (st *stateStore) fence() {
	st.mu.Lock()
	st.fenced = true
	st.mu.Unlock()
}

// Load implements stream.StateStore: it reads the partition from its log
// start to its end offset (retrying while brokers are unreachable, until
// ctx is done) and returns the newest complete checkpoint not older than
// an epoch seen before it, and the one before that.
func (st *stateStore) Load(ctx context.Context) (newest, previous []byte, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.saves > 0 {
		st.loaded = false // what the last scan found is out of date
	}
	if err := st.loadLocked(ctx); err != nil {
		return nil, nil, err
	}
	return st.newest, st.previous, nil
}

func (st *stateStore) loadLocked(ctx context.Context) error {
	if st.loaded {
		return nil
	}
	began := time.Now()
	for attempt := 1; ; attempt++ {
		n, err := st.scan(ctx)
		if err == nil {
			st.loaded = true
			st.m.loads.Inc()
			st.m.loadBytes.Add(n)
			st.m.loadNanos.Add(int64(time.Since(began)))
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("kafka: load checkpoint %s/%d: %w", st.topic, st.part, ctx.Err())
		}
		st.s.consumeErrors.Inc()
		if attempt == 1 {
			st.s.log.Warn("kafka: reading a checkpoint failed; retrying", "topic", st.topic, "partition", st.part, "err", err)
		}
		if !wait(ctx, backoff(attempt, retryStep, retryMax)) {
			return fmt.Errorf("kafka: load checkpoint %s/%d: %w (last error: %w)", st.topic, st.part, ctx.Err(), err)
		}
	}
}

// assembly is a checkpoint being put together from its chunks.
type assembly struct {
	epoch  uint64
	chunks [][]byte
	got    int
	at     int64
}

// scan reads the partition and sets newest, previous, epoch and the
// offsets; it returns the bytes read.
func (st *stateStore) scan(ctx context.Context) (int, error) {
	starts, err := st.s.adm.ListStartOffsets(ctx, st.topic)
	if err != nil {
		return 0, err
	}
	ends, err := st.s.adm.ListEndOffsets(ctx, st.topic)
	if err != nil {
		return 0, err
	}
	so, ok1 := starts.Lookup(st.topic, st.part)
	eo, ok2 := ends.Lookup(st.topic, st.part)
	if !ok1 || !ok2 {
		return 0, fmt.Errorf("kafka: no offsets for %s/%d", st.topic, st.part)
	}
	if so.Err != nil || eo.Err != nil {
		return 0, errors.Join(so.Err, eo.Err)
	}
	st.newest, st.previous, st.newestAt, st.prevAt, st.logStart = nil, nil, -1, -1, so.Offset
	var maxEpoch uint64
	if eo.Offset <= so.Offset {
		st.epoch = 1
		return 0, nil
	}
	cl, err := kgo.NewClient(st.s.clientOpts(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{st.topic: {st.part: kgo.NewOffset().At(so.Offset)}}),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxPartitionBytes(int32(min(st.s.cfg.MaxRecordBytes*4, 1<<30))),
	)...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	parts := map[[2]uint64]*assembly{}
	read := 0
	for next := so.Offset; next < eo.Offset; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return read, ctx.Err()
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil && !errors.Is(ferr, kerr.OffsetOutOfRange) {
			return read, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < next || r.Offset >= eo.Offset {
				return
			}
			next = r.Offset + 1
			read += len(r.Value)
			v := r.Value
			if len(v) < chunkHeader || string(v[:len(chunkMagic)]) != chunkMagic {
				return // not a les checkpoint chunk
			}
			h := v[len(chunkMagic):]
			epoch, writer, seq := binary.LittleEndian.Uint64(h), binary.LittleEndian.Uint64(h[8:]), binary.LittleEndian.Uint64(h[16:])
			idx, count := binary.LittleEndian.Uint32(h[24:]), binary.LittleEndian.Uint32(h[28:])
			maxEpoch = max(maxEpoch, epoch)
			if count == 0 || idx >= count || count > 1<<20 {
				return
			}
			k := [2]uint64{writer, seq}
			a := parts[k]
			if a == nil {
				a = &assembly{epoch: epoch, chunks: make([][]byte, count), at: r.Offset}
				parts[k] = a
			}
			if len(a.chunks) != int(count) || a.chunks[idx] != nil {
				return
			}
			a.chunks[idx] = v[chunkHeader:]
			a.got++
			if a.got < int(count) {
				return
			}
			delete(parts, k)
			if a.epoch < maxEpoch {
				return // written by an owner older than one already seen: a zombie's
			}
			var b []byte
			for _, c := range a.chunks {
				b = append(b, c...)
			}
			st.previous, st.prevAt = st.newest, st.newestAt
			st.newest, st.newestAt = b, a.at
			// Incomplete checkpoints before a complete one are dead.
			for k2, o := range parts {
				if o.at < a.at {
					delete(parts, k2)
				}
			}
		})
	}
	st.epoch = maxEpoch + 1
	return read, nil
}

// Save implements stream.StateStore: it writes b as chunks to the
// partition and returns once all are acknowledged (acks=all), retrying a
// failed write under a new sequence number until ctx is done. Every
// trimEvery-th save deletes the records before the previous complete
// checkpoint.
func (st *stateStore) Save(ctx context.Context, b []byte) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.fenced {
		return errFenced
	}
	if err := st.loadLocked(ctx); err != nil {
		return err
	}
	began := time.Now()
	for attempt := 1; ; attempt++ {
		at, err := st.write(ctx, b)
		if err == nil {
			st.prevAt, st.newestAt = st.newestAt, at
			st.previous, st.newest = nil, nil // not kept: b may be large
			st.m.saves.Inc()
			st.m.saveBytes.Add(len(b))
			st.m.saveNanos.Add(int64(time.Since(began)))
			st.saves++
			if st.saves%trimEvery == 0 {
				st.trim(ctx)
			}
			return nil
		}
		st.m.saveErrors.Inc()
		// A write that timed out (produce_timeout) is tried again while
		// ctx lasts: an incomplete checkpoint is ignored by every Load.
		if ctx.Err() != nil || !retriable(err) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("kafka: checkpoint %s/%d: %w", st.topic, st.part, err)
		}
		if !wait(ctx, backoff(attempt, 100*time.Millisecond, time.Second)) {
			return fmt.Errorf("kafka: checkpoint %s/%d: %w (last error: %w)", st.topic, st.part, ctx.Err(), err)
		}
		if st.fenced {
			return errFenced
		}
	}
}

// write produces b's chunks under the next sequence number and returns
// the offset of the first.
func (st *stateStore) write(ctx context.Context, b []byte) (int64, error) {
	st.seq++
	size := int(st.s.cfg.MaxRecordBytes) - chunkHeader
	count := max(1, (len(b)+size-1)/size)
	recs := make([]*kgo.Record, count)
	for i := range count {
		chunk := b[min(i*size, len(b)):min((i+1)*size, len(b))]
		v := make([]byte, 0, chunkHeader+len(chunk))
		v = append(v, chunkMagic...)
		v = binary.LittleEndian.AppendUint64(v, st.epoch)
		v = binary.LittleEndian.AppendUint64(v, st.writer)
		v = binary.LittleEndian.AppendUint64(v, st.seq)
		v = binary.LittleEndian.AppendUint32(v, uint32(i))
		v = binary.LittleEndian.AppendUint32(v, uint32(count))
		v = append(v, chunk...)
		recs[i] = &kgo.Record{Topic: st.topic, Partition: st.part, Value: v}
	}
	ctx, cancel := context.WithTimeout(ctx, st.s.cfg.ProduceTimeout)
	defer cancel()
	failed, err := st.s.produce(ctx, recs)
	if err != nil || len(failed) > 0 {
		if err == nil {
			err = errors.New("kafka: checkpoint chunks not acknowledged")
		}
		return 0, err
	}
	return recs[0].Offset, nil
}

// trim deletes the records before the previous complete checkpoint. A
// failure only leaves more to read at the next takeover.
func (st *stateStore) trim(ctx context.Context) {
	if st.prevAt <= st.logStart {
		return
	}
	var o kadm.Offsets
	o.Add(kadm.Offset{Topic: st.topic, Partition: st.part, At: st.prevAt})
	resp, err := st.s.adm.DeleteRecords(ctx, o)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		st.s.log.Warn("kafka: trimming the checkpoint topic failed", "topic", st.topic, "partition", st.part, "err", err)
		return
	}
	st.logStart = st.prevAt
	st.m.trims.Inc()
}
