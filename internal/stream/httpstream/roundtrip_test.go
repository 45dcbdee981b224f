package httpstream_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/httpstream"
	"github.com/les-streams/les/internal/stream/mem"
	"github.com/les-streams/les/internal/wire"
)

// central is the real /v1/records handler over loopback, publishing to an
// in-memory stream.
// With dedup the stream drops ids it has stored (the benchmark re-sends
// the same records, as JetStream would drop them).
func central(t testing.TB, token string, partitions int, dedup bool) (*httptest.Server, *mem.Store) {
	t.Helper()
	store := mem.NewStore()
	cfg := mem.Config{Partitions: partitions}
	if dedup {
		cfg.DedupWindow = time.Hour
	}
	h := ingest.NewRecordHandler(ingest.RecordConfig{Token: token}, mem.New(store, cfg), selfmetric.New())
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, store
}

// records encodes n records of per metrics each, as the agent's batcher
// would: every item of a record on the record's partition of parts.
func records(t testing.TB, n, per, parts int) []stream.Record {
	t.Helper()
	encs := make([]*wire.Encoder, parts)
	var out []stream.Record
	seq := uint64(0)
	for i := 0; len(out) < n; i++ {
		m := model.Metric{Name: "lambda.duration", Source: fmt.Sprintf("fn-%d", i%50), Value: float64(i),
			Timestamp: 1_700_000_000_000_000_000 + int64(i), Kind: model.Gauge,
			Tags: model.Tags{{Key: "env", Value: "prod"}, {Key: "region", Value: "eu-west-1"}}}
		p := wire.MetricPartition(&m, parts)
		if encs[p] == nil {
			encs[p] = wire.NewEncoder(wire.SignalMetrics)
		}
		encs[p].AppendMetric(&m)
		if encs[p].Count() == per {
			seq++
			data, err := encs[p].Finish(nil, 0x5eed, seq, wire.CompressionZstd)
			if err != nil {
				t.Fatal(err)
			}
			h, _ := wire.ParseHeader(data)
			out = append(out, stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalMetrics, Partition: p, ID: h.ID(), Data: data})
			encs[p].Reset()
		}
	}
	return out
}

// TestRoundTrip: records published through the client are on the
// central's stream byte for byte, with their ids, on their partitions; a
// wrong token is refused and stores nothing.
func TestRoundTrip(t *testing.T) {
	const parts = 4
	srv, store := central(t, "tok", parts, false)
	t.Setenv("LES_TEST_HTTP_TOKEN", "tok")
	s, err := httpstream.Open(context.Background(), httpstream.Config{URL: srv.URL, TokenEnv: "LES_TEST_HTTP_TOKEN"}, parts, httpstream.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs := records(t, 20, 10, parts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Publish(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	got := map[string]stream.Record{}
	for _, r := range store.Records() {
		got[r.ID] = r
	}
	if len(got) != len(recs) {
		t.Fatalf("%d records on the central stream, want %d", len(got), len(recs))
	}
	for _, r := range recs {
		g, ok := got[r.ID]
		if !ok || g.Partition != r.Partition || g.Origin != r.Origin || !bytes.Equal(g.Data, r.Data) {
			t.Errorf("record %s: stored %v, partition %d origin %s", r.ID, ok, g.Partition, g.Origin)
		}
	}

	t.Setenv("LES_TEST_WRONG_TOKEN", "wrong")
	bad, err := httpstream.Open(context.Background(), httpstream.Config{URL: srv.URL, TokenEnv: "LES_TEST_WRONG_TOKEN"}, parts, httpstream.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	err = bad.Publish(ctx, records(t, 1, 1, parts)...)
	if err == nil || httpstream.IsRetryable(err) || ctx.Err() != nil {
		t.Fatalf("wrong token: %v", err)
	}
	if store.Len() != len(recs) {
		t.Errorf("a record with the wrong token was stored")
	}
}

// BenchmarkPublish: records/s through the client to the real handler over
// loopback (one zstd record of per metrics per request, as the agent's
// batcher cuts them), from one goroutine and from 8×GOMAXPROCS.
func BenchmarkPublish(b *testing.B) {
	for _, per := range []int{100, 2000} {
		for _, par := range []int{1, 8} {
			b.Run(fmt.Sprintf("items=%d/publishers=%d", per, par), func(b *testing.B) {
				srv, _ := central(b, "tok", 1, true)
				b.Setenv("LES_TEST_HTTP_TOKEN", "tok")
				s, err := httpstream.Open(context.Background(), httpstream.Config{URL: srv.URL, TokenEnv: "LES_TEST_HTTP_TOKEN"}, 1, httpstream.Deps{})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				recs := records(b, 64, per, 1)
				b.SetBytes(int64(len(recs[0].Data)))
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				if par == 1 {
					for i := range b.N {
						if err := s.Publish(context.Background(), recs[i%len(recs)]); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					b.SetParallelism(par)
					b.RunParallel(func(pb *testing.PB) {
						i := 0
						for pb.Next() {
							if err := s.Publish(context.Background(), recs[i%len(recs)]); err != nil {
								b.Error(err)
								return
							}
							i++
						}
					})
				}
				el := time.Since(start).Seconds()
				b.ReportMetric(float64(b.N)/el, "records/s")
				b.ReportMetric(float64(b.N*per)/el, "items/s")
			})
		}
	}
}
