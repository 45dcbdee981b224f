package app

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/les-streams/les/internal/model"
)

// TestStatsdListenerSeriesCache: the statsd listener's decoder (one per
// reader goroutine) keeps a series cache, so a repeated series' items
// alias the cache (Ref), not the reused read buffer; the gauge
// wrapper marks a hit's copy of the metric, not the cache.
func TestStatsdListenerSeriesCache(t *testing.T) {
	dec := statsdDecoder(ListenerConfig{Format: "statsd", Flavor: "dogstatsd", Source: "src"})
	buf := []byte("mem:5|g|#env:prod,host:h1")
	var first, second model.Batch
	dec.Decode(&first, buf, 1)
	dec.Decode(&second, buf, 2) // a hit
	copy(buf, "xxxxxxxxxxxxxxxxxxxxxxxxx")
	want := []model.Metric{{Name: "mem", Value: 5, Timestamp: 2, Source: "h1", Tags: model.Tags{{Key: "env", Value: "prod"}},
		Kind: model.Gauge, Window: model.WindowMinute}}
	if second.Metrics[0].Ref == 0 || second.Metrics[0].Ref != first.Metrics[0].Ref {
		t.Errorf("Ref %x after %x: a repeated series is one interned entry", second.Metrics[0].Ref, first.Metrics[0].Ref)
	}
	if diff := cmp.Diff(want, second.Metrics, cmpopts.IgnoreFields(model.Metric{}, "Ref")); diff != "" {
		t.Fatalf("after the buffer was reused (-want +got):\n%s", diff)
	}
}
