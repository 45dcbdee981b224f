package http

import (
	"testing"

	"github.com/les-streams/les/internal/sink/sinktest"
)

// BenchmarkEncodeRawPoints: EncodeNDJSON on raw points (200 series × 20
// points) as decoded from each wire encoding (sinktest.RawPointsCases).
// It measures what a per-series memo could save here (and in the file
// sink, which writes the same jsonl lines); neither has one
// (docs/performance.md, "Series encoding and the per-batch series memo").
func BenchmarkEncodeRawPoints(b *testing.B) {
	for _, c := range sinktest.RawPointsCases() {
		b.Run(c.Name, func(b *testing.B) {
			batch := sinktest.Decoded(b, c.Points, c.Enc)
			buf, ends := EncodeNDJSON(nil, nil, batch, "rec-1")
			b.ReportAllocs()
			for b.Loop() {
				buf, ends = EncodeNDJSON(buf[:0], ends[:0], batch, "rec-1")
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(c.Points)), "ns/point")
		})
	}
}
