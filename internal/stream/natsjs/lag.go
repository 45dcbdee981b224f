package natsjs

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/les-streams/les/internal/stream"
)

// lagAfter is Lag for a consumer positioned at q.After (a processor): the
// records on q's subjects (origins, signals, partitions) after each
// partition's position, counted exactly by the server. One JetStream
// stream holds every subject, so its last sequence minus a position would
// count the records of every other origin and signal too. Partitions at
// the same position are counted together: each distinct position is one
// short-lived consumer (memory storage, no acks, deleted at once; the
// server removes it after a minute anyway), whose NumPending is the count.
func (s *Stream) lagAfter(ctx context.Context, q stream.LagQuery) (uint64, error) {
	o := stream.ConsumeOptions{Partitions: q.Partitions}
	byStart := map[uint64][]int{}
	add := func(p int) error {
		pos, err := parsePos(q.After[strconv.Itoa(p)])
		if err != nil {
			return err
		}
		byStart[pos+1] = append(byStart[pos+1], p)
		return nil
	}
	seen := map[int]bool{}
	for p := range s.partitions {
		if o.WantsPartition(p) {
			seen[p] = true
			if err := add(p); err != nil {
				return 0, err
			}
		}
	}
	// Positions of partitions beyond this stream's count (a producer
	// configured with more) are counted too, as Consume reads them.
	for key := range q.After {
		p, err := strconv.Atoi(key)
		if err != nil || seen[p] || !o.WantsPartition(p) {
			continue
		}
		seen[p] = true
		if err := add(p); err != nil {
			return 0, err
		}
	}
	var n uint64
	for start, parts := range byStart {
		cfg := jetstream.ConsumerConfig{
			FilterSubjects:    s.filters(q.Origins, q.Signals, parts),
			AckPolicy:         jetstream.AckNonePolicy,
			DeliverPolicy:     jetstream.DeliverAllPolicy,
			InactiveThreshold: time.Minute,
			MemoryStorage:     true,
		}
		if start > 1 {
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
		}
		c, err := s.js.CreateConsumer(ctx, s.cfg.Name, cfg)
		if err != nil {
			return 0, fmt.Errorf("natsjs: lag: %w", err)
		}
		info := c.CachedInfo()
		n += info.NumPending
		_ = s.js.DeleteConsumer(context.WithoutCancel(ctx), s.cfg.Name, info.Name)
	}
	return n, nil
}
