package pattern

import (
	"testing"
)

// Typical ~200-byte lines.
var (
	benchAccess = []byte(`192.168.10.21 - frank [10/Oct/2000:13:55:36 -0700] "GET /api/v1/orders/12345/items?page=2&limit=50 HTTP/1.1" 200 48213 "https://shop.example.com/cart" "Mozilla/5.0 (X11; Linux x86_64)"`)
	benchJSON   = []byte(`{"level":"INFO","timestamp":"2024-05-01T12:00:00.123Z","requestId":"8f5c2a1e-4b7d-4c11-9e2a-1d3f5b7c9e01","eventType":"GetObject","latency":123,"user":{"id":42,"region":"eu-west-1"},"tags":["a","b"]}`)
	benchText   = []byte(`2024-05-01T12:00:00.123Z 8f5c2a1e-4b7d-4c11-9e2a-1d3f5b7c9e01 INFO processed order 12345 for customer 6789 in region eu-west-1 with 3 items totalling 149.99 EUR via card ending 4242 ok`)
)

func benchMatch(b *testing.B, pat string, line []byte) {
	m := MustCompile(pat).NewMatcher()
	m.Match(line)
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.Match(line)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkSpaceDelimited(b *testing.B) {
	b.Run("miss", func(b *testing.B) {
		benchMatch(b, `[ip, id, user, timestamp, request, status_code = 5*, size, referrer, agent]`, benchAccess)
	})
	b.Run("hit", func(b *testing.B) {
		benchMatch(b, `[ip, id, user, timestamp, request, status_code = 2* && size > 1000, size, referrer, agent]`, benchAccess)
	})
	b.Run("ellipsis", func(b *testing.B) {
		benchMatch(b, `[ip, ..., status_code = 4* || status_code = 5*, size, referrer, agent]`, benchAccess)
	})
}

func BenchmarkJSON(b *testing.B) {
	b.Run("miss", func(b *testing.B) { benchMatch(b, `{ $.eventType = "Update*" && $.latency > 500 }`, benchJSON) })
	b.Run("hit", func(b *testing.B) { benchMatch(b, `{ $.eventType = "Get*" && $.user.region = "eu-*" }`, benchJSON) })
	b.Run("nested-miss", func(b *testing.B) { benchMatch(b, `{ $.user.id > 100 || $.tags[*] = "z" }`, benchJSON) })
}

func BenchmarkTerm(b *testing.B) {
	b.Run("miss", func(b *testing.B) { benchMatch(b, `ERROR -DEBUG`, benchText) })
	b.Run("hit", func(b *testing.B) { benchMatch(b, `order "region eu-west-1" -DEBUG`, benchText) })
	b.Run("or", func(b *testing.B) { benchMatch(b, `?ERROR ?WARN ?FATAL`, benchText) })
	b.Run("regex", func(b *testing.B) { benchMatch(b, `%totalling \d+\.\d+ USD%`, benchText) })
}

func BenchmarkApply(b *testing.B) {
	f, err := NewMetricFilter(`{ $.eventType = "Get*" }`, Transformation{MetricName: "Latency", MetricNamespace: "App", MetricValue: "$.latency"})
	if err != nil {
		b.Fatal(err)
	}
	m := f.Pattern().NewMatcher()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, ok := f.Apply(m, benchJSON); !ok {
			b.Fatal("no point")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}
