package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
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
	fs.StringVar(&c.MetricsURL, "metrics-url", "http://127.0.0.1:2880/metrics", "les' /metrics")
	fs.StringVar(&c.Sink, "sink", "bench", "sink whose deliveries are counted")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 60*time.Second, "longest wait for les to drain after sending")
	seed := fs.Uint64("seed", 1, "seed of the generated mix")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	quiet := fs.Bool("quiet", false, "no progress lines")
	if err := fs.Parse(args); err != nil {
		return 2
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
