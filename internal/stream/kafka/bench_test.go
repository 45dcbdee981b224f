package kafka

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/streamtest"
	"github.com/les-streams/les/internal/wire"
)

// BenchmarkPublish publishes 64 KiB records of random bytes (like
// compressed wire records) to a one-broker kfake cluster in this process
// that acknowledges without storing (kfake.BlackholeProduce), so the
// figures are the client's cost plus loopback TCP and kfake's request
// handling, not a real broker's disk or replication.
func BenchmarkPublish(b *testing.B) {
	const size = 64 << 10
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, bc := range []struct {
		batch    int
		parallel bool
	}{{1, false}, {16, false}, {16, true}} {
		name := fmt.Sprintf("batch=%d", bc.batch)
		if bc.parallel {
			name += "/parallel"
		}
		b.Run(name, func(b *testing.B) {
			c := newCluster(b, kfake.BlackholeProduce())
			s := open(b, c.ListenAddrs(), Deps{})
			rs := make([]stream.Record, bc.batch)
			for i := range rs {
				rs[i] = stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalLogs,
					Partition: i % streamtest.Partitions, ID: fmt.Sprintf("bench-%d", i), Data: data}
			}
			ctx := context.Background()
			if err := s.Publish(ctx, rs...); err != nil { // topics, producer id
				b.Fatal(err)
			}
			b.SetBytes(int64(size * bc.batch))
			b.ReportAllocs()
			b.ResetTimer()
			if bc.parallel {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := s.Publish(ctx, rs...); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				for b.Loop() {
					if err := s.Publish(ctx, rs...); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N*bc.batch)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
