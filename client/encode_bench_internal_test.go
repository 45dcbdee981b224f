package client

import "testing"

// BenchmarkEncodeDistribution2Tags is the encoding alone (no lock, no
// write): a Distribution line with 2 per-call and 2 constant tags.
func BenchmarkEncodeDistribution2Tags(b *testing.B) {
	c, err := New(WithAddr("127.0.0.1:9"), WithLogsAddr("127.0.0.1:9"), WithFlushInterval(0),
		WithSource("fn-bench"), WithTags(T("env", "prod")))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	tags := []Tag{T("route", "/checkout"), T("status", "200")}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var nb [32]byte
		num := appendValue(nb[:0], 12.25)
		tl, nt, override := c.tagsLen(tags)
		n := len("bench.latency:") + len(num) + len("|d|#") + tl + 1
		buf = c.putLine(buf[:0], n, "bench.latency", num, "", "d", tags, nt, override)
	}
	b.SetBytes(int64(len(buf)))
}
