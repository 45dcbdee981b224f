package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium returns Debian's chromium, skipping the test without it (and
// failing under CI, where scripts/test.sh installs it).
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (apt-get install chromium; scripts/test.sh does)")
	}
	t.Skip("chromium is not installed (apt-get install chromium)")
	return ""
}

// screenshotDir is where the browser test saves a screenshot per page:
// $LES_UI_SCREENSHOTS, else a directory under the system's temp dir.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("LES_UI_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "les-ui-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestUIInBrowser sends known data through les (Lambda REPORT lines,
// distributions, StatsD), opens every page of the UI in headless chromium
// with agent.http.token set, and checks the numbers the pages show, that
// HTML in names and log lines stays text, and that a live tail ends when
// the page leaves it. It saves a screenshot of each page.
func TestUIInBrowser(t *testing.T) {
	bin := chromium(t)
	shots := screenshotDir(t)
	const token = "s3cret"
	cfg := queryTestConfig(t, t.TempDir())
	cfg.Agent.HTTP.Token = token
	info, _ := runApp(t, cfg)
	base := "http://" + info.HTTP
	t0 := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	sendQueryFixture(t, info, t0, token)
	// Wait until the history holds the fixture (windows close a grace
	// after they arrive), so the pages have everything at first load.
	for name, n := range map[string]int{"aws.lambda.invocations": 2, "aws.lambda.max_memory_used": 2, "dist.lat": 2, "aws.lambda.errors": 2, "<b>x": 1} {
		waitQuery(t, base, vals("name", name, "from", "-1h", "token", token), func(ls []queryLine) bool { return len(ls) >= n })
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin), chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true), chromedp.Flag("hide-scrollbars", true),
	}
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()

	run := func(what string, acts ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, acts...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	setHash := func(hash string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Evaluate[string](fmt.Sprintf("location.hash = %q", hash))(ctx, tg)
			return chromedp.Void{}, err
		}
	}
	visible := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.WaitVisible(chromedp.CSS(sel)) }
	num := func(sel string) float64 {
		t.Helper()
		s := strings.TrimSpace(strings.TrimSuffix(strings.TrimSuffix(text(sel), " ms"), " MB"))
		v, err := strconv.ParseFloat(strings.ReplaceAll(s, ",", ""), 64)
		if err != nil {
			t.Fatalf("%s shows %q, not a number", sel, s)
		}
		return v
	}
	shot := func(name string) {
		t.Helper()
		buf, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// open navigates within the page (a hash change) and waits for the view.
	open := func(hash, page string) time.Duration {
		t.Helper()
		start := time.Now()
		run("open "+hash, setHash(hash), visible(fmt.Sprintf(`main[data-ready=%q]`, page)))
		return time.Since(start)
	}

	// Lambda, at 1280×800: the token is asked for once.
	start := time.Now()
	run("first load", chromedp.EmulateViewport(1280, 800), chromedp.Navigate(base+"/#/lambda?range=1h"),
		visible("#token-input"), chromedp.SendKeys(chromedp.CSS("#token-input"), token), chromedp.Click(chromedp.CSS(`#token-form button[type="submit"]`)),
		visible(`main[data-ready="lambda"]`))
	t.Logf("lambda page (with the token prompt): %v", time.Since(start))
	for sel, want := range map[string]float64{
		`tr[data-fn="fn-a"] td[data-col="invocations"]`: 3, `tr[data-fn="fn-b"] td[data-col="invocations"]`: 2,
		`tr[data-fn="fn-a"] td[data-col="errors"]`: 0, `tr[data-fn="fn-b"] td[data-col="errors"]`: 1,
		`tr[data-fn="fn-b"] td[data-col="timeouts"]`: 1, `tr[data-fn="fn-a"] td[data-col="cold_starts"]`: 1,
		`tr[data-fn="fn-b"] td[data-col="max_memory"]`: 95, `tr[data-fn="fn-a"] td[data-col="max_memory"]`: 80,
		`[data-kpi="invocations"] .v`: 5, `[data-kpi="errors"] .v`: 1,
	} {
		if got := num(sel); got != want {
			t.Errorf("lambda page %s = %v, want %v", sel, got, want)
		}
	}
	// Percentiles of fn-a's 10, 20, 30 ms: the sketch's order statistic
	// x[floor(q·(n−1))] (internal/rollup/README.md), within 1%.
	for col, want := range map[string]float64{"p50": 20, "p90": 20, "p99": 20} {
		if got := num(`tr[data-fn="fn-a"] td[data-col="` + col + `"]`); got < want*0.99 || got > want*1.01 {
			t.Errorf("fn-a %s = %v, want %v ±1%%", col, got, want)
		}
	}
	shot("lambda")

	// An error log of fn-b, kept by les (/api/v1/errors) before the page
	// opens, with markup that must stay text.
	errMsg := `boom <img src=x onerror="window.pwned=1"> in handler`
	post(t, base+"/logs?token="+token, fmt.Sprintf(`{"source":"fn-b","level":"ERROR","message":%q,"request_id":"req-err-1"}`+"\n", errMsg))
	waitFor(t, func() bool {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/errors?source=fn-b", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), "req-err-1")
	}, "the error log to be kept")
	d := open("#/function?fn=fn-b&range=1h", "function")
	t.Logf("function page: %v", d)
	if got := text(`#fn-errors-table td[data-col="message"]`); got != errMsg {
		t.Errorf("function page error log %q, want %q", got, errMsg)
	}
	if n := evalJS[int](t, bctx, "error log markup", `document.querySelectorAll('#fn-errors-kept img').length`); n != 0 {
		t.Errorf("the error log was rendered as markup (%d img)", n)
	}
	for sel, want := range map[string]float64{`[data-kpi="invocations"] .v`: 2, `[data-kpi="errors"] .v`: 1, `[data-kpi="timeouts"] .v`: 1, `[data-kpi="max_memory"] .v`: 95} {
		if got := num(sel); got != want {
			t.Errorf("function page %s = %v, want %v", sel, got, want)
		}
	}
	// fn-b's 100 and 200 ms: p50 and p99 are x[0] = 100 (see above).
	if got := num(`[data-kpi="p99"] .v`); got < 99 || got > 101 {
		t.Errorf("fn-b p99 %v, want 100 ±1%%", got)
	}
	shot("function")

	// Series: dist.lat, max per minute of both sources merged, as a table.
	d = open("#/series?name=dist.lat&stat=max&step=minute&range=1h&view=table", "series")
	t.Logf("series page: %v", d)
	cells := evalJS[[]string](t, bctx, "series table", `[...document.querySelectorAll('#series-table td[data-col="value"]')].map(e => e.textContent)`)
	if strings.Join(cells, ",") != "3,8" {
		t.Errorf("dist.lat max by minute: %v, want [3 8]", cells)
	}
	shot("series-table")
	run("chart view", chromedp.Click(chromedp.CSS(`button[data-view="chart"]`)), visible(`#series-out .chart svg`))
	hash := evalJS[string](t, bctx, "state in the URL", `location.hash`)
	if !strings.Contains(hash, "view=chart") || !strings.Contains(hash, "name=dist.lat") || !strings.Contains(hash, "stat=max") {
		t.Errorf("series state not in the URL: %s", hash)
	}
	// Hover by keyboard: the tip shows the exact value.
	run("focus the chart", chromedp.Focus(chromedp.CSS(`#series-out .chart`)))
	tip := evalJS[string](t, bctx, "tip", `(() => { const c = document.querySelector('#series-out .chart'); c.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowLeft'})); return c.querySelector('.tip').textContent })()`)
	if !strings.Contains(tip, ": 8") {
		t.Errorf("hover tip %q does not show the last value 8", tip)
	}
	shot("series-chart")

	// Names with HTML are text, never markup.
	d = open("#/series?match=%3Cb", "series")
	names := evalJS[string](t, bctx, "names", `document.getElementById('names').textContent`)
	markup := evalJS[int](t, bctx, "names markup", `document.querySelectorAll('#names b, #names script').length`)
	if !strings.Contains(names, "<b>x") || markup != 0 {
		t.Errorf("names list %q with %d elements from data", names, markup)
	}

	// Live tail: a log line sent now shows up, escaped; leaving the page
	// closes the stream consumer behind it.
	open("#/tail?source=tail-src", "tail")
	msg := `hello <img src=x onerror="window.pwned=1"> from the tail`
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		post(t, base+"/logs?token="+token, fmt.Sprintf(`{"source":"tail-src","level":"ERROR","message":%q,"request_id":"6f1c2e4a-0d3b-4c5e-8f9a-0b1c2d3e4f5a"}`+"\n", msg))
		got := evalJS[string](t, bctx, "tail text", `document.getElementById('tail').textContent`)
		if strings.Contains(got, msg) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the live tail never showed the log line; it shows %q", got)
		}
		<-tick.C
	}
	imgs := evalJS[int](t, bctx, "tail markup", `document.querySelectorAll('#tail img').length`)
	pwned := evalJS[bool](t, bctx, "pwned", `!!window.pwned`)
	if imgs != 0 || pwned {
		t.Errorf("log line rendered as markup: %d img, pwned=%v", imgs, pwned)
	}
	if n := selfMetric(t, base, token, "les_api_tails_open"); n != 1 {
		t.Errorf("tails open while the tail page is shown: %v", n)
	}
	shot("tail")

	// A rejected line with markup, a control character and the token:
	// the Pipeline page shows it escaped, as text, without the token.
	if resp, err := http.Post(base+"/report?f=wavefront&token="+token, "text/plain", strings.NewReader("bad <script>window.pwned=1</script> line "+token+"\x07\n")); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	open("#/pipeline", "pipeline")
	if got := text(`#rejected-table tr[data-format="wavefront"] td[data-col="input"]`); got != `bad <script>window.pwned=1</script> line [redacted]\x07` {
		t.Errorf("pipeline rejected input %q", got)
	}
	if got := text(`#rejected-table tr[data-format="wavefront"] td[data-col="reason"]`); got == "" {
		t.Error("pipeline rejected input without a reason")
	}
	if n := evalJS[int](t, bctx, "rejected markup", `document.querySelectorAll('#rejected script').length`); n != 0 || evalJS[bool](t, bctx, "pwned", `!!window.pwned`) {
		t.Errorf("the rejected line was rendered as markup (%d script)", n)
	}
	if got := text(`[data-total="les_ingest_received_total"]`); !strings.HasPrefix(got, "total so far: ") || got == "total so far: 0" {
		t.Errorf("pipeline intake total %q", got)
	}
	// The tail page is gone: its stream consumer ends.
	waitFor(t, func() bool { return selfMetric(t, base, token, "les_api_tails_open") == 0 }, "the live tail to close after leaving the page")
	shot("pipeline")

	// Phone width: nothing wider than the screen but scrollable tables.
	run("phone", chromedp.EmulateViewport(390, 844), setHash("#/function?fn=fn-a&range=1h"), visible(`main[data-ready="function"]`),
		setHash("#/lambda?range=1h"), visible(`main[data-ready="lambda"]`))
	overflow := evalJS[bool](t, bctx, "overflow", `document.documentElement.scrollWidth > window.innerWidth + 1`)
	if overflow {
		t.Error("the Lambda page is wider than a 390 px screen")
	}
	shot("lambda-phone")

	// First paint of each page on a fresh load (10 samples each are in
	// docs/performance.md; here one, logged).
	for _, page := range []string{"lambda", "series", "tail", "pipeline"} {
		run("reload "+page, chromedp.EmulateViewport(1280, 800), chromedp.Navigate("about:blank"), chromedp.Navigate(base+"/#/"+page), visible(fmt.Sprintf(`main[data-ready=%q]`, page)))
		fcp := evalJS[float64](t, bctx, "paint", `performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1`)
		ready := text("#status")
		t.Logf("%s: first contentful paint %.0f ms; %s", page, fcp, ready)
	}
	t.Logf("screenshots in %s", shots)
}

// evalJS evaluates expr in the page and decodes its value.
func evalJS[T any](t *testing.T, ctx context.Context, what, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// selfMetric reads one unlabelled series from /metrics.
func selfMetric(t *testing.T, base, token, name string) float64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// waitFor polls cond until it holds (20 s at most).
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
