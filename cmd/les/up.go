package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"

	"github.com/les-streams/les/internal/app"
	"github.com/les-streams/les/internal/ingest"
)

func cmdUp(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runApp(ctx, app.ModeUp, args, stdout, stderr)
}

func cmdAgent(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runApp(ctx, app.ModeAgent, args, stdout, stderr)
}

func cmdConsume(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runApp(ctx, app.ModeConsume, args, stdout, stderr)
}

// runApp is les up, les agent and les consume: the same config file, the
// halves the mode names.
func runApp(ctx context.Context, mode app.Mode, args []string, stdout, stderr io.Writer) int {
	name := "les " + mode.String()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "YAML config file (default: built-in defaults; see 'les config example')")
	dataDir := fs.String("data-dir", "", "directory for the embedded stream, its credentials, checkpoints and the spool (default $LES_DATA_DIR, else the config's data_dir, ./les-data)")
	httpAddr := fs.String("http", "", "les API address (default 127.0.0.1:2880)")
	var wfAddr, natsAddr, partitions *string
	if mode != app.ModeConsume {
		wfAddr = fs.String("wavefront", "", "Wavefront TCP+UDP listener address (default 127.0.0.1:2878)")
	}
	if mode == app.ModeUp {
		natsAddr = fs.String("stream-listen", "", "embedded stream's client address (default 127.0.0.1:4222)")
	}
	streamURL := fs.String("stream-url", "", "use the NATS JetStream server at this URL (stream.kind nats)")
	if mode == app.ModeConsume {
		partitions = fs.String("partitions", "", "logical partitions this process consumes, e.g. 0-3 or 0,2,4 (default: all); processes with the same config split them")
	}
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (for go tool pprof)")
	memProfile := fs.String("memprofile", "", "write a heap profile to this file when les stops (for go tool pprof)")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	cfg, err := app.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "les: %v\n", err)
		return 2
	}
	cfg.DataDir = dataDirOf(*dataDir, cfg) // creds.go
	if *httpAddr != "" {
		cfg.Agent.HTTP.Listen = *httpAddr
	}
	if natsAddr != nil && *natsAddr != "" {
		cfg.Stream.Embedded.Listen = *natsAddr
	}
	if *streamURL != "" {
		if cfg.Stream.Kind == "embedded" && cfg.Stream.Partitions == 1 && *cfgPath == "" {
			cfg.Stream.Partitions = 0 // the default of kind nats
		}
		cfg.Stream.Kind = "nats"
		cfg.Stream.NATS.URL = *streamURL
	}
	if wfAddr != nil && *wfAddr != "" {
		for i := range cfg.Agent.Listeners {
			if cfg.Agent.Listeners[i].Format == "wavefront" {
				cfg.Agent.Listeners[i].Address = *wfAddr
			}
		}
	}
	if mode != app.ModeUp { // the embedded stream of a les up using the same data dir
		if err := useStreamCreds(cfg, cfg.DataDir); err != nil {
			fmt.Fprintf(stderr, "les: %v\n", err)
			return 2
		}
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "les: %v\n", err)
		return 2
	}
	opts := app.Options{Mode: mode, Backends: backends()}
	if partitions != nil && *partitions != "" {
		if opts.Partitions, err = parsePartitions(*partitions, cfg.Stream.Partitions); err != nil {
			fmt.Fprintf(stderr, "les: --partitions: %v\n", err)
			return 2
		}
	}
	log := cfg.Log.NewLogger(stderr)
	pct, limit := memoryPolicy(cfg.Agent.Batch, os.Getenv)
	if pct > 0 {
		debug.SetGCPercent(pct)
	}
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "les: %v\n", err)
			return 2
		}
		defer stop()
	}
	a := app.New(cfg, log, opts)
	err = a.Run(ctx, func(info app.Info) {
		fmt.Fprintf(stdout, "les %s (%s) is up\n", shortVersion(), mode)
		fmt.Fprintf(stdout, "  data:     %s\n", info.DataDir)
		if info.Stream == "embedded" || info.Stream == "nats" {
			fmt.Fprintf(stdout, "  stream:   %s %s (les tail --url %s)\n", info.Stream, info.StreamURL, info.StreamURL)
		} else {
			fmt.Fprintf(stdout, "  stream:   %s %s (les tail --config FILE)\n", info.Stream, info.StreamURL)
		}
		if mode == app.ModeConsume {
			fmt.Fprintf(stdout, "  http:     http://%s  (/query, /metrics, /healthz)\n", info.HTTP)
		} else {
			fmt.Fprintf(stdout, "  http:     http://%s  (/report, /logs, /cwlogs, /telemetry, /query, /metrics, /healthz)\n", info.HTTP)
		}
		if len(info.Listeners) > 0 {
			fmt.Fprintln(stdout, "  listeners:")
			for _, l := range info.Listeners {
				fmt.Fprintf(stdout, "    %s\n", l)
			}
		}
		if len(info.Sinks) > 0 {
			fmt.Fprintln(stdout, "  sinks:")
			for _, s := range info.Sinks {
				fmt.Fprintf(stdout, "    %s\n", s)
			}
		}
		if opts.Partitions != nil {
			fmt.Fprintf(stdout, "  partitions: %v of %d\n", opts.Partitions, cfg.Stream.Partitions)
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

// parsePartitions reads "0-3,6" into partition numbers below n.
func parsePartitions(s string, n int) ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b < a {
			return nil, fmt.Errorf("%q is not a partition or range like 0-3", part)
		}
		if b >= n {
			return nil, fmt.Errorf("partition %d is not below stream.partitions (%d)", b, n)
		}
		for p := a; p <= b; p++ {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	slices.Sort(out)
	return out, nil
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

// gcPercent is the collector's target that `les up` sets unless GOGC is
// in the environment: a collection when the heap has grown by 30 % of
// the live data, not by all of it (GOGC=100). les allocates little per
// line (batches, encoders, UDP buffers and the embedded server's block
// buffers are reused: about 5 MB/s at 1.7 M StatsD lines/s), so
// collecting more often costs little CPU and cuts the peak RSS. GOGC=50
// cut it at 200 k StatsD lines/s from 130-135 to 104-114 MB against
// GOGC=100 (docs/performance.md, "Memory (goal 2)"); 30 against 50, on
// 1,000 series pinned to one core: 71-76 against 74-87 MB at 3 M lines/s
// for the same CPU per line, and 0.73 against 0.70-0.74 CPU s per million
// lines on les bench's StatsD mix at 5,000 series (docs/performance.md,
// "Session 8").
const gcPercent = 30

// memoryPolicy is what `les up` sets in the Go runtime: the GC percent
// (0: leave it) unless GOGC is set, and the soft memory limit (0: leave
// it) unless GOMEMLIMIT is set.
func memoryPolicy(b ingest.BatchConfig, getenv func(string) string) (pct int, limit int64) {
	if getenv("GOGC") == "" {
		pct = gcPercent
	}
	if getenv("GOMEMLIMIT") == "" {
		limit = memoryLimit(b)
	}
	return pct, limit
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
