package main

import (
	"context"
	"fmt"
	"io"

	"github.com/les-streams/les/internal/app"
)

func cmdConfig(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "example" {
		_, _ = io.WriteString(stdout, app.ExampleConfig)
		return 0
	}
	if len(args) == 2 && args[0] == "check" {
		if _, err := app.Load(args[1]); err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: ok\n", args[1])
		return 0
	}
	fmt.Fprintln(stderr, "Usage: les config example | les config check FILE")
	return 2
}
