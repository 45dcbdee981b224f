// Command les runs Lambda Event Streams: `les up` starts the agent, the
// embedded stream and the consumers; the other subcommands are tools
// around a running les (tail, send, query, bench) and its config.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
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

// version is set at link time by release builds (-ldflags "-X
// main.version=v1.2.3"); otherwise versionString reads the module version
// and VCS commit Go stamps into the binary.
var version = ""

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
	stopWithGoRun() // gorun_linux.go
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		args = []string{"version"}
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
	done := make(chan struct{}) // the command returned
	defer close(done)
	go func() {
		var sig os.Signal
		select {
		case sig = <-sigs:
		case <-done:
			return
		}
		if args[0] == "up" || args[0] == "agent" || args[0] == "consume" {
			fmt.Fprintf(stderr, "les: received %v; shutting down (again to exit at once)\n", sig)
		}
		cancel()
		select {
		case <-sigs:
			os.Exit(130)
		case <-done:
		}
	}()
	return c.run(ctx, args[1:], stdin, stdout, stderr)
}

func cmdVersion(_ context.Context, _ []string, _ io.Reader, stdout, _ io.Writer) int {
	fmt.Fprintln(stdout, "les", versionString())
	return 0
}

// versionString is the version of this binary: the module version (a
// tagged release, or Go's pseudo-version of the commit it was built from)
// and the VCS commit, its time and whether the tree had changes, as
// `go build` stamps them (`go run` and `go test` stamp no commit).
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return orDev(version)
	}
	v := version
	if v == "" {
		v = bi.Main.Version
	}
	var rev, at string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	parts := []string{}
	if rev != "" {
		parts = append(parts, "commit "+rev[:min(12, len(rev))])
		if at != "" {
			parts = append(parts, at)
		}
		if modified {
			parts = append(parts, "modified")
		}
	}
	parts = append(parts, bi.GoVersion)
	return orDev(v) + " (" + strings.Join(parts, ", ") + ")"
}

func orDev(v string) string {
	if v == "" || v == "(devel)" {
		return "dev"
	}
	return v
}

// parseFlags parses args into fs. When it returns ok false, the command
// returns code: 0 after -h (the usage went to stdout), 2 for a bad flag
// (the message and the usage went to stderr).
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	var out strings.Builder
	fs.SetOutput(&out)
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	switch {
	case err == nil:
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		_, _ = io.WriteString(stdout, out.String())
		return 0, false
	default:
		_, _ = io.WriteString(stderr, out.String())
		return 2, false
	}
}

// shortVersion is the version alone, for banners.
func shortVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		return orDev(bi.Main.Version)
	}
	return "dev"
}
