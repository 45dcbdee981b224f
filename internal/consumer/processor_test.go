package consumer

import (
	"strings"
	"testing"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream/mem"
	"github.com/les-streams/les/internal/wire"
)

// A tick that closes many windows must not become one record larger than
// the stream accepts (NATS max_payload): the outbox would then be retried
// forever and grow with every tick.
func TestEncodeOutboxSplitsLargeOutput(t *testing.T) {
	r, err := NewProcRunner(ProcConfig{Name: "p", Origin: "rollup", AggOrigin: "agg", CheckpointPath: t.TempDir() + "/c",
		MaxRecordBytes: 64 << 10}, mem.New(mem.NewStore(), mem.Config{Partitions: 4}), &countProc{}, selfmetric.New(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Repeat("n", 200)
	const n = 5000
	for i := range n {
		r.out.Metrics = append(r.out.Metrics, model.Metric{Name: name, Value: float64(i), Kind: model.Gauge})
	}
	for i := range n {
		r.out.Dists = append(r.out.Dists, model.Distribution{Name: name, Count: 1, Centroids: []model.Centroid{{Value: float64(i), Count: 1}}})
	}
	if err := r.encodeOutbox(); err != nil {
		t.Fatal(err)
	}
	if len(r.ck.outbox) < 4 {
		t.Fatalf("%d records, want the output split", len(r.ck.outbox))
	}
	ids := map[string]bool{}
	var dec wire.Decoder
	var metrics, dists int
	for _, rec := range r.ck.outbox {
		if len(rec.Data) > 64<<10+wire.HeaderSize {
			t.Errorf("record %s is %d bytes, limit %d", rec.ID, len(rec.Data), 64<<10)
		}
		if ids[rec.ID] {
			t.Errorf("id %s repeated", rec.ID)
		}
		ids[rec.ID] = true
		var b model.Batch
		if _, err := dec.Decode(&b, rec.Data); err != nil {
			t.Fatal(err)
		}
		metrics += len(b.Metrics)
		dists += len(b.Dists)
	}
	if metrics != n || dists != n {
		t.Fatalf("decoded %d metrics and %d distributions, want %d each", metrics, dists, n)
	}
	if r.ck.emitSeq != uint64(len(r.ck.outbox)) {
		t.Fatalf("emitSeq %d, %d records", r.ck.emitSeq, len(r.ck.outbox))
	}
}
