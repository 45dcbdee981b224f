package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
)

// ckptStore is where a ProcRunner keeps its checkpoints: a local file and
// the one before it (fileStore), or a claimed partition's stream.StateStore
// (claimStore). Both keep the last two checkpoints, so the rule of
// ADR 0003 (an outbox record is published only once it is in both) holds
// on either.
type ckptStore interface {
	load(ctx context.Context) (checkpoint, loaded, []string, error)
	save(ctx context.Context, c *checkpoint) error
}

// fileStore is the checkpoint file path and path.1.
type fileStore struct{ path string }

func (f fileStore) load(context.Context) (checkpoint, loaded, []string, error) {
	return loadRotated(f.path)
}

func (f fileStore) save(_ context.Context, c *checkpoint) error { return c.saveRotated(f.path) }

// claimStore is a claimed partition's checkpoints in the stream.
type claimStore struct{ st stream.StateStore }

func (s claimStore) load(ctx context.Context) (checkpoint, loaded, []string, error) {
	empty := checkpoint{positions: map[string]stream.Position{}, seen: map[string]int64{}}
	newest, prev, err := s.st.Load(ctx)
	if err != nil {
		return empty, 0, nil, err
	}
	var problems []string
	for i, b := range [][]byte{newest, prev} {
		if b == nil {
			continue
		}
		ck, err := unmarshalCheckpoint(b)
		if err == nil {
			if i == 0 {
				return ck, loadedNewest, nil, nil
			}
			return ck, loadedPrevious, problems, nil
		}
		problems = append(problems, fmt.Sprintf("checkpoint %d back: %v", i, err))
	}
	if len(problems) > 0 {
		return empty, loadedNone, problems, nil
	}
	return empty, loadedNewest, nil, nil
}

func (s claimStore) save(ctx context.Context, c *checkpoint) error {
	return s.st.Save(ctx, c.marshal())
}

// ClaimRunner runs a stateful processor on a stream that shares its
// partitions among processes (stream.Claimer; Kafka): one Processor and
// one checkpoint per logical partition this process claims, so a
// partition's state, positions and outbox move together when the group
// moves the partition (ADR 0009). Each claimed partition is a ProcRunner
// over the partition's StateStore, with everything ADR 0003 says about
// exactness; a claim draws a producer id of its own.
type ClaimRunner struct {
	cfg  ProcConfig
	st   stream.Stream
	cl   stream.Claimer
	newP func(part int) Processor
	reg  *selfmetric.Registry
	log  *slog.Logger // with consumer=<name>
	base *slog.Logger // without (each ProcRunner adds it)

	mu    sync.Mutex
	parts map[int]*ProcRunner

	handoffs *metrics.Counter
	lags     sync.Map // part → *atomic.Int64 of a running partition
}

// NewClaimRunner returns a runner whose partitions st assigns; newP makes
// the processor of a newly claimed partition (its state is then restored
// from the partition's checkpoint). cfg.CheckpointPath and cfg.Partitions
// are not used. It does no I/O until Run.
func NewClaimRunner(cfg ProcConfig, st stream.Stream, newP func(part int) Processor, reg *selfmetric.Registry, log *slog.Logger) (*ClaimRunner, error) {
	cl, ok := st.(stream.Claimer)
	if !ok {
		return nil, fmt.Errorf("consumer: the %s stream cannot assign partitions to processors", st.Capabilities().Backend)
	}
	if cfg.Name == "" || cfg.Origin == "" || newP == nil {
		return nil, errors.New("consumer: a claimed processor needs a name, origin and processor factory")
	}
	c := &ClaimRunner{cfg: cfg, st: st, cl: cl, newP: newP, reg: reg, log: log.With("consumer", cfg.Name), base: log,
		parts:    map[int]*ProcRunner{},
		handoffs: reg.Counter("les_processor_claims_total", "consumer", cfg.Name),
	}
	reg.Gauge("les_processor_partitions_owned", func() float64 {
		c.mu.Lock()
		defer c.mu.Unlock()
		return float64(len(c.parts))
	}, "consumer", cfg.Name)
	reg.Gauge("les_consumer_lag_records", func() float64 {
		var n int64
		c.lags.Range(func(_, v any) bool {
			if l := v.(*atomic.Int64).Load(); l > 0 {
				n += l
			}
			return true
		})
		return float64(n)
	}, "consumer", cfg.Name)
	return c, nil
}

// Run claims partitions until ctx is cancelled: each claimed partition
// restores its checkpoint, re-publishes its outbox and consumes from its
// positions, and writes a final checkpoint when the partition is revoked
// or ctx ends. It returns the first error of a partition that could not
// go on (a processor state that does not restore, a stream error retrying
// cannot fix).
func (c *ClaimRunner) Run(ctx context.Context) error {
	c.log.Info("processor claims its partitions from the stream's group", "backend", c.st.Capabilities().Backend)
	err := c.cl.Claim(ctx, c.cfg.Name, c.runPart)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", c.cfg.Name, err)
	}
	return nil
}

func (c *ClaimRunner) runPart(ctx context.Context, part int, ss stream.StateStore) error {
	cfg := c.cfg
	cfg.Partitions = []int{part}
	r := newProcRunner(cfg, c.st, c.newP(part), claimStore{ss}, c.reg, c.base.With("partition", part))
	r.claimed = true
	c.handoffs.Inc()
	c.mu.Lock()
	c.parts[part] = r
	c.mu.Unlock()
	c.lags.Store(part, &r.lag)
	defer func() {
		c.lags.Delete(part)
		c.mu.Lock()
		delete(c.parts, part)
		c.mu.Unlock()
	}()
	c.log.Info("partition claimed", "partition", part)
	err := r.Run(ctx)
	if err != nil && ctx.Err() != nil {
		// Released (revoked, or stopping): the Claimer drops the error
		// of a run whose partition is no longer assigned, so it is said
		// here. Mostly the final checkpoint failed: the next owner then
		// starts from the one before and folds the records after it in
		// again (exact, ADR 0003; not the clean handoff of ADR 0009).
		c.log.Warn("partition released with an error: if its final checkpoint failed, the next owner replays from the one before",
			"partition", part, "err", err)
		return nil
	}
	c.log.Info("partition released", "partition", part)
	if err != nil {
		return fmt.Errorf("partition %d: %w", part, err)
	}
	return nil
}

// Owned returns the logical partitions this process runs now, sorted.
func (c *ClaimRunner) Owned() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.parts))
}

// Each calls f for the processor of every partition this process runs,
// while that processor is not being fed (see ProcRunner.Locked).
func (c *ClaimRunner) Each(f func(part int, p Processor)) {
	c.mu.Lock()
	rs := maps.Clone(c.parts)
	c.mu.Unlock()
	for part, r := range rs {
		r.Locked(func() { f(part, r.p) })
	}
}
