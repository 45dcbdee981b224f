// Package sink defines how consumers deliver telemetry to backends. Each
// backend lives in its own sub-folder; Deliver holds retry, backoff and
// timeout once for all of them.
package sink

import (
	"context"
	"errors"

	"github.com/les-streams/les/internal/model"
)

// Meta describes the stream record a batch came from.
type Meta struct {
	// RecordID is the wire batch id ("<producer>-<seq>"), stable across
	// re-deliveries: sinks that can de-duplicate use it.
	RecordID string
	// Partition and Pos are where the record was read from: the physical
	// partition and position in it (see stream.Delivery).
	Partition string
	Pos       string
}

// Sink delivers batches to one backend.
type Sink interface {
	// Send delivers b. It must not keep b, or anything b references, after
	// it returns. A failure that retrying cannot fix wraps ErrPermanent.
	Send(ctx context.Context, b *model.Batch, m Meta) error
	// Close flushes and releases the sink.
	Close() error
}

// ErrPermanent marks a failure that retrying will not fix (bad request,
// unauthorised). The runner dead-letters the record instead of retrying.
var ErrPermanent = errors.New("permanent failure")

// Permanent wraps err so that errors.Is(err, ErrPermanent) holds.
func Permanent(err error) error { return permanentError{err} }

type permanentError struct{ err error }

func (p permanentError) Error() string   { return p.err.Error() }
func (p permanentError) Unwrap() []error { return []error{p.err, ErrPermanent} }
