package extension

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/les-streams/les/internal/model"
)

// TestWavefrontListenerSeriesCache: the decoders of the listener formats
// with metric lines (one per reader goroutine) keep a series
// cache, so a repeated series' items alias the cache, not the reused
// read buffer.
func TestWavefrontListenerSeriesCache(t *testing.T) {
	const now = int64(1767225600e9)
	for format, w := range map[string]model.Window{"wavefront": model.WindowNone, "histogram_minute": model.WindowMinute,
		"histogram_hour": model.WindowHour, "histogram_day": model.WindowDay} {
		dec := formats()[format].newDecoder(ListenerConfig{Format: format, Transport: "udp"}, "fn")
		buf := []byte("cpu.load 5 host=h1 env=prod")
		var first, second model.Batch
		dec.Decode(&first, buf, now)
		dec.Decode(&second, buf, now+1) // a hit
		copy(buf, "xxxxxxxxxxxxxxxxxxxxxxxxxxx")
		kind := model.Gauge
		if w != model.WindowNone {
			kind = model.Sample
		}
		want := []model.Metric{{Name: "cpu.load", Value: 5, Timestamp: now + 1, Source: "h1", Tags: model.Tags{{Key: "env", Value: "prod"}},
			Kind: kind, Window: w}}
		if second.Metrics[0].Ref == 0 {
			t.Errorf("%s: a repeated series is not interned (Ref 0)", format)
		}
		if diff := cmp.Diff(want, second.Metrics, cmpopts.IgnoreFields(model.Metric{}, "Ref")); diff != "" {
			t.Errorf("%s: after the buffer was reused (-want +got):\n%s", format, diff)
		}
	}
}
