// Command les-extension is les as an AWS Lambda extension: the file
// extensions/les of the layer zips scripts/layer.sh builds. It listens on
// loopback for what the function emits (Wavefront, StatsD, EMF, logs),
// takes Lambda's Telemetry API records, and publishes to the stream named
// by LES_STREAM or LES_CONFIG. Build it with -tags
// kinesislite,nethttpomithttp2 (the Kinesis client without the SDK's
// config chain; net/http without HTTP/2) to keep it under 10 MB, as
// scripts/layer.sh does; see docs/adr/0005-lambda-extension.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/les-streams/les/internal/lambda/extension"
)

var version = "dev"

func main() {
	started := time.Now()
	if len(os.Args) > 1 && (os.Args[1] == "-version" || os.Args[1] == "--version") {
		fmt.Println("les-extension", version)
		return
	}
	// LES_EXEC_UNIX_NS, set by a launcher that wraps the binary (the init
	// measurement of test/lambda), is when it exec'd the extension: the
	// ready line's init_ms then counts from the process's start, with the
	// Go runtime's and the packages' initialisation.
	if ns, err := strconv.ParseInt(os.Getenv("LES_EXEC_UNIX_NS"), 10, 64); err == nil {
		if t := time.Unix(0, ns); t.Before(started) && started.Sub(t) < time.Minute {
			started = t
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// Lambda registers an extension under its file name.
	err := extension.Run(ctx, extension.Options{Name: filepath.Base(os.Args[0]), Started: started,
		GOMAXPROCS: extension.GOMAXPROCS(os.Getenv)})
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
