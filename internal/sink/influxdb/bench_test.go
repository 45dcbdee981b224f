package influxdb

import (
	"fmt"
	"testing"

	"github.com/les-streams/les/internal/sink/sinktest"
)

// BenchmarkEncoder: go test -run '^$' -bench Encoder -benchmem ./internal/sink/influxdb
func BenchmarkEncoder(b *testing.B) {
	batch := sinktest.MixBatch()
	for _, v := range []int{1, 2} {
		b.Run(fmt.Sprintf("version%d", v), func(b *testing.B) {
			e := &Encoder{Version: v}
			buf, _ := e.AppendBatch(nil, batch)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				buf, _ = e.AppendBatch(buf[:0], batch)
			}
			items := float64(b.N) * float64(batch.Len())
			b.ReportMetric(items/b.Elapsed().Seconds(), "items/s")
			b.ReportMetric(float64(testing.AllocsPerRun(1, func() { buf, _ = e.AppendBatch(buf[:0], batch) }))/float64(batch.Len()), "allocs/item")
		})
	}
}
