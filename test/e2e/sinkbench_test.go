package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/les-streams/les/internal/bench"
	"github.com/les-streams/les/internal/sink/sinktest/backendtest"
)

// TestSinkThroughput measures sustained end-to-end throughput into real
// backends with the stream in between (issue 9, Performance): `les up`
// (embedded stream) takes Wavefront gauges over UDP from the `les bench`
// load generator (internal/bench, in the test process) and delivers them
// with one sink to the backend, which counts what it stored:
//
//   - victoria-metrics, prometheus: prometheus_remote_write into Debian's
//     victoria-metrics (vm_rows_inserted_total) and prometheus
//     (prometheus_tsdb_head_samples_appended_total);
//   - otlp: the otlp sink into the OpenTelemetry Collector's otlpreceiver,
//     run in-process with a consumer that counts data points;
//   - discard: the baseline, a discard sink (les counts its deliveries).
//
// It reports items/s stored by the backend over the send and drain time
// and les' CPU seconds (process_cpu_seconds_total) per million items. A
// benchmark, not a check: it runs only with LES_SINK_BENCH=1, e.g.
//
//	LES_SINK_BENCH=1 go test -run TestSinkThroughput -v -timeout 30m ./test/e2e/
//
// LES_SINK_BENCH_RATE (lines/s, default 100000), _DURATION (default 30s),
// _SERIES (default 10000) and _CONCURRENCY (the sink's requests in
// flight; default: the sink type's) change the load;
// LES_SINK_BENCH_PROFILE=<dir> writes les' CPU profile of each run there
// (<target>.cpu, for go tool pprof); LES_SINK_BENCH_EXTRA is YAML added to
// les.yaml (e.g. "rollup: { disabled: true }") and LES_SINK_BENCH_BATCH
// replaces the agent's batch settings (default { flush_interval: 50ms }).
func TestSinkThroughput(t *testing.T) {
	if os.Getenv("LES_SINK_BENCH") == "" {
		t.Skip("a benchmark: set LES_SINK_BENCH=1 to run it")
	}
	rate := envInt(t, "LES_SINK_BENCH_RATE", 100_000)
	series := envInt(t, "LES_SINK_BENCH_SERIES", 10_000)
	conc := envInt(t, "LES_SINK_BENCH_CONCURRENCY", 0)
	dur := 30 * time.Second
	if v := os.Getenv("LES_SINK_BENCH_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("LES_SINK_BENCH_DURATION: %v", err)
		}
		dur = d
	}
	concurrency := ""
	if conc > 0 {
		concurrency = fmt.Sprintf("    concurrency: %d\n", conc)
	}

	// Each target starts its backend and returns the sink's config and a
	// function returning how many items the backend has stored so far
	// (for discard: les' count of items it delivered).
	targets := []struct {
		name  string
		start func(t *testing.T) (sinkYAML string, stored func(*Les) float64)
	}{
		// The same pipeline into a sink that drops everything: what the
		// agent, the stream and the runner cost without a backend.
		{"discard", func(t *testing.T) (string, func(*Les) float64) {
			return "    type: discard\n", func(l *Les) float64 { return l.Metric(`les_sink_delivered_items_total{sink="bench"}`) }
		}},
		{"victoria-metrics", func(t *testing.T) (string, func(*Les) float64) {
			vm := backendtest.VictoriaMetrics(t)
			return fmt.Sprintf("    type: prometheus_remote_write\n    prometheus_remote_write: { url: %s/api/v1/write }\n", vm.URL),
				func(*Les) float64 {
					return scrapeSum(t, vm.URL+"/metrics", `vm_rows_inserted_total{type="promremotewrite"}`)
				}
		}},
		{"prometheus", func(t *testing.T) (string, func(*Les) float64) {
			p := backendtest.Prometheus(t)
			return fmt.Sprintf("    type: prometheus_remote_write\n    prometheus_remote_write: { url: %s/api/v1/write }\n", p.URL),
				func(*Les) float64 {
					return scrapeSum(t, p.URL+"/metrics", "prometheus_tsdb_head_samples_appended_total")
				}
		}},
		{"otlp", func(t *testing.T) (string, func(*Les) float64) {
			url, points := countingCollector(t)
			return fmt.Sprintf("    type: otlp\n    signals: [metrics]\n    otlp: { endpoint: %s }\n", url),
				func(*Les) float64 { return float64(points.Load()) }
		}},
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			sinkYAML, stored := tg.start(t)
			l := NewLes(t, os.Getenv("LES_SINK_BENCH_EXTRA")+"sinks:\n  - name: bench\n"+concurrency+sinkYAML)
			if b := os.Getenv("LES_SINK_BENCH_BATCH"); b != "" {
				const line = "  batch: { flush_interval: 50ms }\n"
				if !strings.Contains(l.Config, line) {
					t.Fatalf("no agent batch line to replace in:\n%s", l.Config)
				}
				l.Config = strings.Replace(l.Config, line, "  batch: "+b+"\n", 1)
			}
			if dir := os.Getenv("LES_SINK_BENCH_PROFILE"); dir != "" {
				l.Args = []string{"up", "--cpuprofile", filepath.Join(dir, tg.name+".cpu")}
			}
			l.Start()
			stored0, cpu0, start := stored(l), l.Metric("process_cpu_seconds_total"), time.Now()
			load0 := loadAvg()
			res, err := bench.Run(context.Background(), bench.Config{
				Format: "wavefront", Transport: "udp", Addr: l.Addr("wavefront"),
				Rate: rate, Duration: dur, Series: series,
				MetricsURL: "http://" + l.Addr("http") + "/metrics", Sink: "bench",
				DrainTimeout: 10 * time.Minute,
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			// The drain ends 3 s after the last change (bench.drain's
			// quiet period), which is not delivery time.
			elapsed := time.Since(start) - 3*time.Second
			cpu := l.Metric("process_cpu_seconds_total") - cpu0
			// Delivered means acknowledged by the backend; give its own
			// counters a moment to show the last requests. Prometheus stores a sample equal to the series' last one
			// (same time and value) only once; the generator's mix repeats
			// 20 lines when it wraps around, so some of those collide: allow
			// 0.1 %.
			var n float64
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				if n = stored(l) - stored0; n >= float64(res.Delivered) {
					break
				}
				if time.Now().After(deadline) {
					if n < 0.999*float64(res.Delivered) {
						t.Errorf("the backend stored %.0f items, les delivered %d", n, res.Delivered)
					}
					break
				}
			}
			m := scrapeMetrics(l)
			t.Logf("%s: rate %d lines/s × %v, %d series, load %s → %s", tg.name, rate, dur, series, load0, loadAvg())
			t.Logf("  sent %d, accepted %d (loss %.3f %%), delivered %d, stored by the backend %.0f, final lag %.0f records",
				res.Sent, res.Accepted, res.LossPercent, res.Delivered, n, res.Lag)
			t.Logf("  send %.1f s + drain %.1f s: %.0f items/s stored; les CPU %.2f s = %.2f s per million items",
				res.Duration, res.DrainSeconds-3, n/elapsed.Seconds(), cpu, cpu/(n/1e6))
			t.Logf("  les: %s; %s; %s", grepLines(m, `les_sink_retries_total{sink="bench"}`),
				grepLines(m, `les_sink_dropped_items_total{sink="bench"`), grepLines(m, `les_consumer_records_total{consumer="bench"}`))
			l.Stop()
		})
	}
}

// countingCollector runs the OpenTelemetry Collector's OTLP receiver
// (HTTP) in-process and counts the metric data points it receives.
func countingCollector(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	f := otlpreceiver.NewFactory()
	cfg := f.CreateDefaultConfig().(*otlpreceiver.Config)
	cfg.Protocols.HTTP.GetOrInsertDefault().ServerConfig.NetAddr.Endpoint = addr
	var points atomic.Int64
	next, err := consumer.NewMetrics(func(_ context.Context, md pmetric.Metrics) error {
		points.Add(int64(md.DataPointCount()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := f.CreateMetrics(context.Background(), receivertest.NewNopSettings(f.Type()), cfg, next)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return "http://" + addr, &points
}

// scrapeSum sums the samples of every series of metric name in the
// Prometheus text at url whose line starts with prefix (a name, or a
// name{labels} series).
func scrapeSum(t *testing.T, url, prefix string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		rest := line[len(prefix):]
		if !strings.HasPrefix(rest, " ") && !strings.HasPrefix(rest, "{") {
			continue // another metric whose name starts with prefix
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: not a number", name, v)
	}
	return n
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// grepLines returns the lines of text that contain sub, joined by "; ".
func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}
