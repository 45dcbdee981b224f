package influxdb

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/sink/sinktest"
	"github.com/les-streams/les/internal/sink/sinktest/backendtest"
)

// TestConcurrentSendsInfluxDB1 (issue 9): Sends run at once against the
// real influxd (the transport holds each request until four are in
// flight), each with an encoder and buffers of its own: every point is
// stored once with its own value. Run it with -race.
func TestConcurrentSendsInfluxDB1(t *testing.T) {
	srv := backendtest.InfluxDB(t)
	influxQuery(t, srv.URL, "", "CREATE DATABASE conc")
	ot := &sinktest.OverlapTransport{Next: sink.NewTransport(), Want: 4, Guard: 5 * time.Second}
	d := deps("conc")
	d.HTTP = &http.Client{Transport: ot}
	s := newSink(t, Config{URL: srv.URL, Database: "conc", Compression: "gzip", MaxBody: 2048}, d)
	const senders, sends, items = 4, 3, 50
	const t0 = int64(1763780400000000000)
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for k := range sends {
				var b model.Batch
				for i := range items {
					m := b.TagMark()
					b.AddTag("i", strconv.Itoa(i))
					b.AddTag("k", strconv.Itoa(k))
					b.Metrics = append(b.Metrics, model.Metric{Name: fmt.Sprintf("conc_%d", g), Source: "fn",
						Value: float64(g*10000 + k*100 + i), Timestamp: t0 + int64(k*100+i), Tags: b.TagsSince(m)})
				}
				if err := s.Send(context.Background(), &b, sink.Meta{}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if ok, most := ot.Overlapped(); !ok {
		t.Errorf("at most %d requests in flight, want 4", most)
	}
	got := map[string]float64{}
	for _, it := range readInflux(t, srv.URL, "conc") {
		key := it.Name + "/" + it.Tags["k"] + "/" + it.Tags["i"]
		if _, dup := got[key]; dup {
			t.Errorf("%s twice", key)
		}
		got[key] = it.Value
		if want := t0 + int64(atoi(t, it.Tags["k"])*100+atoi(t, it.Tags["i"])); it.Time.UnixNano() != want {
			t.Errorf("%s at %d, want %d", key, it.Time.UnixNano(), want)
		}
	}
	for g := range senders {
		for k := range sends {
			for i := range items {
				key := fmt.Sprintf("conc_%d/%d/%d", g, k, i)
				if v, ok := got[key]; !ok || v != float64(g*10000+k*100+i) {
					t.Errorf("%s: got %v (stored %v), want %d", key, v, ok, g*10000+k*100+i)
				}
			}
		}
	}
	if len(got) != senders*sends*items {
		t.Errorf("%d points stored, want %d", len(got), senders*sends*items)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
