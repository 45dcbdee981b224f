package bench

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/les-streams/les/internal/format/statsd"
	"github.com/les-streams/les/internal/format/wavefront"
	"github.com/les-streams/les/internal/model"
)

// TestPayloadsDecode: every generated line is accepted by les' decoders,
// datagrams respect the size limit, and all series are used.
func TestPayloadsDecode(t *testing.T) {
	for _, f := range []string{"wavefront", "statsd"} {
		rng := rand.New(rand.NewPCG(1, 2))
		ss := makeSeries(1000, rng)
		d, lines, err := payloads(f, ss, 200, 20, 2048, rng)
		if err != nil {
			t.Fatal(err)
		}
		var b model.Batch
		total := 0
		for i, p := range d {
			if len(p) > 2048 {
				t.Fatalf("%s: datagram %d is %d bytes", f, i, len(p))
			}
			b.Reset()
			if f == "statsd" {
				statsd.NewDecoder(statsd.Options{}).Decode(&b, p, 1)
			} else {
				wavefront.NewDecoder(wavefront.Options{}).Decode(&b, p, 1)
			}
			if len(b.Rejects) > 0 {
				t.Fatalf("%s: %s: %q", f, b.Rejects[0].Reason, b.Rejects[0].Line)
			}
			if b.Len() != lines[i] {
				t.Fatalf("%s: datagram %d: %d items, want %d", f, i, b.Len(), lines[i])
			}
			total += lines[i]
		}
		if total < len(ss) {
			t.Fatalf("%s: %d lines cannot cover %d series", f, total, len(ss))
		}
		for _, s := range ss {
			if n := len(s.tags); n < 3 || n > 6 {
				t.Fatalf("series with %d tags", n)
			}
		}
	}
}

func TestParseText(t *testing.T) {
	in := `# HELP x
les_ingest_received_total{format="wavefront",transport="udp"} 10
les_ingest_received_total{format="statsd",transport="udp"} 5
les_sink_delivered_items_total{sink="a\"b"} 3
process_cpu_seconds_total 1.5
`
	s, err := parseText(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.sum("les_ingest_received_total"); got != 15 {
		t.Errorf("sum = %v", got)
	}
	if got := s.sum("les_ingest_received_total", "format", "statsd"); got != 5 {
		t.Errorf("statsd = %v", got)
	}
	if got := s.sum("les_sink_delivered_items_total", "sink", `a"b`); got != 3 {
		t.Errorf("escaped label = %v", got)
	}
	if got := s.sum("process_cpu_seconds_total"); got != 1.5 {
		t.Errorf("cpu = %v", got)
	}
}
