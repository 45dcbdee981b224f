// Package backendtest starts the real backends the sink tests deliver to —
// Debian's prometheus, victoria-metrics and influxd, installed by
// scripts/test.sh — on free loopback ports in the test's temp dir, and
// stops them when the test ends.
//
// A missing binary skips the test, or with CI set fails it: there a
// missing component is a broken set-up, not a reason to test less.
package backendtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Server is a running backend.
type Server struct {
	// URL is its HTTP base URL, e.g. "http://127.0.0.1:40123".
	URL string
	cmd *exec.Cmd
	out *syncBuffer
}

// Output returns what the server printed so far (for failure messages).
func (s *Server) Output() string { return s.out.String() }

// Prometheus starts Prometheus with the remote-write receiver and native
// histograms enabled. Remote write goes to URL+"/api/v1/write".
func Prometheus(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global:\n  scrape_interval: 1h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	return start(t, "prometheus", port, "/-/ready",
		"--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port),
		"--web.enable-remote-write-receiver", "--enable-feature=native-histograms",
		"--log.level=warn")
}

// VictoriaMetrics starts single-node VictoriaMetrics. It takes Prometheus
// remote write on /api/v1/write, InfluxDB line protocol on /write and
// /api/v2/write, and Datadog on /datadog/api/v1/series; queries on
// /api/v1/query and /api/v1/export. Call Flush before querying what was
// just written.
func VictoriaMetrics(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	port := FreePort(t)
	return start(t, "victoria-metrics", port, "/health",
		"-storageDataPath="+filepath.Join(dir, "data"),
		"-httpListenAddr=127.0.0.1:"+strconv.Itoa(port),
		"-search.disableCache", "-search.latencyOffset=0s", "-loggerLevel=WARN")
}

// Flush makes data written to VictoriaMetrics visible to queries.
func (s *Server) Flush(t testing.TB) {
	t.Helper()
	resp, err := http.Get(s.URL + "/internal/force_flush")
	if err != nil {
		t.Fatalf("force_flush: %v", err)
	}
	_ = resp.Body.Close()
}

// Series is one series as VictoriaMetrics' /api/v1/export writes it:
// its labels (with __name__), and its samples' values and timestamps
// (Unix milliseconds), oldest first.
type Series struct {
	Metric     map[string]string
	Values     []float64
	Timestamps []int64
}

// Export flushes VictoriaMetrics and reads every raw sample of the series
// matching selector (e.g. `{run="3"}`) from /api/v1/export.
func (s *Server) Export(t testing.TB, selector string) []Series {
	t.Helper()
	s.Flush(t)
	resp, err := http.Get(s.URL + "/api/v1/export?" + url.Values{"match[]": {selector}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("export %s: %d %s", selector, resp.StatusCode, body)
	}
	var out []Series
	dec := json.NewDecoder(bytes.NewReader(body))
	for dec.More() {
		var line Series
		if err := dec.Decode(&line); err != nil {
			t.Fatalf("export %s: %v", selector, err)
		}
		if len(line.Values) != len(line.Timestamps) {
			t.Fatalf("export %s: %d values, %d timestamps", selector, len(line.Values), len(line.Timestamps))
		}
		out = append(out, line)
	}
	return out
}

// Query runs an instant query at time at on /api/v1/query (Prometheus,
// or VictoriaMetrics) and decodes the JSON answer into res.
func (s *Server) Query(t testing.TB, query string, at time.Time, res any) {
	t.Helper()
	q := url.Values{"query": {query}, "time": {strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64)}}
	resp, err := http.Get(s.URL + "/api/v1/query?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("query %s: %d %s", query, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, res); err != nil {
		t.Fatalf("query %s: %v: %s", query, err, body)
	}
}

// InfluxDB starts InfluxDB 1.x with HTTP on URL (line protocol on
// URL+"/write?db=...", queries on URL+"/query").
func InfluxDB(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	port := FreePort(t)
	cfg := fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:%d"
[meta]
  dir = %q
[data]
  dir = %q
  wal-dir = %q
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:%d"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
`, FreePort(t), filepath.Join(dir, "meta"), filepath.Join(dir, "data"), filepath.Join(dir, "wal"), port)
	p := filepath.Join(dir, "influxdb.conf")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return start(t, "influxd", port, "/ping", "-config", p)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Require returns the path of bin, skipping (or under CI failing) the
// test when it is not installed.
func Require(t testing.TB, bin string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found in PATH: scripts/test.sh installs it (apt-get)", bin)
		}
		t.Skipf("%s not found in PATH: run scripts/test.sh (it installs it) to run this test", bin)
	}
	return p
}

func start(t testing.TB, bin string, port int, ready string, args ...string) *Server {
	t.Helper()
	path := Require(t, bin)
	s := &Server{URL: "http://127.0.0.1:" + strconv.Itoa(port), out: &syncBuffer{}}
	s.cmd = exec.Command(path, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-exited
		}
	})
	// Readiness of another process can only be polled.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+ready, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return s
			}
		}
		select {
		case <-exited:
			t.Fatalf("%s exited at start:\n%s", bin, s.Output())
		case <-ctx.Done():
			t.Fatalf("%s not ready on %s in 60s:\n%s", bin, s.URL+ready, s.Output())
		case <-tick.C:
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
