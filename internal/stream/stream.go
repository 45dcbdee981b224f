// Package stream defines how les talks to the durable stream: publishing
// records and consuming them with durable cursors. Backends live in
// sub-packages (natsjs: embedded or external NATS JetStream).
package stream

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/les-streams/les/internal/wire"
)

// Record is one message to publish: an encoded wire record on a subject.
type Record struct {
	// Subject names the record's origin, signal and partition; build it with
	// Subject.
	Subject string
	// ID de-duplicates re-publishes of the same batch (the wire batch id).
	ID   string
	Data []byte
}

// Delivery is one record handed to a consumer. Data is owned by the
// delivery and valid until the handler returns.
type Delivery struct {
	Subject      string
	Data         []byte
	Seq          uint64    // position in the stream, increasing
	NumDelivered uint64    // 1 on first delivery, more on redelivery
	Time         time.Time // when the stream stored it
}

// Handler processes a batch of deliveries in stream order. Returning nil
// acknowledges all of them; returning an error redelivers all of them later
// (with backoff), so a handler must be idempotent per record.
type Handler func(ctx context.Context, ds []Delivery) error

// ConsumeOptions configures one consumer. When the interface grows, it
// grows here.
type ConsumeOptions struct {
	// Durable names the consumer's cursor; it survives restarts. Empty means
	// an ephemeral consumer that starts at the end (or at StartSeq).
	Durable string
	// Subjects filters what the consumer receives (NATS wildcards allowed).
	Subjects []string
	// Batch is the most deliveries per handler call (default 64).
	Batch int
	// MaxWait is the longest a partial batch waits for more (default 200ms).
	MaxWait time.Duration
	// FromStart makes an ephemeral consumer start at the first record.
	FromStart bool
	// StartSeq makes an ephemeral consumer start at this stream sequence
	// (for consumers that keep their cursor in their own checkpoint).
	StartSeq uint64
	// AckWait is how long a delivery may stay unacknowledged before the
	// stream redelivers it (default 2m).
	AckWait time.Duration
}

// Stream is a durable, ordered log of records.
type Stream interface {
	// Publish stores recs. When it returns nil every record is durable in
	// the stream. It is safe for concurrent use.
	Publish(ctx context.Context, recs ...Record) error
	// Consume delivers records to h until ctx is cancelled or a
	// non-retryable error occurs. It returns nil after a clean stop.
	Consume(ctx context.Context, o ConsumeOptions, h Handler) error
	// Lag reports how many records the durable consumer has not yet
	// acknowledged (pending plus in flight).
	Lag(ctx context.Context, durable string) (uint64, error)
	// LastSeq is the sequence of the newest record in the stream.
	LastSeq(ctx context.Context) (uint64, error)
	// Close releases connections (and stops an embedded server).
	Close() error
}

// ErrClosed is returned by operations on a closed stream.
var ErrClosed = errors.New("stream: closed")

// ErrTooLarge is returned by Publish for a record larger than the stream
// accepts; retrying cannot help.
var ErrTooLarge = errors.New("stream: record larger than the server's maximum message size")

// Origins of records, the second token of a subject.
const (
	OriginIngest  = "in"      // published by the agent: points to deliver as they are
	OriginAgg     = "agg"     // published by the agent or logmetric: raw input of the rollup (see model.Metric.Aggregated, and raw distributions)
	OriginRollup  = "rollup"  // closed windows from the rollup consumer
	OriginDerived = "derived" // metrics derived from logs (logmetric)
	OriginDLQ     = "dlq"     // records a consumer could not process
)

// Prefix is the first token of every les subject.
const Prefix = "les"

// Subject returns "les.<origin>.<signal>.<partition>".
func Subject(origin string, sig wire.Signal, partition int) string {
	return Prefix + "." + origin + "." + sig.String() + "." + strconv.Itoa(partition)
}

// SubjectsFor returns filters matching every partition of the given
// origins and signals.
func SubjectsFor(origins []string, sigs []wire.Signal) []string {
	var out []string
	for _, o := range origins {
		for _, s := range sigs {
			out = append(out, Prefix+"."+o+"."+s.String()+".*")
		}
	}
	return out
}

// DLQSubject is where a consumer dead-letters records it cannot process.
func DLQSubject(consumer string) string { return Prefix + "." + OriginDLQ + "." + consumer }
