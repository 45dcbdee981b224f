package wire

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/les-streams/les/internal/model"
)

// realisticRecord encodes n Lambda-like metrics of 5,000 series (16 names,
// ~313 functions, 3 to 6 tags, values of a few significant digits,
// timestamps a few µs apart), about what one record of `les bench` holds.
func realisticRecord(n int, enc Encoding) *Encoder {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"aws.lambda.duration", "aws.lambda.billed_duration", "aws.lambda.max_memory_used",
		"aws.lambda.init_duration", "app.requests", "app.errors", "app.latency", "app.cache.hits",
		"app.cache.misses", "app.queue.depth", "app.db.query_time", "app.http.status", "app.payload.bytes",
		"app.retries", "app.cold_start", "app.items.processed"}
	regions := []string{"eu-west-1", "us-east-1", "ap-south-1"}
	e := NewEncoding(SignalMetrics, enc)
	ts := int64(1700000000000000000)
	for i := range n {
		s := rng.IntN(5000)
		m := model.Metric{
			Name:      names[s%len(names)],
			Value:     float64(rng.IntN(100000)) / 100,
			Timestamp: ts + int64(i)*3000,
			Source:    fmt.Sprintf("fn-%03d", s/16),
			Tags: model.Tags{{Key: "env", Value: "prod"}, {Key: "region", Value: regions[s%3]},
				{Key: "runtime", Value: "go1.x"}},
		}
		for k := range s % 4 {
			m.Tags = append(m.Tags, model.Tag{Key: fmt.Sprintf("t%d", k), Value: fmt.Sprintf("v%d", s%(7+k))})
		}
		e.AppendMetric(&m)
	}
	return e
}

// BenchmarkCompressRecord compares the encodings and codecs on one
// realistic record of 9,000 items (about 1 MiB uncompressed in the les
// encoding): append and Finish (encode) and decode per item, and the bytes
// stored per item.
func BenchmarkCompressRecord(b *testing.B) {
	const items = 9000
	for _, enc := range []Encoding{EncodingLES, EncodingSeries} {
		e := realisticRecord(items, enc)
		ms := decodeRecord(b, e)
		for _, c := range []Compression{CompressionNone, CompressionZstd, CompressionS2} {
			rec, err := e.Finish(nil, 1, 1, c)
			if err != nil {
				b.Fatal(err)
			}
			name := enc.String() + "/" + c.String()
			b.Run("encode/"+name, func(b *testing.B) {
				var out []byte
				b.ReportAllocs()
				for b.Loop() {
					e.Reset()
					for i := range ms {
						e.AppendMetric(&ms[i])
					}
					out, _ = e.Finish(out[:0], 1, 1, c)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*items), "ns/item")
				b.ReportMetric(float64(len(rec)-HeaderSize)/items, "stored-bytes/item")
			})
			b.Run("decode/"+name, func(b *testing.B) {
				var d Decoder
				var batch model.Batch
				b.ReportAllocs()
				for b.Loop() {
					batch.Reset()
					if _, err := d.Decode(&batch, rec); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*items), "ns/item")
			})
		}
	}
}

// decodeRecord returns e's items, copied out of the decoder.
func decodeRecord(b *testing.B, e *Encoder) []model.Metric {
	rec, err := e.Finish(nil, 1, 1, CompressionNone)
	if err != nil {
		b.Fatal(err)
	}
	var d Decoder
	var batch model.Batch
	if _, err := d.Decode(&batch, rec); err != nil {
		b.Fatal(err)
	}
	cloneInPlace(&batch)
	return batch.Metrics
}
