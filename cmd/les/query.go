package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// queryDist is the part of a /query line (internal/format/jsonl) the table
// shows.
type queryDist struct {
	Timestamp   time.Time          `json:"timestamp"`
	Source      string             `json:"source"`
	Tags        map[string]string  `json:"tags"`
	Count       float64            `json:"count"`
	Min         float64            `json:"min"`
	Max         float64            `json:"max"`
	Avg         *float64           `json:"avg"`
	Percentiles map[string]float64 `json:"percentiles"`
	Correction  int                `json:"correction"`
}

func cmdQuery(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("les query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	source := fs.String("source", "", "only this source (default: every source)")
	window := fs.String("window", "minute", "minute, hour or day")
	base := fs.String("url", "http://127.0.0.1:2880", "les API address (les up prints it)")
	token := fs.String("token", "", "bearer token, when the API requires one")
	asJSON := fs.Bool("json", false, "print the NDJSON from /query instead of a table")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: les query NAME [flags]   recent closed windows of a rolled-up series")
		fs.PrintDefaults()
	}
	// NAME may come before or after the flags.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	}
	if name == "" {
		fs.Usage()
		return 2
	}
	q := url.Values{"name": {name}, "window": {*window}}
	if *source != "" {
		q.Set("source", *source)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*base, "/")+"/query?"+q.Encode(), nil)
	if err != nil {
		fmt.Fprintf(stderr, "les query: %v\n", err)
		return 2
	}
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "les query: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		fmt.Fprintf(stderr, "les query: %v\n", err)
		return 1
	}
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "les query: %s: %s\n", resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	if *asJSON {
		_, _ = stdout.Write(body)
		return 0
	}
	var ds []queryDist
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var d queryDist
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			fmt.Fprintf(stderr, "les query: bad answer line: %v\n", err)
			return 1
		}
		ds = append(ds, d)
	}
	if len(ds) == 0 {
		fmt.Fprintf(stderr, "les query: no closed %s windows for %q (windows appear after they close: end + grace)\n", *window, name)
		return 0
	}
	writeQueryTable(stdout, ds)
	return 0
}

// writeQueryTable prints one row per window, oldest first, with a column
// per percentile the rollup emitted (sorted).
func writeQueryTable(w io.Writer, ds []queryDist) {
	var pcts []string
	for _, d := range ds {
		for k := range d.Percentiles {
			if !slices.Contains(pcts, k) {
				pcts = append(pcts, k)
			}
		}
	}
	pnum := func(k string) float64 { v, _ := strconv.ParseFloat(strings.TrimPrefix(k, "p"), 64); return v }
	slices.SortFunc(pcts, func(a, b string) int {
		switch pa, pb := pnum(a), pnum(b); {
		case pa < pb:
			return -1
		case pa > pb:
			return 1
		}
		return 0
	})
	series := map[string]bool{}
	for _, d := range ds {
		series[seriesLabel(d)] = true
	}
	showSeries := len(series) > 1
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"WINDOW START (UTC)"}
	if showSeries {
		head = append(head, "SERIES")
	}
	head = append(head, "CORR", "COUNT", "MIN", "MAX", "AVG")
	head = append(head, pcts...)
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, d := range ds {
		row := []string{d.Timestamp.UTC().Format("2006-01-02 15:04:05")}
		if showSeries {
			row = append(row, seriesLabel(d))
		}
		corr := "-"
		if d.Correction > 0 {
			corr = strconv.Itoa(d.Correction)
		}
		avg := "-"
		if d.Avg != nil {
			avg = num(*d.Avg)
		}
		row = append(row, corr, num(d.Count), num(d.Min), num(d.Max), avg)
		for _, p := range pcts {
			if v, ok := d.Percentiles[p]; ok {
				row = append(row, num(v))
			} else {
				row = append(row, "-")
			}
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	_ = tw.Flush()
}

func seriesLabel(d queryDist) string {
	keys := make([]string, 0, len(d.Tags))
	for k := range d.Tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString(d.Source)
	for _, k := range keys {
		b.WriteString(" " + k + "=" + d.Tags[k])
	}
	return b.String()
}

// num formats a value with six significant digits.
func num(v float64) string {
	return strconv.FormatFloat(v, 'g', 6, 64)
}
