package extension_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/wavefronthq/wavefront-sdk-go/event"
	"github.com/wavefronthq/wavefront-sdk-go/histogram"
	"github.com/wavefronthq/wavefront-sdk-go/senders"

	"github.com/les-streams/les/internal/lambda/extension"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream/mem"
	"github.com/les-streams/les/internal/wire"
)

// The extension's wavefront and trace tcp listeners answer HTTP as les
// up's do (port unification, ADR 0012): the real wavefront-sdk-go
// (v0.15.0, a test-only dependency; the layer binary does not link it)
// in proxy mode posts /report?f=wavefront|histogram|trace|spanLogs and
// /api/v2/event to them.

// sdkOpts: flushes only when the test says, no SDK self-metrics, a short
// timeout.
var sdkOpts = []senders.Option{senders.FlushInterval(time.Hour), senders.SendInternalMetrics(false), senders.Timeout(3 * time.Second)}

// unifiedHarness runs the extension with wavefront and trace tcp
// listeners on free ports, agent.http as given (YAML flow mapping), and
// the Telemetry API refused, so that the extension publishes in the
// background and everything is in the stream after SHUTDOWN.
func unifiedHarness(t *testing.T, agentHTTP string) *harness {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "les.yaml")
	yaml := `
agent:
  listeners:
    - {format: wavefront, transport: tcp, address: "127.0.0.1:0"}
    - {format: trace, transport: tcp, address: "127.0.0.1:0"}
  http: ` + agentHTTP + `
  spool: {dir: ` + filepath.Join(dir, "spool") + `}
stream:
  kind: kinesis
  partitions: 2
  kinesis: {stream: test}
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, map[string]string{"LES_CONFIG": cfg})
	h.api.telemetryErr = "Telemetry.NotSupported"
	h.start()
	h.api.waitNext()
	h.api.send(invokeEvent("8f507cfc-a8a6-4697-b07a-ac58fc914c95", time.Now().Add(time.Minute)))
	h.api.waitNext() // at once: no telemetry
	return h
}

// addr is the address of the extension's listener of format over tcp.
func (h *harness) addr(format string) string {
	h.t.Helper()
	for _, l := range h.info.Listeners {
		if f := strings.Fields(l); f[0] == format && f[1] == "tcp" {
			return f[2]
		}
	}
	h.t.Fatalf("no %s tcp listener in %v", format, h.info.Listeners)
	return ""
}

// shutdown ends the extension (the final flush publishes everything).
func (h *harness) shutdown() {
	h.t.Helper()
	h.api.send(shutdownEvent("spindown", time.Now().Add(2*time.Second)))
	if err := h.wait(); err != nil {
		h.t.Fatal(err)
	}
}

// storeItems is every item in the store, one line each, sorted.
func storeItems(t *testing.T, s *mem.Store) []string {
	t.Helper()
	tags := func(ts model.Tags) string {
		var b strings.Builder
		for i, tg := range ts {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(tg.Key + "=" + tg.Value)
		}
		return b.String()
	}
	var out []string
	var dec wire.Decoder
	for _, r := range s.Records() {
		var b model.Batch
		if _, err := dec.Decode(&b, r.Data); err != nil {
			t.Fatalf("record %s: %v", r.ID, err)
		}
		for _, m := range b.Metrics {
			out = append(out, fmt.Sprintf("metric %s %g @%d %s [%s]", m.Name, m.Value, m.Timestamp, m.Source, tags(m.Tags)))
		}
		for _, d := range b.Dists {
			out = append(out, fmt.Sprintf("dist %s %v count=%g sum=%g min=%g max=%g %v @%d %s [%s]", d.Name, d.Window, d.Count, d.Sum, d.Min, d.Max,
				d.Centroids, d.Timestamp, d.Source, tags(d.Tags)))
		}
		for _, sp := range b.Spans {
			out = append(out, fmt.Sprintf("span %s trace=%s span=%s @%d +%d %s [%s]", sp.Name, sp.TraceID, sp.SpanID, sp.Start, sp.Duration, sp.Source, tags(sp.Tags)))
		}
		for _, l := range b.Logs {
			out = append(out, fmt.Sprintf("log %s %q @%d %s [%s]", l.Level, l.Message, l.Timestamp, l.Source, tags(l.Attrs)))
		}
	}
	slices.Sort(out)
	return out
}

const (
	sdkTrace = "7b3bf470-9456-11e8-9eb6-529269fb1459"
	sdkSpan  = "0313bafe-9457-11e8-9eb6-529269fb1459"
)

// sdkSend sends a metric, a distribution, a span with a span log and an
// event through s, named after mode, and flushes.
func sdkSend(t *testing.T, s senders.Sender, mode string, now time.Time) {
	t.Helper()
	ms := now.UnixMilli()
	src := "fn-" + mode
	check := func(what string, err error) {
		if err != nil {
			t.Errorf("%s %s: %v", mode, what, err)
		}
	}
	check("metric", s.SendMetric("wf.sdk."+mode, 4.5, ms, src, map[string]string{"env": "prod"}))
	check("distribution", s.SendDistribution("wf.sdk.dist."+mode, []histogram.Centroid{{Value: 10, Count: 3}, {Value: 20, Count: 1}},
		map[histogram.Granularity]bool{histogram.MINUTE: true}, ms, src, map[string]string{"env": "prod"}))
	check("span", s.SendSpan("checkout."+mode, ms, 12, src, sdkTrace, sdkSpan, nil, nil,
		[]senders.SpanTag{{Key: "application", Value: "shop"}, {Key: "service", Value: "cart"}},
		[]senders.SpanLog{{Timestamp: now.UnixMicro(), Fields: map[string]string{"message": "boom " + mode, "level": "error"}}}))
	check("event", s.SendEvent("deploy "+mode, ms, ms+60000, src, map[string]string{"env": "prod"},
		event.Details("rolled out "+mode), event.Severity("info"), event.Type("deploy")))
	check("flush", s.Flush())
	if n := s.GetFailureCount(); n != 0 {
		t.Errorf("%s: the SDK counts %d failed reports", mode, n)
	}
	s.Close()
}

// sdkWant is what sdkSend(mode, now) must put in the stream, by hand from
// wavefront-sdk-go's semantics: times in ms (span logs µs) become ns; the
// minute distribution keeps its centroids; a span with logs carries the
// SDK's _spanLogs=true tag; the span log is a log record with the span's
// ids; the event a log record with its details as message.
func sdkWant(mode string, now time.Time) []string {
	ns := now.UnixMilli() * 1e6
	src := "fn-" + mode
	return []string{
		fmt.Sprintf("metric wf.sdk.%s 4.5 @%d %s [env=prod]", mode, ns, src),
		fmt.Sprintf("dist wf.sdk.dist.%s minute count=4 sum=50 min=10 max=20 [{10 3} {20 1}] @%d %s [env=prod]", mode, ns, src),
		fmt.Sprintf("span checkout.%s trace=%s span=%s @%d +%d %s [_spanLogs=true,application=shop,service=cart]", mode, sdkTrace, sdkSpan, ns, 12*time.Millisecond, src),
		fmt.Sprintf("log ERROR %q @%d %s [span_id=%s,trace_id=%s]", "boom "+mode, now.UnixMicro()*1e3, src, sdkSpan, sdkTrace),
		fmt.Sprintf("log INFO %q @%d %s [end_ms=%d,env=prod,title=deploy %s,type=deploy]", "rolled out "+mode, ns, src, now.UnixMilli()+60000, mode),
	}
}

// TestUnifiedPortsWavefrontSDK: wavefront-sdk-go in proxy mode delivers
// metrics, distributions, spans, span logs and events through the
// extension's line ports (everything to the wavefront port, as with a
// port in the URL, and metrics and traces ports apart); items that name
// no source get the function name, gzip bodies decode, and raw lines
// still work on the same port. Before the extension's ports were unified
// its line decoder took the SDK's requests for lines and lost them.
func TestUnifiedPortsWavefrontSDK(t *testing.T) {
	h := unifiedHarness(t, "{}")
	now := time.Now().Truncate(time.Minute)
	port := func(format string) int {
		_, p, _ := net.SplitHostPort(h.addr(format))
		n, _ := strconv.Atoi(p)
		return n
	}
	var want []string
	for mode, mk := range map[string]func() (senders.Sender, error){
		"line_port": func() (senders.Sender, error) { return senders.NewSender("http://"+h.addr("wavefront"), sdkOpts...) },
		"two_ports": func() (senders.Sender, error) {
			return senders.NewSender("http://127.0.0.1", append(sdkOpts, senders.MetricsPort(port("wavefront")), senders.TracesPort(port("trace")))...)
		},
	} {
		s, err := mk()
		if err != nil {
			t.Fatal(err)
		}
		sdkSend(t, s, mode, now)
		want = append(want, sdkWant(mode, now)...)
	}
	ms := now.UnixMilli()
	// No source named: the function's name ("fn"), for lines (gzip here)
	// and JSON events alike.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	fmt.Fprintf(zw, "gz.metric 2 %d\n", ms/1000)
	_ = zw.Close()
	post(t, "http://"+h.addr("wavefront")+"/report", gz.Bytes(), http.StatusAccepted)
	post(t, "http://"+h.addr("trace")+"/api/v2/event", fmt.Appendf(nil, `{"name":"cold","startTime":%d}`, ms), http.StatusOK)
	// Raw lines on the same port.
	c, err := net.Dial("tcp", h.addr("wavefront"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "raw.metric 3 %d source=box\n", ms/1000)
	_ = c.Close()
	eventually(t, func() bool { return h.metric(`les_ingest_received_total{format="wavefront",transport="tcp"}`) == 1 })
	h.shutdown()
	want = append(want,
		fmt.Sprintf("metric gz.metric 2 @%d fn []", ms*1e6),
		fmt.Sprintf("log INFO \"cold\" @%d fn [end_ms=%d,title=cold]", ms*1e6, ms+1),
		fmt.Sprintf("metric raw.metric 3 @%d box []", ms*1e6))
	slices.Sort(want)
	if d := cmp.Diff(want, storeItems(t, h.store)); d != "" {
		t.Errorf("stream (-want +got):\n%s\nlog:\n%s", d, h.log.String())
	}
	for series, n := range map[string]float64{
		`les_ingest_received_total{format="wavefront",transport="http"}`:       3, // 2 SDK metrics, 1 gzip line
		`les_ingest_received_total{format="histogram",transport="http"}`:       2,
		`les_ingest_received_total{format="trace",transport="http"}`:           2,
		`les_ingest_received_total{format="spanLogs",transport="http"}`:        2,
		`les_ingest_received_total{format="wavefront_event",transport="http"}`: 3,
	} {
		if got := h.metric(series); got != n {
			t.Errorf("%s = %v, want %v", series, got, n)
		}
	}
}

// TestUnifiedPortsBadInput: a body that is not Wavefront is answered 202
// with its lines rejected, an event that is not one 400, a body over
// agent.http.max_body 413, an unknown path 404, a missing token 401 —
// each counted — and nothing of it reaches the stream; with the token,
// the SDK's direct mode (Bearer) works on the same port.
func TestUnifiedPortsBadInput(t *testing.T) {
	h := unifiedHarness(t, "{token: s3cret, max_body: 4096}")
	base := "http://" + h.addr("wavefront")
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	if body := post(t, base+"/report?f=wavefront", []byte("hello world\n"), http.StatusAccepted, auth); !strings.Contains(body, `"accepted":0,"rejected":1`) {
		t.Errorf("not wavefront: %s", body)
	}
	post(t, base+"/api/v2/event", []byte("{not json"), http.StatusBadRequest, auth)
	post(t, base+"/report?f=wavefront", bytes.Repeat([]byte("big.metric 1\n"), 400), http.StatusRequestEntityTooLarge, auth)
	post(t, base+"/query", []byte("x"), http.StatusNotFound, auth)
	post(t, base+"/report", []byte("no.token 1\n"), http.StatusUnauthorized)

	now := time.Now().Truncate(time.Minute)
	s, err := senders.NewSender("http://s3cret@"+h.addr("wavefront"), sdkOpts...)
	if err != nil {
		t.Fatal(err)
	}
	sdkSend(t, s, "direct", now)
	h.shutdown()
	want := sdkWant("direct", now)
	slices.Sort(want)
	if d := cmp.Diff(want, storeItems(t, h.store)); d != "" {
		t.Errorf("stream (-want +got):\n%s", d)
	}
	for series, n := range map[string]float64{
		`les_ingest_rejected_total{format="wavefront",reason="invalid_value"}`:       1,
		`les_ingest_rejected_total{format="wavefront_event",reason="invalid_event"}`: 1,
		`les_ingest_rejected_total{format="wavefront",reason="body_too_large"}`:      1,
		`les_ingest_http_refused_total{reason="unknown_path"}`:                       1,
	} {
		if got := h.metric(series); got != n {
			t.Errorf("%s = %v, want %v", series, got, n)
		}
	}
}

// post POSTs body to url with the headers, checks the status and returns
// the answer.
func post(t *testing.T, url string, body []byte, status int, headers ...map[string]string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, hs := range headers {
		for k, v := range hs {
			req.Header.Set(k, v)
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != status {
		t.Errorf("POST %s: %d %s, want %d", url, res.StatusCode, b, status)
	}
	return string(b)
}

// TestHTTPConfig: agent.http of LES_CONFIG sets the line ports' token and
// limits (les up's other keys accepted and ignored); without it, no token
// and the sandbox's defaults; negative limits are an error.
func TestHTTPConfig(t *testing.T) {
	load := func(agentHTTP string) (*extension.Config, error) {
		p := filepath.Join(t.TempDir(), "les.yaml")
		y := "agent:\n  http: " + agentHTTP + "\nstream: {kind: kinesis, kinesis: {stream: s}}\n"
		if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		return extension.Load(func(k string) string { return map[string]string{"LES_CONFIG": p}[k] })
	}
	c, err := load("{}")
	if err != nil {
		t.Fatal(err)
	}
	if want := (extension.HTTPConfig{MaxBody: 4 << 20, ReadTimeout: time.Minute, MaxConcurrent: 4}); c.HTTP != want {
		t.Errorf("defaults %+v, want %+v", c.HTTP, want)
	}
	c, err = load("{listen: 127.0.0.1:2880, protect_metrics: true, token: tok, max_body: 1000, read_timeout: 5s, max_concurrent: 2}")
	if err != nil {
		t.Fatal(err)
	}
	if want := (extension.HTTPConfig{Token: "tok", MaxBody: 1000, ReadTimeout: 5 * time.Second, MaxConcurrent: 2}); c.HTTP != want {
		t.Errorf("from the file %+v, want %+v", c.HTTP, want)
	}
	if _, err := load("{max_body: -1}"); err == nil || !strings.Contains(err.Error(), "agent.http") {
		t.Errorf("negative max_body: %v", err)
	}
}
