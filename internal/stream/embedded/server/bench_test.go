package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/embedded"
	"github.com/les-streams/les/internal/wire"
)

// BenchmarkPublish publishes 64 KiB records of random bytes (like
// compressed wire records) to the embedded stream in this process, which
// stores them in JetStream files under a temporary directory (sync: os)
// and de-duplicates ids: every record has a new id, as in les.
func BenchmarkPublish(b *testing.B) {
	const size = 64 << 10
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, batch := range []int{1, 16} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s, err := Open(context.Background(), embedded.Config{Listen: "127.0.0.1:-1", MaxBytes: 1 << 30},
				b.TempDir(), 4, quiet)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			rs := make([]stream.Record, batch)
			n := 0
			b.SetBytes(int64(size * batch))
			b.ReportAllocs()
			for b.Loop() {
				for i := range rs {
					n++
					rs[i] = stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalLogs,
						Partition: n % 4, ID: fmt.Sprintf("bench-%d", n), Data: data}
				}
				if err := s.Publish(context.Background(), rs...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
