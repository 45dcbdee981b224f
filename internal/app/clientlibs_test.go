package app

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/les-streams/les/internal/model"
)

// Issue 11, "Client libraries": the config and HTTP side of items 1, 4, 6
// and 8. The decoders' own tests hold the byte-level cases.

func TestStatsdFlavorConfig(t *testing.T) {
	var def *ListenerConfig
	for _, l := range DefaultListeners() {
		if l.Format == "statsd" {
			def = &l
		}
	}
	if def == nil || def.Flavor != "dogstatsd" {
		t.Fatalf("default statsd listener %+v, want flavor dogstatsd", def)
	}
	for _, c := range []struct{ yaml, err string }{
		{"{ format: statsd, transport: udp, address: 127.0.0.1:8125, flavor: etsy }", ""},
		{"{ format: statsd, transport: udp, address: 127.0.0.1:8125, flavor: dogstatsd }", ""},
		{"{ format: statsd, transport: udp, address: 127.0.0.1:8125, flavor: graphite }", `flavor "graphite" is not one of dogstatsd, etsy`},
		{"{ format: wavefront, transport: tcp, address: 127.0.0.1:2878, flavor: etsy }", "flavor is a statsd setting"},
	} {
		p := filepath.Join(t.TempDir(), "les.yaml")
		if err := os.WriteFile(p, []byte("agent:\n  listeners:\n    - "+c.yaml+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(p)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: err %v, want %q", c.yaml, err, c.err)
		}
	}
	// The listener's decoder follows its flavor: hot-shots' gaugeDelta(g, -5)
	// and datadog-go's Gauge(g, -5) both write "g:-5|g".
	for flavor, want := range map[string]model.Kind{"": model.Gauge, "dogstatsd": model.Gauge, "etsy": model.GaugeDelta} {
		var b model.Batch
		formats["statsd"].newDecoder(ListenerConfig{Format: "statsd", Flavor: flavor, Source: "fn-a"}).Decode(&b, []byte("g:-5|g"), 1)
		if len(b.Metrics) != 1 || b.Metrics[0].Kind != want || b.Metrics[0].Value != -5 || b.Metrics[0].Source != "fn-a" {
			t.Errorf("flavor %q: %+v, want kind %v value -5 source fn-a", flavor, b.Metrics, want)
		}
	}
}

func TestDefaultSource(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	host := func(h string, err error) func() (string, error) { return func() (string, error) { return h, err } }
	for _, c := range []struct {
		env  map[string]string
		host func() (string, error)
		want string
	}{
		{map[string]string{"AWS_LAMBDA_FUNCTION_NAME": "orders"}, host("ip-10-0-0-1", nil), "orders"},
		{nil, host("web-1", nil), "web-1"},
		{nil, host("", errors.New("no hostname")), "unknown"},
	} {
		if got := defaultSource(env(c.env), c.host); got != c.want {
			t.Errorf("defaultSource(%v) = %q, want %q", c.env, got, c.want)
		}
	}
	cfg := &Config{}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Agent.DefaultSource == "" {
		t.Error("agent.default_source left empty")
	}
}

func TestNamespaceAsConfig(t *testing.T) {
	filter := "logmetric:\n  %s\n  filters:\n    - { name: rn, pattern: '[level=METRIC, timestamp, request_id, metric_name, metric_value]', metric_name: random_number, metric_namespace: lambdametrics, metric_value: $metric_value%s }\n"
	for _, c := range []struct{ global, local, err string }{
		{"tick: 1s", "", ""},
		{"namespace_as: prefix", "", ""},
		{"namespace_as: tag", ", namespace_as: prefix", ""},
		{"namespace_as: name", "", `namespace_as "name" is not one of tag, prefix`},
		{"tick: 1s", ", namespace_as: suffix", `namespace_as "suffix" is not one of tag, prefix`},
	} {
		p := filepath.Join(t.TempDir(), "les.yaml")
		src := strings.Replace(strings.Replace(filter, "%s", c.global, 1), "%s", c.local, 1)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(p)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%q %q: err %v, want %q", c.global, c.local, err, c.err)
		}
	}
}

// TestWavefrontLogsAndSources drives les up over HTTP as wavefront-sdk-go's
// direct sender does (span logs gzip-posted with f=spanLogs, events posted
// as JSON to /api/v2/event) and as a function posting plain text to /logs
// with ?source=, then reads the log records back from a file sink.
func TestWavefrontLogsAndSources(t *testing.T) {
	cfg, out := fileSinkApp(t)
	cfg.Agent.DefaultSource = "agent-host"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	info, stop := runApp(t, cfg)
	post := func(path, body string, gz bool) (int, string) {
		var rd io.Reader = strings.NewReader(body)
		if gz {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			_, _ = zw.Write([]byte(body))
			_ = zw.Close()
			rd = &buf
		}
		req, _ := http.NewRequest(http.MethodPost, "http://"+info.HTTP+path, rd)
		if gz {
			req.Header.Set("Content-Encoding", "gzip")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	spanLogs := `{"traceId":"7b3bf470-9456-11e8-9eb6-529269fb1459","spanId":"0313bafe-9457-11e8-9eb6-529269fb1459",` +
		`"logs":[{"timestamp":` + itoa(time.Now().UnixMicro()) + `,"fields":{"message":"boom","level":"error"}}],"span":""}` + "\n"
	if code, body := post("/report?f=spanLogs", spanLogs, true); code != http.StatusAccepted || !strings.Contains(body, `"accepted":1`) {
		t.Errorf("span logs: %d %s", code, body)
	}
	ms := time.Now().UnixMilli()
	event := `{"annotations":{"details":"v42 out","severity":"warn"},"hosts":["fn-1"],"name":"deploy","startTime":` + itoa(ms) + `}`
	if code, body := post("/api/v2/event", event, false); code != http.StatusOK || !strings.Contains(body, `"accepted":1`) {
		t.Errorf("event: %d %s", code, body)
	}
	if code, body := post("/api/v2/event", `{"name":""}`, false); code != http.StatusBadRequest {
		t.Errorf("bad event: %d %s", code, body)
	}
	if code, body := post("/logs?source=checkout-fn", "plain text from a function\n", false); code != http.StatusAccepted || !strings.Contains(body, `"accepted":1`) {
		t.Errorf("logs: %d %s", code, body)
	}
	if code, body := post("/logs", "no source given\n", false); code != http.StatusAccepted {
		t.Errorf("logs: %d %s", code, body)
	}
	http.DefaultClient.CloseIdleConnections()
	stop() // shutdown lets the sink catch up before it returns
	type rec struct {
		Source, Level, Message string
		Attrs                  map[string]string
	}
	recs, raw := readNDJSON[rec](t, out)
	got := map[string]rec{}
	for _, r := range recs {
		got[r.Message] = r
	}
	want := map[string]rec{
		"boom": {Source: "agent-host", Level: "ERROR", Message: "boom",
			Attrs: map[string]string{"trace_id": "7b3bf470-9456-11e8-9eb6-529269fb1459", "span_id": "0313bafe-9457-11e8-9eb6-529269fb1459"}},
		"v42 out":                    {Source: "fn-1", Level: "WARN", Message: "v42 out", Attrs: map[string]string{"title": "deploy", "end_ms": itoa(ms + 1)}},
		"plain text from a function": {Source: "checkout-fn", Message: "plain text from a function"},
		"no source given":            {Source: "agent-host", Message: "no source given"},
	}
	for msg, w := range want {
		g, ok := got[msg]
		if !ok {
			t.Errorf("no log %q in %s", msg, raw)
			continue
		}
		if g.Source != w.Source || g.Level != w.Level {
			t.Errorf("%q: source %q level %q, want %q %q", msg, g.Source, g.Level, w.Source, w.Level)
		}
		for k, v := range w.Attrs {
			if g.Attrs[k] != v {
				t.Errorf("%q: attr %s=%q, want %q", msg, k, g.Attrs[k], v)
			}
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
