package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// queryLine is the part of a /query line (internal/format/jsonl) tests read.
type queryLine struct {
	Type        string             `json:"type"`
	Name        string             `json:"name"`
	Kind        string             `json:"kind"`
	Value       float64            `json:"value"`
	Window      string             `json:"window"`
	Timestamp   time.Time          `json:"timestamp"`
	Source      string             `json:"source"`
	Tags        map[string]string  `json:"tags"`
	Count       float64            `json:"count"`
	Sum         float64            `json:"sum"`
	Min         float64            `json:"min"`
	Max         float64            `json:"max"`
	Percentiles map[string]float64 `json:"percentiles"`
	Centroids   [][2]float64       `json:"centroids"`
}

// runApp starts an app for cfg and returns its Info and a stop function
// that waits for it to end (also run at cleanup).
func runApp(t *testing.T, cfg *Config) (Info, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Info, 1)
	done := make(chan error, 1)
	// les' log is kept and shown when the test fails (an empty sink after
	// a stop says nothing by itself).
	var logBuf lockedBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("les log:\n%s", logBuf.String())
		}
	})
	go func() {
		done <- New(cfg, slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})), testOptions()).Run(ctx, func(i Info) { ready <- i })
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
	t.Cleanup(stop)
	select {
	case i := <-ready:
		return i, stop
	case err := <-done:
		stopped = true
		t.Fatalf("run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("app did not start")
	}
	return Info{}, stop
}

// queryTestConfig: the embedded stream, HTTP on a free port, one StatsD
// listener, a fast rollup tick.
func queryTestConfig(t *testing.T, dir string) *Config {
	cfg := &Config{DataDir: dir}
	cfg.Stream.Embedded.Listen = "127.0.0.1:-1"
	cfg.Agent.HTTP.Listen = "127.0.0.1:0"
	cfg.Agent.Listeners = []ListenerConfig{{Format: "statsd", Transport: "udp", Address: "127.0.0.1:0"}}
	cfg.Rollup.Tick = 100 * time.Millisecond
	cfg.Rollup.Grace = 200 * time.Millisecond // the fixture is in the past: its data are corrections, closed a grace after they arrive
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func listenerAddr(t *testing.T, info Info, format string) string {
	for _, l := range info.Listeners {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == format {
			return f[2]
		}
	}
	t.Fatalf("no %s listener in %v", format, info.Listeners)
	return ""
}

func post(t *testing.T, u, body string) {
	t.Helper()
	resp, err := http.Post(u, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 || strings.Contains(string(b), `"rejected":1`) {
		t.Fatalf("POST %s: %s %s", u, resp.Status, b)
	}
}

// getQuery GETs /query and parses its lines; status is the HTTP status.
func getQuery(t *testing.T, base string, v url.Values) ([]queryLine, int, string) {
	t.Helper()
	resp, err := http.Get(base + "/query?" + v.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, string(body)
	}
	var out []queryLine
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var l queryLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("bad /query line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out, resp.StatusCode, string(body)
}

// waitQuery polls /query until want is satisfied by its answer (windows
// appear once the rollup closes them and the history reads them back).
func waitQuery(t *testing.T, base string, v url.Values, want func([]queryLine) bool) []queryLine {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ls, status, body := getQuery(t, base, v)
		if status != http.StatusOK {
			t.Fatalf("/query?%s: %d %s", v.Encode(), status, body)
		}
		if want(ls) {
			return ls
		}
		if time.Now().After(deadline) {
			t.Fatalf("/query?%s never satisfied the test; last answer: %+v", v.Encode(), ls)
		}
		<-tick.C
	}
}

// sendQueryFixture sends known data through les' real intake: Lambda
// REPORT lines (POST /logs, turned into aws.lambda.* by logmetric), !M
// distributions (POST /report) and StatsD counters, gauges and sets (UDP),
// all in two minutes ten minutes ago, so their windows close at once.
func sendQueryFixture(t *testing.T, info Info, t0 time.Time, token string) {
	base := "http://" + info.HTTP
	qs := ""
	if token != "" {
		qs = "&token=" + url.QueryEscape(token)
	}
	report := func(fn string, at time.Time, dur float64, mem int, extra string) string {
		msg := fmt.Sprintf("REPORT RequestId: 6f1c2e4a-0d3b-4c5e-8f9a-0b1c2d3e4f5a\tDuration: %.2f ms\tBilled Duration: %d ms\tMemory Size: 128 MB\tMax Memory Used: %d MB%s", dur, int(math.Ceil(dur)), mem, extra)
		b, _ := json.Marshal(map[string]any{"timestamp": at.Format(time.RFC3339Nano), "source": fn, "message": msg})
		return string(b) + "\n"
	}
	var logs strings.Builder
	logs.WriteString(report("fn-a", t0.Add(time.Second), 10, 64, "\tInit Duration: 150.00 ms"))
	logs.WriteString(report("fn-a", t0.Add(2*time.Second), 20, 70, ""))
	logs.WriteString(report("fn-a", t0.Add(3*time.Second), 30, 80, ""))
	logs.WriteString(report("fn-b", t0.Add(61*time.Second), 100, 90, "\tStatus: error\tError Type: Runtime.ExitError"))
	logs.WriteString(report("fn-b", t0.Add(62*time.Second), 200, 95, "\tStatus: timeout"))
	post(t, base+"/logs?f=logs"+qs, logs.String())
	ts := t0.Unix()
	post(t, base+"/report?f=histogram"+qs, fmt.Sprintf("!M %d #2 1.5 #1 3 dist.lat source=x env=prod\n!M %d #4 8 dist.lat source=y env=prod\n", ts, ts+60))
	c, err := net.Dial("udp", listenerAddr(t, info, "statsd"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, l := range []string{
		fmt.Sprintf("st.count:2|c|#source:a|T%d", ts), fmt.Sprintf("st.count:3|c|#source:a|T%d", ts+60), fmt.Sprintf("st.count:4|c|#source:b|T%d", ts),
		fmt.Sprintf("st.g:5|g|#source:a|T%d", ts), fmt.Sprintf("st.g:7|g|#source:a|T%d", ts+1),
		fmt.Sprintf("st.set:u1|s|#source:a|T%d", ts), fmt.Sprintf("st.set:u2|s|#source:a|T%d", ts), fmt.Sprintf("st.set:u1|s|#source:a|T%d", ts),
		fmt.Sprintf("<b>x:1|c|#source:<script>|T%d", ts),
	} {
		if _, err := c.Write([]byte(l)); err != nil {
			t.Fatal(err)
		}
	}
}

func vals(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

func bySource(ls []queryLine) map[string]queryLine {
	m := map[string]queryLine{}
	for _, l := range ls {
		m[l.Source] = l
	}
	return m
}

// TestQueryEveryKind: /query answers counters, gauges, sets and
// distributions from known data sent through les, per source and merged,
// over a range and in steps; /api/v1/names counts sources and tag sets; bad
// parameters answer 400 with the reason; and after a restart the same
// answers come back (the history is rebuilt from the stream).
func TestQueryEveryKind(t *testing.T) {
	dir := t.TempDir()
	info, stop := runApp(t, queryTestConfig(t, dir))
	base := "http://" + info.HTTP
	t0 := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	sendQueryFixture(t, info, t0, "")
	from, to := t0.Add(-time.Minute).Format(time.RFC3339), t0.Add(5*time.Minute).Format(time.RFC3339)
	rng := func(kv ...string) url.Values { return vals(append([]string{"from", from, "to", to}, kv...)...) }

	check := func(t *testing.T) {
		// Counters per source over the whole range, then merged.
		inv := waitQuery(t, base, rng("name", "aws.lambda.invocations", "step", "all"), func(ls []queryLine) bool {
			m := bySource(ls)
			return m["fn-a"].Value == 3 && m["fn-b"].Value == 2
		})
		if len(inv) != 2 || inv[0].Kind != "counter" || inv[0].Window != "" || !inv[0].Timestamp.Equal(t0.Add(-time.Minute)) {
			t.Errorf("invocations by source: %+v", inv)
		}
		merged := waitQuery(t, base, rng("name", "aws.lambda.invocations", "step", "all", "merge", "sources"), func(ls []queryLine) bool {
			return len(ls) == 1 && ls[0].Value == 5
		})
		if merged[0].Source != "*" {
			t.Errorf("merged source %q, want *", merged[0].Source)
		}
		for name, want := range map[string]map[string]float64{
			"aws.lambda.errors":      {"fn-a": 0, "fn-b": 1},
			"aws.lambda.timeouts":    {"fn-a": 0, "fn-b": 1},
			"aws.lambda.cold_starts": {"fn-a": 1},
		} {
			waitQuery(t, base, rng("name", name, "step", "all"), func(ls []queryLine) bool {
				m := bySource(ls)
				for src, v := range want {
					if l, ok := m[src]; !ok || l.Value != v {
						return false
					}
				}
				return len(m) == len(want)
			})
		}
		// Minute windows: one per minute, in time order.
		mins := waitQuery(t, base, rng("name", "st.count", "source", "a"), func(ls []queryLine) bool { return len(ls) == 2 })
		if mins[0].Value != 2 || mins[1].Value != 3 || !mins[0].Timestamp.Equal(t0) || !mins[1].Timestamp.Equal(t0.Add(time.Minute)) || mins[0].Window != "minute" {
			t.Errorf("st.count a by minute: %+v", mins)
		}
		hour := waitQuery(t, base, rng("name", "st.count", "merge", "sources", "step", "hour"), func(ls []queryLine) bool {
			var s float64
			for _, l := range ls {
				s += l.Value
			}
			return s == 9
		})
		if hour[0].Window != "hour" || hour[0].Timestamp.Minute() != 0 {
			t.Errorf("st.count by hour: %+v", hour)
		}
		// Gauges: the window's last value; sets: distinct members.
		waitQuery(t, base, rng("name", "st.g", "step", "all"), func(ls []queryLine) bool {
			return len(ls) == 1 && ls[0].Kind == "gauge" && ls[0].Value == 7
		})
		waitQuery(t, base, rng("name", "st.set"), func(ls []queryLine) bool {
			return len(ls) == 1 && ls[0].Kind == "gauge" && ls[0].Value == 2
		})
		// Distributions merged exactly over sources and minutes.
		dur := waitQuery(t, base, rng("name", "aws.lambda.duration", "merge", "sources", "step", "all", "q", "0.5,p100", "centroids", "0"), func(ls []queryLine) bool {
			return len(ls) == 1 && ls[0].Count == 5
		})[0]
		if dur.Sum != 360 || dur.Min != 10 || dur.Max != 200 || math.Abs(dur.Percentiles["p100"]-200) > 2 || math.Abs(dur.Percentiles["p50"]-30) > 0.3 || len(dur.Centroids) != 0 {
			t.Errorf("merged duration: %+v (want count 5 sum 360 min 10 max 200, p50 and p100 within 1%% of 30 and 200, no centroids)", dur)
		}
		mem := waitQuery(t, base, rng("name", "aws.lambda.max_memory_used", "source", "fn-b", "step", "all"), func(ls []queryLine) bool { return len(ls) == 1 })[0]
		if mem.Max != 95 || mem.Count != 2 {
			t.Errorf("fn-b max memory: %+v", mem)
		}
		lat := waitQuery(t, base, rng("name", "dist.lat", "tag", "env:prod", "merge", "sources", "step", "all"), func(ls []queryLine) bool {
			return len(ls) == 1 && ls[0].Count == 7
		})[0]
		if lat.Sum != 2*1.5+3+4*8 || lat.Min != 1.5 || lat.Max != 8 || len(lat.Centroids) != 3 {
			t.Errorf("dist.lat merged: %+v", lat)
		}
		if ls := waitQuery(t, base, rng("name", "dist.lat", "tag", "env:dev"), func([]queryLine) bool { return true }); len(ls) != 0 {
			t.Errorf("tag filter env:dev: %+v", ls)
		}

		// Names, with counts of sources and tag sets; HTML stays data.
		resp, err := http.Get(base + "/api/v1/names?match=lambda.inv")
		if err != nil {
			t.Fatal(err)
		}
		var names struct {
			Names []nameJSON `json:"names"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&names)
		resp.Body.Close()
		if len(names.Names) != 1 || names.Names[0].Sources != 2 || names.Names[0].TagSets != 1 || names.Names[0].Kind != "counter" {
			t.Errorf("names: %+v", names.Names)
		}
		resp, err = http.Get(base + "/api/v1/names?match=%3Cb")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(raw), `"name":"\u003cb\u003ex"`) {
			t.Errorf("a name with HTML is not escaped: %s", raw)
		}
	}
	check(t)

	// Bad parameters: 400 with a reason.
	for _, c := range []struct {
		v    url.Values
		want string
	}{
		{vals("from", "-1h"), "name is required"},
		{vals("name", "x", "from", "-1h", "to", "-2h"), "empty range"},
		{vals("name", "x", "from", "2000-01-01T00:00:00Z", "to", "now"), "more than"},
		{vals("name", "x", "window", "hour", "step", "minute"), "finer than"},
		{vals("name", "x", "from", "yesterday"), "not an RFC 3339 time"},
		{vals("name", "x", "q", "2"), "percentile"},
		{vals("name", "x", "step", "week"), "step must be"},
	} {
		if _, status, body := getQuery(t, base, c.v); status != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("/query?%s: %d %q, want 400 with %q", c.v.Encode(), status, body, c.want)
		}
	}
	if ls, status, _ := getQuery(t, base, vals("name", "no.such.series")); status != http.StatusOK || len(ls) != 0 {
		t.Errorf("unknown name: %d %+v", status, ls)
	}

	// A restart: the history comes back from the stream's rollup records.
	stop()
	info, _ = runApp(t, queryTestConfig(t, dir))
	base = "http://" + info.HTTP
	t.Run("after restart", check)
}

// lockedBuffer is a bytes.Buffer safe for the app's concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
