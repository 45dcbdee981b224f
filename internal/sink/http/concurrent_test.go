package http

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/sink/sinktest"
)

// TestConcurrentSends (issue 9): the runner's `concurrency` Sends are in
// flight at once (the transport holds each request until four are), and
// every request carries its own batch: the body's lines, their record id
// and the X-Les-Record header agree, and every item arrives once with its
// value. Run it with -race: the Sends share the sink.
func TestConcurrentSends(t *testing.T) {
	for _, format := range []string{"ndjson", "json_array"} {
		t.Run(format, func(t *testing.T) {
			type line struct {
				Record string  `json:"record"`
				Name   string  `json:"name"`
				Value  float64 `json:"value"`
			}
			var mu sync.Mutex
			got := map[string]float64{}
			rc := newReceiver(t, false, nil)
			ot := &sinktest.OverlapTransport{Next: sink.NewTransport(), Want: 4}
			d := deps("conc")
			d.HTTP = &http.Client{Transport: ot}
			s := newSink(t, Config{URL: rc.srv.URL, Format: format, Compression: "gzip", MaxBody: 4096}, d)
			const senders, sends, items = 4, 6, 40
			var wg sync.WaitGroup
			for g := range senders {
				wg.Go(func() {
					for k := range sends {
						var b model.Batch
						for i := range items {
							b.Metrics = append(b.Metrics, model.Metric{Name: fmt.Sprintf("m.%d.%d.%d", g, k, i), Source: "fn",
								Value: float64(g*10000 + k*100 + i), Timestamp: 1e18})
						}
						if err := s.Send(context.Background(), &b, sink.Meta{RecordID: fmt.Sprintf("r-%d-%d", g, k)}); err != nil {
							t.Error(err)
						}
					}
				})
			}
			wg.Wait()
			if ok, most := ot.Overlapped(); !ok {
				t.Errorf("at most %d requests in flight, want 4", most)
			}
			rc.mu.Lock()
			bodies, reqs := rc.bodies, rc.reqs
			rc.mu.Unlock()
			for i, body := range bodies {
				var lines []line
				if format == "json_array" {
					if err := json.Unmarshal(body, &lines); err != nil {
						t.Fatal(err)
					}
				} else {
					dec := json.NewDecoder(bytes.NewReader(body))
					for dec.More() {
						var l line
						if err := dec.Decode(&l); err != nil {
							t.Fatal(err)
						}
						lines = append(lines, l)
					}
				}
				hdr := reqs[i].Header.Get("X-Les-Record")
				for _, l := range lines {
					if l.Record != hdr {
						t.Errorf("line of record %s in a request with X-Les-Record %s", l.Record, hdr)
					}
					var g, k, it int
					if _, err := fmt.Sscanf(l.Name, "m.%d.%d.%d", &g, &k, &it); err != nil || "r-"+strconv.Itoa(g)+"-"+strconv.Itoa(k) != l.Record {
						t.Errorf("item %s in record %s", l.Name, l.Record)
					}
					mu.Lock()
					if _, dup := got[l.Name]; dup {
						t.Errorf("%s twice", l.Name)
					}
					got[l.Name] = l.Value
					mu.Unlock()
				}
			}
			for g := range senders {
				for k := range sends {
					for i := range items {
						name := fmt.Sprintf("m.%d.%d.%d", g, k, i)
						if v, ok := got[name]; !ok || v != float64(g*10000+k*100+i) {
							t.Errorf("%s: got %v (present %v), want %d", name, v, ok, g*10000+k*100+i)
						}
					}
				}
			}
			if c := s.Counts(); c.Items != senders*sends*items {
				t.Errorf("Counts().Items = %d, want %d", c.Items, senders*sends*items)
			}
		})
	}
}
