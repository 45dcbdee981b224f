package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/les-streams/les/internal/format/statsd"
	"github.com/les-streams/les/internal/format/wavefront"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
)

// nullStream accepts every record and keeps nothing, so a benchmark
// measures the agent's side only.
type nullStream struct{ stream.Stream }

func (nullStream) Publish(context.Context, ...stream.Record) error { return nil }

// Capabilities: one partition, as the embedded stream has by default.
func (nullStream) Capabilities() stream.Capabilities { return stream.Capabilities{Partitions: 1} }

// lambdaDatagrams returns n datagrams of 20 Lambda-like lines each (5,000
// series: 16 metric names × ~313 functions, 3 to 6 tags), like `les bench`
// sends.
func lambdaDatagrams(format string, n int) [][]byte {
	names := []string{"aws.lambda.duration", "aws.lambda.billed_duration", "aws.lambda.invocations",
		"aws.lambda.errors", "aws.lambda.max_memory_used", "app.cart.items", "app.cart.value",
		"app.checkout.latency", "app.db.query_time", "app.cache.hits", "app.cache.misses",
		"app.http.requests", "app.http.response_size", "aws.lambda.throttles",
		"aws.lambda.init_duration", "aws.lambda.concurrent_executions"}
	types := []string{"ms", "ms", "c", "c", "g", "h", "d", "ms", "ms", "c", "c", "c", "h", "c", "ms", "g"}
	regions := []string{"us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"}
	out := make([][]byte, n)
	k := 0
	for i := range out {
		var d []byte
		for l := range 20 {
			s := (k * 7919) % 5000
			k++
			fn := s / len(names)
			tags := [][2]string{{"region", regions[fn%5]}, {"runtime", "python3.12"}, {"env", "prod"}}
			for e := range s % 4 {
				tags = append(tags, [2]string{"t" + strconv.Itoa(e), "v" + strconv.Itoa(fn%10)})
			}
			v := strconv.FormatFloat(float64(k%2000)/100, 'f', -1, 64)
			if l > 0 {
				d = append(d, '\n')
			}
			switch format {
			case "statsd":
				d = fmt.Appendf(d, "%s:%s|%s|#source:fn-%d", names[s%16], v, types[s%16], fn)
				for _, t := range tags {
					d = fmt.Appendf(d, ",%s:%s", t[0], t[1])
				}
			default:
				d = fmt.Appendf(d, "%s %s source=fn-%d", names[s%16], v, fn)
				for _, t := range tags {
					d = fmt.Appendf(d, " %s=%s", t[0], t[1])
				}
			}
		}
		out[i] = d
	}
	return out
}

// BenchmarkUDPIngest is the UDP reader's work per line without the system
// call: decode readBatch datagrams of 20 lines into one batch, then
// account it and add it to the batcher (wire encoding under its lock).
// Closed batches go to a stream that drops them.
func BenchmarkUDPIngest(b *testing.B) {
	for _, format := range []string{"wavefront", "statsd"} {
		b.Run(format, func(b *testing.B) {
			var dec Decoder
			if format == "statsd" {
				dec = statsd.NewDecoder(statsd.Options{})
			} else {
				dec = wavefront.NewDecoder(wavefront.Options{Mode: wavefront.ModeMetrics, Window: model.WindowNone})
			}
			reg := selfmetric.New()
			bt, err := NewBatcher(BatchConfig{Compression: "none"}, nullStream{}, reg, slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- bt.Run(ctx, 10*time.Second) }()
			in := NewIntake(format, "udp", bt, reg)
			dgrams := lambdaDatagrams(format, 512)
			var bytes int
			for _, d := range dgrams {
				bytes += len(d)
			}
			var batch model.Batch
			now := time.Now().UnixNano()
			step := func(i int) {
				batch.Reset()
				for j := range readBatch {
					dec.Decode(&batch, dgrams[(i*readBatch+j)%len(dgrams)], now)
				}
				in.Deliver(&batch)
			}
			for i := range 64 { // warm the batch, encoders and pool
				step(i)
			}
			b.SetBytes(int64(bytes / len(dgrams) * readBatch))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				step(i)
				i++
			}
			lines := float64(b.N) * readBatch * 20
			b.ReportMetric(b.Elapsed().Seconds()*1e9/lines, "ns/line")
			b.ReportMetric(lines/b.Elapsed().Seconds(), "lines/s")
			if len(batch.Rejects) > 0 {
				b.Fatalf("rejected: %s", batch.Rejects[0].Reason)
			}
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}
