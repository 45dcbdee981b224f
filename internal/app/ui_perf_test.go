package app

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestUIFirstPaint10k measures (it asserts nothing about speed) the first
// contentful paint and the time until each page shows its data, in
// headless chromium, with LES_UI_PERF_SERIES series known (10,000 for
// docs/performance.md): REPORT lines of series/8 Lambda functions, each
// giving eight aws.lambda.* series. Opt-in, as it takes a minute:
//
//	LES_UI_PERF_SERIES=10000 go test -count=1 -run TestUIFirstPaint10k -v ./internal/app
func TestUIFirstPaint10k(t *testing.T) {
	target, _ := strconv.Atoi(os.Getenv("LES_UI_PERF_SERIES"))
	if target <= 0 {
		t.Skip("a measurement: LES_UI_PERF_SERIES=10000 go test -count=1 -run TestUIFirstPaint10k -v ./internal/app")
	}
	bin := chromium(t)
	cfg := queryTestConfig(t, t.TempDir())
	info, _ := runApp(t, cfg)
	base := "http://" + info.HTTP
	t0 := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	fns := (target + 7) / 8
	var logs strings.Builder
	for i := range fns {
		fn := fmt.Sprintf("fn-%05d", i)
		for k := range 3 {
			dur := 10 + float64((i*7+k*13)%500)
			msg := fmt.Sprintf("REPORT RequestId: 6f1c2e4a-0d3b-4c5e-8f9a-%012d\tDuration: %.2f ms\tBilled Duration: %d ms\tMemory Size: 128 MB\tMax Memory Used: %d MB", i*3+k, dur, int(math.Ceil(dur)), 60+i%60)
			if k == 0 {
				msg += "\tInit Duration: 150.00 ms"
			}
			b, _ := json.Marshal(map[string]any{"timestamp": t0.Add(time.Duration(k) * time.Second).Format(time.RFC3339Nano), "source": fn, "message": msg})
			logs.Write(append(b, '\n'))
		}
		if logs.Len() > 1<<20 || i == fns-1 {
			post(t, base+"/logs?f=logs", logs.String())
			logs.Reset()
		}
	}
	// Wait until the history has taken every series in (another
	// process's progress, polled).
	series := func() int {
		resp, err := http.Get(base + "/api/v1/names?limit=1")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var n struct {
			History historyJSON `json:"history"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&n)
		return n.History.Series
	}
	n, same := 0, 0
	deadline := time.Now().Add(2 * time.Minute)
	for tick := time.NewTicker(time.Second); n < target && same < 10 && time.Now().Before(deadline); <-tick.C {
		m := series()
		if m == n && m > 0 {
			same++
		} else {
			same = 0
		}
		n = m
	}
	t.Logf("%d Lambda functions, %d series in the history", fns, n)
	// The server's side of the Lambda page: its seven /query calls, one
	// after the other.
	for _, q := range []string{"invocations", "errors", "timeouts", "cold_starts", "duration&q=0.5,0.9,0.99", "max_memory_used&q=1"} {
		start := time.Now()
		ls, status, _ := getQuery(t, base, vals("name", "aws.lambda."+strings.SplitN(q, "&", 2)[0], "from", "-1h", "step", "all", "centroids", "0"))
		t.Logf("GET /query name=aws.lambda.%s step=all: %d lines in %v (%d)", q, len(ls), time.Since(start).Round(time.Millisecond), status)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	actx, cancelA := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(bin), chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true), chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true))
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatal(err)
	}
	pages := []struct{ name, hash string }{
		{"lambda", "#/lambda?range=1h"}, {"function", "#/function?fn=fn-00042&range=1h"},
		{"series", "#/series?name=aws.lambda.duration&stat=p99&range=24h"}, {"tail", "#/tail"}, {"pipeline", "#/pipeline"},
	}
	const runs = 5
	for _, p := range pages {
		var fcps, readys []float64
		for range runs {
			if err := chromedp.Do(bctx, chromedp.Navigate("about:blank"), chromedp.Navigate(base+"/"+p.hash),
				chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`main[data-ready=%q]`, p.name)))); err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			fcp := evalJS[float64](t, bctx, "paint", `performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1`)
			// When the view had its data (app.js marks it), from the
			// navigation's start.
			ready := evalJS[float64](t, bctx, "ready", `performance.getEntriesByName('les-ready').at(-1)?.startTime ?? -1`)
			fcps, readys = append(fcps, fcp), append(readys, ready)
		}
		slices.Sort(fcps)
		slices.Sort(readys)
		rows := evalJS[int](t, bctx, "rows", `document.querySelectorAll('main tr').length`)
		t.Logf("%-8s first contentful paint median %.0f ms (min %.0f, max %.0f); data shown by %.0f ms median (max %.0f); %d table rows",
			p.name, fcps[runs/2], fcps[0], fcps[runs-1], readys[runs/2], readys[runs-1], rows)
	}
}
