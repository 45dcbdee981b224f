package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
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
