package client_test

import (
	"net"
	"testing"
	"time"

	"github.com/les-streams/les/client"
)

// Benchmarks write to a real loopback UDP socket that a goroutine drains,
// so ns/op includes each metric's share of the write(2) of its datagram.
func benchClient(b *testing.B, opts ...client.Option) *client.Client {
	a := newAgent(b)
	drain(a)
	c := a.client(b, append([]client.Option{client.WithSource("fn-bench"), client.WithTags(T("env", "prod"))}, opts...)...)
	b.ReportAllocs()
	b.ResetTimer()
	return c
}

func BenchmarkCount(b *testing.B) {
	c := benchClient(b)
	defer cpuPerOp(b)()
	for b.Loop() {
		c.Count("bench.requests", 1)
	}
}

func BenchmarkGauge(b *testing.B) {
	c := benchClient(b)
	defer cpuPerOp(b)()
	for b.Loop() {
		c.Gauge("bench.queue_depth", 42.5)
	}
}

func BenchmarkDistribution2Tags(b *testing.B) {
	c := benchClient(b)
	defer cpuPerOp(b)()
	for b.Loop() {
		c.Distribution("bench.latency", 12.25, T("route", "/checkout"), T("status", "200"))
	}
}

func BenchmarkTiming2Tags(b *testing.B) {
	c := benchClient(b)
	d := 1500 * time.Microsecond
	defer cpuPerOp(b)()
	for b.Loop() {
		c.Timing("bench.latency", d, T("route", "/checkout"), T("status", "200"))
	}
}

// BenchmarkDistribution2TagsRemote uses 1432-byte datagrams (the default
// to a non-loopback agent): more writes per metric.
func BenchmarkDistribution2TagsRemote(b *testing.B) {
	c := benchClient(b, client.WithMaxDatagram(client.RemoteDatagram))
	defer cpuPerOp(b)()
	for b.Loop() {
		c.Distribution("bench.latency", 12.25, T("route", "/checkout"), T("status", "200"))
	}
}

// BenchmarkDistribution2Tags8K uses 8 KiB datagrams (what the Datadog
// agent reads by default): a write costs about what a 32 KiB one does, so
// its share per metric is about four times larger.
func BenchmarkDistribution2Tags8K(b *testing.B) {
	c := benchClient(b, client.WithMaxDatagram(8<<10))
	defer cpuPerOp(b)()
	for b.Loop() {
		c.Distribution("bench.latency", 12.25, T("route", "/checkout"), T("status", "200"))
	}
}

func BenchmarkDistribution2TagsParallel(b *testing.B) {
	c := benchClient(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Distribution("bench.latency", 12.25, T("route", "/checkout"), T("status", "200"))
		}
	})
}

func BenchmarkEvent(b *testing.B) {
	c := benchClient(b)
	e := client.Event{Title: "deploy", Text: "checkout v42 deployed\nsecond line", AlertType: client.AlertInfo}
	defer cpuPerOp(b)()
	for b.Loop() {
		c.Event(e)
	}
}

func BenchmarkLog(b *testing.B) {
	c := benchClient(b)
	defer cpuPerOp(b)()
	for b.Loop() {
		c.Log(client.LevelInfo, "order 1234 placed in 12 ms", T("requestId", "8f507cfc-xmpl-4697-b07a-ac58fc914c95"))
	}
}

// BenchmarkWriteDatagram is the kernel's share: one 32 KiB loopback write
// (what a metric pays 1/lines-per-datagram of).
func BenchmarkWriteDatagram(b *testing.B) {
	a := newAgent(b)
	drain(a)
	conn, err := net.DialUDP("udp", nil, a.metrics.LocalAddr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, client.LoopbackDatagram)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	defer cpuPerOp(b)()
	for b.Loop() {
		if _, err := conn.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}
