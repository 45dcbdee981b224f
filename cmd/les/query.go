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

// queryDist is the part of a /query line (internal/format/jsonl) the
// tables show: a distribution, or a counter or gauge (Kind, Value).
type queryDist struct {
	Type        string             `json:"type"`
	Kind        string             `json:"kind"`
	Value       float64            `json:"value"`
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
	window := fs.String("window", "", "the rolled-up window: minute, hour or day (default: minute, or the finest the name has)")
	from := fs.String("from", "", "start: RFC 3339, Unix seconds, or relative like -1h (default: the history kept, 24h)")
	to := fs.String("to", "", "end (default now)")
	step := fs.String("step", "", "merge windows into steps: minute, hour, day or all (default: the window)")
	merge := fs.Bool("merge", false, "merge every source and tag set into one series (distributions merge exactly)")
	pcts := fs.String("q", "", "percentiles to compute, e.g. 0.5,0.99 or p50,p99 (default: the rollup's)")
	base := fs.String("url", "http://127.0.0.1:2880", "les API address (les up prints it)")
	token := fs.String("token", "", "bearer token, when the API requires one")
	asJSON := fs.Bool("json", false, "print the NDJSON from /query instead of a table")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: les query NAME [flags]   closed windows of a rolled-up series (counters, gauges, sets, distributions)")
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
	q := url.Values{"name": {name}}
	for k, v := range map[string]string{"source": *source, "window": *window, "from": *from, "to": *to, "step": *step, "q": *pcts} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if *merge {
		q.Set("merge", "sources")
	}
	if !*asJSON {
		q.Set("centroids", "0")
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
		fmt.Fprintf(stderr, "les query: no closed windows for %q in the range (windows appear after they close: end + grace)\n", name)
		return 0
	}
	var dists, points []queryDist
	for _, d := range ds {
		if d.Type == "distribution" {
			dists = append(dists, d)
		} else {
			points = append(points, d)
		}
	}
	if len(points) > 0 {
		writePointTable(stdout, points)
	}
	if len(dists) > 0 {
		if len(points) > 0 {
			fmt.Fprintln(stdout)
		}
		writeQueryTable(stdout, dists)
	}
	return 0
}

// writePointTable prints counters (the window's sum) and gauges (its last
// value; a set's distinct count), one row per window.
func writePointTable(w io.Writer, ds []queryDist) {
	series := map[string]bool{}
	for _, d := range ds {
		series[seriesLabel(d)] = true
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"WINDOW START (UTC)"}
	if len(series) > 1 {
		head = append(head, "SERIES")
	}
	fmt.Fprintln(tw, strings.Join(append(head, "KIND", "VALUE"), "\t")+"\t")
	for _, d := range ds {
		row := []string{d.Timestamp.UTC().Format("2006-01-02 15:04:05")}
		if len(series) > 1 {
			row = append(row, seriesLabel(d))
		}
		fmt.Fprintln(tw, strings.Join(append(row, d.Kind, num(d.Value)), "\t")+"\t")
	}
	_ = tw.Flush()
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
