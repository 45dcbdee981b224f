package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/les-streams/les/internal/stream"
)

// Lag implements stream.Stream over the topics of q.Origins × q.Signals
// that exist: for q.Durable, the high watermarks minus the group's
// committed offsets; for q.After, the high watermarks minus the offset
// after each position. Partitions without a commit or position count from
// the log start offset. Counts include transaction markers, if any
// producer wrote them (les does not). It blocks until the brokers answer
// or ctx is done.
func (s *Stream) Lag(ctx context.Context, q stream.LagQuery) (uint64, error) {
	if q.Durable == "" && q.After == nil {
		return 0, errors.New("kafka: lag needs a durable or positions")
	}
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.wg.Done()
	refs, err := s.wanted(q.Origins, q.Signals)
	if err != nil {
		return 0, err
	}
	names := make([]string, len(refs))
	labels := make(map[string]string, len(refs))
	for i, r := range refs {
		names[i] = r.name
		labels[r.name] = r.label
	}
	ends, err := s.adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return 0, fmt.Errorf("kafka: lag: list end offsets: %w", err)
	}
	starts, err := s.adm.ListStartOffsets(ctx, names...)
	if err != nil {
		return 0, fmt.Errorf("kafka: lag: list start offsets: %w", err)
	}
	var committed kadm.OffsetResponses
	if q.Durable != "" {
		committed, err = s.adm.FetchOffsets(ctx, s.cfg.TopicPrefix+"."+q.Durable)
		if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
			return 0, fmt.Errorf("kafka: lag: fetch offsets of group %s: %w", q.Durable, err)
		}
	}
	var lag uint64
	for topic, ps := range ends {
		for p, end := range ps {
			if errors.Is(end.Err, kerr.UnknownTopicOrPartition) || p < 0 {
				continue // the topic does not exist: nothing to read
			}
			if !assigned(q.Partitions, p, int32(len(ps))) {
				continue // another process' partition
			}
			if end.Err != nil {
				return 0, fmt.Errorf("kafka: lag: end offset of %s/%d: %w", topic, p, end.Err)
			}
			from := int64(0)
			if q.Durable != "" {
				if c, ok := committed.Lookup(topic, p); ok && c.Err == nil && c.At >= 0 {
					from = c.At
				}
			} else if pos := q.After[labels[topic]+"/"+strconv.Itoa(int(p))]; pos != "" {
				n, err := strconv.ParseInt(string(pos), 10, 64)
				if err != nil || n < 0 {
					return 0, fmt.Errorf("kafka: lag: bad position %q for %s/%d", pos, labels[topic], p)
				}
				from = n + 1
			}
			if start, ok := starts.Lookup(topic, p); ok && start.Err == nil && from < start.Offset {
				from = start.Offset // never started, or retention removed records
			}
			if end.Offset > from {
				lag += uint64(end.Offset - from)
			}
		}
	}
	return lag, nil
}

// assigned reports whether Kafka partition kp of a topic of n partitions
// holds one of the logical partitions parts (nil: all).
func assigned(parts []int, kp, n int32) bool {
	if parts == nil {
		return true
	}
	for _, p := range parts {
		if p >= 0 && kafkaPartition(p, n) == kp {
			return true
		}
	}
	return false
}
