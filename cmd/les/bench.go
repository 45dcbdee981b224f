package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/les-streams/les/internal/bench"
)

func cmdBench(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("les bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c bench.Config
	fs.StringVar(&c.Transport, "transport", "udp", "udp or tcp")
	fs.StringVar(&c.Addr, "addr", "", "les listener (default 127.0.0.1:2878 for wavefront, 127.0.0.1:8125 for statsd)")
	fs.StringVar(&c.Format, "format", "wavefront", "wavefront or statsd")
	rate := fs.String("rate", "max", "lines per second across all senders, or max")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to send")
	fs.IntVar(&c.Series, "series", 5000, "distinct series (1,000–10,000 is realistic)")
	fs.IntVar(&c.LinesPerDatagram, "lines-per-datagram", 20, "lines per datagram (TCP: per write block)")
	fs.IntVar(&c.MaxDatagram, "max-datagram", 8192, "largest datagram in bytes")
	fs.IntVar(&c.Senders, "senders", 1, "sending goroutines, each with its own socket")
	fs.StringVar(&c.MetricsURL, "metrics-url", "http://127.0.0.1:2880/metrics", "les' /metrics; none: generate load only (for a peer that is not les)")
	fs.StringVar(&c.Sink, "sink", "bench", "sink whose deliveries are counted")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 60*time.Second, "longest wait for les to drain after sending")
	seed := fs.Uint64("seed", 1, "seed of the generated mix")
	fs.StringVar(&c.ProbeListen, "probe-listen", "", "serve the probe sink's POSTs here and report freshness (docs/bench/freshness-*.yaml), e.g. 127.0.0.1:18090")
	fs.IntVar(&c.ProbeRate, "probe-rate", 100, "freshness probes per second (with --probe-listen)")
	fs.StringVar(&c.ProbeAddr, "probe-addr", "", "where delivery probes go (default --addr for statsd, the trace listener 127.0.0.1:30000 for wavefront)")
	fs.StringVar(&c.WindowAddr, "window-addr", "", "where window probes go (default --addr for statsd, the histogram_minute listener 127.0.0.1:40001 for wavefront)")
	fs.DurationVar(&c.WindowWait, "window-wait", 0, "after draining, wait up to this long for the last probe's minute window to be emitted (e.g. 3m)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	quiet := fs.Bool("quiet", false, "no progress lines")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	c.Seed = *seed
	if *rate != "max" {
		n, err := strconv.Atoi(*rate)
		if err != nil || n <= 0 {
			fmt.Fprintf(stderr, "les bench: --rate must be a positive number of lines per second or max\n")
			return 2
		}
		c.Rate = n
	}
	if note := benchSinkNote(ctx, c.MetricsURL, c.Sink); note != "" {
		fmt.Fprint(stderr, note)
	}
	var progress io.Writer = stderr
	if *quiet || *asJSON {
		progress = nil
	}
	r, err := bench.Run(ctx, c, progress)
	if err != nil {
		fmt.Fprintf(stderr, "les bench: %v\n", err)
		return 1
	}
	if *asJSON {
		if err := r.WriteJSON(stdout); err != nil {
			return 1
		}
		return 0
	}
	r.WriteText(stdout)
	return 0
}

// benchSinkNote explains, before a run, that the les at metricsURL has no
// sink named sink, so deliveries cannot be counted (the default config has
// no sinks at all), and what to configure. It is "" when the sink exists
// or les cannot be asked (bench.Run then reports why).
func benchSinkNote(ctx context.Context, metricsURL, sink string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	want := `sink="` + sink + `"`
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "les_sink_delivered_items_total{") && strings.Contains(l, want) {
			return ""
		}
	}
	if sc.Err() != nil {
		return ""
	}
	return fmt.Sprintf(`les bench: the les at %s has no sink named %q, so no deliveries can be counted:
the result shows the rollup's input and lag instead (les without a config has no sinks).
To measure the whole pipeline, add a sink that drops what it gets and restart les:

  sinks:
    - { name: %s, type: discard }

or name one of its sinks with --sink NAME.

`, strings.TrimSuffix(metricsURL, "/metrics"), sink, sink)
}
