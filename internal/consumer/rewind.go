package consumer

import (
	"context"
	"errors"
	"maps"
	"sync/atomic"

	"github.com/les-streams/les/internal/stream"
)

// sinkRecoverer is a sink that guards its own output (the file sink): it
// repairs damage — before the runner consumes and while it runs — and
// says where the stream must be re-read from so that the records it cut,
// already acknowledged, are delivered again.
type sinkRecoverer interface {
	// Recover repairs the output now and returns physical partition →
	// position (inclusive) to re-read from; nil: nothing. It returns a
	// partition again (across restarts) until Rewound names it.
	Recover() (map[string]string, error)
	// Rewound reports partitions whose records from the position Recover
	// gave were delivered again and acknowledged.
	Rewound(partitions ...string)
	// Damaged is signalled when a repair while running cut delivered
	// records; the sink refuses Sends until the next Recover.
	Damaged() <-chan struct{}
}

// consume runs the stream's Consume until ctx ends or it fails; when the
// sink guards its output, it first asks the sink where to re-read from
// (ConsumeOptions.Rewind, the stream contract), and when the sink reports
// damage while running it stops consuming and starts again from where the
// sink now says.
func (r *SinkRunner) consume(ctx context.Context, o stream.ConsumeOptions) error {
	rc, ok := r.sk.(sinkRecoverer)
	if !ok {
		return r.st.Consume(ctx, o, r.handle)
	}
	for {
		r.recoverSink(rc, &o)
		cctx, stop := context.WithCancel(ctx)
		var damaged atomic.Bool
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			select {
			case <-rc.Damaged():
				damaged.Store(true)
				stop()
			case <-cctx.Done():
			}
		}()
		err := r.st.Consume(cctx, o, r.handle)
		stop()
		<-watched
		r.confirmRewound() // Consume returned: what it handled last is acknowledged
		if err != nil || ctx.Err() != nil || !damaged.Load() {
			return err
		}
		if r.pos != nil {
			o.After = r.positions()
		}
	}
}

// recoverSink lets the sink repair its output and sets o.Rewind to where
// it asks the stream to re-read from.
func (r *SinkRunner) recoverSink(rc sinkRecoverer, o *stream.ConsumeOptions) {
	o.Rewind, r.rewinding, r.reached = nil, nil, nil
	rw, err := rc.Recover()
	if err != nil {
		r.log.Warn("sink could not check its output before consuming", "err", err)
		return
	}
	if len(rw) == 0 {
		return
	}
	o.Rewind = make(map[string]stream.Position, len(rw))
	for p, pos := range rw {
		o.Rewind[p] = stream.Position(pos)
	}
	r.rewinding = maps.Clone(o.Rewind)
	r.log.Warn("re-reading the stream for records the sink cut from its damaged output",
		"rewind", rw, "backend", r.st.Capabilities().Backend)
}

// noteRewound records the partitions of an acknowledged fetch that
// reached their rewind position; handle calls it before returning nil.
func (r *SinkRunner) noteRewound(ds []stream.Delivery) {
	if len(r.rewinding) == 0 {
		return
	}
	for _, d := range ds {
		if pos, ok := r.rewinding[d.Partition]; ok && stream.ComparePositions(d.Pos, pos) >= 0 {
			delete(r.rewinding, d.Partition)
			r.reached = append(r.reached, d.Partition)
		}
	}
}

// confirmRewound tells the sink which rewound partitions came again. It
// runs when the fetch that reached them is acknowledged: at the next
// fetch (every backend acknowledges a fetch before delivering the next)
// or when Consume returned.
func (r *SinkRunner) confirmRewound() {
	if len(r.reached) == 0 {
		return
	}
	if rc, ok := r.sk.(sinkRecoverer); ok {
		rc.Rewound(r.reached...)
		r.log.Info("the records the sink cut were delivered again", "partitions", r.reached)
	}
	r.reached = nil
}

// isRewinding reports whether a sink refused a record because it waits
// for the runner to re-read the stream (file.ErrRewind): the record is
// redelivered, never dead-lettered.
func isRewinding(err error) bool {
	var rw interface{ Rewinding() bool }
	return errors.As(err, &rw) && rw.Rewinding()
}
