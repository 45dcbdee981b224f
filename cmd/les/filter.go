package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/les-streams/les/internal/logmetric/pattern"
)

// dimFlags collects repeated --dimension name=$selector flags.
type dimFlags map[string]string

func (d dimFlags) String() string { return "" }

func (d dimFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" || v == "" {
		return fmt.Errorf("dimension %q is not name=$selector", s)
	}
	d[k] = v
	return nil
}

const filterUsage = `Usage: les filter test 'PATTERN' [--value SELECTOR] [--dimension NAME=SELECTOR]... [--json] < logs.txt

Matches each input line against a CloudWatch Logs filter pattern and prints
whether it matches, the metric value it yields (--value: a number, $field,
$N or $.path) and the extracted fields, like the console's "Test pattern".
With --json, one object per line:
  {"line":...,"match":true|false,"value":number|null,"fields":{...},"dimensions":{...}}
Exit status: 0 after testing every line (matching or not), 2 for an
invalid pattern, selector or usage, 1 for a read error.
`

func cmdFilter(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "test" {
		fmt.Fprint(stderr, filterUsage)
		return 2
	}
	fs := flag.NewFlagSet("les filter test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, filterUsage); fs.PrintDefaults() }
	value := fs.String("value", "", "metric value selector: a number, $field, $N or $.path")
	jsonOut := fs.Bool("json", false, "print one JSON object per input line")
	dims := dimFlags{}
	fs.Var(dims, "dimension", "dimension NAME=SELECTOR (repeatable, at most 3)")
	// Flags may come before or after the pattern.
	var pos []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		rest = rest[1:]
	}
	if len(pos) != 1 {
		fmt.Fprint(stderr, filterUsage)
		return 2
	}
	if len(dims) > 3 {
		fmt.Fprintln(stderr, "les filter test: at most 3 dimensions")
		return 2
	}
	if _, err := pattern.Compile(pos[0]); err != nil {
		var se *pattern.SyntaxError
		if errors.As(err, &se) {
			fmt.Fprintf(stderr, "les filter test: %v\n  %s\n  %s^\n", err, pos[0], strings.Repeat(" ", min(se.Pos, len(pos[0]))))
		} else {
			fmt.Fprintf(stderr, "les filter test: %v\n", err)
		}
		return 2
	}
	w := bufio.NewWriter(stdout)
	_, err := pattern.RunTestWith(w, stdin, pattern.TestOptions{
		Pattern: pos[0], Value: *value, Dimensions: dims, JSON: *jsonOut,
	})
	_ = w.Flush()
	if err != nil {
		fmt.Fprintf(stderr, "les filter test: %v\n", err)
		var se *pattern.SyntaxError
		if errors.As(err, &se) {
			return 2 // a bad --value or --dimension selector
		}
		return 1
	}
	return 0
}
