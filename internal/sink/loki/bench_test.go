package loki

import (
	"fmt"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/sink"
)

// mixLogs is n Lambda-like log lines: 200 functions, three levels (600
// streams), a request id per line and two attributes.
func mixLogs(n int) *model.Batch {
	b := &model.Batch{}
	const ts = 1763780400000000000
	for i := range n {
		m := b.TagMark()
		b.AddTag("env", "prod")
		b.AddTag("region", []string{"eu-west-1", "us-east-1", "ap-south-1"}[i%3])
		b.Logs = append(b.Logs, model.Log{Timestamp: ts + int64(i)*1e6, Source: fmt.Sprintf("fn-%03d", i%200),
			RequestID: fmt.Sprintf("8f0c2a4e-%04d-4b1e-9d2f-6c1a7e3b5d90", i%10000), Level: []string{"INFO", "WARN", "ERROR"}[i%3],
			Message: []byte(fmt.Sprintf(`processed order %d for customer "c-%d" in 12.5 ms`, i, i*7)), Attrs: b.TagsSince(m)})
	}
	return b
}

// BenchmarkEncode: go test -run '^$' -bench Encode -benchmem ./internal/sink/loki
// (10,000 log lines; label resolution, sort, encoding and compression).
func BenchmarkEncode(b *testing.B) {
	batch := mixLogs(10000)
	for _, tc := range []struct{ encoding, lineFormat string }{{"protobuf", "message"}, {"json", "message"}, {"protobuf", "logfmt"}} {
		b.Run(tc.encoding+"-"+tc.lineFormat, func(b *testing.B) {
			s, err := New(Config{URL: "http://127.0.0.1:1", Encoding: tc.encoding, LineFormat: tc.lineFormat, MaxRequestBytes: 64 << 20}, sink.Deps{Name: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			st := &sendState{}
			st.enc.c = &s.res.ec
			var raw, body []byte
			run := func() {
				s.mu.Lock()
				st.entries = s.resolve(st.entries[:0], batch)
				s.mu.Unlock()
				sortEntries(st.entries)
				if tc.encoding == "protobuf" {
					raw = st.enc.proto(batch, st.entries)
					body = s2.EncodeSnappy(body[:cap(body)], raw)
				} else {
					raw = st.enc.json(batch, st.entries)
				}
			}
			run()
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				run()
			}
			b.ReportMetric(float64(b.N)*float64(len(batch.Logs))/b.Elapsed().Seconds(), "items/s")
			b.ReportMetric(testing.AllocsPerRun(3, run)/float64(len(batch.Logs)), "allocs/item")
			if tc.encoding == "protobuf" {
				b.ReportMetric(float64(len(body))/float64(len(raw)), "ratio")
			}
		})
	}
}
