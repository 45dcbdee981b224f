package e2e

import (
	"bufio"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// earlyInMinute waits, if needed, until the current minute has at least
// 15 s left, so that what a test sends next lands in one window.
func earlyInMinute() {
	now := time.Now()
	if left := now.Truncate(time.Minute).Add(time.Minute).Sub(now); left < 15*time.Second {
		time.Sleep(left + 500*time.Millisecond)
	}
}

// TestHistogramPorts: samples on the histogram_minute ports (TCP and UDP)
// become minute distributions; !M lines on the Wavefront port merge into
// the same series; scalar lines on the distribution port are rejected with
// a reason; the series cap rejects new series (counted) while existing
// ones keep aggregating; a late sample becomes a correction emission.
func TestHistogramPorts(t *testing.T) {
	t.Parallel()
	l := NewLes(t, `
rollup: { grace: 1s, tick: 200ms, max_series_per_window: 3 }
sinks:
  - name: archive
    type: file
    signals: [distributions]
    file: { path: ./out.ndjson }
`)
	l.Start()
	earlyInMinute()
	now := time.Now().Unix()
	send := func(addr string, lines ...string) {
		t.Helper()
		if _, err := l.Run(strings.Join(lines, "\n")+"\n", "send", "--addr", addr); err != nil {
			t.Fatal(err)
		}
	}
	// Three series fill the window's cap.
	send(l.Addr("hist_minute"), "h.lat 10 source=a env=prod", "h.lat 20 source=a env=prod")
	if _, err := l.Run("h.lat 30 source=b env=prod\n", "send", "--udp", "--addr", l.Addr("hist_minute")); err != nil {
		t.Fatal(err)
	}
	send(l.Addr("wavefront"), fmt.Sprintf("!M %d #2 5 #1 15 h.lat source=a env=prod", now))
	send(l.Addr("dist"), fmt.Sprintf("!M %d #1 7 h.dist source=c", now), "h.scalar 1 source=c")
	waitFor(t, 60*time.Second, "scalar line rejected", func() bool {
		return l.Metric(`les_ingest_rejected_total{format="distribution",reason="scalar_on_distribution_port"}`) == 1
	})
	// Let the batcher (50 ms) publish and the rollup (200 ms fetches)
	// admit these three series before the next ones arrive.
	time.Sleep(1500 * time.Millisecond)
	// A fourth and fifth series are over the cap; existing series go on.
	send(l.Addr("hist_minute"), "h.cap1 1 source=x", "h.cap2 1 source=x", "h.lat 40 source=a env=prod")
	waitFor(t, 60*time.Second, "series rejected", func() bool {
		return l.Metric("les_rollup_series_rejected_total") >= 2
	})

	var items map[string][]distLine
	waitFor(t, untilMinuteCloses(), "closed minute windows", func() bool {
		items = rollupItems(t, l)
		return len(items["h.lat"]) >= 2 && len(items["h.dist"]) >= 1
	})
	bySource := map[string]distLine{}
	for _, d := range items["h.lat"] {
		bySource[d.Source] = d
	}
	if a := bySource["a"]; a.Count != 6 || a.Min != 5 || a.Max != 40 || a.Sum != 10+20+2*5+15+40 || a.Window != "minute" || a.Tags["env"] != "prod" {
		t.Errorf("h.lat source=a: %+v, want count 6 (2 TCP samples + !M #3 merged + 1 after the cap), min 5, max 40", a)
	}
	if b := bySource["b"]; b.Count != 1 || b.Max != 30 {
		t.Errorf("h.lat source=b (UDP): %+v", b)
	}
	if d := items["h.dist"]; len(d) != 1 || d[0].Count != 1 || d[0].Max != 7 {
		t.Errorf("h.dist (distribution port): %+v", d)
	}
	for _, n := range []string{"h.cap1", "h.cap2", "h.scalar"} {
		if len(items[n]) != 0 {
			t.Errorf("%s emitted: %+v", n, items[n])
		}
	}
	if ts, _ := time.Parse(time.RFC3339, bySource["a"].Timestamp); ts.Unix() != now/60*60 {
		t.Errorf("window start %s, want %s", bySource["a"].Timestamp, time.Unix(now/60*60, 0).UTC())
	}

	// A late sample for the closed window: a correction, counted.
	send(l.Addr("hist_minute"), fmt.Sprintf("h.lat 50 %d source=a env=prod", now))
	waitFor(t, 60*time.Second, "correction", func() bool {
		for _, d := range rollupItems(t, l)["h.lat"] {
			if d.Correction >= 1 && d.Source == "a" && d.Count == 1 && d.Max == 50 {
				return true
			}
		}
		return false
	})
	if v := l.Metric("les_rollup_late_samples_total"); v < 1 {
		t.Errorf("les_rollup_late_samples_total = %v", v)
	}
	// /query answers the window with its correction folded in (docs/api.md),
	// once its history has read the correction back from the stream.
	var q []distLine
	waitFor(t, 10*time.Second, "the correction in /query", func() bool {
		q = queryAPI(t, l, "h.lat", "a", "minute")
		return len(q) == 1 && q[0].Count == 7
	})
	if q[0].Max != 50 || q[0].Correction != 0 {
		t.Errorf("/query h.lat source=a: %+v, want one window of count 7 (6 + the late 50)", q)
	}
	l.Stop()
}

// TestRollupWavefrontSinkAndQuery: a Wavefront sink receives closed windows
// as !M lines with centroids; les query prints the same windows as a table
// and as NDJSON.
func TestRollupWavefrontSinkAndQuery(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var got []string
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					mu.Lock()
					got = append(got, sc.Text())
					mu.Unlock()
				}
			}()
		}
	}()
	l := NewLes(t, fmt.Sprintf(`
rollup: { grace: 1s, tick: 200ms }
sinks:
  - name: wf
    type: wavefront
    signals: [distributions]
    wavefront: { address: %q }
`, ln.Addr().String()))
	l.Start()
	earlyInMinute()
	now := time.Now().Unix()
	var lines []string
	for i := 1; i <= 100; i++ {
		lines = append(lines, fmt.Sprintf("wf.lat %d source=fn-1 region=eu", i))
	}
	if _, err := l.Run(strings.Join(lines, "\n")+"\n", "send", "--addr", l.Addr("hist_minute")); err != nil {
		t.Fatal(err)
	}
	// Raw samples do not reach the sink: only the closed window does.
	var line string
	re := regexp.MustCompile(`^!M (\d+)((?: #\d+ [0-9.e+-]+)+) "wf\.lat" source="?fn-1"? "?region"?="?eu"?$`)
	waitFor(t, untilMinuteCloses(), "!M line at the Wavefront sink", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, g := range got {
			if strings.Contains(g, "wf.lat") {
				line = g
				return true
			}
		}
		return false
	})
	m := re.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("not a !M line for wf.lat: %q", line)
	}
	if ts, _ := strconv.ParseInt(m[1], 10, 64); ts != now/60*60 {
		t.Errorf("!M timestamp %s, want window start %d", m[1], now/60*60)
	}
	total := 0
	for _, f := range regexp.MustCompile(`#(\d+) `).FindAllStringSubmatch(m[2], -1) {
		n, _ := strconv.Atoi(f[1])
		total += n
	}
	if total != 100 {
		t.Errorf("centroid counts sum to %d, want 100: %q", total, line)
	}
	mu.Lock()
	for _, g := range got {
		if !strings.HasPrefix(g, "!M ") {
			t.Errorf("non-distribution line at the sink: %q", g)
		}
	}
	mu.Unlock()

	// les query: a table …
	out, err := l.Run("", "query", "wf.lat", "--url", "http://"+l.Addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	rows := nonEmptyLines(out)
	if len(rows) != 2 || !strings.Contains(rows[0], "COUNT") || !strings.Contains(rows[0], "p99.9") || !strings.Contains(rows[0], "p50") {
		t.Fatalf("les query table:\n%s", out)
	}
	f := strings.Fields(rows[1])
	// date time corr count min max avg p50 p90 p95 p99 p99.9
	if len(f) != 12 || f[3] != "100" || f[4] != "1" || f[5] != "100" || f[6] != "50.5" {
		t.Errorf("les query row: %q", rows[1])
	}
	if p50, _ := strconv.ParseFloat(f[7], 64); p50 < 49 || p50 > 52 {
		t.Errorf("p50 = %v, want about 50 (1%% relative error)", p50)
	}
	// … or NDJSON, with --source filtering.
	out, err = l.Run("", "query", "wf.lat", "--source", "fn-1", "--window", "minute", "--json", "--url", "http://"+l.Addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	ds := parseDistLines(t, nonEmptyLines(out))
	if len(ds) != 1 || ds[0].Count != 100 || ds[0].Percentiles["p99"] < 98 {
		t.Errorf("les query --json: %+v", ds)
	}
	if out, err := l.Run("", "query", "wf.lat", "--source", "nobody", "--url", "http://"+l.Addr("http")); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("les query of an unknown source: %q %v", out, err)
	}
	if _, err := l.Run("", "query", "wf.lat", "--window", "week", "--url", "http://"+l.Addr("http")); err == nil {
		t.Errorf("les query --window week succeeded")
	}
	l.Stop()
}
