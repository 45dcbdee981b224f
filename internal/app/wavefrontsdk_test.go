package app

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wavefronthq/wavefront-sdk-go/event"
	"github.com/wavefronthq/wavefront-sdk-go/histogram"
	"github.com/wavefronthq/wavefront-sdk-go/senders"
)

// Issue 11 item 4: the real wavefront-sdk-go (v0.15.0, a test-only
// dependency) in both of its modes against les up. Direct mode posts gzip
// lines to /report and plain JSON (with a Content-Encoding: gzip header) to
// /api/v2/event; proxy mode posts the same over HTTP to the Wavefront line
// ports (2878 and the traces port), which les serves on its raw TCP line
// listeners by port unification (ingest/unify.go).

// sdkOpts: flushes only when the test says, no SDK self-metrics, and a
// short timeout (a les that does not answer fails in seconds).
var sdkOpts = []senders.Option{senders.FlushInterval(time.Hour), senders.SendInternalMetrics(false), senders.Timeout(3 * time.Second)}

// sdkSend sends one of each kind through s, named after mode, and flushes.
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
	check("span", s.SendSpan("checkout."+mode, ms, 12, src, "7b3bf470-9456-11e8-9eb6-529269fb1459", "0313bafe-9457-11e8-9eb6-529269fb1459", nil, nil,
		[]senders.SpanTag{{Key: "application", Value: "shop"}, {Key: "service", Value: "cart"}},
		[]senders.SpanLog{{Timestamp: now.UnixMicro(), Fields: map[string]string{"message": "boom " + mode, "level": "error"}}}))
	check("event", s.SendEvent("deploy "+mode, ms, ms+60000, src, map[string]string{"env": "prod"},
		event.Details("rolled out "+mode), event.Severity("info"), event.Type("deploy")))
	check("flush", s.Flush())
	if n := s.GetFailureCount(); n != 0 {
		t.Errorf("%s: the SDK counts %d failed reports", mode, n)
	}
}

// TestWavefrontSDK runs les with a token (direct mode, on the HTTP intake
// and on the unified 2878-style port) and without one (proxy mode, metrics
// and traces ports apart as the SDK's defaults 2878 and 30001 are), and
// reads every item back from a file sink.
func TestWavefrontSDK(t *testing.T) {
	for _, c := range []struct {
		name  string
		token string
		// urls makes the SDK's URLs and options from les' addresses.
		senders func(info Info, tok string) map[string]func() (senders.Sender, error)
	}{
		{name: "direct", token: "s3cret", senders: func(info Info, tok string) map[string]func() (senders.Sender, error) {
			return map[string]func() (senders.Sender, error){
				"direct_http": func() (senders.Sender, error) {
					return senders.NewSender("http://"+tok+"@"+info.HTTP, sdkOpts...)
				},
				"direct_line_port": func() (senders.Sender, error) {
					return senders.NewSender("http://"+tok+"@"+listenerAddr(t, info, "wavefront"), sdkOpts...)
				},
			}
		}},
		{name: "proxy", senders: func(info Info, _ string) map[string]func() (senders.Sender, error) {
			port := func(format string) int {
				_, p, _ := net.SplitHostPort(listenerAddr(t, info, format))
				n, _ := strconv.Atoi(p)
				return n
			}
			return map[string]func() (senders.Sender, error){
				// The README's setting: with a port in the URL, v0.15
				// sends traces to it too, so everything goes to 2878.
				"proxy_line_port": func() (senders.Sender, error) {
					return senders.NewSender("http://"+listenerAddr(t, info, "wavefront"), sdkOpts...)
				},
				// No port in the URL: metrics and traces ports apart, as
				// the SDK's defaults 2878 and 30001 are.
				"proxy_two_ports": func() (senders.Sender, error) {
					return senders.NewSender("http://127.0.0.1", append(sdkOpts, senders.MetricsPort(port("wavefront")), senders.TracesPort(port("trace")))...)
				},
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, out := fileSinkApp(t)
			cfg.Agent.HTTP.Token = c.token
			cfg.Agent.Listeners = []ListenerConfig{
				{Format: "wavefront", Transport: "tcp", Address: "127.0.0.1:0"},
				{Format: "trace", Transport: "tcp", Address: "127.0.0.1:0"},
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			info, stop := runApp(t, cfg)
			now := time.Now().Truncate(time.Millisecond)
			modes := c.senders(info, c.token)
			for mode, mk := range modes {
				s, err := mk()
				if err != nil {
					t.Fatal(err)
				}
				sdkSend(t, s, mode, now)
				s.Close()
			}
			// A load balancer's health check on the line port.
			if resp, err := http.Get("http://" + listenerAddr(t, info, "wavefront") + "/healthz"); err != nil {
				t.Error(err)
			} else {
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("GET /healthz on the line port: %d", resp.StatusCode)
				}
			}
			if c.token != "" {
				// The unified port asks for the token as the HTTP intake does.
				resp, err := http.Post("http://"+listenerAddr(t, info, "wavefront")+"/report?f=wavefront", "text/plain", strings.NewReader("x 1\n"))
				if err != nil {
					t.Fatal(err)
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("no token on the line port: %d, want 401", resp.StatusCode)
				}
			}
			http.DefaultClient.CloseIdleConnections()
			stop() // shutdown lets the sink catch up before it returns
			type item struct {
				Type, Name, Source, Level, Message string
				Value                              float64
				Count                              float64
				Sum                                float64
				Window                             string
				TraceID                            string  `json:"trace_id"`
				Duration                           float64 `json:"duration_ms"`
				Tags                               map[string]string
				Attrs                              map[string]string
			}
			items, raw := readNDJSON[item](t, out)
			find := func(typ, key string) *item {
				for i := range items {
					if it := &items[i]; it.Type == typ && (it.Name == key || it.Message == key) {
						return it
					}
				}
				t.Errorf("no %s %q in\n%s", typ, key, raw)
				return nil
			}
			for mode := range modes {
				src := "fn-" + mode
				if it := find("metric", "wf.sdk."+mode); it != nil && (it.Value != 4.5 || it.Source != src || it.Tags["env"] != "prod") {
					t.Errorf("%s metric: %+v", mode, *it)
				}
				if it := find("distribution", "wf.sdk.dist."+mode); it != nil && (it.Count != 4 || it.Sum != 50 || it.Source != src) {
					t.Errorf("%s distribution: %+v", mode, *it)
				}
				if it := find("span", "checkout."+mode); it != nil && (it.Duration != 12 || it.Source != src ||
					it.TraceID != "7b3bf470-9456-11e8-9eb6-529269fb1459" || it.Tags["service"] != "cart") {
					t.Errorf("%s span: %+v", mode, *it)
				}
				if it := find("log", "boom "+mode); it != nil && (it.Level != "ERROR" || it.Attrs["span_id"] != "0313bafe-9457-11e8-9eb6-529269fb1459") {
					t.Errorf("%s span log: %+v", mode, *it)
				}
				if it := find("log", "rolled out "+mode); it != nil && (it.Source != src || it.Attrs["title"] != "deploy "+mode) {
					t.Errorf("%s event: %+v", mode, *it)
				}
			}
		})
	}
}
