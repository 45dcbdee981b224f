package http

import (
	"testing"

	"github.com/les-streams/les/internal/sink/sinktest"
)

// BenchmarkEncodeNDJSON: go test -run '^$' -bench EncodeNDJSON -benchmem ./internal/sink/http
func BenchmarkEncodeNDJSON(b *testing.B) {
	batch := sinktest.MixBatch()
	buf, ends := EncodeNDJSON(nil, nil, batch, "p-1")
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		buf, ends = EncodeNDJSON(buf[:0], ends[:0], batch, "p-1")
	}
	b.ReportMetric(float64(b.N)*float64(batch.Len())/b.Elapsed().Seconds(), "items/s")
	b.ReportMetric(testing.AllocsPerRun(1, func() { buf, ends = EncodeNDJSON(buf[:0], ends[:0], batch, "p-1") })/float64(batch.Len()), "allocs/item")
}
