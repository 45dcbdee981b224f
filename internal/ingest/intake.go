package ingest

import (
	"github.com/VictoriaMetrics/metrics"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
)

// Decoder is what every format decoder in internal/format provides: it
// appends accepted items and rejections to dst. Items may alias payload.
//
// A TCP listener makes one per connection; when the connection ends it
// calls Release if the decoder has one (a decoder whose series cache
// shares the listener's budget gives its bytes back).
type Decoder interface {
	Decode(dst *model.Batch, payload []byte, now int64)
}

// releaser is a Decoder with memory to give back when it is done.
type releaser interface{ Release() }

// Intake counts what one listener received and rejected and hands accepted
// items to the batcher.
type Intake struct {
	Format    string
	Transport string
	batcher   *Batcher
	received  *metrics.Counter
	rejected  *selfmetric.ReasonCounters
	recent    *selfmetric.RejectLog // the last rejected inputs, for the UI
	// Gate, when set, makes Deliver drop the items (counted with reason
	// disk_full) while nothing can be stored. Set it before intake starts.
	Gate *StoreGate
}

// NewIntake returns an intake for one (format, transport) pair.
func NewIntake(format, transport string, b *Batcher, reg *selfmetric.Registry) *Intake {
	return &Intake{
		Format: format, Transport: transport, batcher: b,
		received: reg.Counter("les_ingest_received_total", "format", format, "transport", transport),
		rejected: reg.NewReasonCounters("les_ingest_rejected_total", "format", format),
		recent:   reg.Rejects(),
	}
}

// Account counts batch's items and rejections.
func (in *Intake) Account(batch *model.Batch) {
	in.received.Add(batch.Len() + len(batch.Rejects))
	for i := range batch.Rejects {
		in.rejected.Inc(batch.Rejects[i].Reason)
		in.recent.Note(in.Format, in.Transport, batch.Rejects[i].Reason, batch.Rejects[i].Line)
	}
}

// Reject counts one received item rejected before decoding (for example an
// oversized datagram).
func (in *Intake) Reject(reason string) {
	in.received.Inc()
	in.rejected.Inc(reason)
	in.recent.Note(in.Format, in.Transport, reason, nil)
}

// Deliver accounts batch and queues its items for publishing; while Gate
// says nothing can be stored, it counts them as rejected with reason
// disk_full instead.
func (in *Intake) Deliver(batch *model.Batch) {
	in.Account(batch)
	if n := batch.Len(); n > 0 && in.Gate.Refusal() != "" {
		in.rejected.Add(ReasonDiskFull, n)
		return
	}
	in.batcher.Add(batch)
}
