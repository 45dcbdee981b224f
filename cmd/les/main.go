// Command les runs Lambda Event Streams: `les up` starts the agent, the
// embedded stream and the consumers; the other subcommands are tools
// around a running les (tail, send, query, bench) and its config.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand. run returns the process exit code.
type command struct {
	about string
	run   func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// commands is the explicit table of subcommands.
var commands = map[string]command{
	"up":      {"run the agent, the embedded stream and the consumers", cmdUp},
	"agent":   {"run only the agent: listeners → batches → the configured stream (kafka, kinesis, nats)", cmdAgent},
	"consume": {"run only the consumers (rollup, logmetric, sinks) on the configured stream; --partitions splits the work", cmdConsume},
	"tail":    {"print what is on the stream, one JSON object per item", cmdTail},
	"query":   {"print the recent closed windows of a rolled-up series (count, min, max, avg, percentiles)", cmdQuery},
	"send":    {"send Wavefront lines (arguments or stdin) to a running les", cmdSend},
	"config":  {"print an example config (config example) or check one (config check FILE)", cmdConfig},
	"filter":  {"test a CloudWatch Logs filter pattern on lines: filter test 'PATTERN' < logs", cmdFilter},
	"version": {"print the version", cmdVersion},
	"bench":   {"drive a running les with generated load and report throughput, loss, CPU and RSS", cmdBench},
}

var version = "dev"

func usage(w io.Writer) {
	fmt.Fprintln(w, "les — Lambda Event Streams: telemetry from functions to a stream you own.")
	fmt.Fprintln(w, "\nUsage: les <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].about)
	}
	fmt.Fprintln(w, "\nRun 'les <command> -h' for a command's flags.")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "les: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		sig, ok := <-sigs
		if !ok {
			return
		}
		if args[0] == "up" || args[0] == "agent" || args[0] == "consume" {
			fmt.Fprintf(stderr, "les: received %v; shutting down (again to exit at once)\n", sig)
		}
		cancel()
		if _, ok := <-sigs; ok {
			os.Exit(130)
		}
	}()
	return c.run(ctx, args[1:], stdin, stdout, stderr)
}

func cmdVersion(_ context.Context, _ []string, _ io.Reader, stdout, _ io.Writer) int {
	fmt.Fprintln(stdout, "les", version)
	return 0
}
