// Command les-agent is the agent-only build of les: the front half
// (listeners → batches → the configured stream) with the client stream
// backends (nats, kafka, kinesis) and without the embedded server, so the
// binary stays small enough for a Lambda layer. It is `les agent` with
// the same flags and config file.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/les-streams/les/internal/app"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("les-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", os.Getenv("LES_CONFIG"), "YAML config file (default $LES_CONFIG); stream.kind must be nats, kafka or kinesis")
	dataDir := fs.String("data-dir", "", "directory for the spool (default ./les-data)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "les-agent", version)
		return 0
	}
	cfg, err := app.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "les-agent: %v\n", err)
		return 2
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	log := cfg.Log.NewLogger(stderr)
	a := app.New(cfg, log, app.Options{Mode: app.ModeAgent, Backends: app.ClientBackends()})
	err = a.Run(ctx, func(info app.Info) {
		fmt.Fprintf(stdout, "les-agent %s is up: %d listeners, stream %s %s, http %s\n",
			version, len(info.Listeners), info.Stream, info.StreamURL, info.HTTP)
	})
	if err != nil {
		fmt.Fprintf(stderr, "les-agent: %v\n", err)
		return 1
	}
	return 0
}
