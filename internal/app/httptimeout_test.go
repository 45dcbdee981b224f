package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// startApp runs an app for cfg (validated here) and returns its Info; the
// app stops when the test ends.
func startApp(t *testing.T, cfg *Config) Info {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- New(cfg, slog.New(slog.DiscardHandler), testOptions()).Run(ctx, func(i Info) { ready <- i })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	select {
	case i := <-ready:
		return i
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("app did not start")
	}
	return Info{}
}

// TestHTTPSlowBodyTimesOut: a client that sends headers and then trickles
// (or withholds) its body is cut off after agent.http.read_timeout instead
// of holding a connection, a goroutine and a body buffer forever.
func TestHTTPSlowBodyTimesOut(t *testing.T) {
	cfg := &Config{DataDir: t.TempDir()}
	cfg.Stream.Embedded.Listen = "127.0.0.1:-1"
	cfg.Agent.HTTP.Listen = "127.0.0.1:0"
	cfg.Agent.HTTP.ReadTimeout = 300 * time.Millisecond
	cfg.Agent.Listeners = []ListenerConfig{}
	info := startApp(t, cfg)

	c, err := net.Dial("tcp", info.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "POST /report HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\na 1 source=x\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("server kept the slow connection open: %v", err)
	}
}

func TestHTTPReadTimeoutDefault(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Agent.HTTP.ReadTimeout != time.Minute {
		t.Fatalf("read_timeout default %v", c.Agent.HTTP.ReadTimeout)
	}
	c.Agent.HTTP.ReadTimeout = -time.Second
	if err := c.Validate(); err == nil {
		t.Fatal("negative read_timeout accepted")
	}
}
