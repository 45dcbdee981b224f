package consumer

import (
	"context"
	"math/big"

	"github.com/les-streams/les/internal/stream"
)

// sinkRecoverer is a sink that checks its own output before the runner
// consumes (the file sink repairs a damaged end) and says where the
// stream must be re-read from so that records it cut are delivered again
// (pos inclusive; ok false: nothing to re-read).
type sinkRecoverer interface {
	Recover() (partition, pos string, ok bool, err error)
}

// durableRewinder is a stream that can move a durable cursor back (natsjs).
type durableRewinder interface {
	RewindDurable(ctx context.Context, durable, partition string, pos stream.Position) error
}

// recoverSink lets the sink repair its output, then moves the cursor back
// to where it asks, so that what the repair cut — already acknowledged —
// is delivered again (the sink skips the rest by record id).
func (r *SinkRunner) recoverSink(ctx context.Context, o *stream.ConsumeOptions) {
	rc, ok := r.sk.(sinkRecoverer)
	if !ok {
		return
	}
	part, pos, ok, err := rc.Recover()
	if err != nil {
		r.log.Warn("sink could not check its output before consuming", "err", err)
		return
	}
	if !ok {
		return
	}
	switch rw, isRw := r.st.(durableRewinder); {
	case o.Durable != "" && isRw:
		err = rw.RewindDurable(ctx, o.Durable, part, stream.Position(pos))
	case r.pos != nil:
		err = r.rewindPositions(part, pos)
		o.After = r.positions()
	default:
		r.log.Error("the sink cut a damaged record from its output and this stream cannot re-deliver it: its items are lost",
			"partition", part, "pos", pos, "backend", r.st.Capabilities().Backend)
		return
	}
	if err != nil {
		r.log.Error("the sink cut a damaged record from its output and re-reading the stream failed: its items may be lost",
			"partition", part, "pos", pos, "err", err)
		return
	}
	r.log.Warn("re-reading the stream for records the sink cut from its damaged output", "partition", part, "from_pos", pos)
}

// rewindPositions moves a positions-file cursor to just before pos.
func (r *SinkRunner) rewindPositions(part, pos string) error {
	v, ok := new(big.Int).SetString(pos, 10)
	if !ok || v.Sign() <= 0 {
		return nil
	}
	before := stream.Position(v.Sub(v, big.NewInt(1)).String())
	r.posMu.Lock()
	defer r.posMu.Unlock()
	if cur, ok := r.pos.positions[part]; ok && stream.ComparePositions(cur, before) <= 0 {
		return nil
	}
	r.pos.positions[part] = before
	return r.pos.save(r.cfg.PositionsPath)
}
