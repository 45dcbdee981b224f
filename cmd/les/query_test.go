package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestQueryShowsEveryKind: `les query` prints counters and gauges (which
// it used to answer with "no closed minute windows") as well as
// distributions, and passes its range, step and merge flags to /query.
func TestQueryShowsEveryKind(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.RawQuery
		w.Write([]byte(`{"type":"metric","name":"aws.lambda.invocations","value":3,"kind":"counter","window":"minute","timestamp":"2026-11-22T02:52:00Z","source":"fn-a","tags":{}}
{"type":"metric","name":"aws.lambda.invocations","value":2,"kind":"counter","window":"minute","timestamp":"2026-11-22T02:53:00Z","source":"fn-b","tags":{}}
{"type":"distribution","name":"aws.lambda.invocations","timestamp":"2026-11-22T02:52:00Z","window":"minute","source":"fn-a","tags":{},"count":5,"sum":360,"min":10,"max":200,"avg":72,"percentiles":{"p50":30},"centroids":[],"correction":0}
`))
	}))
	defer srv.Close()
	var out, errb bytes.Buffer
	code := cmdQuery(context.Background(), []string{"aws.lambda.invocations", "--url", srv.URL, "--from", "-1h", "--step", "hour", "--merge", "--q", "p50"}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"from=-1h", "step=hour", "merge=sources", "q=p50", "centroids=0"} {
		if !strings.Contains(got, want) {
			t.Errorf("query %q lacks %s", got, want)
		}
	}
	for _, want := range []string{"KIND", "VALUE", "counter", "fn-a", "fn-b", "COUNT", "p50", "200"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 6 {
		t.Errorf("want a 3-line point table, a blank line and a 2-line distribution table:\n%s", out.String())
	}
}
