package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestOTLPListenersByDefault(t *testing.T) {
	var got []string
	for _, l := range DefaultListeners() {
		if l.Format == "otlp" {
			got = append(got, l.Transport+" "+l.Address)
		}
	}
	if strings.Join(got, ",") != "http 127.0.0.1:4318,grpc 127.0.0.1:4317" {
		t.Fatalf("default OTLP listeners %v", got)
	}
	cfg := &Config{DataDir: t.TempDir()}
	cfg.Agent.Listeners = []ListenerConfig{{Format: "otlp", Transport: "tcp", Address: "127.0.0.1:4318"}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "http, grpc") {
		t.Fatalf("otlp over tcp: %v", err)
	}
}

// TestOTLPThroughApp: an OTLP/HTTP listener configured like any other
// takes the HTTP token and answers an export with partial success.
func TestOTLPThroughApp(t *testing.T) {
	addr := freeAddr(t)
	cfg := &Config{DataDir: t.TempDir()}
	cfg.Stream.Embedded.Listen = "127.0.0.1:-1"
	cfg.Agent.HTTP.Listen = "127.0.0.1:0"
	cfg.Agent.HTTP.Token = "tok"
	cfg.Agent.Listeners = []ListenerConfig{{Format: "otlp", Transport: "http", Address: addr}, {Format: "otlp", Transport: "grpc", Address: "127.0.0.1:0"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- New(cfg, slog.New(slog.DiscardHandler), testOptions()).Run(ctx, func(i Info) { ready <- i })
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	body := `{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g","gauge":{"dataPoints":[{"asDouble":1}]}},` +
		`{"name":"bad","gauge":{"dataPoints":[{"asDouble":"Infinity"}]}}]}]}]}`
	send := func(token string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/metrics", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := send(""); code != http.StatusUnauthorized {
		t.Errorf("without token: %d", code)
	}
	if code, out := send("tok"); code != http.StatusOK || !strings.Contains(out, `"rejectedDataPoints":"1"`) {
		t.Errorf("with token: %d %s", code, out)
	}
	http.DefaultClient.CloseIdleConnections()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	// The socket is released.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("%s still bound: %v", addr, err)
	}
	ln.Close()
}

// TestOTLPDefaultSource: OTLP/HTTP metrics and logs whose resource names no
// source (no faas.name, service.name or host.name) reach the stream with
// agent.default_source, like every other format; one that names
// service.name keeps it.
func TestOTLPDefaultSource(t *testing.T) {
	cfg, out := fileSinkApp(t)
	addr := freeAddr(t)
	cfg.Agent.DefaultSource = "agent-host"
	cfg.Agent.Listeners = []ListenerConfig{{Format: "otlp", Transport: "http", Address: addr}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, stop := runApp(t, cfg)
	post := func(path, body string) {
		t.Helper()
		resp, err := http.Post("http://"+addr+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.Contains(string(b), "rejected") {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
		}
	}
	// A resource with an attribute that is not a source, and no resource at all.
	post("/v1/metrics", `{"resourceMetrics":[`+
		`{"resource":{"attributes":[{"key":"cloud.region","value":{"stringValue":"eu-west-1"}}]},"scopeMetrics":[{"metrics":[{"name":"nosource.gauge","gauge":{"dataPoints":[{"asDouble":7}]}}]}]},`+
		`{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},"scopeMetrics":[{"metrics":[{"name":"named.gauge","gauge":{"dataPoints":[{"asDouble":8}]}}]}]}]}`)
	post("/v1/logs", `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityText":"ERROR","body":{"stringValue":"nosource log"}}]}]}]}`)
	http.DefaultClient.CloseIdleConnections()
	stop() // shutdown lets the sink catch up before it returns
	recs, raw := readNDJSON[struct{ Type, Name, Message, Source string }](t, out)
	got := map[string]string{} // name or log message → source
	for _, r := range recs {
		got[r.Type+" "+r.Name+r.Message] = r.Source
	}
	want := map[string]string{
		"metric nosource.gauge": "agent-host",
		"metric named.gauge":    "checkout",
		"log nosource log":      "agent-host",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sources on the stream:\n got %v\nwant %v\nfile:\n%s", got, want, raw)
	}
}
