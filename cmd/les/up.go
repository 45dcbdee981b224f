package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strings"

	"github.com/les-streams/les/internal/app"
	"github.com/les-streams/les/internal/ingest"
)

func cmdUp(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("les up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "YAML config file (default: built-in defaults; see 'les config example')")
	dataDir := fs.String("data-dir", "", "directory for the embedded stream and checkpoints (default ./les-data)")
	httpAddr := fs.String("http", "", "les API address (default 127.0.0.1:2880)")
	wfAddr := fs.String("wavefront", "", "Wavefront TCP+UDP listener address (default 127.0.0.1:2878)")
	natsAddr := fs.String("stream-listen", "", "embedded NATS client address (default 127.0.0.1:4222)")
	streamURL := fs.String("stream-url", "", "use an external NATS JetStream server instead of the embedded one")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (for go tool pprof)")
	memProfile := fs.String("memprofile", "", "write a heap profile to this file when les stops (for go tool pprof)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := app.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "les: %v\n", err)
		return 2
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if *httpAddr != "" {
		cfg.Agent.HTTP.Listen = *httpAddr
	}
	if *natsAddr != "" {
		cfg.Stream.Listen = *natsAddr
	}
	if *streamURL != "" {
		cfg.Stream.URL = *streamURL
	}
	if *wfAddr != "" {
		for i := range cfg.Agent.Listeners {
			if cfg.Agent.Listeners[i].Format == "wavefront" {
				cfg.Agent.Listeners[i].Address = *wfAddr
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "les: %v\n", err)
		return 2
	}
	log := newLogger(stderr, cfg.Log)
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit(cfg.Agent.Batch))
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "les: %v\n", err)
			return 2
		}
		defer stop()
	}
	a := app.New(cfg, log)
	err = a.Run(ctx, func(info app.Info) {
		fmt.Fprintf(stdout, "les %s is up\n", version)
		fmt.Fprintf(stdout, "  data:     %s\n", info.DataDir)
		fmt.Fprintf(stdout, "  stream:   %s (les tail --url %s)\n", info.StreamURL, info.StreamURL)
		fmt.Fprintf(stdout, "  http:     http://%s  (/report, /logs, /cwlogs, /telemetry, /query, /metrics, /healthz)\n", info.HTTP)
		fmt.Fprintln(stdout, "  listeners:")
		for _, l := range info.Listeners {
			fmt.Fprintf(stdout, "    %s\n", l)
		}
		if len(info.Sinks) > 0 {
			fmt.Fprintln(stdout, "  sinks:")
			for _, s := range info.Sinks {
				fmt.Fprintf(stdout, "    %s\n", s)
			}
		}
		fmt.Fprintln(stdout, "Press Ctrl-C to stop.")
	})
	if *memProfile != "" {
		if perr := writeHeapProfile(*memProfile); perr != nil {
			fmt.Fprintf(stderr, "les: %v\n", perr)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "les: %v\n", err)
		return 1
	}
	return 0
}

// writeHeapProfile writes the heap profile as of the last garbage
// collection, which ran while les was still busy.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("memprofile: %w", err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		return fmt.Errorf("memprofile: %w", err)
	}
	return nil
}

// memoryLimit is the Go runtime's soft memory limit that `les up` sets
// unless GOMEMLIMIT is in the environment: 64 MiB for the runtime, the
// embedded server's block caches and the consumers' fetched records, plus
// one and a half times what the batcher may hold ((queue_batches + 4 open
// batches) × max_batch_bytes). Without it the heap grows to twice the live
// data before a collection (GOGC=100) and the RSS under load with it; with
// it the collector runs more often once the heap nears the limit. It is a
// soft limit: the live heap may still exceed it.
func memoryLimit(b ingest.BatchConfig) int64 {
	return 64<<20 + int64(b.QueueBatches+4)*int64(b.MaxBatchBytes)*3/2
}

// startCPUProfile starts writing a CPU profile to path; call the returned
// function to finish it.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func newLogger(w io.Writer, c app.LogConfig) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(strings.ToUpper(orDefault(c.Level, "info"))))
	o := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
