package otlp

import (
	"testing"

	"github.com/les-streams/les/internal/sink/sinktest"
)

// BenchmarkEncodeRawPoints: metricsRequest on raw points (200 series × 20
// points) as decoded from each wire encoding (sinktest.RawPointsCases).
// It measures what a per-series memo could save here; the encoder has
// none (docs/performance.md, "Series encoding and the per-batch series
// memo": data points own their attributes, and building and marshalling
// them is most of the cost).
func BenchmarkEncodeRawPoints(b *testing.B) {
	for _, c := range sinktest.RawPointsCases() {
		b.Run(c.Name, func(b *testing.B) {
			batch := sinktest.Decoded(b, c.Points, c.Enc)
			e := newEncoder(encOptions{sourceAttr: "service.name", maxScale: DefaultMaxScale, maxBuckets: DefaultMaxBuckets})
			b.ReportAllocs()
			for b.Loop() {
				if _, _, _, err := e.metricsRequest(batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(c.Points)), "ns/point")
		})
	}
}
