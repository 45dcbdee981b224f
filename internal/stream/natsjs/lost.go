package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/les-streams/les/internal/stream"
)

// The stream's end can move backwards: a nats-server that finds a damaged
// block file on start cuts the stream at the damage (a damage in the last
// block) or drops the messages of the damaged part (an older block). New
// records then reuse the sequences that were lost, and every cursor beyond
// the new end — a durable consumer's delivered sequence, a processor's
// checkpointed position — would skip them: acknowledged records never
// delivered, and nothing logged. The guard below finds such cursors at
// start (CheckCursors) and whenever the stream's end moves back while les
// runs (watch), moves them back to the end, and reports every range of
// records the stream lost at ERROR, counted in
// les_stream_lost_records_total{backend}.

// guard is the lost-range check of one Stream.
type guard struct {
	path string // Deps.StatePath; "" keeps nothing between runs

	mu       sync.Mutex
	seen     bool // last and lastTime hold an observation
	last     uint64
	lastTime time.Time
	deleted  uint64      // NumDeleted at the last observation
	reported [][2]uint64 // interior ranges already reported
	gen      uint64      // truncations found so far
	cuts     []cut
	notify   chan struct{} // closed and replaced at every truncation

	lost *metrics.Counter
}

// cut is one truncation: sequences after last were lost and are reused.
type cut struct{ gen, last uint64 }

// guardState is the file at Deps.StatePath.
type guardState struct {
	LastSeq  uint64      `json:"last_seq"`
	LastTime time.Time   `json:"last_time"`
	Reported [][2]uint64 `json:"reported,omitempty"`
}

func newGuard(path string, lost *metrics.Counter) *guard {
	return &guard{path: path, lost: lost, notify: make(chan struct{})}
}

// load reads the state a previous run kept; a missing or unreadable file
// is no state (it only sharpens reports).
func (g *guard) load() guardState {
	var st guardState
	if g.path == "" {
		return st
	}
	if b, err := os.ReadFile(g.path); err == nil {
		_ = json.Unmarshal(b, &st)
	}
	return st
}

// save writes the state (temp file and rename; no fsync: a stale file only
// makes a report less precise). g.mu held.
func (g *guard) save() error {
	if g.path == "" || !g.seen {
		return nil
	}
	b, err := json.Marshal(guardState{LastSeq: g.last, LastTime: g.lastTime, Reported: g.reported})
	if err != nil {
		return err
	}
	tmp := g.path + ".tmp"
	if err := os.MkdirAll(filepath.Dir(g.path), 0o750); err != nil {
		return err
	}
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, g.path)
}

// Truncated returns a channel closed when the stream's end next moves
// backwards (see ClampPositions).
func (s *Stream) Truncated() <-chan struct{} {
	s.guard.mu.Lock()
	defer s.guard.mu.Unlock()
	return s.guard.notify
}

// ClampPositions returns after with every position beyond the stream's end
// moved back to it (a new map; after is not modified): the end at the
// earliest truncation found after generation since, or else the stream's
// last sequence now. gen is the generation to pass next time. A consumer
// that keeps its own positions (a processor's checkpoint) calls it before
// Consume and again whenever Truncated fires.
func (s *Stream) ClampPositions(ctx context.Context, after map[string]stream.Position, since uint64) (clamped map[string]stream.Position, gen uint64, err error) {
	s.guard.mu.Lock()
	gen = s.guard.gen
	end, found := uint64(0), false
	for _, c := range s.guard.cuts {
		if c.gen > since && (!found || c.last < end) {
			end, found = c.last, true
		}
	}
	s.guard.mu.Unlock()
	if !found {
		info, err := s.streamInfo(ctx, false)
		if err != nil {
			return nil, since, err
		}
		end = info.State.LastSeq
	}
	clamped = make(map[string]stream.Position, len(after))
	for p, pos := range after {
		if v, err := parsePos(pos); err == nil && v > end {
			pos = stream.Position(strconv.FormatUint(end, 10))
		}
		clamped[p] = pos
	}
	return clamped, gen, nil
}

func (s *Stream) streamInfo(ctx context.Context, deleted bool) (*jetstream.StreamInfo, error) {
	st, err := s.js.Stream(ctx, s.cfg.Name)
	if err != nil {
		return nil, err
	}
	return st.Info(ctx, jetstream.WithDeletedDetails(deleted))
}

// CheckCursors checks, before records are published, every durable
// consumer of the stream against its end: one ahead of it (the server cut
// the stream at a damaged block file) is moved back, and the range of
// records lost is logged and counted. Interior ranges lost (damage in an
// older block) are reported too. The embedded server calls it on start;
// on other servers the watcher's first look does.
func (s *Stream) CheckCursors(ctx context.Context) error {
	info, err := s.streamInfo(ctx, true)
	if err != nil {
		return fmt.Errorf("stream: check cursors: %w", err)
	}
	g := s.guard
	prev := g.load()
	cons, err := s.durables(ctx)
	if err != nil {
		return fmt.Errorf("stream: check cursors: %w", err)
	}
	end := info.State.LastSeq
	if s.rewritten(ctx, info.State, prev.LastSeq, prev.LastTime) {
		// Records stored after the end a previous run saw are new ones
		// (published since this start, by another process).
		if end, err = s.lastBefore(ctx, prev.LastTime, end); err != nil {
			return fmt.Errorf("stream: check cursors: %w", err)
		}
	}
	high := prev.LastSeq // the end a previous run saw
	for _, ci := range cons {
		high = max(high, ci.Delivered.Stream)
	}
	g.mu.Lock()
	g.reported = prev.Reported
	g.mu.Unlock()
	if high > end {
		s.truncated(end, high, "the stream ends before where les saw it end: the server cut it (a damaged block file?)")
	}
	s.rewindDurables(ctx, cons, end, high)
	g.mu.Lock()
	defer g.mu.Unlock()
	s.reportDeleted(info)
	g.seen, g.last, g.lastTime, g.deleted = true, end, info.State.LastTime, uint64(info.State.NumDeleted)
	return g.save()
}

// truncated records a truncation at end, reports the range (end, high] as
// lost and wakes ClampPositions' callers.
func (s *Stream) truncated(end, high uint64, why string) {
	g := s.guard
	g.mu.Lock()
	g.gen++
	g.cuts = append(g.cuts, cut{gen: g.gen, last: end})
	if len(g.cuts) > 16 {
		g.cuts = g.cuts[1:]
	}
	close(g.notify)
	g.notify = make(chan struct{})
	g.mu.Unlock()
	if high > end {
		g.lost.Add(int(high - end))
	}
	s.log.Error("records lost from the stream: "+why, "backend", s.deps.Backend, "stream", s.cfg.Name,
		"lost_from_seq", end+1, "lost_to_seq_at_least", high, "records_lost_at_least", high-end,
		"stream_last_seq", end)
}

// durables lists the stream's durable consumers.
func (s *Stream) durables(ctx context.Context) ([]*jetstream.ConsumerInfo, error) {
	st, err := s.js.Stream(ctx, s.cfg.Name)
	if err != nil {
		return nil, err
	}
	var out []*jetstream.ConsumerInfo
	l := st.ListConsumers(ctx)
	for ci := range l.Info() {
		if ci.Config.Durable != "" {
			out = append(out, ci)
		}
	}
	return out, l.Err()
}

// rewindDurables recreates every durable that delivered beyond end so that
// it resumes at end+1 (or at its ack floor, if lower), keeping its
// configuration; high is the highest sequence the stream is known to have
// held, for the report of what the consumer missed.
func (s *Stream) rewindDurables(ctx context.Context, cons []*jetstream.ConsumerInfo, end, high uint64) {
	for _, ci := range cons {
		if ci.Delivered.Stream <= end {
			continue
		}
		cfg := ci.Config
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, nil
		cfg.OptStartSeq = min(ci.AckFloor.Stream, end) + 1
		err := s.js.DeleteConsumer(ctx, s.cfg.Name, cfg.Durable)
		if err == nil || errors.Is(err, jetstream.ErrConsumerNotFound) {
			_, err = s.js.CreateConsumer(ctx, s.cfg.Name, cfg)
		}
		attrs := []any{"backend", s.deps.Backend, "consumer", cfg.Durable, "delivered_to_seq", ci.Delivered.Stream,
			"stream_last_seq", end, "resumes_at_seq", cfg.OptStartSeq}
		if high > ci.Delivered.Stream {
			attrs = append(attrs, "missed_from_seq", ci.Delivered.Stream+1, "missed_to_seq_at_least", high)
		}
		if err != nil {
			s.log.Error("durable consumer is ahead of the stream's end and could not be moved back; records published now may be skipped",
				append(attrs, "err", err)...)
			continue
		}
		s.log.Error("durable consumer was ahead of the stream's end: moved back so that new records reach it", attrs...)
	}
}

// reportDeleted reports interior ranges missing from the stream that were
// not reported before: les never deletes single records, so they are
// records the server dropped (damage in an older block). g.mu held.
func (s *Stream) reportDeleted(info *jetstream.StreamInfo) {
	g := s.guard
	first := info.State.FirstSeq
	g.reported = slices.DeleteFunc(g.reported, func(r [2]uint64) bool { return r[1] < first })
	var lost, ranges int
	for _, r := range seqRanges(info.State.Deleted) {
		if r[1] < max(first, 1) || covered(g.reported, r) {
			continue
		}
		g.reported = append(g.reported, r)
		lost += int(r[1] - r[0] + 1)
		if ranges++; ranges <= 20 {
			s.log.Error("records lost from the stream: the server dropped a range inside it (a damaged block file?)",
				"backend", s.deps.Backend, "stream", s.cfg.Name, "lost_from_seq", r[0], "lost_to_seq", r[1], "records_lost", r[1]-r[0]+1)
		}
	}
	if ranges > 20 {
		s.log.Error("records lost from the stream: more ranges", "backend", s.deps.Backend, "ranges", ranges, "records_lost", lost)
	}
	if len(g.reported) > 1000 {
		g.reported = g.reported[len(g.reported)-1000:]
	}
	g.lost.Add(lost)
}

// seqRanges turns sorted sequences into inclusive ranges.
func seqRanges(seqs []uint64) [][2]uint64 {
	seqs = slices.Clone(seqs)
	slices.Sort(seqs)
	var out [][2]uint64
	for _, q := range seqs {
		if n := len(out); n > 0 && out[n-1][1]+1 == q {
			out[n-1][1] = q
			continue
		}
		out = append(out, [2]uint64{q, q})
	}
	return out
}

func covered(rs [][2]uint64, r [2]uint64) bool {
	for _, x := range rs {
		if x[0] <= r[0] && r[1] <= x[1] {
			return true
		}
	}
	return false
}

// watch looks at the stream every interval until ctx ends: when its end
// moved backwards it finds where new records begin (the first stored after
// the last record seen before), moves durables back there and reports the
// range lost; new interior gaps are reported; the end is kept in
// Deps.StatePath for the next start.
func (s *Stream) watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.guard.mu.Lock()
		seen := s.guard.seen
		s.guard.mu.Unlock()
		if !seen {
			if err := s.CheckCursors(ctx); err != nil {
				s.log.Debug("stream check", "err", err)
			}
			continue
		}
		if err := s.look(ctx); err != nil && ctx.Err() == nil {
			s.log.Debug("stream check", "err", err)
		}
	}
}

func (s *Stream) look(ctx context.Context) error {
	info, err := s.streamInfo(ctx, false)
	if err != nil {
		return err
	}
	g := s.guard
	g.mu.Lock()
	last, lastTime, deleted := g.last, g.lastTime, g.deleted
	g.mu.Unlock()
	st := info.State
	if s.rewritten(ctx, st, last, lastTime) {
		// Records stored after lastTime are new ones, reusing sequences.
		end, err := s.lastBefore(ctx, lastTime, st.LastSeq)
		if err != nil {
			return err
		}
		s.truncated(end, last, "the stream's end moved backwards while les ran")
		cons, err := s.durables(ctx)
		if err != nil {
			return err
		}
		s.rewindDurables(ctx, cons, end, last)
	}
	if uint64(st.NumDeleted) > deleted {
		if info, err = s.streamInfo(ctx, true); err != nil {
			return err
		}
		st = info.State
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if uint64(st.NumDeleted) > deleted {
		s.reportDeleted(info)
	}
	changed := g.last != st.LastSeq
	g.last, g.deleted = st.LastSeq, uint64(st.NumDeleted)
	if st.LastSeq >= last || !st.LastTime.Before(lastTime) {
		g.lastTime = st.LastTime
	}
	if changed {
		return g.save()
	}
	return nil
}

// rewritten reports whether the stream no longer holds the record it
// ended with at lastTime, sequence last: its end moved back, or it was cut
// and refilled since (the record at last is another one). A record at
// last that is gone while the end is beyond it is an interior loss,
// reported on its own.
func (s *Stream) rewritten(ctx context.Context, st jetstream.StreamState, last uint64, lastTime time.Time) bool {
	if st.LastSeq < last {
		return true
	}
	if last == 0 || st.FirstSeq > last || lastTime.IsZero() {
		return false
	}
	jst, err := s.js.Stream(ctx, s.cfg.Name)
	if err != nil {
		return false
	}
	m, err := jst.GetMsg(ctx, last)
	return err == nil && !m.Time.Equal(lastTime)
}

// lastLook keeps the stream's end for the next start (Close).
func (s *Stream) lastLook() {
	s.guard.mu.Lock()
	seen := s.guard.seen
	s.guard.mu.Unlock()
	if !seen || !s.nc.IsConnected() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.look(ctx); err != nil {
		s.log.Debug("keeping the stream's end", "err", err)
	}
}

// lastBefore returns the sequence before the first record stored after t
// (or end when there is none).
func (s *Stream) lastBefore(ctx context.Context, t time.Time, end uint64) (uint64, error) {
	if t.IsZero() {
		return end, nil
	}
	after := t.Add(time.Nanosecond)
	c, err := s.js.OrderedConsumer(ctx, s.cfg.Name, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &after, MaxResetAttempts: 1})
	if err != nil {
		return 0, err
	}
	b, err := c.FetchNoWait(1)
	if err != nil {
		return 0, err
	}
	for m := range b.Messages() {
		if md, err := m.Metadata(); err == nil && md.Sequence.Stream > 0 {
			return min(md.Sequence.Stream-1, end), nil
		}
	}
	return end, nil
}

// RewindDurable makes the durable consumer durable deliver again from
// position pos of partition (inclusive; the sequence, which is
// stream-wide): Consume does it for ConsumeOptions.Rewind. The
// partition's own durable (DurableName) is used when it exists (partition
// "": the durable itself). Records after pos come again too (at least
// once). A durable whose ack floor is already before pos is left alone;
// one that does not exist fails with jetstream.ErrConsumerNotFound.
func (s *Stream) RewindDurable(ctx context.Context, durable, partition string, pos stream.Position) error {
	seq, err := parsePos(pos)
	if err != nil || seq == 0 {
		return fmt.Errorf("stream: rewind %s: bad position %q", durable, pos)
	}
	names := []string{durable}
	if partition != "" {
		names = []string{durable + "_p" + partition, durable}
	}
	var ci *jetstream.ConsumerInfo
	for _, name := range names {
		c, err := s.js.Consumer(ctx, s.cfg.Name, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("stream: rewind %s: %w", name, err)
		}
		if ci, err = c.Info(ctx); err != nil {
			return fmt.Errorf("stream: rewind %s: %w", name, err)
		}
		break
	}
	if ci == nil {
		return fmt.Errorf("stream: rewind %s: %w", durable, jetstream.ErrConsumerNotFound)
	}
	if seq > ci.AckFloor.Stream && ci.NumAckPending == 0 && ci.Delivered.Stream <= ci.AckFloor.Stream {
		return nil // nothing at or after pos was acknowledged or handed out
	}
	cfg := ci.Config
	cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, nil
	cfg.OptStartSeq = min(seq, ci.AckFloor.Stream+1)
	if err := s.js.DeleteConsumer(ctx, s.cfg.Name, cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("stream: rewind %s: %w", cfg.Durable, err)
	}
	if _, err := s.js.CreateConsumer(ctx, s.cfg.Name, cfg); err != nil {
		return fmt.Errorf("stream: rewind %s: %w", cfg.Durable, err)
	}
	return nil
}
