package bench

import (
	"bytes"
	"compress/gzip"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/les-streams/les/internal/format/jsonl"
	"github.com/les-streams/les/internal/format/statsd"
	"github.com/les-streams/les/internal/format/wavefront"
	"github.com/les-streams/les/internal/model"
)

// TestProbesThroughDecodersAndSink: probe lines decoded by les' own
// decoders and encoded as the http sink encodes them (jsonl) come back to
// the probe server with the send time they carried: a probe that arrives
// 250 ms after its send time measures 0.25 s.
func TestProbesThroughDecodersAndSink(t *testing.T) {
	sent := time.Date(2026, 12, 1, 14, 0, 10, 123456000, time.UTC)
	for _, f := range []string{"statsd", "wavefront"} {
		var b model.Batch
		del := appendDeliveryProbe(nil, f, 7, sent.UnixMicro())
		win := appendWindowProbe(nil, f)
		now := sent.Add(time.Millisecond).UnixNano()
		if f == "statsd" {
			d := statsd.NewDecoder(statsd.Options{})
			d.Decode(&b, append(append(del, '\n'), win...), now)
		} else {
			wavefront.NewDecoder(wavefront.Options{Mode: wavefront.ModeTrace}).Decode(&b, del, now)
			wavefront.NewDecoder(wavefront.Options{Mode: wavefront.ModeSample, Window: model.WindowMinute}).Decode(&b, win, now)
		}
		if len(b.Rejects) > 0 {
			t.Fatalf("%s: rejected %s: %q", f, b.Rejects[0].Reason, b.Rejects[0].Line)
		}
		if len(b.Metrics) != 1 || b.Metrics[0].Name != probeWindowName || b.Metrics[0].Kind != model.Sample {
			t.Fatalf("%s: window probe decoded as %+v", f, b.Metrics)
		}
		var body []byte
		for i := range b.Logs {
			body = jsonl.AppendLog(body, &b.Logs[i], jsonl.Options{})
		}
		for i := range b.Spans {
			body = jsonl.AppendSpan(body, &b.Spans[i], jsonl.Options{})
		}
		// A closed window of the probe series, and an unrelated item.
		w := model.Distribution{Name: probeWindowName, Timestamp: sent.Truncate(time.Minute).UnixNano(), Window: model.WindowMinute, Count: 1, Sum: 1, Min: 1, Max: 1}
		body = jsonl.AppendDistribution(body, &w, jsonl.Options{})
		body = jsonl.AppendMetric(body, &model.Metric{Name: "app.other", Value: 1}, jsonl.Options{})

		obs := newProbeObs()
		if err := obs.add(bytes.NewReader(body), sent.Add(250*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		got := obs.result([]time.Time{sent}, time.Minute)
		want := Freshness{ProbesSent: 1, ProbesDelivered: 1, DeliveryP50: 0.25, DeliveryP99: 0.25, DeliveryMax: 0.25,
			WindowProbes: 1, WindowCounted: 1, WindowsSeen: 1, WindowP50: 0.25, WindowP99: 0.25, WindowMax: 0.25}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: freshness (-want +got):\n%s\nbody:\n%s", f, diff, body)
		}
	}
}

// TestFreshnessWindows: 3 probes in the 14:00 window (emitted at 14:01:35)
// and 1 in the 14:01 window (never emitted) give window latencies of the
// three only; a correction window adds its count and keeps the first
// arrival.
func TestFreshnessWindows(t *testing.T) {
	at := func(m, s int) time.Time { return time.Date(2026, 12, 1, 14, m, s, 0, time.UTC) }
	sent := []time.Time{at(0, 5), at(0, 35), at(0, 55), at(1, 10)}
	obs := newProbeObs()
	body := `{"type":"distribution","name":"les.bench.probe.window","timestamp":"2026-12-01T14:00:00Z","window":"minute","count":3}
{"type":"distribution","name":"les.bench.probe.window","timestamp":"2026-12-01T14:00:00Z","window":"minute","count":1,"correction":1}
`
	if err := obs.add(strings.NewReader(body), at(1, 35)); err != nil {
		t.Fatal(err)
	}
	if !obs.hasWindow(at(0, 59), time.Minute) || obs.hasWindow(at(1, 0), time.Minute) {
		t.Fatal("hasWindow")
	}
	got := obs.result(sent, time.Minute)
	want := Freshness{ProbesSent: 4, WindowProbes: 3, WindowCounted: 4, WindowsSeen: 1,
		WindowP50: 60, WindowP99: 90, WindowMax: 90} // 14:01:35 − 14:00:{05,35,55} = 90, 60, 40 s
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("freshness (-want +got):\n%s", diff)
	}
}

func TestPercentiles(t *testing.T) {
	v := make([]float64, 0, 200)
	for i := 200; i >= 1; i-- {
		v = append(v, float64(i)) // 1..200, unsorted
	}
	p50, p99, mx := percentiles(v)
	if p50 != 100 || p99 != 198 || mx != 200 {
		t.Fatalf("p50 %v p99 %v max %v, want 100 198 200 (nearest rank)", p50, p99, mx)
	}
	if a, b, c := percentiles(nil); a != 0 || b != 0 || c != 0 {
		t.Fatal("empty")
	}
}

func TestProbeServerRejectsGarbage(t *testing.T) {
	obs := newProbeObs()
	err := obs.add(strings.NewReader("{\"type\":\"span\",\"name\":\"les.bench.probe\",\n"), time.Now())
	if err == nil {
		t.Fatal("a broken probe line was accepted")
	}
}

// TestGeneratorOnly: with MetricsURL "none" the bench sends its load to a
// peer that has no /metrics and reports what it sent, without scraping.
func TestGeneratorOnly(t *testing.T) {
	defer goleak.VerifyNone(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r, err := Run(context.Background(), Config{Format: "statsd", Addr: pc.LocalAddr().String(), Rate: 20000,
		Duration: 50 * time.Millisecond, Series: 100, MetricsURL: "none"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent == 0 || r.Datagrams == 0 || r.Received != 0 || r.LossPercent != 0 {
		t.Fatalf("result %+v", r)
	}
	buf := make([]byte, 65536)
	n, _, err := pc.ReadFrom(buf)
	if err != nil || n == 0 {
		t.Fatalf("nothing received: %v", err)
	}
}

// TestProbeServer: the probe server takes the http sink's POSTs, plain and
// gzip, and answers 204; a broken body gets 400.
func TestProbeServer(t *testing.T) {
	defer goleak.VerifyNone(t)
	obs := newProbeObs()
	ps, err := startProbeServer("127.0.0.1:0", obs)
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ps.ln.Addr().String() + "/"
	line := `{"type":"log","attrs":{"title":"les.bench.probe","probe_sent_us":"1764597600000000"}}` + "\n"
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(line))
	zw.Close()
	for _, c := range []struct {
		body []byte
		enc  string
		want int
	}{{[]byte(line), "", http.StatusNoContent}, {gz.Bytes(), "gzip", http.StatusNoContent}, {[]byte("{les.bench.probe\n"), "", http.StatusBadRequest}} {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(c.body))
		if c.enc != "" {
			req.Header.Set("Content-Encoding", c.enc)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%q: status %d, want %d", c.enc, resp.StatusCode, c.want)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	ps.close()
	if got := obs.result(nil, time.Minute).ProbesDelivered; got != 2 {
		t.Fatalf("probes delivered %d, want 2", got)
	}
}
