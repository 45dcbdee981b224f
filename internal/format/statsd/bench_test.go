package statsd

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/les-streams/les/internal/bench"
	"github.com/les-streams/les/internal/model"
)

// realisticDatagrams returns n DogStatsD datagrams of lines lines each,
// shaped like the Datadog Lambda libraries' and `les bench`'s traffic: a
// source tag and 3 to 6 more tags in client order (not sorted), counters,
// gauges, timers, histograms and distributions, integer counts and gauges,
// decimal latencies, and a sample rate on about one line in six.
func realisticDatagrams(n, lines int) [][]byte {
	names := []struct{ name, kind string }{
		{"aws.lambda.duration", "ms"}, {"aws.lambda.invocations", "c"}, {"aws.lambda.errors", "c"},
		{"aws.lambda.max_memory_used", "g"}, {"app.cart.items", "h"}, {"app.cart.value", "d"},
		{"app.checkout.latency", "ms"}, {"app.http.requests", "c"}, {"app.http.response_size", "h"},
	}
	regions := []string{"us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"}
	runtimes := []string{"nodejs20.x", "python3.12", "provided.al2023"}
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([][]byte, n)
	for d := range out {
		var b []byte
		for range lines {
			m := names[rng.IntN(len(names))]
			fn := rng.IntN(60)
			b = append(b, m.name...)
			b = append(b, ':')
			switch m.kind {
			case "c":
				b = strconv.AppendInt(b, int64(1+rng.IntN(3)), 10)
			case "g":
				b = strconv.AppendInt(b, int64(128+rng.IntN(896)), 10)
			default:
				b = strconv.AppendFloat(b, float64(int(rng.ExpFloat64()*2000))/100, 'f', -1, 64)
			}
			b = append(b, '|')
			b = append(b, m.kind...)
			if rng.IntN(6) == 0 {
				b = append(b, "|@0.5"...)
			}
			b = append(b, "|#source:fn-"...)
			b = strconv.AppendInt(b, int64(fn), 10)
			b = append(b, ",region:"...)
			b = append(b, regions[fn%len(regions)]...)
			b = append(b, ",runtime:"...)
			b = append(b, runtimes[fn%len(runtimes)]...)
			b = append(b, ",env:prod"...)
			extra := rng.IntN(4)
			if extra > 0 {
				b = append(b, ",version:"...)
				b = strconv.AppendInt(b, int64(fn%4), 10)
			}
			if extra > 1 {
				b = append(b, ",route:/cart"...)
			}
			if extra > 2 {
				b = append(b, ",cold_start:false"...)
			}
			b = append(b, '\n')
		}
		out[d] = b
	}
	return out
}

// BenchmarkDecodeRealistic decodes 16 different 31-line datagrams per op
// (see realisticDatagrams) and reports ns per line.
func BenchmarkDecodeRealistic(b *testing.B) {
	benchDatagrams(b, NewDecoder(Options{}), realisticDatagrams(16, 31))
}

// lesBenchDatagrams is count datagrams of 20 lines of les bench's statsd
// load over series series (internal/bench.Datagrams). unique makes every
// line a series of its own (count × 20 series): the cache's miss path.
func lesBenchDatagrams(series, count int, unique bool) [][]byte {
	if unique {
		series = 20 * count
	}
	ds, err := bench.Datagrams("statsd", series, count, 20, 64<<10, 5)
	if err != nil {
		panic(err)
	}
	return ds
}

// benchDatagrams decodes ps per op with d and reports ns per line sent
// (a sampled timer's copies are one line).
func benchDatagrams(b *testing.B, d *Decoder, ps [][]byte) {
	size, lines := 0, 0
	var batch model.Batch
	for _, p := range ps {
		size += len(p)
		lines += bytes.Count(bytes.TrimSuffix(p, []byte("\n")), []byte("\n")) + 1
		batch.Reset()
		d.Decode(&batch, p, now) // warm
	}
	b.ReportAllocs()
	b.SetBytes(int64(size))
	for b.Loop() {
		for _, p := range ps {
			batch.Reset()
			d.Decode(&batch, p, now)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
}

// BenchmarkDecodeLesBench decodes les bench's statsd load (5,000 series,
// 750 datagrams of 20 lines, every series three times) per op.
func BenchmarkDecodeLesBench(b *testing.B) {
	benchDatagrams(b, NewDecoder(Options{}), lesBenchDatagrams(5000, 750, false))
}

// BenchmarkDecodeMissFlood decodes 2,500 datagrams of 20 lines per op,
// every line a series of its own (50,000 series).
func BenchmarkDecodeMissFlood(b *testing.B) {
	benchDatagrams(b, NewDecoder(Options{}), lesBenchDatagrams(5000, 2500, true))
}
