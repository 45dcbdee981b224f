// Package mem is an in-memory stream backend for tests, with fault
// injection. It keeps every record of a Store in memory, one log per
// logical partition, and durable cursors per consumer name. Its waits use
// only channels and timers, so it runs inside testing/synctest bubbles.
package mem

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/les-streams/les/internal/stream"
)

// Config configures a Stream over a Store.
type Config struct {
	// Partitions is the number of logical partitions (default 1).
	Partitions int
	// MaxRecordBytes bounds a record (default 1 MiB).
	MaxRecordBytes int64
	// DedupWindow drops re-published ids seen within it (default 0:
	// never, like Kafka and Kinesis).
	DedupWindow time.Duration
}

// Store is the durable state: it outlives the Streams opened on it, so a
// test can "restart" by closing one Stream and opening another.
type Store struct {
	mu           sync.Mutex
	parts        map[int][]entry
	ids          map[string]time.Time
	cursors      map[string]map[int]int // durable → partition → next index
	notify       chan struct{}
	fault        func(ctx context.Context, recs []stream.Record) error
	publishCalls int
	groups       map[string]*claimGroup // Claim groups (claim.go)
}

type entry struct {
	rec    stream.Record
	stored time.Time
	// delivered counts deliveries per durable (for NumDelivered).
	delivered map[string]uint64
}

// startIndex is where Start begins in partition p. s.mu is held.
func (s *Store) startIndex(p int, st stream.StartAt) int {
	es := s.parts[p]
	switch {
	case st.Newest:
		return len(es)
	case !st.Time.IsZero():
		for i, e := range es {
			if !e.stored.Before(st.Time) {
				return i
			}
		}
		return len(es)
	}
	return 0
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{parts: map[int][]entry{}, ids: map[string]time.Time{},
		cursors: map[string]map[int]int{}, notify: make(chan struct{})}
}

// SetPublishFault makes every Publish call f first; a non-nil error fails
// the publish without storing anything. nil removes the fault. f may block
// (a slow stream) and should honour ctx.
func (s *Store) SetPublishFault(f func(ctx context.Context, recs []stream.Record) error) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// Records returns a copy of every stored record, partition by partition.
func (s *Store) Records() []stream.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []stream.Record
	for p := 0; p < len(s.parts)+64; p++ {
		for _, e := range s.parts[p] {
			out = append(out, e.rec)
		}
	}
	return out
}

// Len is the number of stored records.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, es := range s.parts {
		n += len(es)
	}
	return n
}

// Store returns the stream's store.
func (s *Stream) Store() *Store { return s.st }

// PublishCalls counts Publish calls that reached the store (after faults).
func (s *Store) PublishCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.publishCalls
}

// Stream is a stream.Stream over a Store.
type Stream struct {
	cfg    Config
	st     *Store
	mu     sync.Mutex
	closed bool
	done   chan struct{}
	claims []claimOf // groups this stream claims in (claim.go)
}

// New opens a stream on st.
func New(st *Store, cfg Config) *Stream {
	if cfg.Partitions <= 0 {
		cfg.Partitions = 1
	}
	if cfg.MaxRecordBytes <= 0 {
		cfg.MaxRecordBytes = 1 << 20
	}
	return &Stream{cfg: cfg, st: st, done: make(chan struct{})}
}

// Capabilities implements stream.Stream.
func (s *Stream) Capabilities() stream.Capabilities {
	return stream.Capabilities{Backend: "mem", Partitions: s.cfg.Partitions,
		MaxRecordBytes: s.cfg.MaxRecordBytes, DedupWindow: s.cfg.DedupWindow, DurableCursors: true}
}

func (s *Stream) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Publish implements stream.Stream.
func (s *Stream) Publish(ctx context.Context, recs ...stream.Record) error {
	if s.isClosed() {
		return stream.ErrClosed
	}
	for _, r := range recs {
		if int64(len(r.Data)) > s.cfg.MaxRecordBytes {
			return fmt.Errorf("%w: record %s is %d bytes, max %d", stream.ErrTooLarge, r.ID, len(r.Data), s.cfg.MaxRecordBytes)
		}
		if r.Partition < 0 || r.Partition >= s.cfg.Partitions {
			return fmt.Errorf("mem: partition %d out of range [0,%d)", r.Partition, s.cfg.Partitions)
		}
	}
	s.st.mu.Lock()
	fault := s.st.fault
	s.st.mu.Unlock()
	if fault != nil {
		if err := fault(ctx, recs); err != nil {
			return fmt.Errorf("mem: publish: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	s.st.publishCalls++
	for _, r := range recs {
		if s.cfg.DedupWindow > 0 && r.ID != "" {
			if t, ok := s.st.ids[r.ID]; ok && now.Sub(t) < s.cfg.DedupWindow {
				continue
			}
			s.st.ids[r.ID] = now
		}
		r.Data = append([]byte(nil), r.Data...)
		s.st.parts[r.Partition] = append(s.st.parts[r.Partition], entry{rec: r, stored: now})
	}
	close(s.st.notify)
	s.st.notify = make(chan struct{})
	return nil
}

// Consume implements stream.Stream. Positions are "index+1" in the
// partition's log; the physical partition is the logical one. o.Rewind
// moves a durable's cursor (or this call's start after o.After) back.
func (s *Stream) Consume(ctx context.Context, o stream.ConsumeOptions, h stream.Handler) error {
	if s.isClosed() {
		return stream.ErrClosed
	}
	if o.Batch <= 0 {
		o.Batch = 64
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 200 * time.Millisecond
	}
	next := map[int]int{}
	s.st.mu.Lock()
	for p := range s.cfg.Partitions {
		if !o.WantsPartition(p) {
			continue
		}
		next[p] = 0
		hasCursor := false
		switch {
		case o.Durable != "":
			c := s.st.cursors[o.Durable]
			if c == nil {
				c = map[int]int{}
				s.st.cursors[o.Durable] = c
			}
			n, ok := c[p]
			if !ok { // a new durable (partition): created here, where Start says
				n = s.st.startIndex(p, o.Start)
				c[p] = n
			}
			next[p], hasCursor = n, ok
		case o.After != nil:
			pos := o.After[strconv.Itoa(p)]
			if pos == "" {
				next[p] = s.st.startIndex(p, o.Start)
				break
			}
			n, err := strconv.Atoi(string(pos))
			if err != nil {
				s.st.mu.Unlock()
				return fmt.Errorf("mem: bad position %q", pos)
			}
			next[p], hasCursor = n, true
		case o.FromStart:
		default:
			next[p] = len(s.st.parts[p])
		}
		if pos, ok := o.Rewind[strconv.Itoa(p)]; ok && hasCursor {
			n, err := strconv.Atoi(string(pos))
			if err != nil || n <= 0 {
				s.st.mu.Unlock()
				return fmt.Errorf("mem: rewind: bad position %q", pos)
			}
			if n-1 < next[p] { // only back
				next[p] = n - 1
				if o.Durable != "" {
					s.st.cursors[o.Durable][p] = n - 1
				}
			}
		}
	}
	s.st.mu.Unlock()
	retry := 0
	for {
		if ctx.Err() != nil || s.isClosed() {
			return nil
		}
		ds, adv, wait := s.collect(o, next)
		if len(ds) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-s.done:
				return nil
			case <-wait:
			}
			continue
		}
		if err := h(ctx, ds); err != nil {
			retry++
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(min(time.Duration(retry)*50*time.Millisecond, time.Second)):
			}
			continue
		}
		retry = 0
		s.st.mu.Lock()
		for p, n := range adv {
			next[p] = n
			if o.Durable != "" {
				c := s.st.cursors[o.Durable]
				if c == nil {
					c = map[int]int{}
					s.st.cursors[o.Durable] = c
				}
				c[p] = n
			}
		}
		s.st.mu.Unlock()
	}
}

// collect takes up to o.Batch wanted records after next, partition by
// partition, and returns them, each partition's next index after them,
// and a channel closed on the next publish.
func (s *Stream) collect(o stream.ConsumeOptions, next map[int]int) ([]stream.Delivery, map[int]int, <-chan struct{}) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	var ds []stream.Delivery
	adv := map[int]int{}
	for p := range s.cfg.Partitions {
		i, ok := next[p]
		if !ok {
			continue
		}
		es := s.st.parts[p]
		for ; i < len(es) && len(ds) < o.Batch; i++ {
			e := &es[i]
			adv[p] = i + 1
			if !o.Wants(e.rec.Origin, e.rec.Signal) {
				continue
			}
			if e.delivered == nil {
				e.delivered = map[string]uint64{}
			}
			e.delivered[o.Durable]++
			ds = append(ds, stream.Delivery{Origin: e.rec.Origin, Signal: e.rec.Signal,
				Partition: strconv.Itoa(p), Pos: stream.Position(strconv.Itoa(i + 1)),
				Data: e.rec.Data, NumDelivered: e.delivered[o.Durable], Time: e.stored})
		}
	}
	return ds, adv, s.st.notify
}

// Lag implements stream.Stream.
func (s *Stream) Lag(ctx context.Context, q stream.LagQuery) (uint64, error) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	o := stream.ConsumeOptions{Origins: q.Origins, Signals: q.Signals}
	var n uint64
	for p, es := range s.st.parts {
		from := 0
		switch {
		case q.Durable != "":
			from = s.st.cursors[q.Durable][p]
		case q.After != nil:
			from, _ = strconv.Atoi(string(q.After[strconv.Itoa(p)]))
		default:
			return 0, errors.New("mem: lag needs a durable or positions")
		}
		for i := from; i < len(es); i++ {
			if o.Wants(es[i].rec.Origin, es[i].rec.Signal) {
				n++
			}
		}
	}
	return n, nil
}

// Close implements stream.Stream; the Store keeps its records.
func (s *Stream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	return nil
}
