package selfmetric

import (
	"bytes"
	"strings"
	"testing"
)

func TestExposition(t *testing.T) {
	r := New()
	r.Counter("les_ingest_received_total", "format", "wavefront", "transport", "udp").Add(3)
	rc := r.NewReasonCounters("les_ingest_rejected_total", "format", "wavefront")
	rc.Inc("invalid_value")
	rc.Inc("invalid_value")
	rc.Inc(`we"ird`)
	r.Gauge("les_consumer_lag_records", func() float64 { return 7 }, "consumer", "archive")
	var buf bytes.Buffer
	r.WritePrometheus(&buf)
	out := buf.String()
	for _, want := range []string{
		`les_ingest_received_total{format="wavefront",transport="udp"} 3`,
		`les_ingest_rejected_total{format="wavefront",reason="invalid_value"} 2`,
		`les_ingest_rejected_total{format="wavefront",reason="we\"ird"} 1`,
		`les_consumer_lag_records{consumer="archive"} 7`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q:\n%s", want, out)
		}
	}
}
