// Package stream defines the contract between les' two halves: producers
// publish records to a durable, partitioned stream and consumers read them
// with their own cursors. Backends live in sub-packages (embedded, natsjs,
// kafka, kinesis; mem for tests) and all pass streamtest's conformance
// suite. ADR 0004 records why the contract looks like this.
//
// The contract in one paragraph: a record belongs to one origin, one
// signal and one logical partition (wire.Partition of its series or
// source). A backend stores records of one partition in order; its
// positions are opaque per physical partition (a NATS subject, a Kafka
// partition, a Kinesis shard), decimal strings that increase within it.
// Delivery is at least once. A backend declares in Capabilities whether it
// drops re-published record ids itself; where it does not, consumers whose
// effects must be exact de-duplicate by record id.
package stream

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/les-streams/les/internal/wire"
)

// Record is one message to publish: one encoded wire record.
type Record struct {
	// Origin is who produced the record and for whom (Origin* constants).
	Origin string
	// Signal is the wire signal of Data.
	Signal wire.Signal
	// Partition is the logical partition, 0 ≤ Partition < the stream's
	// Capabilities().Partitions; wire.Partition computes it.
	Partition int
	// ID is the wire batch id; backends that de-duplicate use it.
	ID string
	// Data is the encoded record. Publish does not keep it after
	// returning.
	Data []byte
}

// Position is a place in one physical partition: a decimal unsigned
// integer without leading zeros (a NATS stream sequence, a Kafka offset, a
// Kinesis sequence number). Positions of one partition increase in stream
// order; compare them with ComparePositions. "" is no position.
type Position string

// ComparePositions orders positions of the same partition: -1, 0 or +1.
func ComparePositions(a, b Position) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(string(a), string(b))
}

// Delivery is one record handed to a consumer. Data is owned by the
// delivery and valid until the handler returns.
type Delivery struct {
	Origin string
	Signal wire.Signal
	// Partition names the physical partition the record was read from
	// (a NATS subject's partition token, a Kafka partition number, a
	// Kinesis shard id); Pos is its place there.
	Partition    string
	Pos          Position
	Data         []byte
	NumDelivered uint64    // 1 on first delivery, more on redelivery (0 if the backend cannot tell)
	Time         time.Time // when the stream stored it (zero if unknown)
}

// Handler processes deliveries in stream order per partition. Returning
// nil acknowledges all of them; returning an error redelivers all of them
// later (with backoff), so a handler must be idempotent per record.
type Handler func(ctx context.Context, ds []Delivery) error

// ConsumeOptions configures one consumer. When the interface grows, it
// grows here.
type ConsumeOptions struct {
	// Durable names a cursor kept by the stream; it survives restarts and
	// moves only when the handler returns nil. Empty: the consumer keeps
	// its own cursor (After) or none.
	Durable string
	// Origins and Signals filter what the consumer receives; empty means
	// all. Each backend maps them to subjects, topics or record filtering.
	Origins []string
	Signals []wire.Signal
	// Partitions restricts the consumer to these logical partitions
	// (scale-out by assignment); nil means all. A backend whose physical
	// partitions are not the logical ones (Kinesis shards) documents how it
	// maps them.
	Partitions []int
	// After makes a consumer without Durable resume after these positions
	// (a checkpoint it keeps itself); partitions missing from the map start
	// at the oldest record retained. Nil: FromStart decides.
	After map[string]Position
	// FromStart makes a consumer without Durable or After start at the
	// oldest record; otherwise it starts at the newest.
	FromStart bool
	// Start is where a Durable that does not exist yet begins, and where
	// a partition missing from After begins: the oldest record retained
	// (the zero value), the newest, or the first stored at or after a
	// time. An existing durable or a position always wins.
	Start StartAt
	// Batch is the most deliveries per handler call (default 64).
	Batch int
	// MaxWait is the longest a partial batch waits for more (default 200ms).
	MaxWait time.Duration
	// AckWait is how long a delivery may stay unacknowledged before the
	// stream may redeliver it (default 2m), where the backend has one.
	AckWait time.Duration
	// Rewind moves the consumer's cursor back before it starts, so that
	// records already acknowledged are delivered again (a sink that lost
	// output asks for it): in each physical partition named (as in
	// Delivery.Partition) delivery begins at that position, inclusive,
	// when the cursor is past it. It never moves a cursor forward, and a
	// partition where the consumer has no cursor yet (a new Durable, or
	// one missing from After) is left to Start. With Durable the stream's
	// cursor moves; it is durable at the latest once a record delivered
	// after the rewind is acknowledged. Where a group assigns partitions
	// (GroupAssignment) a partition moves when it is assigned to this
	// process during this call, at most once per call. With After only
	// this call's start moves. Records after the position come again too,
	// and where positions are stream-wide (JetStream sequences) so may
	// other partitions' records after it. A backend that cannot rewind
	// fails Consume with an error wrapping errors.ErrUnsupported. ADR 0004.
	Rewind map[string]Position
}

// StartAt is ConsumeOptions.Start.
type StartAt struct {
	// Newest skips what is stored when the consumer is created.
	Newest bool
	// Time, when not zero, starts at the first record stored at or after
	// it (JetStream: DeliverByStartTime; Kafka: the offset for the
	// timestamp; Kinesis: AT_TIMESTAMP).
	Time time.Time
}

// IsZero reports whether s is the default, the oldest record.
func (s StartAt) IsZero() bool { return !s.Newest && s.Time.IsZero() }

// Wants reports whether a consumer with these options reads records of
// origin and sig (for backends that filter client-side).
func (o *ConsumeOptions) Wants(origin string, sig wire.Signal) bool {
	ok := len(o.Origins) == 0
	for _, x := range o.Origins {
		if x == origin {
			ok = true
			break
		}
	}
	if !ok {
		return false
	}
	if len(o.Signals) == 0 {
		return true
	}
	for _, s := range o.Signals {
		if s == sig {
			return true
		}
	}
	return false
}

// WantsPartition reports whether logical partition p is assigned.
func (o *ConsumeOptions) WantsPartition(p int) bool {
	if o.Partitions == nil {
		return true
	}
	for _, x := range o.Partitions {
		if x == p {
			return true
		}
	}
	return false
}

// Capabilities is what a backend guarantees; producers and consumers
// adapt to it.
type Capabilities struct {
	// Backend names the backend ("embedded", "nats", "kafka", "kinesis",
	// "mem") for logs and the les_stream_*{backend} metrics.
	Backend string
	// Partitions is the number of logical partitions producers spread
	// records over (stream.partitions).
	Partitions int
	// MaxRecordBytes is the largest Data the backend stores (0: unknown).
	MaxRecordBytes int64
	// DedupWindow is how long the backend drops a record whose ID it has
	// already stored; 0 means it never does and consumers that must be
	// exact de-duplicate themselves.
	DedupWindow time.Duration
	// DurableCursors reports whether ConsumeOptions.Durable is kept by
	// the stream (JetStream durable consumers, Kafka committed offsets).
	// Without it a durable consumer keeps its positions in a file named
	// by the caller (see the consumer package).
	DurableCursors bool
	// GroupAssignment reports whether the stream itself shares a durable
	// consumer's partitions among the processes that run it (Kafka
	// consumer groups); then ConsumeOptions.Partitions must be nil for a
	// Durable.
	GroupAssignment bool
}

// Stream is a durable, partitioned log of records.
type Stream interface {
	// Publish stores recs. When it returns nil every record is durable in
	// the stream. It is safe for concurrent use. A record larger than the
	// backend accepts fails with an error wrapping ErrTooLarge.
	Publish(ctx context.Context, recs ...Record) error
	// Consume delivers records to h until ctx is cancelled or a
	// non-retryable error occurs. It returns nil after a clean stop.
	Consume(ctx context.Context, o ConsumeOptions, h Handler) error
	// Lag reports how many records a consumer has not yet handled: the
	// durable named q.Durable, or one positioned at q.After. Backends that
	// cannot count return an error wrapping errors.ErrUnsupported.
	Lag(ctx context.Context, q LagQuery) (uint64, error)
	// Capabilities reports what the backend guarantees.
	Capabilities() Capabilities
	// Close releases connections (and stops an embedded server).
	Close() error
}

// Claimer is implemented by streams that share a stateful consumer's
// logical partitions among the processes running it and keep each
// partition's state where every one of them can read it (Kafka: a
// consumer group over a checkpoint topic; ADR 0009). Every logical
// partition is claimed by at most one process at a time.
type Claimer interface {
	// Claim joins the group named group and calls run, each in a goroutine
	// of its own, for every logical partition assigned to this process,
	// with the partition's StateStore. run's ctx is cancelled when the
	// partition is revoked (or ctx is); the revocation waits for run to
	// return, so a final Save made before returning is what the next
	// owner Loads. When the assignment is lost without a revocation (the
	// group dropped this process), Save fails from then on. Claim blocks
	// until ctx is done and every run returned, then leaves the group and
	// returns nil; it returns the first error of a run that ended while
	// its partition was still assigned (after stopping the others).
	Claim(ctx context.Context, group string, run func(ctx context.Context, part int, st StateStore) error) error
}

// StateStore keeps the checkpoints of one claimed partition. It is used
// by one goroutine at a time.
type StateStore interface {
	// Load returns the newest complete checkpoint saved for the
	// partition and the one saved before it (nil when there is none).
	Load(ctx context.Context) (newest, previous []byte, err error)
	// Save stores b as the newest checkpoint; once it returns nil, Load
	// (by any process) returns b, and the checkpoint before it as the
	// previous one. It does not keep b.
	Save(ctx context.Context, b []byte) error
}

// LagQuery names the consumer whose lag Stream.Lag reports.
type LagQuery struct {
	Durable string
	// Partitions is the durable's assignment (ConsumeOptions.Partitions).
	Partitions []int
	After      map[string]Position
	// Origins and Signals are the consumer's filters (a hint; backends
	// may count records outside them, giving an upper bound).
	Origins []string
	Signals []wire.Signal
}

// ErrClosed is returned by operations on a closed stream.
var ErrClosed = errors.New("stream: closed")

// ErrTooLarge is returned by Publish for a record larger than the stream
// accepts; retrying cannot help.
//
// ErrRejected is returned by Publish for a record the stream refuses for
// good (a central les answering 400 to a forwarded record): sending it
// again cannot succeed. Credentials refused are not ErrRejected — fixing
// them makes the same record go through.
var ErrRejected = errors.New("stream: record refused")

var ErrTooLarge = errors.New("stream: record larger than the stream's maximum record size")

// Origins of records.
const (
	OriginIngest  = "in"      // published by the agent: points to deliver as they are
	OriginAgg     = "agg"     // published by the agent or logmetric: raw input of the rollup (see model.Metric.Aggregated, and raw distributions)
	OriginRollup  = "rollup"  // closed windows from the rollup consumer
	OriginDerived = "derived" // metrics derived from logs (logmetric)
	OriginDLQ     = "dlq"     // records a consumer could not process
)

// AllOrigins returns every origin, in a fixed order.
func AllOrigins() []string {
	return []string{OriginIngest, OriginAgg, OriginRollup, OriginDerived, OriginDLQ}
}

// ValidOrigin reports whether o is one of the Origin constants.
func ValidOrigin(o string) bool {
	switch o {
	case OriginIngest, OriginAgg, OriginRollup, OriginDerived, OriginDLQ:
		return true
	}
	return false
}
